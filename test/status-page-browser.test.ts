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

async function serve(port = 0, options = OPTIONS, views = changingViews({ errorAfterMs: 1500 })): Promise<{ server: Server; url: string }> {
  const server = await startMetricsServer(metrics, '127.0.0.1', port, views, options);
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

it('totals that go down (the relay restarted and counts from zero) start the chart over: never a negative rate', { skip }, async () => {
  const { url } = await serve(0, OPTIONS, changingViews({ restartEveryMs: 1000 }));
  const page = await (await openBrowser()).newPage();
  try {
    await page.goto(url);
    await page.locator('#state.live').waitFor({ timeout: 15_000 });
    const shown: string[] = [];
    const ys: number[] = [];
    // 4 s at 250 ms a view: four restarts.
    for (let i = 0; i < 16; i++) {
      shown.push(await page.locator('#t-rate-down').innerText(), await page.locator('#t-rate-up').innerText());
      const d = await page.locator('#chart path.down').getAttribute('d') ?? '';
      for (const m of d.matchAll(/[ML][\d.]+,(-?[\d.]+)/g)) ys.push(Number(m[1]));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.ok(shown.every((text) => !text.includes('-') && !text.includes('−')), `no negative rate shown: ${shown.join(' | ')}`);
    // The zero line is the lowest of the grid lines (the largest y).
    const gridYs = await Promise.all((await page.locator('#chart line.grid-line').all()).map(async (l) => Number(await l.getAttribute('y1'))));
    const baseline = Math.max(...gridYs);
    assert.ok(ys.length > 0 && ys.every((y) => y <= baseline + 0.05), `every point at or above the zero line (${baseline}): ${ys.join(' ')}`);
  } finally {
    await page.close();
  }
});
