#!/usr/bin/env node
import { ConfigError, INTERNAL_ERROR_CODE, InsecureAcceptError, KeyError, LabConfigError, TcpsplitError } from '../errors.js';

const USAGE_ERRORS = new Set([ConfigError.code, KeyError.code, InsecureAcceptError.code, LabConfigError.code]);

const USAGE = `tcpsplit: a split-TCP relay for cloud overlays (KTCP in user space)

Usage:
  tcpsplit relay [options]      run a relay daemon (tcpsplit relay --help)
  tcpsplit ctl <command>        read and change a running relay (tcpsplit ctl --help)
  tcpsplit lab <command>        an emulated WAN in network namespaces (tcpsplit lab --help)
  tcpsplit demo                 the paper's WAN in the lab (needs root): downloads e2e, routed
                                without a split, and through two tcpsplit relays, side by side
  tcpsplit --version

A connection goes client -> R_C -> R_S -> server; each relay terminates TCP, so
every leg has its own short control loop. See README.md and docs/.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    // Each command is loaded only when it runs: a relay never loads the lab, the paper's
    // charting libraries or their files (with a tight open-files limit, that mattered).
    case 'relay': return (await import('./relay-command.js')).runRelayCommand(rest);
    case 'ctl': return (await import('./ctl-command.js')).runCtlCommand(rest);
    case 'lab': return (await import('./lab-command.js')).runLabCommand(rest);
    case 'demo': return (await import('./demo-command.js')).runDemoCommand(rest);
    case '--version': case '-V':
      process.stdout.write('tcpsplit 0.1.0\n');
      return 0;
    case undefined: case '--help': case '-h': case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`tcpsplit: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof TcpsplitError) {
      process.stderr.write(`tcpsplit: ${err.message} [${err.code}]\n`);
      // Bad flags, files or keys are usage errors (2); failures while running are 1.
      process.exitCode = USAGE_ERRORS.has(err.code) ? 2 : 1;
      return;
    } else {
      process.stderr.write(`tcpsplit: internal error (a bug; please report it with this text): ${err instanceof Error ? (err.stack ?? err.message) : String(err)} [${INTERNAL_ERROR_CODE}]\n`);
    }
    process.exitCode = 1;
  },
);
