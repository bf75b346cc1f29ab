// Passive watch of the app's traffic: the sidecar shares the pod's network namespace, so the kernel's socket tables show
// the app's connections without the sidecar being in the data path. It sees connections, not requests: a request on a
// pooled keep-alive connection is invisible, and so is a connection that opens and closes between two reads unless the
// app closed it first (it then lingers in TIME_WAIT, which is seen).

import type { Logger } from 'pino';
import { type Clock, secondsSince } from './clock.js';
import type { Metrics } from './metrics.js';
import { parseSnmpTcp, parseTcpTable, readProcNet, type TcpState } from './procnet.js';

export interface PortStats {
  port: number;
  established: number;
  /** Sockets on the port in every state but LISTEN, by state. */
  states: Partial<Record<TcpState, number>>;
  listening: boolean;
  acceptQueue: number;
  /** Connections not seen by the previous read. */
  newConnections: number;
}

export interface Snapshot {
  at: number;
  ports: PortStats[];
  established: number;
  /** True while any app port has a listener. */
  listening: boolean;
}

/** What the app's traffic did during one drain episode (the `drain finished` line and the /drain answer carry it). */
export interface EpisodeTraffic {
  connectionsAtStart: number;
  connectionsAtEnd: number;
  lateArrivals: number;
  /** Seconds from the start of the episode to the last connection that arrived in it; null when none did. */
  lastArrivalSeconds: number | null;
}

export interface ConnectionsDeps {
  procNetDir: string;
  appPorts: number[];
  ownPort: number;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  pollMs: number;
  /** True from the first hook call (or SIGTERM) of a termination until the sidecar exits; see sidecar.ts. */
  inTermination: () => boolean;
}

// Timers fire late under load; a read this much past two poll intervals still counts as the previous one.
const STALE_SLACK_MS = 250;

export class Connections {
  #previous = new Set<string>();
  #latest: Snapshot | undefined;
  #available: boolean;
  #lastArrivalAt = Number.NEGATIVE_INFINITY;
  #lateTotal = 0;
  #outRsts: number | undefined;
  #polling = false;
  readonly #ports: ReadonlySet<number>;
  readonly #deps: ConnectionsDeps;

  constructor(deps: ConnectionsDeps) {
    this.#deps = deps;
    this.#ports = new Set(deps.appPorts);
    this.#available = deps.appPorts.length > 0;
  }

  /** False when no app port is configured or /proc/net cannot be read: /drain then behaves like /sleep with its min. */
  get available(): boolean {
    return this.#available;
  }

  /** Monotonic time of the latest connection that arrived during a termination, or -Infinity. */
  get lastArrivalAt(): number {
    return this.#lastArrivalAt;
  }

  /** Connections that arrived during terminations, over the sidecar's life. */
  get lateTotal(): number {
    return this.#lateTotal;
  }

  /** A snapshot no older than maxAgeMs (one read serves a whole scrape); undefined when unavailable. */
  current(maxAgeMs = 0): Snapshot | undefined {
    if (!this.#available) return undefined;
    const latest = this.#latest;
    if (latest && this.#deps.clock.now() - latest.at <= maxAgeMs) return latest;
    return this.#read();
  }

  /** Takes a baseline now; the returned function gives what the traffic did since (for an episode or one hook call). */
  traffic(startedAt: number): (() => EpisodeTraffic) | undefined {
    // Fresh reads: a cached one taken before a connection arrived would make that connection look late.
    const atStart = this.current();
    if (!atStart) return undefined;
    const lateAtStart = this.#lateTotal;
    return () => {
      const atEnd = this.current() ?? atStart;
      return {
        connectionsAtStart: atStart.established,
        connectionsAtEnd: atEnd.established,
        lateArrivals: this.#lateTotal - lateAtStart,
        lastArrivalSeconds: secondsSince(startedAt, this.#lastArrivalAt),
      };
    };
  }

  /** Polls while a termination lasts; called whenever a drain starts or ends. */
  watch(): void {
    if (this.#polling || !this.#available) return;
    this.#polling = true;
    const tick = () => {
      if (!this.#deps.inTermination() || !this.#available) {
        this.#polling = false;
        return;
      }
      this.#read();
      this.#deps.clock.setTimeout(tick, this.#deps.pollMs);
    };
    tick();
  }

  #read(): Snapshot | undefined {
    const { procNetDir, appPorts, ownPort, clock, inTermination, metrics, pollMs } = this.#deps;
    let sockets: ReturnType<typeof parseTcpTable>;
    let snmp: string;
    try {
      sockets = [
        ...parseTcpTable(readProcNet(procNetDir, 'tcp'), this.#ports),
        ...parseTcpTable(readProcNet(procNetDir, 'tcp6'), this.#ports),
      ];
      snmp = readProcNet(procNetDir, 'snmp');
    } catch (err) {
      this.#available = false;
      this.#deps.log.warn({ err }, 'cannot read /proc/net; connection tracking is off and /drain waits its min');
      return undefined;
    }

    const now = clock.now();
    // Only a recent read tells what is new: after a pause, whatever is there now is the new baseline.
    const previous = this.#latest && now - this.#latest.at <= 2 * pollMs + STALE_SLACK_MS ? this.#latest : undefined;
    const byPort = new Map<number, PortStats>(
      appPorts.map((port) => [port, { port, established: 0, states: {}, listening: false, acceptQueue: 0, newConnections: 0 }]),
    );
    const seen = new Set<string>();
    for (const s of sockets) {
      const stats = byPort.get(s.localPort) as PortStats;
      if (s.state === 'LISTEN') {
        stats.listening = true;
        stats.acceptQueue += s.rxQueue;
        continue;
      }
      if (s.remotePort === ownPort) continue;
      stats.states[s.state] = (stats.states[s.state] ?? 0) + 1;
      if (s.state === 'ESTABLISHED') stats.established++;
      const key = `${s.localAddress} ${s.localPort} ${s.remoteAddress} ${s.remotePort}`;
      seen.add(key);
      if (previous && !this.#previous.has(key)) stats.newConnections++;
    }
    this.#previous = seen;

    const ports = [...byPort.values()];
    const snapshot: Snapshot = {
      at: now,
      ports,
      established: ports.reduce((n, p) => n + p.established, 0),
      listening: ports.some((p) => p.listening),
    };

    const outRsts = parseSnmpTcp(snmp, 'OutRsts');
    if (inTermination()) {
      for (const p of ports) {
        if (p.newConnections === 0) continue;
        this.#lateTotal += p.newConnections;
        this.#lastArrivalAt = now;
        metrics.lateConnections.inc({ port: String(p.port) }, p.newConnections);
      }
      // Resets sent since the previous read, when no app port has a listener now: mostly refused connection attempts.
      // (Waiting for two listener-less reads in a row missed the first poll interval after the app's exit, a fifth of
      // the refusals the drill's client saw; the app's own closing sends FINs, not resets.)
      const refused = previous && outRsts !== undefined && this.#outRsts !== undefined ? outRsts - this.#outRsts : 0;
      if (refused > 0 && !snapshot.listening) metrics.refusedEstimate.inc(refused);
    }
    this.#outRsts = outRsts;
    this.#latest = snapshot;
    return snapshot;
  }
}
