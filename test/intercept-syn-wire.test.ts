/**
 * The pure parts of SYN capture, by feeding bytes: the classic-BPF steering program
 * (interpreted) against steer(), the SYN packet parser, the nfnetlink_queue codec.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { steer } from '../src/net/steer.js';
import { formatIp } from '../src/net/ip-address.js';
import { chainNames, ruleArgs } from '../src/intercept/syn-rules.js';
import { formatBytecode, steeringProgram, XT_BPF_MAX_INSTRUCTIONS } from '../src/intercept/syn-steer-bpf.js';
import { isOpeningSyn, parseSynPacket } from '../src/intercept/syn-packet.js';
import { encodeQueueMessage, encodeQueueParams, encodeVerdict, NF_ACCEPT, parseQueueMessages } from '../src/sys/nfqueue.js';
import { runClassicBpf } from './helpers/classic-bpf.js';

/** An IPv4 SYN with `optionWords` of IP options (IHL 5 + optionWords). */
function ipv4Syn(saddr: number, daddr: number, sport: number, dport: number, isn: number, optionWords = 0, flags = 0x02): Buffer {
  const ihl = 20 + optionWords * 4;
  const b = Buffer.alloc(ihl + 20);
  b[0] = 0x40 | (ihl / 4);
  b.writeUInt16BE(b.length, 2);
  b[8] = 64;
  b[9] = 6;
  b.writeUInt32BE(saddr >>> 0, 12);
  b.writeUInt32BE(daddr >>> 0, 16);
  for (let i = 20; i < ihl; i++) b[i] = 1; // NOPs
  b.writeUInt16BE(sport, ihl);
  b.writeUInt16BE(dport, ihl + 2);
  b.writeUInt32BE(isn >>> 0, ihl + 4);
  b[ihl + 12] = 5 << 4;
  b[ihl + 13] = flags;
  return b;
}

function ipv6Syn(saddr: bigint, daddr: bigint, sport: number, dport: number, isn: number, nextHeader = 6): Buffer {
  const b = Buffer.alloc(60);
  b[0] = 0x60;
  b.writeUInt16BE(20, 4);
  b[6] = nextHeader;
  b[7] = 64;
  for (let i = 0; i < 16; i++) {
    b[8 + i] = Number((saddr >> BigInt(8 * (15 - i))) & 0xffn);
    b[24 + i] = Number((daddr >> BigInt(8 * (15 - i))) & 0xffn);
  }
  b.writeUInt16BE(sport, 40);
  b.writeUInt16BE(dport, 42);
  b.writeUInt32BE(isn >>> 0, 44);
  b[52] = 5 << 4;
  b[53] = 0x02;
  return b;
}

const ipv4Text = (v: number): string => formatIp({ family: 4, value: BigInt(v >>> 0) });
const ipv6Text = (v: bigint): string => formatIp({ family: 6, value: v });

/** Which of the N programs match the packet: exactly one, steer()'s, is expected. */
function matching(family: 4 | 6, workers: number, packet: Buffer): number[] {
  const hits: number[] = [];
  for (let k = 0; k < workers; k++) if (runClassicBpf(steeringProgram(family, workers, k), packet) !== 0) hits.push(k);
  return hits;
}

test('syn steering BPF: for random IPv4 sources, exactly the program of steer()\'s worker matches (1..9 workers, with IP options)', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 9 }), fc.nat(0xffffffff), fc.nat(0xffff), fc.nat(10), (workers, saddr, sport, options) => {
    const hits = matching(4, workers, ipv4Syn(saddr, 0xc6120302, sport, 80, 1, options));
    assert.deepEqual(hits, [steer({ address: ipv4Text(saddr), port: sport }, workers)]);
  }), { numRuns: 2000 });
});

test('syn steering BPF: for random IPv6 sources, exactly the program of steer()\'s worker matches', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 9 }), fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.nat(0xffff), (workers, saddr, sport) => {
    // steer() reads an IPv4-mapped address as IPv4; the IPv6 program only sees native IPv6 packets.
    fc.pre(saddr >> 32n !== 0xffffn);
    const hits = matching(6, workers, ipv6Syn(saddr, 1n, sport, 80, 1));
    assert.deepEqual(hits, [steer({ address: ipv6Text(saddr), port: sport }, workers)]);
  }), { numRuns: 2000 });
});

test('syn steering BPF: an IPv6 SYN behind an extension header matches no worker (not queued: fallback)', () => {
  assert.deepEqual(matching(6, 3, ipv6Syn(0xfd00n << 112n, 1n, 1234, 80, 1, 0 /* hop-by-hop */)), []);
});

test('syn steering BPF: a truncated packet matches nothing; programs fit xt_bpf; bytecode text is iptables\' format', () => {
  assert.deepEqual(matching(4, 2, ipv4Syn(1, 2, 3, 4, 5).subarray(0, 21)), []);
  for (const f of [4, 6] as const) assert.ok(steeringProgram(f, 65536, 65535).length <= XT_BPF_MAX_INSTRUCTIONS);
  const text = formatBytecode(steeringProgram(4, 3, 1));
  assert.match(text, /^12,(\d+ \d+ \d+ \d+,){11}\d+ \d+ \d+ \d+$/);
  assert.ok(text.startsWith('12,32 0 0 4293918732,'), 'ld [SKF_NET_OFF + 12], k unsigned');
  assert.throws(() => steeringProgram(4, 0, 0), RangeError);
  assert.throws(() => steeringProgram(4, 2, 2), RangeError);
});

test('syn packet: IPv4 and IPv6 SYNs give their 4-tuple, ISN and flags; others are refused', () => {
  const v4 = parseSynPacket(ipv4Syn(0xc6120001, 0xc6120302, 40000, 443, 0xdeadbeef, 2));
  assert.deepEqual(v4, { family: 4, saddr: '198.18.0.1', daddr: '198.18.3.2', sport: 40000, dport: 443, isn: 0xdeadbeef, flags: 0x02 });
  assert.equal(isOpeningSyn(v4), true);
  const v6 = parseSynPacket(ipv6Syn(0xfd00_7473_00e5_0000_0000_0000_0000_0001n, 0xfd00_7473_00e5_0000_0000_0000_0000_0002n, 1, 2, 3));
  assert.ok(v6);
  assert.deepEqual([v6.saddr, v6.daddr], ['fd00:7473:e5::1', 'fd00:7473:e5::2']);
  assert.equal(parseSynPacket(ipv6Syn(0xfd00n << 112n, 1n, 1, 2, 3))?.saddr, 'fd00::');
  assert.equal(parseSynPacket(ipv6Syn(1n, 1n, 1, 2, 3, 17)), undefined, 'UDP');
  const synAck = parseSynPacket(ipv4Syn(1, 2, 3, 4, 5, 0, 0x12));
  assert.ok(synAck !== undefined && !isOpeningSyn(synAck));
  assert.equal(parseSynPacket(ipv4Syn(1, 2, 3, 4, 5).subarray(0, 30)), undefined, 'truncated');
  const udp = ipv4Syn(1, 2, 3, 4, 5);
  udp[9] = 17;
  assert.equal(parseSynPacket(udp), undefined);
  assert.equal(parseSynPacket(Buffer.alloc(0)), undefined);
});

test('nfqueue codec: a config request is nlmsghdr + nfgenmsg (queue in network order) + padded attributes', () => {
  const m = encodeQueueParams(7, 0x0102, 128, 4096);
  assert.equal(m.readUInt32LE(0), m.length);
  assert.equal(m.readUInt16LE(4), (3 << 8) | 2, 'NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_CONFIG');
  assert.equal(m.readUInt16LE(6), 0x1 | 0x4, 'REQUEST | ACK');
  assert.equal(m.readUInt32LE(8), 7);
  assert.equal(m.readUInt16BE(18), 0x0102);
  // NFQA_CFG_PARAMS: len 4 + 5, padded to 12; then three u32 attributes of 8 each.
  assert.deepEqual([m.readUInt16LE(20), m.readUInt16LE(22), m.readUInt32BE(24), m[28]], [9, 2, 128, 2]);
  assert.deepEqual([m.readUInt16LE(32), m.readUInt16LE(34), m.readUInt32BE(36)], [8, 3, 4096]);
  assert.deepEqual([m.readUInt16LE(40), m.readUInt16LE(42), m.readUInt32BE(44)], [8, 4, 1]);
  assert.deepEqual([m.readUInt16LE(48), m.readUInt16LE(50), m.readUInt32BE(52)], [8, 5, 1]);
  assert.equal(m.length, 56);
});

test('nfqueue codec: a verdict names the queue, NF_ACCEPT and the packet id, and can be rewritten in place', () => {
  const v = encodeVerdict(3, 0xabcdef01, NF_ACCEPT);
  assert.equal(v.length, 32);
  assert.equal(v.readUInt16LE(4), (3 << 8) | 1);
  assert.deepEqual([v.readUInt16LE(20), v.readUInt16LE(22), v.readUInt32BE(24), v.readUInt32BE(28)], [12, 2, 1, 0xabcdef01]);
  encodeVerdict(9, 5, NF_ACCEPT, v);
  assert.deepEqual([v.readUInt16BE(18), v.readUInt32BE(28)], [9, 5]);
});

/** An NFQNL_MSG_PACKET as the kernel sends it. */
function packetMessage(queueNum: number, id: number, family: number, payload: Buffer): Buffer {
  const hdr = Buffer.alloc(7);
  hdr.writeUInt32BE(id, 0);
  hdr.writeUInt16BE(family === 2 ? 0x0800 : 0x86dd, 4);
  hdr[6] = 0; // PRE_ROUTING
  const m = encodeQueueMessage(0, 0, 0, queueNum, [{ type: 1, value: hdr }, { type: 4, value: Buffer.alloc(16) }, { type: 10, value: payload }]);
  m.writeUInt16LE(3 << 8, 4); // type PACKET
  m[16] = family;
  return m;
}

test('nfqueue codec: packets and acks are parsed out of one receive buffer; a torn trailing message ends the parse', () => {
  const syn = ipv4Syn(0xc6120001, 0xc6120302, 40000, 80, 1);
  const ack = Buffer.alloc(36);
  ack.writeUInt32LE(36, 0);
  ack.writeUInt16LE(2, 4); // NLMSG_ERROR
  ack.writeUInt32LE(42, 8);
  ack.writeInt32LE(-16, 16); // EBUSY
  const buf = Buffer.concat([packetMessage(5, 77, 2, syn), ack, packetMessage(5, 78, 10, syn.subarray(0, 37))]);
  const parsed = parseQueueMessages(buf, buf.length);
  assert.deepEqual(parsed.acks, [{ seq: 42, error: -16 }]);
  assert.equal(parsed.packets.length, 2);
  const [p0, p1] = parsed.packets;
  assert.deepEqual([p0?.queueNum, p0?.id, p0?.family, p0?.hook], [5, 77, 2, 0]);
  assert.ok(p0?.payload.equals(syn));
  assert.equal(p1?.payload.length, 37, 'an odd-length payload (padding not included)');
  assert.equal(parseQueueMessages(buf, buf.length - 3).packets.length, 1, 'torn message dropped');
});

test('syn rules: chain names fit iptables (28 chars) and stay stable for long instances; rules capture only what is asked', () => {
  assert.deepEqual(chainNames('p7080'), { main: 'TCPSPLIT-p7080', steer: 'TCPSPLIT-p7080-Q' });
  const long = chainNames('a_very_long_instance_name_of_32c');
  assert.ok(long.steer.length <= 28);
  assert.deepEqual(chainNames('a_very_long_instance_name_of_32c'), long);
  assert.notDeepEqual(chainNames('a_very_long_instance_name_of_32d'), long);
  assert.throws(() => chainNames('bad name'), { code: 'TCPSPLIT_ERR_SYN_RULES' });
  const options = {
    instance: 'x', workers: 2, queueBase: 10, iface: 'eth0',
    capture: [{ cidr: '198.18.3.0/24', ports: { first: 80, last: 443 } }, { cidr: 'fd00::/64', ports: undefined }],
  };
  const v4 = ruleArgs(options, 4).map((a) => a.join(' '));
  assert.equal(v4.length, 4);
  assert.match(v4[0] ?? '', /^-A TCPSPLIT-x -p tcp --syn -d 198\.18\.3\.0\/24 --dport 80:443 -i eth0 .* -j TCPSPLIT-x-Q$/);
  assert.match(v4[1] ?? '', /^-A TCPSPLIT-x-Q -m bpf --bytecode 12,.* -j NFQUEUE --queue-num 10 --queue-bypass$/);
  assert.match(v4[2] ?? '', /--queue-num 11 --queue-bypass$/);
  assert.match(v4[3] ?? '', /^-I PREROUTING 1 .* -j TCPSPLIT-x$/);
  assert.equal(ruleArgs(options, 6).length, 4);
  assert.deepEqual(ruleArgs({ ...options, capture: [{ cidr: '198.18.3.0/24' }] }, 6), [], 'no IPv6 capture, no IPv6 rules');
  assert.throws(() => ruleArgs({ ...options, capture: [{ cidr: '198.18.3.1/24' }] }, 4), { code: 'TCPSPLIT_ERR_SYN_RULES' });
});
