/**
 * The status page end to end: a real relay pair (R_C with two workers and its pool to
 * R_S) on loopback, a slow download running through it, and a connection to a target
 * that refuses; headless Chromium (Debian's, driven by playwright-core) opens R_C's page
 * and checks what a person sees: the peer and its pool size, the bytes growing while the
 * download runs, the chart, and the refused connection's error code. A screenshot is kept
 * as the test's artifact.
 */
import { test, after } from 'node:test';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { connect } from 'node:net';
import { ConnectError } from '../src/errors.js';
import { KEY_HEX, freePort } from './helpers/net.js';
import { RelayProcess } from './helpers/relay-process.js';
import { artifactPath, checkStatusPage, chromiumMissing, launchChromium } from './helpers/status-page-check.js';

const env = { TCPSPLIT_KEY: KEY_HEX };
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

/** 64 KB every 50 ms (about 10 Mbit/s) for at most 60 s: a download a person watches. */
async function slowServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    const timer = setInterval(() => {
      if (res.destroyed || sent >= 1200) { clearInterval(timer); res.end(); return; }
      res.write(chunk);
      sent++;
    }, 50);
    req.on('close', () => { clearInterval(timer); });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => { server.close(() => { r(); }); server.closeAllConnections(); }));
  return { server, port: (server.address() as AddressInfo).port };
}

test('status page (headless Chromium) on a real relay pair: the peer and its pool, live bytes during a download, an error after a refused target', { skip: chromiumMissing() }, async (t) => {
  const { port: webPort } = await slowServer();
  const refused = await freePort(); // nothing listens here (on 127.0.0.2 either)
  const rs = new RelayProcess(['--accept', '127.0.0.1:0', '--allow', '127.0.0.1/32', '--workers', '1', '--control', 'off'], { env });
  cleanups.push(() => rs.stop());
  const rsPort = (await rs.ready()).accept;
  const metricsPort = await freePort();
  const rc = new RelayProcess([
    '-L', `127.0.0.1:0:127.0.0.1:${String(webPort)}`, '-L', `127.0.0.1:0:127.0.0.2:${String(refused)}`,
    '--peer', `rs=127.0.0.1:${String(rsPort)}`, '--route', `127.0.0.1/32=rs`, '--route', `127.0.0.2/32=direct`,
    '--pool-low', '3', '--workers', '2', '--early-syn', 'off', '--metrics', `127.0.0.1:${String(metricsPort)}`, '--control', 'off',
  ], { env });
  cleanups.push(() => rc.stop());
  const [downloadPort, refusedPort] = (await rc.ready()).forward;

  // The download: read slowly through R_C for the whole test.
  const client: Socket = connect(downloadPort ?? 0, '127.0.0.1');
  cleanups.push(() => { client.destroy(); });
  client.on('error', () => undefined);
  await once(client, 'connect');
  client.write('GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  client.resume();

  // The refused target (direct: 127.0.0.2/32=direct): R_C's connect is refused, its
  // client reset, and the failure recorded with its code.
  const refusedClient = connect(refusedPort ?? 0, '127.0.0.1');
  refusedClient.on('error', () => undefined);
  cleanups.push(() => { refusedClient.destroy(); });

  const chromium = await launchChromium();
  cleanups.push(() => chromium.close());
  const screenshotPath = artifactPath('status-page-relay.png');
  // Two workers, each with a pool of 3 to rs.
  const seen = await checkStatusPage(chromium.browser, `http://127.0.0.1:${String(metricsPort)}/`, {
    peer: 'rs', poolSize: 6, errorCode: ConnectError.code, screenshotPath, timeoutMs: 20_000,
  });
  t.diagnostic(`screenshot: ${screenshotPath}`);
  t.diagnostic(`bytes down ${seen.bytesDown[0]} -> ${seen.bytesDown[1]} while the download ran; throughput down ${seen.rateDown}; "${seen.state}"`);
});

