import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { Connections } from '../../src/connections.js';
import { testWiring, useFakeClock } from '../helpers.js';

const FIXTURES = resolve(import.meta.dirname, '../fixtures/proc-net');
const POLL_MS = 200;

/** An IPv4 address and port as /proc/net/tcp prints them. */
const hex = (ip: string, port: number) =>
  `${ip
    .split('.')
    .reverse()
    .map((b) => Number(b).toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase()}:${port.toString(16).padStart(4, '0').toUpperCase()}`;

type Row = [local: string, localPort: number, remote: string, remotePort: number, state: number];

function writeTables(dir: string, rows: Row[], outRsts = 0) {
  const lines = rows.map(
    ([l, lp, r, rp, st], i) =>
      `${String(i).padStart(4)}: ${hex(l, lp)} ${hex(r, rp)} ${st.toString(16).padStart(2, '0').toUpperCase()} 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 0 0 10 -1`,
  );
  writeFileSync(join(dir, 'tcp'), ['  sl  local_address rem_address   st tx_queue rx_queue', ...lines, ''].join('\n'));
  writeFileSync(join(dir, 'tcp6'), '  sl  local_address remote_address st\n');
  writeFileSync(join(dir, 'snmp'), `Tcp: ActiveOpens PassiveOpens OutRsts\nTcp: 1 2 ${outRsts}\n`);
}

const LISTEN = 10;
const ESTABLISHED = 1;
const TIME_WAIT = 6;
const listener: Row = ['0.0.0.0', 8080, '0.0.0.0', 0, LISTEN];
const conn = (clientPort: number, state = ESTABLISHED): Row => ['10.1.0.5', 8080, '10.1.2.3', clientPort, state];

function setup({ appPorts = [8080], dir = mkdtempSync(join(tmpdir(), 'proc-net-')) } = {}) {
  const wiring = testWiring();
  const termination = { active: false };
  const connections = new Connections({
    procNetDir: dir,
    sockDiag: undefined,
    appPorts,
    ownPort: 9555,
    clock: systemClock,
    log: wiring.log,
    metrics: wiring.metrics,
    pollMs: POLL_MS,
    inTermination: () => termination.active,
  });
  return { ...wiring, connections, termination, dir };
}

describe('Connections', () => {
  beforeEach(useFakeClock);
  afterEach(() => vi.useRealTimers());

  it('counts the app ports by local port, IPv6 and IPv4-mapped included, and never the sidecar port', () => {
    const dir = mkdtempSync(join(tmpdir(), 'proc-net-'));
    cpSync(FIXTURES, dir, { recursive: true });
    const { connections } = setup({ appPorts: [8080, 8443], dir });
    const snapshot = connections.current();
    expect(snapshot?.ports).toEqual([
      {
        port: 8080,
        established: 3,
        states: {
          ESTABLISHED: 3,
          SYN_SENT: 1,
          SYN_RECV: 1,
          FIN_WAIT1: 1,
          FIN_WAIT2: 1,
          TIME_WAIT: 1,
          CLOSE: 1,
          CLOSE_WAIT: 1,
          LAST_ACK: 1,
          CLOSING: 1,
          NEW_SYN_RECV: 1,
        },
        listening: true,
        acceptQueue: 3,
        newConnections: 0,
      },
      { port: 8443, established: 2, states: { ESTABLISHED: 2 }, listening: true, acceptQueue: 0, newConnections: 0 },
    ]);
    expect(snapshot).toMatchObject({ established: 5, listening: true });
  });

  it('finds the connections that are new since the previous read, TIME_WAIT ones included', async () => {
    const { connections, dir } = setup();
    writeTables(dir, [listener, conn(50001), conn(50002)]);
    connections.current();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [listener, conn(50002), conn(50003), conn(50004, TIME_WAIT)]);
    expect(connections.current()?.ports[0]).toMatchObject({ established: 2, newConnections: 2 });
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(connections.current()?.ports[0]).toMatchObject({ newConnections: 0 });
  });

  it('counts new connections as late arrivals only during a termination', async () => {
    const { connections, dir, termination, value } = setup();
    writeTables(dir, [listener, conn(50001)]);
    connections.current();
    writeTables(dir, [listener, conn(50001), conn(50002)]);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    connections.current();
    expect(connections.lateTotal).toBe(0);

    termination.active = true;
    writeTables(dir, [listener, conn(50003)]);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    connections.current();
    expect(connections.lateTotal).toBe(1);
    expect(connections.lastArrivalAt).toBe(performance.now());
    expect(await value('drain_sidecar_late_connections_total', { port: '8080' })).toBe(1);
  });

  it('takes a read after a pause as a new baseline, not as arrivals', async () => {
    const { connections, dir, termination } = setup();
    termination.active = true;
    writeTables(dir, [listener]);
    connections.current();
    await vi.advanceTimersByTimeAsync(30_000);
    writeTables(dir, [listener, conn(50001), conn(50002)]);
    expect(connections.current()?.ports[0]?.newConnections).toBe(0);
    expect(connections.lateTotal).toBe(0);
  });

  it('estimates refused connections from resets sent while the app has no listener', async () => {
    const { connections, dir, termination, value } = setup();
    termination.active = true;
    writeTables(dir, [listener], 100);
    connections.current();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [listener], 103);
    connections.current();
    // The app still listens: resets now are not refusals of it.
    expect(await value('drain_sidecar_refused_connections_estimate_total')).toBe(0);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [], 107);
    connections.current();
    expect(await value('drain_sidecar_refused_connections_estimate_total')).toBe(4);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [], 111);
    connections.current();
    expect(await value('drain_sidecar_refused_connections_estimate_total')).toBe(8);
    // Outside a termination nothing is counted.
    termination.active = false;
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [], 150);
    connections.current();
    expect(await value('drain_sidecar_refused_connections_estimate_total')).toBe(8);
  });

  it('reports the figures of an episode from its baseline', async () => {
    const { connections, dir, termination } = setup();
    writeTables(dir, [listener, conn(50001), conn(50002)]);
    termination.active = true;
    const start = performance.now();
    const traffic = connections.traffic(start);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [listener, conn(50002), conn(50003)]);
    connections.current();
    await vi.advanceTimersByTimeAsync(1000);
    writeTables(dir, [listener]);
    expect(traffic?.()).toEqual({ connectionsAtStart: 2, connectionsAtEnd: 0, lateArrivals: 1, lastArrivalSeconds: 0.2 });
  });

  it('polls only while a termination lasts', async () => {
    const { connections, dir, termination } = setup();
    writeTables(dir, [listener]);
    termination.active = true;
    connections.watch();
    writeTables(dir, [listener, conn(50001)]);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(connections.lateTotal).toBe(1);
    termination.active = false;
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [listener, conn(50002)]);
    termination.active = true;
    await vi.advanceTimersByTimeAsync(10 * POLL_MS);
    expect(connections.lateTotal).toBe(1);
  });

  it('says once that /proc/net cannot be read, and is then unavailable', () => {
    const { connections, lines } = setup({ dir: '/nonexistent/proc/net' });
    expect(connections.available).toBe(true);
    expect(connections.current()).toBeUndefined();
    expect(connections.current()).toBeUndefined();
    expect(connections.available).toBe(false);
    expect(lines.filter((l) => l.msg.startsWith('cannot read /proc/net'))).toHaveLength(1);
  });

  it('is unavailable without app ports', () => {
    const { connections } = setup({ appPorts: [] });
    expect(connections.available).toBe(false);
    expect(connections.current()).toBeUndefined();
  });
});
