import { parseArgs } from 'node:util';
import { runWanDemo, MODES, fmtMs, type DemoResult } from '../demo/wan-demo.js';
import { ConfigError } from '../errors.js';
import { parseBytes } from '../lab/units.js';
import { verifyPrefix } from '../lab/lab-state.js';

const DEMO_HELP = `tcpsplit demo: the paper's WAN on this machine, three ways side by side

Builds the lab (tcpsplit lab: 4 network namespaces, the paper's RTTs: client-rc
32.7 ms, rc-rs 215 ms, rs-server 26 ms, 273.7 ms end to end), starts nginx in 'server'
and two tcpsplit relays (R_C in 'rc', R_S in 'rs'), then downloads each file with curl
from 'client':

  e2e        client -> server over the direct "internet" link
  no-split   client -> rc -> rs -> server, routed; one TCP connection end to end
  tcpsplit   client -> R_C -> R_S -> server; three TCP connections, authenticated
             relay header between R_C and R_S

It prints the median time to first byte and download time per file and way, checks one
download byte for byte, shows the relays' log lines for it, and removes everything it
made. Needs root. Takes about a minute with the defaults.

Options:
  --sizes LIST       files to download (default 10kb,1mb,10mb)
  --runs N           downloads per file and way; the median is shown (default 3)
  --delay-scale F    multiply every link delay by F (default 1: the paper's RTTs)
  --prefix P         lab name prefix (default tsdemo)
  -h, --help

Examples:
  tcpsplit demo
  tcpsplit demo --sizes 100kb,5mb --runs 5
  tcpsplit demo --delay-scale 0.1     # quick look, RTTs ÷ 10
`;

export async function runDemoCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'sizes': { type: 'string', default: '10kb,1mb,10mb' },
        'runs': { type: 'string', default: '3' },
        'delay-scale': { type: 'string', default: '1' },
        'prefix': { type: 'string', default: 'tsdemo' },
        'help': { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n(tcpsplit demo --help lists the options)`);
  }
  if (values.help) {
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new ConfigError(`--runs '${values.runs}': expected a whole number from 1 to 50`);
  const delayScale = Number(values['delay-scale']);
  if (!(delayScale > 0 && delayScale <= 10)) throw new ConfigError(`--delay-scale '${values['delay-scale']}': expected a number above 0, at most 10`);
  const sizes = values.sizes.split(',').map((text) => {
    const bytes = parseBytes(text.trim());
    if (bytes < 1 || bytes > 1024 ** 3) throw new ConfigError(`--sizes '${text}': expected 1 byte to 1g`);
    return { name: text.trim(), bytes };
  });

  verifyPrefix(values.prefix);
  const started = Date.now();
  const result = await runWanDemo({
    sizes,
    runs,
    delayScale,
    prefix: values.prefix,
    progress: (line) => { process.stderr.write(`[demo ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}\n`); },
  });
  process.stdout.write(formatReport(result, runs));
  return result.integrity.sha256Match ? 0 : 1;
}

function formatReport(result: DemoResult, runs: number): string {
  const lines: string[] = [];
  const links = result.profile;
  const rtt = (name: keyof typeof links): string => `${(links[name].up.delayMs + links[name].down.delayMs).toFixed(1)} ms`;
  lines.push('', `RTTs: client-rc ${rtt('client-rc')}, rc-rs ${rtt('rc-rs')}, rs-server ${rtt('rs-server')}, internet ${rtt('internet')}`);
  lines.push(`Median of ${runs} curl downloads each (first byte = curl's time_starttransfer):`, '');
  lines.push(`${'file'.padEnd(8)} ${'way'.padEnd(9)} ${'first byte'.padStart(10)} ${'download'.padStart(10)} ${'vs e2e'.padStart(8)}`);
  for (const row of result.rows) {
    const e2e = result.rows.find((r) => r.size === row.size && r.mode === 'e2e');
    const ratio = e2e === undefined || row.mode === 'e2e' ? '' : `${(e2e.totalMs / row.totalMs).toFixed(2)}×`;
    lines.push(`${row.size.padEnd(8)} ${row.mode.padEnd(9)} ${fmtMs(row.ttfbMs).padStart(10)} ${fmtMs(row.totalMs).padStart(10)} ${ratio.padStart(8)}`);
  }
  lines.push('', '"vs e2e" is how many times faster the download finished than end to end (above 1 is faster).');
  const { integrity, relayLines } = result;
  lines.push('', `Integrity: ${integrity.file} (${integrity.bytes} bytes) through tcpsplit: SHA-256 ${integrity.sha256Match ? 'matches' : 'DIFFERS from'} the server's file.`);
  const show = (name: string, line: Record<string, unknown> | undefined): void => {
    if (line === undefined) { lines.push(`  ${name}: (no connection log line)`); return; }
    const f = (k: string): string => { const v = line[k]; return typeof v === 'string' || typeof v === 'number' ? String(v) : '-'; };
    lines.push(`  ${name}: ${f('kind')} connection from ${f('client')} to ${f('target')} via ${f('via')}: up ${f('up')} B, down ${f('down')} B, next leg connected in ${f('connectMs')} ms, first byte back after ${f('ttfbMs')} ms, outcome ${f('outcome')}`);
  };
  lines.push('What the relays logged for that download (one JSON line per connection, shown here in short):');
  show('R_C', relayLines.rc);
  show('R_S', relayLines.rs);
  lines.push(`Packets carried by the emulated rc-rs link in this run: ${result.rcRsPackets}.`, '');
  lines.push(`This relay splits TCP only; the paper's four improvements (section 2: early SYN, a worker`);
  lines.push(`pool, pre-established relay connections, Turbo-Start) come next, and with them the first-byte`);
  lines.push(`time. Ways: ${MODES.join(', ')}; see tcpsplit demo --help.`, '');
  return lines.join('\n');
}
