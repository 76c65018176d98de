import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { LoopLag } from '../src/observe/loop-lag.js';

// A lower bound only (a loop blocked 500 ms was late by at least most of that); no timing upper bound
// is asserted. The next window must show less than the block: a host that stalls this process
// 500 ms in that 60 ms window would fail it, which is why the block is that long.
test('loop lag: a 500 ms block shows in the window that saw it, and the next window starts afresh', async () => {
  const lag = new LoopLag();
  try {
    await sleep(50);
    lag.readP99Ms();
    await sleep(30);
    const until = Date.now() + 500;
    while (Date.now() < until) { /* block the loop */ }
    await sleep(60);
    const blocked = lag.readP99Ms();
    assert.ok(blocked >= 400, `p99 ${blocked} ms after a 500 ms block`);
    await sleep(60);
    assert.ok(lag.readP99Ms() < blocked, 'the block aged out with its window');
  } finally {
    lag.close();
  }
});
