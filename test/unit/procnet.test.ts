import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseNetCounters, parseTcpTable, TCP_STATES } from '../../src/procnet.js';

const FIXTURES = resolve(import.meta.dirname, '../fixtures/proc-net');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'latin1');

describe('parseTcpTable', () => {
  const tcp = parseTcpTable(fixture('tcp'));
  const tcp6 = parseTcpTable(fixture('tcp6'));

  it('skips the header line and trailing garbage', () => {
    expect(tcp).toHaveLength(16);
    expect(tcp6).toHaveLength(4);
  });

  it('reads an IPv4 listener with its accept queue', () => {
    expect(tcp[0]).toEqual({
      localAddress: '0.0.0.0',
      localPort: 8080,
      remoteAddress: '0.0.0.0',
      remotePort: 0,
      state: 'LISTEN',
      rxQueue: 3,
    });
  });

  it('reads every TCP state by its kernel number', () => {
    const states = tcp.filter((s) => s.localPort === 8080 && s.remoteAddress === '10.1.2.3').map((s) => s.state);
    expect(states).toEqual(TCP_STATES.filter((s) => s !== 'LISTEN'));
    expect(tcp[1]).toMatchObject({
      localAddress: '10.1.0.5',
      remoteAddress: '10.1.2.3',
      remotePort: 0xc001,
      state: 'ESTABLISHED',
    });
  });

  it('reads IPv6 addresses, and IPv4-mapped ones as the IPv4 peers they are', () => {
    expect(tcp6[0]).toMatchObject({ localAddress: '::', localPort: 8443, state: 'LISTEN' });
    expect(tcp6[1]).toMatchObject({ localAddress: '::1', remoteAddress: '2001:db8::7', remotePort: 50000 });
    expect(tcp6[2]).toMatchObject({ localAddress: '127.0.0.1', remoteAddress: '127.0.0.1', remotePort: 40180 });
    expect(tcp6[3]).toMatchObject({ localAddress: '10.1.0.5', localPort: 8080, remoteAddress: '10.1.2.9' });
  });

  it('keeps only the sockets on the given local ports', () => {
    const only = parseTcpTable(fixture('tcp'), new Set([8080]));
    expect(only).toHaveLength(13);
    expect(only.every((s) => s.localPort === 8080)).toBe(true);
  });

  it('finds a listener this process opened in what this kernel writes', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const live = parseTcpTable(readFileSync('/proc/net/tcp', 'latin1'), new Set([port]));
      expect(live).toContainEqual(expect.objectContaining({ localAddress: '127.0.0.1', localPort: port, state: 'LISTEN' }));
    } finally {
      server.close();
    }
  });
});

describe('parseNetCounters', () => {
  it('reads named Tcp counters, in the order asked for', () => {
    expect(parseNetCounters(fixture('snmp'), 'Tcp', ['OutRsts', 'PassiveOpens'])).toEqual([858, 2113]);
  });

  it('is undefined for a counter or table that is absent', () => {
    expect(parseNetCounters(fixture('snmp'), 'Tcp', ['NoSuchCounter', 'OutRsts'])).toEqual([undefined, 858]);
    expect(parseNetCounters('Ip: Forwarding\nIp: 1\n', 'Tcp', ['OutRsts'])).toEqual([undefined]);
  });
});
