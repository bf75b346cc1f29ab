// Passive watch of the app's traffic: the sidecar shares the pod's network namespace, so the kernel shows the app's
// sockets without the sidecar being in the data path. Through sock_diag (src/sockdiag.ts) each connection's tcp_info
// tells when it last received payload, so requests on pooled keep-alive connections are seen, timed to the jiffy. Without
// the addon, /proc/net/tcp shows connections only: a request on a pooled connection is invisible there.
// Either way a connection that opens and closes between two reads is missed unless the app closed it first (it then
// lingers in TIME_WAIT, which is seen).
// The kubelet's probes of the app ports are not traffic: connections from the address its probes of the sidecar come
// from (src/probers.ts) are counted apart, and count toward no late arrival, no quiet rule and no first traffic.

import type { Logger } from 'pino';
import { type Clock, secondsSince } from './clock.js';
import type { Metrics } from './metrics.js';
import type { Probers } from './probers.js';
import { parseNetCounters, parseTcpTable, readProcNet, type TcpState } from './procnet.js';
import { decodeCounts, decodeSockDiag, type PortCount, type SockDiag, type TcpInfo } from './sockdiag.js';

export interface PortStats {
  port: number;
  established: number;
  /** Sockets on the port in every state but LISTEN, by state. */
  states: Partial<Record<TcpState, number>>;
  listening: boolean;
  acceptQueue: number;
  /** Connections not seen by the previous read. */
  newConnections: number;
  /** sock_diag only: segments with payload received since the previous read (about one per request). */
  newSegments?: number;
  /** sock_diag only: connections that received payload more recently than they sent any (requests being answered). */
  inFlight?: number;
  /** Sockets from the kubelet's address (its probes), in every state but LISTEN; counted in none of the above. */
  probes: number;
}

/** Where the sockets were read: tcp_info through sock_diag, or /proc/net/tcp when the addon cannot be used. */
export type Signal = 'sock_diag' | 'proc_net';

export interface Snapshot {
  at: number;
  ports: PortStats[];
  established: number;
  /** True while any app port has a listener. */
  listening: boolean;
  signal: Signal;
}

/** What the app's traffic did during one drain episode (the `drain finished` line and the /drain answer carry it). */
export interface EpisodeTraffic {
  connectionsAtStart: number;
  connectionsAtEnd: number;
  lateArrivals: number;
  /** sock_diag only: segments with payload the app ports received in it (about one per request). */
  lateRequestsEstimate?: number;
  /** Seconds from the start of the episode to the last inbound payload (or new connection) in it; null when none. */
  lastArrivalSeconds: number | null;
  /** New connections from the kubelet's address (its probes of the app ports), left out of the figures above. */
  probeConnections: number;
}

export interface ConnectionsDeps {
  procNetDir: string;
  /** The native addon; undefined (or failing) means /proc/net/tcp. */
  sockDiag: SockDiag | undefined;
  appPorts: number[];
  ownPort: number;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  pollMs: number;
  /** True while the pod is terminating (src/termination.ts): what arrives then is late. */
  inTermination: () => boolean;
  /** Where the kubelet's probes come from; without it every connection is traffic. */
  probers?: Probers;
  /** The source address of the sidecar's own connections to the app (its readiness checks): neither traffic nor probes. */
  ownAddress?: string;
}

/** One read of the sockets on the app ports. */
export interface SocketRead {
  signal: Signal;
  sockets: AppSocket[];
  /** Monotonic time of the read, taken as soon as the kernel answered (tcp_info's times count back from then). */
  at: number;
}

/** The addon's answer to a dump, and when it came. */
interface Dumped {
  values: Float64Array;
  at: number;
}

/** What the comparison keeps of a read: when it was, and each socket's segments received. */
export interface Baseline {
  at: number;
  segments: ReadonlyMap<string | number, number>;
}

export interface Comparison {
  snapshot: Snapshot;
  /** The next baseline, when asked for (a poll moves it; a peek does not need one). */
  baseline: Baseline | undefined;
  /** When the app last heard from a client on a socket that changed since the baseline; -Infinity when none did. */
  heard: number;
  /** The earliest such moment: when the first of them arrived, to a poll interval; Infinity when none did. */
  firstHeard: number;
  /** New connections from the kubelet's address since the baseline (its probes). */
  newProbes: number;
  /** When the app first answered one of the kubelet's connections now visible; Infinity when it answered none. */
  probeAnswered: number;
}

// Timers fire late under load; a read this much past two poll intervals still counts as the previous one.
const STALE_SLACK_MS = 250;
// Two polls less than this apart are one: tcp_info times what it reports to the millisecond.
const SAME_MOMENT_MS = 1;
// Linux keeps a socket in TIME_WAIT for exactly this long (TCP_TIMEWAIT_LEN), so its remaining time tells when it closed.
const TIME_WAIT_MS = 60_000;
// The Tcp counters of /proc/net/snmp that together move with every TCP segment the pod's network namespace receives or
// sends (retransmissions and resets included). OutRsts alone is also the refused estimate's.
const TCP_COUNTERS = ['InSegs', 'OutSegs', 'RetransSegs', 'OutRsts'] as const;
// The kernel counts a segment before it has applied it to the socket table (the connection a handshake's last ACK
// completes is hashed a moment later, perhaps on another CPU), so a read made just after the counters moved may lack
// its socket. A read is kept only if the counters had stood still this long before it was made.
const SETTLED_MS = 100;

/** One socket on an app port, from either source. */
export interface AppSocket {
  id: string | number;
  localPort: number;
  remotePort: number;
  state: TcpState;
  rxQueue: number;
  /** When the socket's timer fires (for TIME_WAIT, when it is gone), on the read's clock; sock_diag only. */
  expiresAt?: number;
  info?: TcpInfo;
  /** The peer is the kubelet (the address its probes of the sidecar come from). */
  fromProber?: boolean;
  /** The peer is the sidecar itself. */
  own?: boolean;
}

/**
 * When a socket that changed since the previous read last heard from the client: its last payload (or its making, if
 * none came yet) from tcp_info; for a new TIME_WAIT socket, when it closed; otherwise (/proc/net) now.
 */
function lastHeard(s: AppSocket, now: number): number {
  if (s.info) return s.info.lastDataReceivedAt;
  if (s.state === 'TIME_WAIT' && s.expiresAt !== undefined) return Math.min(now, s.expiresAt - TIME_WAIT_MS);
  return now;
}

/**
 * A request is being answered: the socket holds payload the app has not read, or received payload more recently than
 * it sent any, or never sent any (its first request came within the kernel tick it was made in: the times are equal).
 */
function inFlight(s: AppSocket): boolean {
  if (s.state !== 'ESTABLISHED') return false;
  if (s.rxQueue > 0) return true;
  if (!s.info) return false;
  const { lastDataReceivedAt, lastDataSentAt, dataSegmentsIn, dataSegmentsOut } = s.info;
  return lastDataReceivedAt > lastDataSentAt || (dataSegmentsIn > 0 && dataSegmentsOut === 0);
}

/**
 * When the app answered a connection of the kubelet's: sent its first payload (an HTTP probe's answer, seen to the
 * jiffy if it is the only one), accepted it with nothing said either way (a TCP probe), or closed it first (it lingers in
 * TIME_WAIT). Infinity while none of these holds (a handshake in progress).
 */
function answeredAt(s: AppSocket, now: number): number {
  if (s.info) {
    if (s.info.dataSegmentsOut > 0) return s.info.lastDataSentAt;
    return s.state === 'ESTABLISHED' && s.info.dataSegmentsIn === 0 ? s.info.lastDataReceivedAt : Number.POSITIVE_INFINITY;
  }
  if (s.state === 'TIME_WAIT' && s.expiresAt !== undefined) return Math.min(now, s.expiresAt - TIME_WAIT_MS);
  return s.state === 'ESTABLISHED' || s.state === 'TIME_WAIT' ? now : Number.POSITIVE_INFINITY;
}

const isRecent = (baseline: Baseline, at: number, pollMs: number) => at - baseline.at <= 2 * pollMs + STALE_SLACK_MS;

/**
 * Compares one read of the app's sockets with the baseline, the previous read that moved it. Pure. Only a recent
 * baseline tells what is new: after a pause (no termination, no polls), whatever is there now is the new baseline.
 */
export function compare(
  read: SocketRead,
  baseline: Baseline | undefined,
  { appPorts, ownPort, pollMs }: Pick<ConnectionsDeps, 'appPorts' | 'ownPort' | 'pollMs'>,
  nextBaseline = true,
): Comparison {
  const now = read.at;
  const withInfo = read.signal === 'sock_diag';
  const recent = baseline && isRecent(baseline, now, pollMs) ? baseline : undefined;
  const byPort = new Map<number, PortStats>(
    appPorts.map((port) => [
      port,
      {
        port,
        established: 0,
        states: {},
        listening: false,
        acceptQueue: 0,
        newConnections: 0,
        ...(withInfo && { newSegments: 0, inFlight: 0 }),
        probes: 0,
      },
    ]),
  );
  // Per socket: the map of a whole read is its dearest part, and a scrape's peek has no use for it.
  const segmentsNow = nextBaseline ? new Map<string | number, number>() : undefined;
  let heard = Number.NEGATIVE_INFINITY;
  let firstHeard = Number.POSITIVE_INFINITY;
  let newProbes = 0;
  let probeAnswered = Number.POSITIVE_INFINITY;
  for (const s of read.sockets) {
    const stats = byPort.get(s.localPort);
    if (!stats) continue;
    if (s.state === 'LISTEN') {
      stats.listening = true;
      stats.acceptQueue += s.rxQueue;
      continue;
    }
    if (s.remotePort === ownPort || s.own) continue;
    const segments = s.info?.dataSegmentsIn ?? 0;
    const before = recent?.segments.get(s.id);
    segmentsNow?.set(s.id, segments);
    const isNew = recent !== undefined && before === undefined;
    if (s.fromProber) {
      stats.probes++;
      if (isNew) newProbes++;
      probeAnswered = Math.min(probeAnswered, answeredAt(s, now));
      continue;
    }
    stats.states[s.state] = (stats.states[s.state] ?? 0) + 1;
    if (s.state === 'ESTABLISHED') stats.established++;
    // Payload since the baseline. A socket that lost its tcp_info since (now TIME_WAIT) is a close, not a request.
    const received = !recent ? 0 : isNew ? segments : Math.max(0, segments - (before ?? 0));
    if (isNew) stats.newConnections++;
    if (stats.newSegments !== undefined) stats.newSegments += received;
    if (stats.inFlight !== undefined && inFlight(s)) stats.inFlight++;
    // Only a socket that changed: an unchanged one's times, rounded to the kernel's tick, could fall after a baseline.
    if (isNew || received > 0) {
      const at = lastHeard(s, now);
      heard = Math.max(heard, at);
      // No earlier than the baseline: a busy keep-alive connection's last payload came after its first.
      firstHeard = Math.min(firstHeard, Math.max(at, (recent as Baseline).at));
    }
  }
  const ports = [...byPort.values()];
  return {
    snapshot: {
      at: now,
      ports,
      established: ports.reduce((n, p) => n + p.established, 0),
      listening: ports.some((p) => p.listening),
      signal: read.signal,
    },
    baseline: segmentsNow && { at: now, segments: segmentsNow },
    heard,
    firstHeard,
    newProbes,
    probeAnswered,
  };
}

/**
 * The app's sockets over time. Two kinds of read: peek() looks and changes nothing (status, scrapes, the shutdown's
 * check); poll() moves the baseline and, during a termination, counts what arrived since the previous poll. Only polls
 * count, so what a drain reports does not depend on who else looked in between.
 */
export class Connections {
  #baseline: Baseline | undefined;
  #outRsts: number | undefined;
  #sockDiag: SockDiag | undefined;
  #latest: Snapshot | undefined;
  #lastPoll: Snapshot | undefined;
  /**
   * The latest read, for a poll that finds no segment moved since: the namespace's segment counters when it was made,
   * and the read. A full read is kept as the addon answered it, one array outside the heap, and decoded only if reused:
   * kept as a record per socket, it cost a quarter more CPU per poll on a pod whose counters always move (the garbage
   * collector copies the records it finds alive). A reused read is kept whole: a quiet pod allocates little.
   */
  #previous: { segments: number; settled: boolean; read?: SocketRead; dumped?: Dumped } | undefined;
  /** The counters' sum, and when a read first found it. */
  #still: { segments: number; since: number } | undefined;
  #available: boolean;
  #lastArrivalAt = Number.NEGATIVE_INFINITY;
  #lateTotal = 0;
  #lateSegments = 0;
  #probesSeen = 0;
  #timer: unknown;
  #polling = false;
  readonly #ports: ReadonlySet<number>;
  /** The sidecar's own source addresses, as the addon takes them. */
  readonly #own: readonly string[] | undefined;
  readonly #deps: ConnectionsDeps;

  constructor(deps: ConnectionsDeps) {
    this.#deps = deps;
    this.#sockDiag = deps.sockDiag;
    this.#ports = new Set(deps.appPorts);
    this.#own = deps.ownAddress ? [deps.ownAddress] : undefined;
    this.#available = deps.appPorts.length > 0;
  }

  /** False when no app port is configured or the socket tables cannot be read: /drain then is /sleep with its min. */
  get available(): boolean {
    return this.#available;
  }

  /** Monotonic time of the latest inbound payload or connection seen during a termination, or -Infinity. */
  get lastArrivalAt(): number {
    return this.#lastArrivalAt;
  }

  /** Connections that arrived during terminations, over the sidecar's life. */
  get lateTotal(): number {
    return this.#lateTotal;
  }

  /** New connections from the kubelet's address seen by polls, over the sidecar's life: its probes of the app ports. */
  get probesSeen(): number {
    return this.#probesSeen;
  }

  /** The sockets now, or a read no older than maxAgeMs (one read serves a whole scrape); changes no count or baseline. */
  peek(maxAgeMs = 0): Snapshot | undefined {
    const latest = this.#latest;
    if (latest && maxAgeMs > 0 && this.#deps.clock.now() - latest.at <= maxAgeMs) return latest;
    const read = this.#readSockets();
    if (!read) return undefined;
    this.#latest = compare(read.sockets, this.#baseline, this.#deps, false).snapshot;
    return this.#latest;
  }

  /**
   * Per app port, its established connections, listener and accept queue, from a read no older than maxAgeMs, or
   * else counted in the addon without a record per socket (a scrape on a pod with 30,000 connections makes no 30,000
   * objects); peek() when the addon cannot count.
   */
  counts(maxAgeMs: number): { signal: Signal; ports: PortCount[] } | undefined {
    const latest = this.#latest;
    const { clock, appPorts, probers, ownPort } = this.#deps;
    if (latest && maxAgeMs > 0 && clock.now() - latest.at <= maxAgeMs) return latest;
    if (this.#available && this.#sockDiag?.count) {
      try {
        const counted = this.#sockDiag.count(appPorts, probers?.addresses, this.#own, ownPort);
        return { signal: 'sock_diag', ports: decodeCounts(appPorts, counted) };
      } catch {
        // The dump that peek() makes says why, and falls back to /proc/net.
      }
    }
    return this.peek(maxAgeMs);
  }

  /** Whether any app port has a listener, from a read no older than maxAgeMs. */
  listening(maxAgeMs: number): boolean {
    return this.counts(maxAgeMs)?.ports.some((p) => p.listening) ?? false;
  }

  /** Sets the scrape-time gauges from a read no older than maxAgeMs. */
  updateGauges(maxAgeMs: number): void {
    const { appConnections, appListening, appAcceptQueue, connectionTracking, activityTracking } = this.#deps.metrics;
    const counts = this.counts(maxAgeMs);
    for (const gauge of [appConnections, appListening, appAcceptQueue]) gauge.reset();
    for (const p of counts?.ports ?? []) {
      const port = String(p.port);
      appConnections.set({ port }, p.established);
      appListening.set({ port }, Number(p.listening));
      appAcceptQueue.set({ port }, p.acceptQueue);
    }
    connectionTracking.set(counts ? 1 : 0);
    activityTracking.set(counts?.signal === 'sock_diag' ? 1 : 0);
  }

  /**
   * Reads the sockets, compares them with the previous poll and moves the baseline; during a termination, counts the
   * connections and payload that arrived since (late arrivals) and the resets sent with no app listener (refused).
   */
  poll(): Snapshot | undefined {
    return this.compared()?.snapshot;
  }

  /** poll(), with what the comparison found (the start-up watch reads when traffic and probes first came). */
  compared(): Comparison | undefined {
    const read = this.#readSockets();
    if (!read) return undefined;
    const comparison = compare(read.sockets, this.#baseline, this.#deps);
    const { snapshot, baseline, heard } = comparison;
    // Resets are counted only against a recent poll, as connections are.
    if (this.#deps.inTermination()) this.#countLate(snapshot, heard, this.#isRecent(read.sockets.at) ? read.outRsts : undefined);
    this.#probesSeen += comparison.newProbes;
    this.#outRsts = read.outRsts;
    this.#baseline = baseline;
    this.#latest = snapshot;
    this.#lastPoll = snapshot;
    return comparison;
  }

  /**
   * For /drain, on a fresh poll: true while a request is in flight; without tcp_info, which hides requests on pooled
   * connections, while any connection is established.
   */
  pollBusy(): boolean {
    const snapshot = this.poll();
    if (!snapshot) return false;
    return snapshot.ports.some((p) => (p.inFlight ?? p.established) > 0);
  }

  /** Takes a baseline now; the returned function gives what the traffic did since (for an episode or one hook call). */
  traffic(startedAt: number): (() => EpisodeTraffic) | undefined {
    // Fresh polls: a cached read taken before a connection arrived would make that connection look late.
    const atStart = this.#pollNow();
    if (!atStart) return undefined;
    const lateAtStart = this.#lateTotal;
    const segmentsAtStart = this.#lateSegments;
    const probesAtStart = this.#probesSeen;
    return () => {
      const atEnd = this.#pollNow() ?? atStart;
      return {
        connectionsAtStart: atStart.established,
        connectionsAtEnd: atEnd.established,
        lateArrivals: this.#lateTotal - lateAtStart,
        ...(atEnd.signal === 'sock_diag' && { lateRequestsEstimate: this.#lateSegments - segmentsAtStart }),
        lastArrivalSeconds: secondsSince(startedAt, this.#lastArrivalAt),
        probeConnections: this.#probesSeen - probesAtStart,
      };
    };
  }

  /**
   * A poll, or the one taken at this very moment: a `/drain` call that opens an episode takes both baselines at once, and
   * takes both end figures at once (a dump walks the node's whole socket table, so each one saved counts).
   */
  #pollNow(): Snapshot | undefined {
    const last = this.#lastPoll;
    return last && this.#deps.clock.now() - last.at < SAME_MOMENT_MS ? last : this.poll();
  }

  /** Polls while a termination lasts; called whenever a drain starts or ends, and at SIGTERM. */
  watch(): void {
    if (this.#polling || !this.#available) return;
    this.#polling = true;
    const tick = () => {
      if (!this.#deps.inTermination() || !this.#available) {
        this.#polling = false;
        return;
      }
      // The first tick comes with the episode's opening read: shared, not a second dump.
      this.#pollNow();
      this.#timer = this.#deps.clock.setTimeout(tick, this.#deps.pollMs);
    };
    tick();
  }

  /** Stops polling. */
  stop(): void {
    this.#deps.clock.clearTimeout(this.#timer);
    this.#available = false;
  }

  #isRecent(at: number): boolean {
    return this.#baseline !== undefined && isRecent(this.#baseline, at, this.#deps.pollMs);
  }

  #countLate(snapshot: Snapshot, heard: number, outRsts: number | undefined): void {
    const { metrics } = this.#deps;
    this.#lastArrivalAt = Math.max(this.#lastArrivalAt, heard);
    for (const p of snapshot.ports) {
      const port = String(p.port);
      this.#lateTotal += p.newConnections;
      metrics.lateConnections.inc({ port }, p.newConnections);
      this.#lateSegments += p.newSegments ?? 0;
      metrics.lateRequestsEstimate.inc({ port }, p.newSegments ?? 0);
    }
    // Resets sent since the previous poll, when no app port has a listener now: mostly refused connection attempts. The
    // first interval after the app's exit counts too; the app's own closing sends FINs, not resets.
    const refused = outRsts !== undefined && this.#outRsts !== undefined ? outRsts - this.#outRsts : 0;
    if (refused > 0 && !snapshot.listening) metrics.refusedEstimate.inc(refused);
  }

  /**
   * The sockets on the app ports (through sock_diag while it works, from /proc/net/tcp and tcp6 otherwise) and the
   * namespace's reset counter; undefined, and tracking off for good, when the kernel's tables cannot be read.
   */
  #readSockets(): { sockets: SocketRead; outRsts: number | undefined } | undefined {
    if (!this.#available) return undefined;
    const { procNetDir, log } = this.#deps;
    try {
      // The counters first: a segment that comes between them and the sockets makes the next read a full one.
      const counters = parseNetCounters(readProcNet(procNetDir, 'snmp'), 'Tcp', TCP_COUNTERS);
      const segments = counters.every((n) => n !== undefined) ? counters.reduce((a, b) => a + b, 0) : undefined;
      const now = this.#deps.clock.now();
      if (this.#still?.segments !== segments) this.#still = segments === undefined ? undefined : { segments, since: now };
      const reused = this.#unchanged(segments);
      const { read, dumped } = reused ? { read: reused, dumped: undefined } : this.#sockets();
      const settled = reused !== undefined || (this.#still !== undefined && now - this.#still.since >= SETTLED_MS);
      this.#previous = segments === undefined ? undefined : { segments, settled, ...(reused ? { read } : { dumped }) };
      return { sockets: read, outRsts: counters[3] };
    } catch (err) {
      this.#available = false;
      log.warn({ err }, 'cannot read /proc/net; connection tracking is off and /drain waits its min');
      return undefined;
    }
  }

  /**
   * The previous read brought up to now, when no TCP segment has come or gone in the namespace since it was made, nor for
   * SETTLED_MS before. Then no socket on the app ports has changed state or tcp_info counter and none has come, so the
   * kernel's walk of its whole established table, most of a read's cost on a busy node, would tell nothing new. What
   * changes without a segment is taken care of: the listeners and their accept queues are read afresh (a read of the
   * kernel's small listening table), and a TIME_WAIT socket whose time is up is gone (the times are on the monotonic
   * clock, so they hold as read). What can stay behind: a receive queue the app has read since (its request is still in
   * flight by the times), and, in the counts by state only, a half-open connection the kernel dropped after its last
   * SYN-ACK and an orphaned FIN_WAIT2 socket at its end. Only through sock_diag, the one source with a listener read.
   */
  #unchanged(segments: number | undefined): SocketRead | undefined {
    const previous = this.#previous;
    const diag = this.#sockDiag;
    if (segments === undefined || previous?.segments !== segments || !previous.settled || !diag?.listeners) return undefined;
    const before =
      previous.read?.sockets ?? (previous.dumped && decodeSockDiag(diag, previous.dumped.values, previous.dumped.at));
    if (!before) return undefined;
    const { appPorts, clock } = this.#deps;
    let listening: PortCount[];
    try {
      listening = decodeCounts(appPorts, diag.listeners(appPorts));
    } catch {
      return undefined;
    }
    const at = clock.now();
    const sockets: AppSocket[] = listening
      .filter((p) => p.listening)
      .map((p) => ({ id: `listen ${p.port}`, localPort: p.port, remotePort: 0, state: 'LISTEN', rxQueue: p.acceptQueue }));
    for (const s of before)
      if (s.state !== 'LISTEN' && !(s.state === 'TIME_WAIT' && s.expiresAt !== undefined && s.expiresAt <= at)) sockets.push(s);
    return { signal: 'sock_diag', sockets, at };
  }

  /** A full read: through sock_diag (with the addon's answer as it came) while it works, else from /proc/net. */
  #sockets(): { read: SocketRead; dumped?: Dumped } {
    const { procNetDir, appPorts, log, clock, probers, ownAddress } = this.#deps;
    if (this.#sockDiag) {
      try {
        const values = this.#sockDiag.dump(appPorts, probers?.addresses, this.#own);
        const at = clock.now();
        return { read: { signal: 'sock_diag', sockets: decodeSockDiag(this.#sockDiag, values, at), at }, dumped: { values, at } };
      } catch (err) {
        this.#sockDiag = undefined;
        log.warn({ err }, 'sock_diag failed; reading /proc/net/tcp, which does not see requests on pooled connections');
      }
    }
    const sockets = [
      ...parseTcpTable(readProcNet(procNetDir, 'tcp'), this.#ports),
      ...parseTcpTable(readProcNet(procNetDir, 'tcp6'), this.#ports),
    ];
    const read: SocketRead = {
      signal: 'proc_net',
      at: clock.now(),
      sockets: sockets.map((s) => ({
        ...s,
        id: `${s.localAddress} ${s.localPort} ${s.remoteAddress} ${s.remotePort}`,
        fromProber: probers?.has(s.remoteAddress) ?? false,
        own: s.remoteAddress === ownAddress,
      })),
    };
    return { read };
  }
}
