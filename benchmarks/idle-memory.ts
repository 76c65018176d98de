import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type Socket } from 'node:net';
import type { HoldServer } from './backends.js';
import { readRssKb } from './proc-stats.js';

/**
 * Memory per idle split connection: the proxy's VmRSS before and after holding `count`
 * client connections open through it to a server that holds them too. Each connection
 * carries one byte each way first, then stays idle.
 */

export interface IdleMemoryResult {
  readonly connections: number;
  readonly rssBeforeKb: number;
  readonly rssAfterKb: number;
  readonly kbPerConnection: number;
}

/** Connections opened at once: keeps the accept queues short and the loop bounded. */
const BATCH = 100;
const SETTLE_MS = 1000;


/** Opens one connection, sends a byte, waits for the server's byte. */
function openOne(port: number, timeoutMs: number, into: Socket[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    into.push(socket);
    const timer = setTimeout(() => { reject(new Error(`no answer within ${timeoutMs} ms`)); }, timeoutMs);
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
    socket.once('connect', () => socket.write('x'));
    socket.once('data', () => { clearTimeout(timer); resolve(); });
  });
}

export async function measureIdleMemory(
  pid: number,
  proxyPort: number,
  hold: HoldServer,
  count: number,
  timeoutMs = 60_000,
): Promise<IdleMemoryResult> {
  const sockets: Socket[] = [];
  try {
    await sleep(SETTLE_MS);
    const rssBeforeKb = readRssKb(pid);
    const deadline = Date.now() + timeoutMs;
    for (let opened = 0; opened < count; opened += BATCH) {
      if (Date.now() > deadline) throw new Error(`opened only ${opened} of ${count} connections in ${timeoutMs} ms`);
      const batch: Promise<void>[] = [];
      for (let i = opened; i < Math.min(count, opened + BATCH); i++) batch.push(openOne(proxyPort, 10_000, sockets));
      await Promise.all(batch);
    }
    while (hold.open < count) {
      if (Date.now() > deadline) throw new Error(`the server holds ${hold.open} of ${count} connections`);
      await sleep(20);
    }
    await sleep(SETTLE_MS);
    const rssAfterKb = readRssKb(pid);
    return { connections: count, rssBeforeKb, rssAfterKb, kbPerConnection: (rssAfterKb - rssBeforeKb) / count };
  } finally {
    for (const s of sockets) s.destroy();
    hold.dropAll();
    // Let the proxy see the closes before it is stopped, bounded.
    for (let i = 0; i < 100 && hold.open > 0; i++) await sleep(20);
  }
}
