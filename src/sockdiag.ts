// The app's sockets with their tcp_info, from the kernel's sock_diag netlink interface through the native addon
// native/sockdiag.c (Node has no netlink socket). Unlike /proc/net/tcp, tcp_info tells when each connection last
// received payload, so a request on a pooled keep-alive connection is seen, to the jiffy, whenever the socket is read.

import { TCP_STATES, type TcpState } from './procnet.js';

/** The addon's exports. */
export interface SockDiag {
  /**
   * The TCP sockets, IPv4 and IPv6, whose local port is one of ports (filtered in the kernel); `fields` numbers each.
   * Each is marked when its peer is one of probers, or one of own (IP addresses, at most 8 each).
   */
  dump(ports: number[], probers?: readonly string[], own?: readonly string[]): Float64Array;
  /**
   * Per port, in the order given, three numbers: established connections (from neither probers nor own, nor from
   * skipRemotePort), 1 when a listener exists, its accept queue. No tcp_info and no record per socket: a scrape's read.
   */
  count?(ports: number[], probers?: readonly string[], own?: readonly string[], skipRemotePort?: number): Float64Array;
  /** As count(), from the listening sockets alone (established 0): the kernel skips its established table. */
  listeners?(ports: number[]): Float64Array;
  fields: number;
}

/** What a scrape reads of one app port. */
export interface PortCount {
  port: number;
  established: number;
  listening: boolean;
  acceptQueue: number;
}

/** Decodes what diag.count returned for ports. */
export function decodeCounts(ports: readonly number[], v: Float64Array): PortCount[] {
  return ports.map((port, i) => ({
    port,
    established: v[3 * i] as number,
    listening: v[3 * i + 1] === 1,
    acceptQueue: v[3 * i + 2] as number,
  }));
}

/** What tcp_info says about a connection's payload; times on the clock of the `at` given to decodeSockDiag. */
export interface TcpInfo {
  dataSegmentsIn: number;
  dataSegmentsOut: number;
  /** When payload last arrived; for a connection that never received any, when it was made. */
  lastDataReceivedAt: number;
  lastDataSentAt: number;
}

export interface DiagSocket {
  /** The kernel's cookie for the socket, unique for the life of the network namespace. */
  id: number;
  localPort: number;
  remotePort: number;
  state: TcpState;
  /** For a listener, connections waiting in its accept queue; otherwise bytes received and not yet read by the app. */
  rxQueue: number;
  /** When the socket's timer fires; for TIME_WAIT, when the socket is gone. */
  expiresAt: number;
  /** Absent for TIME_WAIT and half-open sockets, which carry none. */
  info: TcpInfo | undefined;
  /** The peer is one of the probers given to dump. */
  fromProber: boolean;
  /** The peer is one of the own addresses given to dump: the sidecar's own connection. */
  own: boolean;
}

// The record layout of native/sockdiag.c.
enum RecordField {
  LocalPort,
  RemotePort,
  State,
  Cookie,
  RxQueue,
  ExpiresMs,
  DataSegmentsIn,
  DataSegmentsOut,
  LastDataReceivedMs,
  LastDataSentMs,
  Peer,
  Count,
}

/**
 * Decodes what diag.dump returned, made at monotonic time `at`: the kernel's times count back or on from the dump, so
 * read the clock right after it. Throws for an addon of another record layout (the caller falls back to /proc/net, as
 * for a dump the kernel refused).
 */
export function decodeSockDiag(diag: SockDiag, v: Float64Array, at: number): DiagSocket[] {
  if (diag.fields !== RecordField.Count)
    throw new Error(`sock_diag addon has ${diag.fields} fields per socket, expected ${RecordField.Count}`);
  const sockets: DiagSocket[] = [];
  for (let i = 0; i < v.length; i += RecordField.Count) {
    const state = TCP_STATES[(v[i + RecordField.State] as number) - 1];
    if (!state) continue;
    const segments = v[i + RecordField.DataSegmentsIn] as number;
    sockets.push({
      id: v[i + RecordField.Cookie] as number,
      localPort: v[i + RecordField.LocalPort] as number,
      remotePort: v[i + RecordField.RemotePort] as number,
      state,
      rxQueue: v[i + RecordField.RxQueue] as number,
      expiresAt: at + (v[i + RecordField.ExpiresMs] as number),
      fromProber: v[i + RecordField.Peer] === 1,
      own: v[i + RecordField.Peer] === 2,
      info:
        segments < 0
          ? undefined
          : {
              dataSegmentsIn: segments,
              dataSegmentsOut: v[i + RecordField.DataSegmentsOut] as number,
              lastDataReceivedAt: at - (v[i + RecordField.LastDataReceivedMs] as number),
              lastDataSentAt: at - (v[i + RecordField.LastDataSentMs] as number),
            },
    });
  }
  return sockets;
}

/**
 * Whether bytes hold a whole 64-bit little-endian ELF file: every segment and the section table inside it. The dynamic
 * loader maps a truncated file and the process dies of SIGBUS on first touch, before any error can be logged, so the
 * addon file is checked before it is loaded.
 */
export function isWholeElf(bytes: Buffer): boolean {
  const ELF_HEADER = 64;
  if (bytes.length < ELF_HEADER || bytes.readUInt32BE(0) !== 0x7f454c46 || bytes[4] !== 2 || bytes[5] !== 1) return false;
  const size = BigInt(bytes.length);
  const phoff = bytes.readBigUInt64LE(0x20);
  const shoff = bytes.readBigUInt64LE(0x28);
  const phentsize = BigInt(bytes.readUInt16LE(0x36));
  const phnum = bytes.readUInt16LE(0x38);
  const shentsize = BigInt(bytes.readUInt16LE(0x3a));
  const shnum = BigInt(bytes.readUInt16LE(0x3c));
  if (phoff + phentsize * BigInt(phnum) > size || shoff + shentsize * shnum > size) return false;
  for (let i = 0; i < phnum; i++) {
    const at = Number(phoff + phentsize * BigInt(i));
    if (bytes.readBigUInt64LE(at + 8) + bytes.readBigUInt64LE(at + 32) > size) return false;
  }
  return true;
}
