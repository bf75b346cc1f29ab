// The kernel's socket tables for the pod's network namespace: /proc/net/tcp, /proc/net/tcp6 and /proc/net/snmp. tcp and
// tcp6 are the fallback when the sock_diag addon cannot be used (src/sockdiag.ts).

import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// include/net/tcp_states.h
export const TCP_STATES = [
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
] as const;
export type TcpState = (typeof TCP_STATES)[number];

export interface TcpSocket {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  state: TcpState;
  /** For a listener, the connections waiting in its accept queue; otherwise bytes received and not yet read. */
  rxQueue: number;
}

const hexByte = (hex: string, i: number) => Number.parseInt(hex.slice(i, i + 2), 16);

/** An address as the kernel prints it: 32-bit words in host byte order (little-endian here). */
function parseAddress(hex: string): string {
  if (hex.length === 8) return [6, 4, 2, 0].map((i) => hexByte(hex, i)).join('.');
  const bytes: number[] = [];
  for (let word = 0; word < 32; word += 8) for (const i of [6, 4, 2, 0]) bytes.push(hexByte(hex, word + i));
  // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d; it is an IPv4 peer.
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (mapped) return bytes.slice(12).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

// "  12: 0100007F:1F90 0100007F:D060 01 00000000:00000000 ..." — the fields this parser needs, nothing after them.
const LINE =
  /^\s*\d+:\s+([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+([0-9A-Fa-f]{2})\s+[0-9A-Fa-f]{8}:([0-9A-Fa-f]{8})/;

/**
 * Parses the text of /proc/net/tcp or /proc/net/tcp6. The header and any line it does not recognise are skipped; so are
 * sockets whose local port is not in ports, when given (most of a busy table, and the costly part is the addresses).
 */
export function parseTcpTable(text: string, ports?: ReadonlySet<number>): TcpSocket[] {
  const sockets: TcpSocket[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const localPort = Number.parseInt(m[2] as string, 16);
    if (ports && !ports.has(localPort)) continue;
    const state = TCP_STATES[Number.parseInt(m[5] as string, 16) - 1];
    if (!state) continue;
    sockets.push({
      localAddress: parseAddress(m[1] as string),
      localPort,
      remoteAddress: parseAddress(m[3] as string),
      remotePort: Number.parseInt(m[4] as string, 16),
      state,
      rxQueue: Number.parseInt(m[6] as string, 16),
    });
  }
  return sockets;
}

/**
 * Reads counters of one section of /proc/net/snmp or /proc/net/netstat, whose sections are a line of names and a line of
 * values (for example section Tcp, fields OutRsts and InSegs); undefined for each one absent.
 */
export function parseNetCounters(text: string, section: string, fields: readonly string[]): (number | undefined)[] {
  const [names, values] = text
    .split('\n')
    .filter((l) => l.startsWith(`${section}:`))
    .map((l) => l.split(/\s+/));
  return fields.map((field) => {
    const i = names?.indexOf(field) ?? -1;
    const value = i > 0 ? values?.[i] : undefined;
    return value === undefined ? undefined : Number(value);
  });
}

/**
 * Reads one file of a /proc/net directory whole. The kernel hands these tables out one page per read() call whatever the
 * buffer size, resuming where the last call stopped (372 calls for 1.5 MB with a 4 KiB or an 8 MiB buffer, the same
 * time, on Linux 6.18), so Node's chunked read costs no more than one large buffer would. Anything but a regular file is
 * refused before it is read: a FIFO or a device in a misconfigured DRAIN_PROC_NET_DIR would block the sidecar for good.
 */
export function readProcNet(dir: string, file: 'tcp' | 'tcp6' | 'snmp'): string {
  const fd = openSync(join(dir, file), constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${join(dir, file)} is not a regular file`);
    return readFileSync(fd, 'latin1');
  } finally {
    closeSync(fd);
  }
}
