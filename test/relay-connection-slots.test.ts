/**
 * The relay-wide count of connections and early legs (src/relay/connection-slots.ts):
 * two views of one shared buffer stand for two workers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SharedConnectionSlots } from '../src/relay/connection-slots.js';

function twoWorkers(): { a: SharedConnectionSlots; b: SharedConnectionSlots; supervisor: SharedConnectionSlots } {
  const supervisor = new SharedConnectionSlots(2);
  return {
    supervisor,
    a: SharedConnectionSlots.attach(supervisor.buffer, 2, 0),
    b: SharedConnectionSlots.attach(supervisor.buffer, 2, 1),
  };
}

describe('connection slots', () => {
  it('accepts count relay-wide against the limit, and the fd cap lowers it', () => {
    const { a, b, supervisor } = twoWorkers();
    assert.ok(a.tryTake(3) && b.tryTake(3) && a.tryTake(3));
    assert.equal(b.tryTake(3), false, 'the fourth of three');
    b.release();
    supervisor.setFdCap(2);
    assert.equal(b.tryTake(3), false, 'two open, the cap is two');
    a.release();
    assert.ok(b.tryTake(3));
    assert.equal(supervisor.taken, 2);
  });

  it('an early leg needs room beside connections and early legs; accepts never count early legs', () => {
    const { a, b } = twoWorkers();
    assert.ok(a.tryTake(3));
    assert.ok(a.tryTakeEarly(3) && b.tryTakeEarly(3));
    assert.equal(b.tryTakeEarly(3), false, '1 connection + 2 early legs reach 3');
    assert.ok(b.tryTake(3) && a.tryTake(3), 'early legs never cost an accepted client its slot');
    assert.equal(a.tryClaimEarly(3), false, 'three connections open: the claim is refused, the leg stays early');
    assert.equal(a.early, 2);
    a.releaseEarly();
    b.release();
    assert.ok(b.tryClaimEarly(3));
    assert.equal(b.early, 0);
    assert.equal(b.taken, 3);
  });

  it('early legs stop at their own descriptor cap, well below the connection limit', () => {
    const { a, supervisor } = twoWorkers();
    supervisor.setFdCap(100, 2);
    assert.ok(a.tryTakeEarly(100) && a.tryTakeEarly(100));
    assert.equal(a.tryTakeEarly(100), false);
    assert.ok(a.tryClaimEarly(100), 'a claim moves the leg to the connections');
    assert.ok(a.tryTakeEarly(100), 'its early descriptor is free again');
  });

  it('a dead worker\'s connections and early legs are forgotten; the others\' stay', () => {
    const { a, b, supervisor } = twoWorkers();
    assert.ok(a.tryTake(10) && a.tryTake(10) && a.tryTakeEarly(10) && b.tryTake(10) && b.tryTakeEarly(10));
    assert.ok(a.tryClaimEarly(10));
    supervisor.forget(0);
    assert.equal(supervisor.taken, 1);
    assert.equal(supervisor.early, 1);
    b.releaseEarly();
    b.release();
    assert.equal(supervisor.taken, 0);
    assert.equal(supervisor.early, 0);
  });

  it('ids are unique across views', () => {
    const { a, b } = twoWorkers();
    const ids = [a.nextId(), b.nextId(), a.nextId()];
    assert.deepEqual(ids, [1, 2, 3]);
  });
});
