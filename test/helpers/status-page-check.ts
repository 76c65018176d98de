import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's chromium (scripts/setup.sh installs it); playwright-core downloads no browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** Why a browser test cannot run here, or false. */
export function chromiumMissing(): string | false {
  return existsSync(CHROMIUM) ? false : `no ${CHROMIUM}: install Debian's chromium (scripts/setup.sh does)`;
}

export interface LaunchedChromium {
  readonly browser: Browser;
  /** Closes the browser and removes everything it wrote. */
  close(): Promise<void>;
}

/**
 * Headless, with --no-sandbox because the tests run as root, where chromium's sandbox
 * refuses to start. Its config and cache dirs (chromium writes a crash-report database
 * under $XDG_CONFIG_HOME even with a temporary profile) go to a temp dir that close()
 * removes; playwright removes the profile it made.
 */
export async function launchChromium(): Promise<LaunchedChromium> {
  const home = mkdtempSync(join(tmpdir(), 'tcpsplit-chromium-'));
  try {
    const browser = await chromium.launch({
      executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 60_000,
      env: { ...process.env, XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache') },
    });
    return {
      browser,
      close: async () => {
        try { await browser.close(); } finally { rmSync(home, { recursive: true, force: true }); }
      },
    };
  } catch (err) {
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
}

/** Where a test keeps what a person would want to look at afterwards: $TCPSPLIT_ARTIFACTS, or a fixed directory under the temp dir. */
export function artifactPath(name: string): string {
  const path = join(process.env.TCPSPLIT_ARTIFACTS ?? join(tmpdir(), 'tcpsplit-artifacts'), name);
  mkdirSync(dirname(path), { recursive: true });
  return path;
}

export interface StatusPageExpectations {
  /** A peer the page must list... */
  readonly peer: string;
  /** ...with this many ready pooled connections (waited for: a pool may still be filling). */
  readonly poolSize: number;
  /** An error code that must appear among the recent errors (waited for). */
  readonly errorCode: string;
  /** Where to keep a screenshot once all of it was seen. */
  readonly screenshotPath?: string;
  /** For each thing waited for. */
  readonly timeoutMs?: number;
}

/** What the page showed, for the test's diagnostics. */
export interface StatusPageSeen {
  readonly bytesDown: readonly [string, string];
  readonly rateDown: string;
  readonly state: string;
  readonly requests: readonly string[];
}

/**
 * Opens the status page at `url` and checks what a person sees, as the page updates
 * itself over its event stream: the peer and its pool size, bytes growing between two
 * reads, the throughput chart drawn, the error code appearing, a live "last update"
 * stamp; and that the page fetched nothing but its own origin and hit no script error or
 * policy violation. Works the same on a stand-in view source and on a real relay.
 */
export async function checkStatusPage(browser: Browser, url: string, expect: StatusPageExpectations): Promise<StatusPageSeen> {
  const timeoutMs = expect.timeoutMs ?? 15_000;
  const origin = new URL(url).origin;
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const requests: string[] = [];
  const problems: string[] = [];
  page.on('request', (r) => { requests.push(r.url()); });
  page.on('pageerror', (err) => { problems.push(`page error: ${err.message}`); });
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  try {
    const response = await page.goto(url, { timeout: timeoutMs });
    assert.equal(response?.status(), 200, `GET ${url}`);
    assert.equal(await page.title(), 'tcpsplit status');
    await until(page, async () => /^live · last update \d\d:\d\d:\d\d/.test(await text(page, '#state')), 'the page to say it is live, with a last-update time', timeoutMs);

    const peerRow = page.locator(`#peers tr[data-peer="${expect.peer}"]`);
    await until(page, async () => (await peerRow.count()) === 1, `peer ${expect.peer} listed`, timeoutMs);
    assert.equal(await peerRow.locator('td[data-col="name"]').innerText(), expect.peer);
    await until(page, async () => (await peerRow.locator('td[data-col="pool"]').innerText()) === String(expect.poolSize),
      `peer ${expect.peer} showing a pool of ${expect.poolSize}`, timeoutMs);

    const first = await text(page, '#t-bytes-down');
    let second = first;
    await until(page, async () => parseBytes(second = await text(page, '#t-bytes-down')) > parseBytes(first),
      `bytes down to grow past ${first}`, timeoutMs);
    let rateDown = '';
    await until(page, async () => parseBitRate(rateDown = await text(page, '#t-rate-down')) > 0, 'a throughput down above 0', timeoutMs);

    const down = page.locator('#chart path.down');
    await until(page, async () => Number(await down.getAttribute('data-points')) >= 2, 'the chart to draw two points of throughput down', timeoutMs);
    assert.match(await down.getAttribute('d') ?? '', /^M[\d.]+,[\d.]+ L/, 'the chart path is a line');
    const box = await page.locator('#chart').boundingBox();
    assert.ok(box !== null && box.width > 300 && box.height > 50, `the chart is visible (${JSON.stringify(box)})`);

    const code = page.locator('#errors td[data-col="code"]', { hasText: expect.errorCode });
    await until(page, async () => (await code.count()) >= 1, `error ${expect.errorCode} among the recent errors`, timeoutMs);
    assert.ok(await code.first().isVisible(), `${expect.errorCode} is visible`);

    if (expect.screenshotPath !== undefined) await page.screenshot({ path: expect.screenshotPath, fullPage: true });
    const state = await text(page, '#state');
    const elsewhere = requests.filter((r) => !r.startsWith(`${origin}/`));
    assert.deepEqual(elsewhere, [], 'the page fetched only from the relay');
    assert.deepEqual(problems, [], 'no script errors or policy violations');
    return { bytesDown: [first, second], rateDown, state, requests };
  } finally {
    await page.close();
  }
}

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).innerText()).trim();
}

/** Polls `cond` against the page until it holds; fails naming what did not happen, with the page's state. */
async function until(page: Page, cond: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      const state = await page.locator('#state').innerText().catch(() => '?');
      throw new Error(`status page: waited ${timeoutMs} ms for ${what}; the page says "${state}"`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const BYTE_UNITS: Readonly<Record<string, number>> = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };
const BIT_UNITS: Readonly<Record<string, number>> = { 'bit/s': 1, 'kbit/s': 1e3, 'Mbit/s': 1e6, 'Gbit/s': 1e9, 'Tbit/s': 1e12 };

/** "12.3 MB" as the page shows it -> bytes. */
export function parseBytes(shown: string): number {
  return parseUnit(shown, BYTE_UNITS);
}

/** "81.2 Mbit/s" -> bits per second. */
export function parseBitRate(shown: string): number {
  return parseUnit(shown, BIT_UNITS);
}

function parseUnit(shown: string, units: Readonly<Record<string, number>>): number {
  const m = /^(-?[\d.]+) (\S+)$/.exec(shown);
  const scale = m?.[2] === undefined ? undefined : units[m[2]];
  if (m?.[1] === undefined || scale === undefined) throw new Error(`not a number with a unit: "${shown}"`);
  return Number(m[1]) * scale;
}
