/**
 * Runs inside a test's network namespace (`ip netns exec tsct-... node conntrack-events-probe.js '<json>'`),
 * so that its conntrack socket and connection live there: opens a ConntrackEvents socket,
 * makes one connection to a listener of its own on `host`, then reads events for
 * `readMs` (a bounded window; the event is normally already queued) and prints one JSON
 * line with the client's 4-tuple and every event seen.
 */
import { once } from 'node:events';
import net from 'node:net';
import { ConntrackEvents, type ConntrackEvent } from '../../src/sys/conntrack-events.js';

export interface ConntrackProbeRequest { readonly host: string; readonly readMs: number }
export interface ConntrackProbeResult {
  readonly client: { readonly saddr: string; readonly sport: number; readonly daddr: string; readonly dport: number };
  readonly events: ConntrackEvent[];
  readonly drops: number;
  readonly overruns: number;
  readonly skipped: number;
}

async function run(req: ConntrackProbeRequest): Promise<ConntrackProbeResult> {
  const events = ConntrackEvents.open();
  const server = net.createServer((s) => { s.on('error', () => undefined); s.destroy(); });
  try {
    server.listen(0, req.host);
    await once(server, 'listening');
    const dport = (server.address() as net.AddressInfo).port;
    const c = net.connect({ host: req.host, port: dport });
    const timer = setTimeout(() => { c.destroy(new Error(`connect to ${req.host}:${dport} took over 3 s`)); }, 3000);
    try {
      await once(c, 'connect');
    } finally {
      clearTimeout(timer);
    }
    const client = { saddr: c.localAddress ?? '', sport: c.localPort ?? 0, daddr: req.host, dport };
    c.destroy();
    const seen: ConntrackEvent[] = [];
    const deadline = process.hrtime.bigint() + BigInt(req.readMs) * 1_000_000n;
    for (let left = req.readMs * 1e6; left > 0; left = Number(deadline - process.hrtime.bigint())) {
      if (events.waitReadable(left)) events.receive((e) => { seen.push(e); });
    }
    return { client, events: seen, drops: events.drops(), overruns: events.overruns, skipped: events.skipped };
  } finally {
    server.close();
    events.close();
  }
}

const req = JSON.parse(process.argv[2] ?? '{}') as ConntrackProbeRequest;
process.stdout.write(`${JSON.stringify(await run(req))}\n`);
