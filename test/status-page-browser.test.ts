/**
 * The status page in headless Chromium (Debian's, driven by playwright-core), fed by a
 * stand-in view source whose numbers change over time. The end-to-end version (a real
 * relay pair with a download and a refused target) calls the same checkStatusPage() with
 * the relay's metrics URL.
 */
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { Browser } from 'playwright-core';
import { startMetricsServer, serverAddress } from '../src/observe/metrics-server.js';
import type { StatusPageOptions } from '../src/control/status-page.js';
import { changingViews } from './helpers/status-view.js';
import { artifactPath, checkStatusPage, chromiumMissing, launchChromium, type LaunchedChromium } from './helpers/status-page-check.js';

const skip = chromiumMissing();
const metrics = { render: () => '# nothing\n' };
const OPTIONS: Partial<StatusPageOptions> = { intervalMs: 250, retryMs: 300 };

const servers = new Set<Server>();
let chromium: LaunchedChromium | undefined;
after(async () => {
  for (const server of servers) await closeServer(server);
  await chromium?.close();
});

async function serve(port = 0, options = OPTIONS): Promise<{ server: Server; url: string }> {
  const server = await startMetricsServer(metrics, '127.0.0.1', port, changingViews({ errorAfterMs: 1500 }), options);
  servers.add(server);
  return { server, url: `http://127.0.0.1:${serverAddress(server).port}/` };
}

async function closeServer(server: Server): Promise<void> {
  servers.delete(server);
  await new Promise<void>((r) => { server.close(() => { r(); }); server.closeAllConnections(); });
}

async function openBrowser(): Promise<Browser> {
  chromium ??= await launchChromium();
  return chromium.browser;
}

it('headless Chromium shows the peer and its pool, bytes growing, the chart, and a new error code', { skip }, async (t) => {
  const { url } = await serve();
  const screenshotPath = artifactPath('status-page.png');
  const seen = await checkStatusPage(await openBrowser(), url, {
    peer: 'rs', poolSize: 4, errorCode: 'TCPSPLIT_ERR_CONNECT_REFUSED', screenshotPath,
  });
  t.diagnostic(`screenshot: ${screenshotPath}`);
  t.diagnostic(`bytes down ${seen.bytesDown[0]} -> ${seen.bytesDown[1]}, down now ${seen.rateDown}; "${seen.state}"`);
});

it('the page says "disconnected, retrying" when its stream drops, and goes live again when the relay is back', { skip }, async () => {
  const { server, url } = await serve();
  const port = serverAddress(server).port;
  const page = await (await openBrowser()).newPage();
  try {
    await page.goto(url);
    const state = page.locator('#state');
    await page.locator('#state.live').waitFor({ timeout: 15_000 });
    await closeServer(server);
    await page.locator('#state.down').waitFor({ timeout: 15_000 });
    assert.match(await state.innerText(), /^disconnected, retrying… \(last update \d\d:\d\d:\d\d\)$/);
    assert.equal(await page.locator('body.disconnected').count(), 1, 'the stale numbers are dimmed');
    await serve(port);
    await page.locator('#state.live').waitFor({ timeout: 15_000 });
    assert.match(await state.innerText(), /^live · last update/);
  } finally {
    await page.close();
  }
});

it('a page refused at the client limit still shows the numbers (from /status.json), says it is retrying, and goes live when a slot frees', { skip }, async () => {
  const { url } = await serve(0, { ...OPTIONS, maxClients: 1 });
  const browser = await openBrowser();
  const first = await browser.newPage();
  const second = await browser.newPage();
  try {
    await first.goto(url);
    await first.locator('#state.live').waitFor({ timeout: 15_000 });
    await second.goto(url);
    await second.locator('#state.down').waitFor({ timeout: 15_000 });
    await second.locator('#peers tr[data-peer="rs"]').waitFor({ timeout: 15_000 });
    assert.match(await second.locator('#state').innerText(), /^disconnected, retrying… \(last update \d\d:\d\d:\d\d\)$/);
    await first.close();
    await second.locator('#state.live').waitFor({ timeout: 15_000 });
  } finally {
    await first.close();
    await second.close();
  }
});
