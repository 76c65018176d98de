import { buildRelayConfig, readRelayOptions, RELAY_HELP } from '../config/load-config.js';
import { parseRelayArgs } from '../config/parse-args.js';
import { createLogger } from '../observe/logger.js';
import { ServiceNotifier } from '../observe/service-notifier.js';
import { Supervisor } from '../worker/supervisor.js';
import { somaxconnWarning } from '../worker/somaxconn.js';
import { describeConfig, describePoolAndTurbo } from './relay-check.js';
import { errorCode, TcpsplitError } from '../errors.js';
import { ControlPlane } from '../control/control-plane.js';
import { ControlServer } from '../control/control-server.js';

/**
 * `tcpsplit relay`: runs until SIGTERM/SIGINT (drain, then exit), reloads its config on
 * SIGHUP without dropping open connections, and logs a status line on SIGUSR1. The
 * relay runs in --workers worker threads under a supervisor (src/worker/supervisor.ts);
 * to the outside it is one relay: one ready line, one metrics endpoint, one status line.
 */
export async function runRelayCommand(argv: string[]): Promise<number> {
  // First thing: without a SIGUSR1 listener, Node opens its inspector on 127.0.0.1:9229,
  // and any local user could attach and read the key. A listener takes the signal from
  // it (checked on Node 20 by test/relay-signals.test.ts).
  let onStatus = (): void => undefined;
  process.on('SIGUSR1', () => { onStatus(); });
  const args = parseRelayArgs(argv);
  if (args.help === true) {
    process.stdout.write(RELAY_HELP);
    return 0;
  }
  // Read once: the running config, and the base that run-time changes build on.
  const base = await readRelayOptions(args);
  const { config, warnings } = await buildRelayConfig(args, process.env, undefined, base);
  if (args.check === true) {
    process.stdout.write(describeConfig(config, warnings));
    return 0;
  }
  const logger = createLogger(config.logLevel, 'tcpsplit-relay');
  for (const warning of warnings) logger.warn({ event: 'config-warning' }, warning);
  if (config.insecure && config.key === undefined) {
    logger.warn({ event: 'insecure' }, '--insecure without a key: relay headers authenticate nothing; anyone who can reach --accept can use this relay (lab use only)');
  }
  const backlogWarning = somaxconnWarning(config.backlog);
  if (backlogWarning !== undefined) logger.warn({ event: 'config-warning', backlog: config.backlog }, backlogWarning);
  if (config.peers.length > 0) for (const line of describePoolAndTurbo(config)) logger.info({ event: 'pool-turbo' }, line);
  const relay = await Supervisor.start(config, { logger });
  const manager = new ServiceNotifier(logger); // systemd Type=notify; a no-op without NOTIFY_SOCKET
  const control = new ControlPlane(argv, process.env, relay, logger, base);
  let controlServer: ControlServer | undefined;
  if (config.control !== undefined) {
    try {
      controlServer = await ControlServer.listen(config.control.path, relay, control, logger);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (config.control.explicit) {
        await relay.close();
        throw err;
      }
      logger.warn({ event: 'control', code: errorCode(err) }, `no control API: ${message} (give --control PATH, or --control off)`);
    }
  }
  onStatus = () => {
    void relay.status().then(({ open, answered }) => {
      const now = relay.addresses();
      logger.info({ event: 'status', open, workers: relay.workers, answered, forward: now.forward, accept: now.accept, intercept: now.intercept, metrics: now.metrics,
        logLevel: logger.level }, 'status (SIGUSR1)');
      logger.flush();
    });
  };

  return new Promise<number>(() => {
    // After the drain, exit at once rather than by letting the event loop run dry: a
    // socket handle libuv failed to close (see resetSocket in src/sys/tcp-socket.ts) makes
    // Node's natural exit spin forever in Environment::CleanupHandles, at full CPU.
    const exitNow = (): void => { process.exit(0); };
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ event: 'stop', signal }, 'second signal: closing now');
        void controlServer?.close();
        void relay.close().then(() => { logger.flush(exitNow); });
        return;
      }
      stopping = true;
      manager.stopping();
      logger.info({ event: 'stop', signal, workers: relay.workers }, 'stopping: no new connections, draining every worker');
      logger.flush();
      void controlServer?.close();
      void relay.drain().then(() => {
        logger.info({ event: 'stopped' }, 'relay stopped');
        logger.flush(exitNow);
      });
    };
    const reload = (): void => {
      // Keep the handler (without one, SIGHUP kills the process); a reload would re-open
      // listeners mid-drain, so say no.
      if (stopping) {
        logger.warn({ event: 'reload' }, 'SIGHUP ignored: the relay is stopping');
        return;
      }
      let loaded = false;
      manager.reloading();
      control.reloadFile('SIGHUP', () => { loaded = true; })
        .then(() => { logger.flush(); })
        .catch((err: unknown) => {
          if (!loaded) relay.reloadFailed(); // relay.reload counts its own failures
          const message = err instanceof Error ? err.message : String(err);
          logger.error({ event: 'reload', code: err instanceof TcpsplitError ? err.code : errorCode(err) }, `reload failed, keeping the running config: ${message}`);
          logger.flush();
        })
        .finally(() => { if (!stopping) manager.ready(); }); // applied or refused, the relay serves
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', reload);
    // A bug must not turn open connections into clean ends. The connections live in the
    // workers, whose legs carry linger {1, 0}: exiting the process closes them as resets.
    process.on('uncaughtException', (err) => {
      logger.fatal({ event: 'crash', code: errorCode(err), err }, 'uncaught exception in the supervisor: resetting all connections and exiting');
      logger.flush();
      process.exit(70); // EX_SOFTWARE
    });
    // Last, with every handler in place: whoever waits for this line may signal at once
    // (a SIGHUP before its handler would end the process).
    const { forward, accept, intercept, metrics } = relay.addresses();
    logger.info({ event: 'ready', forward, accept, intercept, metrics, workers: relay.workers }, 'relay ready');
    logger.flush();
    manager.ready();
  });
}
