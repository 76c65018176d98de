import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventLoopLag } from '../src/observe/event-loop-lag.js';

// A lower bound only (a loop blocked 200 ms was late by at least most of that); no timing upper bound is asserted.
test('event-loop lag: a 200 ms block shows in the window that saw it, and the next window starts afresh', async () => {
  const lag = new EventLoopLag();
  await sleep(50);
  lag.p99Seconds();
  await sleep(30);
  const until = Date.now() + 200;
  while (Date.now() < until) { /* block the loop */ }
  await sleep(50);
  const blocked = lag.p99Seconds();
  assert.ok(blocked >= 0.15, `p99 ${blocked} s after a 200 ms block`);
  await sleep(50);
  assert.ok(lag.p99Seconds() < blocked, 'the block aged out with its window');
});
