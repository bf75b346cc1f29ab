import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useFakeClock } from '../helpers.js';
import {
  conn,
  FIXTURES,
  listener,
  POLL_MS,
  pooled,
  setup,
  setupDiag,
  TIME_WAIT,
  writeSegments,
  writeTables,
} from '../sockets.js';

describe('Connections', () => {
  beforeEach(useFakeClock);
  afterEach(() => vi.useRealTimers());

  it('counts the app ports by local port, IPv6 and IPv4-mapped included, and never the sidecar port', () => {
    const dir = mkdtempSync(join(tmpdir(), 'proc-net-'));
    cpSync(FIXTURES, dir, { recursive: true });
    const { connections } = setup({ appPorts: [8080, 8443], dir });
    const snapshot = connections.poll();
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
        probes: 0,
      },
      { port: 8443, established: 2, states: { ESTABLISHED: 2 }, listening: true, acceptQueue: 0, newConnections: 0, probes: 0 },
    ]);
    expect(snapshot).toMatchObject({ established: 5, listening: true });
  });

  it('finds the connections that are new since the previous read, TIME_WAIT ones included', async () => {
    const { connections, dir } = setup();
    writeTables(dir, [listener, conn(50001), conn(50002)]);
    connections.poll();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [listener, conn(50002), conn(50003), conn(50004, TIME_WAIT)]);
    expect(connections.poll()?.ports[0]).toMatchObject({ established: 2, newConnections: 2 });
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(connections.poll()?.ports[0]).toMatchObject({ newConnections: 0 });
  });

  it('counts new connections as late arrivals only during a termination', async () => {
    const { connections, dir, termination, value } = setup();
    writeTables(dir, [listener, conn(50001)]);
    connections.poll();
    writeTables(dir, [listener, conn(50001), conn(50002)]);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    connections.poll();
    expect(connections.lateTotal).toBe(0);

    termination.active = true;
    writeTables(dir, [listener, conn(50003)]);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    connections.poll();
    expect(connections.lateTotal).toBe(1);
    expect(connections.lastArrivalAt).toBe(performance.now());
    expect(await value('drain_sidecar_late_connections_total', { port: '8080' })).toBe(1);
  });

  it('takes a read after a pause as a new baseline, not as arrivals', async () => {
    const { connections, dir, termination } = setup();
    termination.active = true;
    writeTables(dir, [listener]);
    connections.poll();
    await vi.advanceTimersByTimeAsync(30_000);
    writeTables(dir, [listener, conn(50001), conn(50002)]);
    expect(connections.poll()?.ports[0]?.newConnections).toBe(0);
    expect(connections.lateTotal).toBe(0);
  });

  it('estimates refused connections from resets sent while the app has no listener', async () => {
    const { connections, dir, termination, value } = setup();
    termination.active = true;
    writeTables(dir, [listener], 100);
    connections.poll();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [listener], 103);
    connections.poll();
    // The app still listens: resets now are not refusals of it.
    expect(await value('drain_sidecar_refused_connections_estimate_total')).toBe(0);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [], 107);
    connections.poll();
    expect(await value('drain_sidecar_refused_connections_estimate_total')).toBe(4);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [], 111);
    connections.poll();
    expect(await value('drain_sidecar_refused_connections_estimate_total')).toBe(8);
    // Outside a termination nothing is counted.
    termination.active = false;
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeTables(dir, [], 150);
    connections.poll();
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
    connections.poll();
    await vi.advanceTimersByTimeAsync(1000);
    writeTables(dir, [listener]);
    expect(traffic?.()).toEqual({
      connectionsAtStart: 2,
      connectionsAtEnd: 0,
      lateArrivals: 1,
      lastArrivalSeconds: 0.2,
      probeConnections: 0,
    });
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
    expect(connections.poll()).toBeUndefined();
    expect(connections.poll()).toBeUndefined();
    expect(connections.available).toBe(false);
    expect(lines.filter((l) => l.msg.startsWith('cannot read /proc/net'))).toHaveLength(1);
  });

  it('is unavailable without app ports', () => {
    const { connections } = setup({ appPorts: [] });
    expect(connections.available).toBe(false);
    expect(connections.poll()).toBeUndefined();
  });
});

describe('Connections through sock_diag', () => {
  beforeEach(useFakeClock);
  afterEach(() => vi.useRealTimers());

  it('sees requests on pooled connections and times the last from tcp_info, not from the poll', async () => {
    const { connections, termination, value, table } = setupDiag();
    table.rows = [pooled(2, 10, 5000), pooled(3, 4, 5000)];
    termination.active = true;
    connections.poll();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    // Three requests on one pooled connection since, the last 120 ms before this read; none on the other.
    table.rows = [pooled(2, 13, 120), pooled(3, 4, 5200)];
    expect(connections.poll()?.ports[0]).toMatchObject({ established: 2, newConnections: 0, newSegments: 3, inFlight: 0 });
    expect(connections.lastArrivalAt).toBe(performance.now() - 120);
    expect(await value('drain_sidecar_late_requests_estimate_total', { port: '8080' })).toBe(3);
    expect(await value('drain_sidecar_late_connections_total', { port: '8080' })).toBe(0);
  });

  it("counts the kubelet's connections apart and the sidecar's own not at all: no late arrival, request or busy", async () => {
    const { connections, termination, value, table } = setupDiag();
    table.rows = [pooled(2, 10, 5000)];
    termination.active = true;
    const traffic = connections.traffic(performance.now());
    await vi.advanceTimersByTimeAsync(POLL_MS);
    // A probe answered and closed by the app (TIME_WAIT), one in flight, and the sidecar's own check in flight.
    table.rows = [
      pooled(2, 10, 5200),
      { cookie: 7, state: TIME_WAIT, expiresMs: 59_950, fromProber: true },
      { cookie: 8, fromProber: true, info: { segmentsIn: 1, segmentsOut: 0, lastReceivedMs: 5, lastSentMs: 5 } },
      { cookie: 9, own: true, info: { segmentsIn: 1, segmentsOut: 0, lastReceivedMs: 5, lastSentMs: 5 } },
    ];
    const port = connections.poll()?.ports[0];
    expect(port).toMatchObject({ established: 1, newConnections: 0, newSegments: 0, inFlight: 0, probes: 2 });
    expect(connections.pollBusy()).toBe(false);
    expect(connections.lastArrivalAt).toBe(Number.NEGATIVE_INFINITY);
    expect(traffic?.()).toMatchObject({ lateArrivals: 0, lateRequestsEstimate: 0, probeConnections: 2 });
    expect(await value('drain_sidecar_late_connections_total', { port: '8080' })).toBe(0);
  });

  it("sets the scrape's gauges from the addon's count, not from a dump with a record per socket", async () => {
    const { connections, table, diag, value } = setupDiag();
    const asked: unknown[][] = [];
    diag.count = (...args) => {
      asked.push(args);
      return Float64Array.from([7, 1, 2]);
    };
    const dumps = table.dumps;
    connections.updateGauges(POLL_MS);
    expect(table.dumps).toBe(dumps);
    expect(asked).toEqual([[[8080], undefined, undefined, 9555]]);
    expect(await value('drain_sidecar_app_connections', { port: '8080' })).toBe(7);
    expect(await value('drain_sidecar_app_accept_queue', { port: '8080' })).toBe(2);
    expect(await value('drain_sidecar_activity_tracking')).toBe(1);
    // A poll's read, fresh enough, serves the scrape instead: no read at all.
    connections.poll();
    connections.updateGauges(POLL_MS);
    expect(asked).toHaveLength(1);
  });

  it('reads the sockets once when an episode opens and its polling starts, then once per poll', async () => {
    const { connections, termination, table } = setupDiag();
    termination.active = true;
    const traffic = connections.traffic(performance.now());
    connections.watch();
    expect(table.dumps).toBe(1);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(table.dumps).toBe(2);
    // The episode's end figures come from a fresh read, not from the poll half an interval ago.
    await vi.advanceTimersByTimeAsync(POLL_MS / 2);
    traffic?.();
    expect(table.dumps).toBe(3);
  });

  it('ignores the times of sockets that received nothing since the previous read', async () => {
    const { connections, termination, table } = setupDiag();
    table.rows = [pooled(2, 10, 3)];
    connections.poll();
    termination.active = true;
    await vi.advanceTimersByTimeAsync(POLL_MS);
    // The kernel's tick rounds times: unchanged, this socket's last payload may even look newer than the baseline.
    table.rows = [pooled(2, 10, 0)];
    connections.poll();
    expect(connections.lastArrivalAt).toBe(Number.NEGATIVE_INFINITY);
  });

  it('counts a new connection with the requests it carried, and one that came and closed, at its close', async () => {
    const { connections, termination, table } = setupDiag();
    termination.active = true;
    table.rows = [pooled(2, 1, 9000)];
    connections.poll();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    table.rows = [
      pooled(2, 1, 9200),
      pooled(5, 2, 150),
      // Closed by the app 60 s - 59 910 ms = 90 ms ago.
      { cookie: 6, state: TIME_WAIT, expiresMs: 59_910 },
    ];
    expect(connections.poll()?.ports[0]).toMatchObject({ newConnections: 2, newSegments: 2 });
    expect(connections.lastArrivalAt).toBe(performance.now() - 90);
  });

  it('does not take a pooled connection closing (now TIME_WAIT) for a request', async () => {
    const { connections, termination, table } = setupDiag();
    termination.active = true;
    table.rows = [pooled(2, 7, 4000)];
    connections.poll();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    table.rows = [{ cookie: 2, state: TIME_WAIT, expiresMs: 59_990 }];
    expect(connections.poll()?.ports[0]).toMatchObject({ newConnections: 0, newSegments: 0 });
    expect(connections.lastArrivalAt).toBe(Number.NEGATIVE_INFINITY);
  });

  it('reuses its previous read while no TCP segment has come or gone in the namespace, reading only the listeners', async () => {
    const { connections, termination, table, dir } = setupDiag();
    writeSegments(dir, 1000);
    termination.active = true;
    // A request being answered, and a connection the app closed 59.7 s ago: its TIME_WAIT ends in 300 ms.
    table.rows = [
      { cookie: 2, info: { segmentsIn: 4, segmentsOut: 3, lastReceivedMs: 20, lastSentMs: 800 } },
      { cookie: 6, state: TIME_WAIT, expiresMs: 300 },
    ];
    // The first read finds the counters where they are; the one a poll later, with them unchanged, may be kept.
    connections.poll();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    connections.poll();
    table.rows[1] = { cookie: 6, state: TIME_WAIT, expiresMs: 300 - POLL_MS };
    expect(table.dumps).toBe(2);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(connections.poll()?.ports[0]).toMatchObject({
      established: 1,
      states: { ESTABLISHED: 1, TIME_WAIT: 1 },
      listening: true,
      newConnections: 0,
      newSegments: 0,
      inFlight: 1,
    });
    expect(connections.pollBusy()).toBe(true);
    expect(table).toMatchObject({ dumps: 2, listenerReads: 2 });
    // The TIME_WAIT socket's time is up and the app closed its listener: neither sends a segment, and both are seen.
    await vi.advanceTimersByTimeAsync(POLL_MS);
    table.listening = false;
    expect(connections.poll()?.ports[0]).toMatchObject({ established: 1, states: { ESTABLISHED: 1 }, listening: false });
    expect(table.dumps).toBe(2);
    // Segments moved: the next poll reads afresh and counts what came, timed by tcp_info.
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeSegments(dir, 1004);
    table.rows = [pooled(2, 6, 30)];
    expect(connections.poll()?.ports[0]).toMatchObject({ newSegments: 2, inFlight: 0 });
    expect(table.dumps).toBe(3);
    expect(connections.lastArrivalAt).toBe(performance.now() - 30);
  });

  it('keeps no read made just after the counters moved: a connection counted but not yet in the table is found next', async () => {
    const { connections, termination, table, dir } = setupDiag();
    writeSegments(dir, 1000);
    termination.active = true;
    table.rows = [pooled(2, 3, 5000)];
    connections.poll();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    connections.poll();
    // The handshake of a new connection is counted, but the kernel has not hashed its socket yet when the table is read.
    await vi.advanceTimersByTimeAsync(POLL_MS);
    writeSegments(dir, 1003);
    expect(connections.poll()?.ports[0]).toMatchObject({ established: 1, newConnections: 0 });
    // No segment since, but the socket is there now: the next poll reads the table again and counts it.
    table.rows = [pooled(2, 3, 5000), pooled(3, 1, 150)];
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(connections.poll()?.ports[0]).toMatchObject({ established: 2, newConnections: 1 });
    expect(table.dumps).toBe(4);
  });

  it('is busy while a request is being answered: payload received after the last sent, unread, or never answered', () => {
    const { connections, table } = setupDiag();
    table.rows = [pooled(2, 3, 800), pooled(3, 1, 10)];
    expect(connections.pollBusy()).toBe(false);
    table.rows = [{ cookie: 2, info: { segmentsIn: 4, segmentsOut: 3, lastReceivedMs: 20, lastSentMs: 800 } }];
    expect(connections.pollBusy()).toBe(true);
    table.rows = [{ cookie: 2, rxQueue: 310, info: { segmentsIn: 4, segmentsOut: 4, lastReceivedMs: 20, lastSentMs: 8 } }];
    expect(connections.pollBusy()).toBe(true);
    // A first request within the tick the connection was made in: both times equal, nothing sent yet.
    table.rows = [{ cookie: 7, info: { segmentsIn: 1, segmentsOut: 0, lastReceivedMs: 30, lastSentMs: 30 } }];
    expect(connections.pollBusy()).toBe(true);
    // A connection that carried nothing yet is not a request.
    table.rows = [{ cookie: 8, info: { segmentsIn: 0, segmentsOut: 0, lastReceivedMs: 30, lastSentMs: 30 } }];
    expect(connections.pollBusy()).toBe(false);
  });

  it('falls back to /proc/net for good, with one warning, when the kernel refuses the dump', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'proc-net-'));
    writeTables(dir, [listener, conn(50001)]);
    const { connections, lines, table } = setupDiag(dir);
    expect(connections.poll()?.signal).toBe('sock_diag');
    table.fail = true;
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(connections.poll()).toMatchObject({ signal: 'proc_net', established: 1 });
    table.fail = false;
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(connections.poll()?.signal).toBe('proc_net');
    expect(lines.filter((l) => l.msg.startsWith('sock_diag failed'))).toHaveLength(1);
  });
});
