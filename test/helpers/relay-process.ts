import { RelayProcess } from '../../src/demo/relay-process.js';

export { RelayProcess, CLI, type LogLine } from '../../src/demo/relay-process.js';

/**
 * A `tcpsplit relay -L 127.0.0.1:0:127.0.0.1:targetPort [extra...]` child process, ready,
 * with its listening port; `stop` belongs in the test's cleanups.
 */
export async function forwardingRelayProcess(targetPort: number, extra: string[] = []): Promise<{ relay: RelayProcess; port: number }> {
  const relay = new RelayProcess(['-L', `127.0.0.1:0:127.0.0.1:${targetPort}`, ...extra]);
  const [port] = (await relay.ready().catch(async (err: unknown) => { await relay.stop(); throw err; })).forward;
  if (port === undefined) throw new Error('relay reported no forward listener');
  return { relay, port };
}
