import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { SysCallError } from '../src/errors.js';
import { PollSet, POLLIN, WOULD_BLOCK, close, errnoName, openTun, read, setTimerSlackNs } from '../src/sys/index.js';
import { runChecked } from '../src/lab/command.js';
import { deleteNamespace } from '../src/lab/netns.js';
import { needsRoot } from './helpers/lab.js';

const NS = 'ttsys-ns';

after(async () => {
  if (needsRoot === false) await deleteNamespace(NS);
});

test('sys: errno names come from libc', () => {
  assert.equal(errnoName(1), 'EPERM');
  assert.equal(errnoName(11), 'EAGAIN');
  assert.equal(errnoName(99999), 'errno 99999');
});

test('sys: a failed call is a SysCallError naming the call and the errno', () => {
  assert.throws(() => { close(987654); }, (e: unknown) =>
    e instanceof SysCallError && e.errno === 9 && e.syscall === 'close(987654)' && /close\(987654\): EBADF \(errno 9\)/.test(e.message));
});

test('sys (root): a TUN device: kernel-chosen name, non-blocking reads, a packet routed to it arrives as IPv4', { skip: needsRoot }, async () => {
  const tun = openTun('ttsys%d');
  let closed = false;
  try {
    assert.match(tun.name, /^ttsys\d+$/);
    const buf = Buffer.alloc(2048);
    assert.equal(read(tun.fd, buf), WOULD_BLOCK, 'nothing queued yet');
    assert.throws(() => openTun(tun.name), (e: unknown) => e instanceof SysCallError && /TUNSETIFF/.test(e.message) && e.errno === 16, 'EBUSY: name taken');
    assert.throws(() => openTun('x'.repeat(16)), RangeError);

    // Move it into a namespace (the fd keeps working), address it, and ping a peer behind it.
    await runChecked('ip', ['netns', 'add', NS]);
    await runChecked('ip', ['link', 'set', tun.name, 'netns', NS]);
    await runChecked('ip', ['-n', NS, 'addr', 'add', '198.18.99.1/24', 'dev', tun.name]);
    await runChecked('ip', ['-n', NS, 'link', 'set', tun.name, 'up']);
    await runChecked('ip', ['netns', 'exec', NS, 'ping', '-c', '1', '-W', '0.2', '198.18.99.2']).catch(() => undefined);

    setTimerSlackNs(1);
    const poll = new PollSet([{ fd: tun.fd, events: POLLIN }]);
    let packet: Buffer | undefined;
    for (let i = 0; i < 20 && packet === undefined; i++) {
      poll.wait(50e6);
      for (let n = read(tun.fd, buf); n !== WOULD_BLOCK; n = read(tun.fd, buf)) {
        // IPv4 (version 4), ICMP (protocol 1), to 198.18.99.2.
        if (buf[0] === 0x45 && buf[9] === 1 && buf.subarray(16, 20).equals(Buffer.from([198, 18, 99, 2]))) packet = Buffer.from(buf.subarray(0, n));
      }
    }
    assert.ok(packet, 'the echo request reached the TUN fd');
    close(tun.fd);
    closed = true;
    const gone = await runChecked('ip', ['-n', NS, '-o', 'link']);
    assert.doesNotMatch(gone, /ttsys/, 'a non-persistent TUN device vanishes with its fd');
  } finally {
    if (!closed) close(tun.fd);
  }
});

test('sys: ppoll with a timeout waits at least that long and reports no events', () => {
  const poll = new PollSet([]);
  const start = performance.now();
  assert.equal(poll.wait(20e6), 0);
  assert.ok(performance.now() - start >= 19.9);
});
