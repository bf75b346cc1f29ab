// Connections over socket tables the test writes: /proc/net files in a temporary directory, and a stand-in for the
// sock_diag addon whose rows the test sets. Shared by the unit tests of connections and of /drain's idle rule.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { systemClock } from '../src/clock.js';
import { Connections } from '../src/connections.js';
import type { SockDiag } from '../src/sockdiag.js';
import { testWiring } from './helpers.js';

export const FIXTURES = resolve(import.meta.dirname, 'fixtures/proc-net');
export const POLL_MS = 200;

/** An IPv4 address and port as /proc/net/tcp prints them. */
const hex = (ip: string, port: number) =>
  `${ip
    .split('.')
    .reverse()
    .map((b) => Number(b).toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase()}:${port.toString(16).padStart(4, '0').toUpperCase()}`;

export type Row = [local: string, localPort: number, remote: string, remotePort: number, state: number];

export function writeTables(dir: string, rows: Row[], outRsts = 0) {
  const lines = rows.map(
    ([l, lp, r, rp, st], i) =>
      `${String(i).padStart(4)}: ${hex(l, lp)} ${hex(r, rp)} ${st.toString(16).padStart(2, '0').toUpperCase()} 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 0 0 10 -1`,
  );
  writeFileSync(join(dir, 'tcp'), ['  sl  local_address rem_address   st tx_queue rx_queue', ...lines, ''].join('\n'));
  writeFileSync(join(dir, 'tcp6'), '  sl  local_address remote_address st\n');
  writeFileSync(join(dir, 'snmp'), `Tcp: ActiveOpens PassiveOpens OutRsts\nTcp: 1 2 ${outRsts}\n`);
}

/** /proc/net/snmp with the namespace's segment counters, whose sum is `segments`: a poll reads the sockets afresh only
 * when it moved. (writeTables leaves them out, so that every poll of a test with it reads afresh.) */
export function writeSegments(dir: string, segments: number) {
  writeFileSync(join(dir, 'snmp'), `Tcp: InSegs OutSegs RetransSegs OutRsts\nTcp: ${segments} 0 0 0\n`);
}

export const LISTEN = 10;
export const ESTABLISHED = 1;
export const TIME_WAIT = 6;
export const listener: Row = ['0.0.0.0', 8080, '0.0.0.0', 0, LISTEN];
export const conn = (clientPort: number, state = ESTABLISHED): Row => ['10.1.0.5', 8080, '10.1.2.3', clientPort, state];

export function setup({
  appPorts = [8080],
  dir = mkdtempSync(join(tmpdir(), 'proc-net-')),
  sockDiag = undefined as SockDiag | undefined,
} = {}) {
  const wiring = testWiring();
  const termination = { active: false };
  const connections = new Connections({
    procNetDir: dir,
    sockDiag,
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

/** A socket as the addon reports it (native/sockdiag.c's record layout). */
export interface DiagRow {
  cookie: number;
  state?: number;
  localPort?: number;
  remotePort?: number;
  rxQueue?: number;
  expiresMs?: number;
  /** Absent: no tcp_info (TIME_WAIT). */
  info?: { segmentsIn: number; segmentsOut: number; lastReceivedMs: number; lastSentMs: number };
  /** The peer is one of the probers given to the dump. */
  fromProber?: boolean;
  /** The peer is one of the own addresses given to the dump (the sidecar). */
  own?: boolean;
}

/** Stands in for the kernel's answer to a sock_diag dump: rows set by the test, in the addon's layout. */
export function fakeSockDiag() {
  const table = { rows: [] as DiagRow[], fail: false, dumps: 0, listening: true, listenerReads: 0 };
  const record = (r: DiagRow) => [
    r.localPort ?? 8080,
    r.remotePort ?? 40000 + r.cookie,
    r.state ?? ESTABLISHED,
    r.cookie,
    r.rxQueue ?? 0,
    r.expiresMs ?? 0,
    r.info?.segmentsIn ?? -1,
    r.info?.segmentsOut ?? -1,
    r.info?.lastReceivedMs ?? -1,
    r.info?.lastSentMs ?? -1,
    r.fromProber ? 1 : r.own ? 2 : 0,
  ];
  const diag: SockDiag = {
    fields: 11,
    dump: () => {
      table.dumps++;
      if (table.fail) throw new Error('sock_diag dump: Operation not permitted');
      const listeners = table.listening ? [{ cookie: 1, state: LISTEN, remotePort: 0 }] : [];
      return Float64Array.from([...listeners, ...table.rows].flatMap(record));
    },
    listeners: () => {
      table.listenerReads++;
      return Float64Array.from([0, table.listening ? 1 : 0, 0]);
    },
  };
  return { diag, table };
}

/** Connections through a fake sock_diag; /proc/net holds the snmp counters (and the fallback's empty tables). */
export function setupDiag(dir = mkdtempSync(join(tmpdir(), 'proc-net-'))) {
  const { diag, table } = fakeSockDiag();
  if (!existsSync(join(dir, 'snmp'))) writeTables(dir, []);
  return { ...setup({ sockDiag: diag, dir }), table, diag };
}

/** A pooled connection that has carried `segments` requests, the last one `ago` ms ago and answered. */
export const pooled = (cookie: number, segments: number, ago: number): DiagRow => ({
  cookie,
  info: { segmentsIn: segments, segmentsOut: segments, lastReceivedMs: ago, lastSentMs: Math.max(0, ago - 5) },
});
