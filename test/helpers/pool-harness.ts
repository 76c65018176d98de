/**
 * A small R_C/R_S pair for the pool tests, on loopback, without relay.ts: R_S is a server
 * whose target comes from PooledTargetSource, R_C is a server that makes SplitConnections
 * whose next leg comes from a PooledLegFactory (falling back to DialingLegFactory). The
 * origin echoes what it got after the client's FIN, and logs every request it saw, so a
 * duplicated or lost byte shows.
 */
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { HeaderAuth } from '../../src/protocol/header-auth.js';
import { ReplayGuard } from '../../src/protocol/replay-guard.js';
import { PooledTargetSource, type PooledSourceOptions } from '../../src/relay/pooled-target-source.js';
import { DialingLegFactory } from '../../src/relay/leg-factory.js';
import { SplitConnection, type ConnectionRecord } from '../../src/relay/split-connection.js';
import { PoolSet } from '../../src/pool/pool-set.js';
import { PooledLegFactory } from '../../src/pool/pooled-leg-factory.js';
import { dialOpener } from '../../src/pool/opener.js';
import { DEFAULT_POOL_TUNING, type PoolTuning } from '../../src/pool/pool-options.js';
import type { PeerSpec } from '../../src/config/relay-config.js';
import { errorCode } from '../../src/errors.js';
import { resetSocket } from '../../src/sys/index.js';

export const KEY = Buffer.alloc(32, 0x42);
export const AUTH = new HeaderAuth(KEY);

function noop(): void { /* test sockets' errors are looked at through outcomes */ }

export interface Tracked { readonly server: Server; readonly port: number; readonly sockets: Set<Socket>; close(): Promise<void> }

export async function listen(onSocket: (s: Socket) => void, port = 0): Promise<Tracked> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', noop);
    onSocket(s);
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => { r(); }));
    },
  };
}

/** Echoes everything after the client's FIN; `seen` lists each request as it arrived. */
export async function origin(): Promise<Tracked & { seen: string[] }> {
  const seen: string[] = [];
  const t = await listen((s) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => {
      const body = Buffer.concat(parts);
      seen.push(body.toString());
      s.end(body);
    });
  });
  return Object.assign(t, { seen });
}

export interface RsOptions extends Partial<Omit<PooledSourceOptions, 'auth' | 'replay'>> {
  readonly port?: number;
  readonly replay?: ReplayGuard;
}

/** R_S: first frame (or AUTH then TARGET), then a plain pipe to the target. */
export async function rsRelay(options: RsOptions = {}): Promise<Tracked & { source: PooledTargetSource; outcomes: string[]; idled: () => number }> {
  const replay = options.replay ?? new ReplayGuard({ maxClockSkewMs: 30_000 });
  const state = { outcomes: [] as string[], idled: 0 };
  const source = new PooledTargetSource({
    auth: AUTH,
    replay,
    headerTimeoutMs: options.headerTimeoutMs ?? 3000,
    maxIdlePerPeer: options.maxIdlePerPeer ?? 64,
    idleBackstopMs: options.idleBackstopMs ?? 60_000,
    onIdle: (s) => { state.idled++; options.onIdle?.(s); },
  });
  const t = await listen((s) => {
    source.targetOf(s).then((dest) => {
      const up = connect({ host: dest.target.host, port: dest.target.port, allowHalfOpen: true });
      up.on('error', () => { resetSocket(s); });
      s.on('error', () => { up.destroy(); });
      s.pipe(up);
      up.pipe(s);
      s.resume();
      state.outcomes.push('ok');
    }, (err: unknown) => {
      state.outcomes.push(errorCode(err));
      resetSocket(s);
    });
  }, options.port ?? 0);
  return Object.assign(t, { source, outcomes: state.outcomes, idled: () => state.idled });
}

export function peerAt(port: number): PeerSpec {
  return { name: 'rs', endpoint: { host: '127.0.0.1', port } };
}

export function newPools(rsPort: number, tuning: Partial<PoolTuning> = {}): PoolSet {
  return new PoolSet([peerAt(rsPort)], { ...DEFAULT_POOL_TUNING, ...tuning, auth: AUTH, opener: dialOpener });
}

/** R_C: every client connection goes to `target` via the peer, through the pool when it can. */
export async function rcRelay(pools: PoolSet, peer: PeerSpec, target: { host: string; port: number }): Promise<Tracked & { records: ConnectionRecord[] }> {
  const records: ConnectionRecord[] = [];
  const legs = new PooledLegFactory(pools, new DialingLegFactory({ keepaliveMs: 10_000, auth: AUTH }), AUTH);
  let id = 0;
  const t = await listen((s) => {
    const conn = SplitConnection.accepted(s, {
      id: ++id, kind: 'forward', target,
      timeouts: { connectTimeoutMs: 5000, idleTimeoutMs: 10_000 },
      onClose: (_c, record) => records.push(record),
    });
    const leg = legs.open({ target, route: { kind: 'peer', peer }, policy: undefined, onDenied: noop });
    conn.attachUpstream(leg.socket, leg.via, leg.preamble);
  });
  return Object.assign(t, { records });
}

/** One request through R_C: writes `body`, half-closes, returns all it got back. */
export async function request(port: number, body: string): Promise<string> {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  s.end(body);
  await new Promise<void>((resolve, reject) => {
    s.on('error', reject);
    s.on('end', () => { resolve(); });
  });
  s.destroy();
  return Buffer.concat(parts).toString();
}
