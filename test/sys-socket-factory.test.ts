import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { SocketOptionsError, SysCallError } from '../src/errors.js';
import {
  DEFAULT_BACKLOG, connectSocket, createConnectionFd, createListenerFd, getCongestion, getSocketIntOption, listenOnFd,
} from '../src/sys/socket-factory.js';
import { close } from '../src/sys/fd.js';
import { socketFd } from '../src/sys/tcp-socket.js';
import { needsRoot } from './helpers/lab.js';

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** A Node server on a factory-made fd; resolves once listening. */
async function serve(fd: number, backlog: number | 'node-default', onConnection: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  if (backlog === 'node-default') server.listen({ fd });
  else listenOnFd(server, fd, backlog);
  await once(server, 'listening');
  return server;
}

function portOf(server: net.Server): number {
  const a = server.address();
  assert.ok(a !== null && typeof a === 'object');
  return a.port;
}

/** Send-Q of the listening socket on `port`, which ss reports as the backlog. */
function ssBacklog(port: number): number {
  const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  const fields = out.trim().split(/\s+/);
  return Number(fields[2]);
}

/** An echo server that answers FIN with FIN once everything is echoed (half-close). */
async function echoServer(host: string): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return server;
}

test('socket factory: a listener carries its options; Node serves it through listen({ fd })', async () => {
  const fd = createListenerFd({ host: '127.0.0.1', port: 0, reusePort: true, noDelay: true, receiveBufferBytes: 1 << 20, congestion: 'reno' });
  assert.equal(getSocketIntOption(fd, 'SO_REUSEPORT'), 1);
  assert.equal(getSocketIntOption(fd, 'SO_REUSEADDR'), 1, 'listeners get SO_REUSEADDR, as Node gives them');
  assert.equal(getSocketIntOption(fd, 'TCP_NODELAY'), 1);
  assert.ok(getSocketIntOption(fd, 'SO_RCVBUF') >= 1 << 20, 'SO_RCVBUF set (the kernel stores double, capped by rmem_max)');
  assert.equal(getCongestion(fd), 'reno');
  const server = await serve(fd, DEFAULT_BACKLOG, (s) => { s.end('hello'); });
  try {
    const c = net.connect(portOf(server), '127.0.0.1');
    c.on('error', () => undefined);
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    await once(c, 'close');
    assert.equal(Buffer.concat(chunks).toString(), 'hello');
  } finally {
    server.close();
  }
});

test('socket factory: IPv6 listeners: ::1, and v6Only false takes IPv4 clients as ::ffff: addresses', async () => {
  const v6 = createListenerFd({ host: '::1', port: 0, v6Only: true });
  assert.equal(getSocketIntOption(v6, 'IPV6_V6ONLY'), 1);
  const s1 = await serve(v6, DEFAULT_BACKLOG, (s) => s.end());
  const dual = createListenerFd({ host: '::', port: 0, v6Only: false });
  let seen = '';
  const s2 = await serve(dual, DEFAULT_BACKLOG, (s) => { seen = s.remoteAddress ?? ''; s.end(); });
  try {
    assert.deepEqual((s1.address() as net.AddressInfo).address, '::1');
    const c = net.connect(portOf(s2), '127.0.0.1');
    c.on('error', () => undefined);
    c.resume();
    await once(c, 'close');
    assert.equal(seen, '::ffff:127.0.0.1');
  } finally {
    s1.close();
    s2.close();
  }
});

test('socket factory: backlog 4096 reaches the kernel through listenOnFd; Node alone re-listens with 511', async () => {
  assert.equal(DEFAULT_BACKLOG, 4096);
  const a = await serve(createListenerFd({ host: '127.0.0.1', port: 0, backlog: 4096 }), 4096, (s) => s.end());
  const b = await serve(createListenerFd({ host: '127.0.0.1', port: 0, backlog: 4096 }), 'node-default', (s) => s.end());
  try {
    assert.equal(ssBacklog(portOf(a)), 4096);
    assert.equal(ssBacklog(portOf(b)), 511, "Node calls listen() again on an adopted fd with its own backlog");
  } finally {
    a.close();
    b.close();
  }
  // Before Node adopts it, the fd has the factory's backlog.
  const fd = createListenerFd({ host: '127.0.0.1', port: 0, backlog: 3000 });
  try {
    const local = execFileSync('ss', ['-Hltn'], { encoding: 'utf8' });
    assert.match(local, /LISTEN\s+0\s+3000\s/);
  } finally {
    close(fd);
  }
});

test('socket factory: every failure is typed and closes the fd', () => {
  const before = openFds();
  const taken = createListenerFd({ host: '127.0.0.1', port: 0 });
  try {
    const port = Number(execFileSync('ss', ['-Hltnp'], { encoding: 'utf8' })
      .split('\n').find((l) => l.includes(`pid=${process.pid},fd=${taken})`))?.split(/\s+/)[3]?.split(':').pop());
    assert.ok(port > 0, 'found the taken port');
    assert.throws(() => createListenerFd({ host: '127.0.0.1', port }), (e: unknown) =>
      e instanceof SysCallError && e.errno === 98 && /bind\(fd \d+, 127\.0\.0\.1:\d+\): EADDRINUSE/.test(e.message));
    assert.throws(() => createListenerFd({ host: '127.0.0.1', port: 0, congestion: 'nosuchcc' }), (e: unknown) =>
      e instanceof SysCallError && e.errno === 2 && /TCP_CONGESTION/.test(e.message));
    assert.throws(() => createConnectionFd({ family: 4, localAddress: '::1' }), SocketOptionsError);
    assert.throws(() => createListenerFd({ host: 'localhost', port: 0 }), SocketOptionsError);
    assert.throws(() => createListenerFd({ host: '127.0.0.1', port: 70000 }), SocketOptionsError);
    assert.throws(() => createListenerFd({ host: '127.0.0.1', port: 0, backlog: 0 }), SocketOptionsError);
    assert.throws(() => createListenerFd({ host: '127.0.0.1', port: 0, congestion: 'x'.repeat(16) }), SocketOptionsError);
    assert.throws(() => connectSocket(createConnectionFd({ family: 4 }), { host: 'localhost', port: 80 }), SocketOptionsError);
    assert.throws(() => connectSocket(createConnectionFd({ family: 4 }), { host: '127.0.0.1', port: 0 }), SocketOptionsError);
  } finally {
    close(taken);
  }
  assert.equal(openFds(), before, 'no fd left open');
});

test('socket factory: an outgoing leg made here connects through Node, emits connect, and carries data both ways with half-close', async () => {
  for (const [family, host] of [[4, '127.0.0.1'], [6, '::1']] as const) {
    const server = await echoServer(host);
    try {
      const fd = createConnectionFd({ family, noDelay: true, sendBufferBytes: 256 * 1024, receiveBufferBytes: 256 * 1024, congestion: 'reno' });
      assert.equal(getCongestion(fd), 'reno');
      const socket = connectSocket(fd, { host, port: portOf(server) });
      socket.on('error', () => undefined);
      assert.equal(socket.connecting, true);
      await once(socket, 'connect');
      assert.equal(socket.remotePort, portOf(server));
      assert.equal(socketFd(socket), fd, 'Node connected our fd, not a new one');
      assert.equal(getSocketIntOption(fd, 'TCP_NODELAY'), 1);
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      const big = Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => (i * 7) & 0xff));
      socket.end(big);
      await once(socket, 'end');
      assert.ok(Buffer.concat(chunks).equals(big), `IPv${family}: every byte came back, then the FIN`);
      socket.destroy();
    } finally {
      server.close();
    }
  }
});

test('socket factory: an outgoing leg bound to a chosen source, and a refused connect reported as ECONNREFUSED', async () => {
  const server = await echoServer('127.0.0.1');
  const refused = createListenerFd({ host: '127.0.0.1', port: 0 });
  const refusedPort = Number(execFileSync('ss', ['-Hltnp'], { encoding: 'utf8' })
    .split('\n').find((l) => l.includes(`pid=${process.pid},fd=${refused})`))?.split(/\s+/)[3]?.split(':').pop());
  close(refused); // the port is now closed: connecting to it is refused
  try {
    const fd = createConnectionFd({ family: 4, localAddress: '127.0.0.2' });
    const socket = connectSocket(fd, { host: '127.0.0.1', port: portOf(server) });
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    assert.equal(socket.localAddress, '127.0.0.2');
    socket.destroy();

    const bad = connectSocket(createConnectionFd({ family: 4 }), { host: '127.0.0.1', port: refusedPort });
    const [err] = (await once(bad, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
  } finally {
    server.close();
  }
});

test('Node: an adopted unconnected fd connected one tick late fails with ENOTCONN (why connectSocket connects at once)', async () => {
  const server = await echoServer('127.0.0.1');
  try {
    const fd = createConnectionFd({ family: 4 });
    const socket = new net.Socket({ fd, allowHalfOpen: true });
    const errored = once(socket, 'error') as Promise<[NodeJS.ErrnoException]>;
    await new Promise((resolve) => setImmediate(resolve));
    const [err] = await errored;
    assert.equal(err.code, 'ENOTCONN');
    assert.equal(socketFd(socket), undefined, 'Node closed the fd: a later connect() would make a new one without our options');
  } finally {
    server.close();
  }
});

test('socket factory (root): IP_TRANSPARENT and SO_MARK are set before bind', { skip: needsRoot }, () => {
  const fd = createConnectionFd({ family: 4, transparent: true, mark: 0x2a, localAddress: '198.18.77.1' });
  try {
    assert.equal(getSocketIntOption(fd, 'IP_TRANSPARENT'), 1);
    assert.equal(getSocketIntOption(fd, 'SO_MARK'), 0x2a);
  } finally {
    close(fd);
  }
  const v6 = createListenerFd({ host: '::', port: 0, transparent: true, mark: 7 });
  try {
    assert.equal(getSocketIntOption(v6, 'IPV6_TRANSPARENT'), 1);
    assert.equal(getSocketIntOption(v6, 'SO_MARK'), 7);
  } finally {
    close(v6);
  }
  // Without IP_TRANSPARENT, binding a foreign address fails: the option must come first.
  assert.throws(() => createConnectionFd({ family: 4, localAddress: '198.18.77.1' }), (e: unknown) =>
    e instanceof SysCallError && e.errno === 99);
});
