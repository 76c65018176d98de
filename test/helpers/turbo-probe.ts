/**
 * Run inside a namespace by test/turbo-netns.test.ts (`ip netns exec NS node turbo-probe.js ...`):
 *   serve PORT              listen on 0.0.0.0:PORT, discard what comes, print "ready"
 *   cwnd HOST PORT [BYTES]  connect through the socket factory (SO_RCVBUF/SO_SNDBUF = BYTES set
 *                           before connect when given), print TCP_INFO as JSON, exit
 */
import { createServer } from 'node:net';
import { once } from 'node:events';
import { connectSocket, createConnectionFd, socketFd, tcpInfo } from '../../src/sys/index.js';

const [mode, a, b, c] = process.argv.slice(2);
if (mode === 'serve') {
  const server = createServer((s) => { s.on('error', () => undefined); s.resume(); });
  server.listen(Number(a), '0.0.0.0', () => { process.stdout.write('ready\n'); });
} else if (mode === 'cwnd' && a !== undefined) {
  const bytes = c === undefined ? undefined : Number(c);
  const fd = createConnectionFd({ family: 4, ...(bytes === undefined ? {} : { receiveBufferBytes: bytes, sendBufferBytes: bytes }) });
  const socket = connectSocket(fd, { host: a, port: Number(b) });
  await once(socket, 'connect');
  const info = tcpInfo(socketFd(socket) ?? -1);
  process.stdout.write(`${JSON.stringify(info)}\n`);
  socket.destroy();
} else {
  process.stderr.write('usage: turbo-probe serve PORT | cwnd HOST PORT [BYTES]\n');
  process.exit(2);
}
