// The other end of a rollout: how long after a new pod is ready its load balancer really sends to it. A container-native
// load balancer adds a pod only once its own health check passes, which can be many seconds after the kubelet marked the
// pod ready; a rollout that deletes old pods meanwhile leaves no backend ("no healthy upstream"). minReadySeconds must
// cover that delay. From start-up, for a bounded window, the sidecar polls the app ports and records when the app began
// listening, when it became ready (its readinessProbe replayed on loopback, src/readiness.ts; the kubelet's own probes
// are seen only now and then) and when the first connection or request from anyone but the kubelet and the sidecar came.
// One read of the sockets a DRAIN_POLL_SECONDS, and only until the first traffic; one readiness check at a time until
// the first success.

import type { Logger } from 'pino';
import { type Clock, toSeconds } from './clock.js';
import type { Connections } from './connections.js';
import type { Metrics } from './metrics.js';

/** Why the watch ended: traffic came, the window passed without it, a termination began, or the sidecar stopped. */
export type StartupEnd = 'first_traffic' | 'window' | 'termination' | 'stopped';

export interface StartupDeps {
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  connections: Pick<Connections, 'compared' | 'available'>;
  /** The app's readiness check (src/readiness.ts), when its readinessProbe is known. */
  readiness?: (() => Promise<boolean>) | undefined;
  windowSeconds: number;
  pollMs: number;
  /** The workload's minReadySeconds, when the injection passed it on. */
  minReadySeconds: number | undefined;
}

export interface StartupFigures {
  state: 'watching' | 'finished' | 'off';
  reason: StartupEnd | null;
  /** Wall-clock time the sidecar started; the seconds below count from it. */
  startedAt: string;
  appListeningSeconds: number | null;
  /** When the app first passed its readiness check (null: no check configured, or none passed yet). */
  appReadySeconds: number | null;
  /** When the app first answered a kubelet probe the sidecar saw (each one is seen only if the app closed it first). */
  probeAnsweredSeconds: number | null;
  firstTrafficSeconds: number | null;
  /** First traffic after readiness (after listening, without a readiness check): what minReadySeconds must cover. */
  firstTrafficDelaySeconds: number | null;
  delayFrom: 'app_ready' | 'listening' | null;
  minReadySeconds: number | null;
}

export class Startup {
  readonly #deps: StartupDeps;
  readonly #startedAt: number;
  readonly #startedAtWall: Date;
  #listeningAt = Number.POSITIVE_INFINITY;
  #readyAt = Number.POSITIVE_INFINITY;
  #probeAnsweredAt = Number.POSITIVE_INFINITY;
  #checking = false;
  #firstTrafficAt = Number.POSITIVE_INFINITY;
  #state: StartupFigures['state'];
  #reason: StartupEnd | null = null;
  #timer: unknown;
  #scraped = false;
  #pending: number | undefined;

  constructor(deps: StartupDeps) {
    this.#deps = deps;
    this.#startedAt = deps.clock.now();
    this.#startedAtWall = deps.clock.wallNow();
    this.#state = deps.windowSeconds > 0 && deps.connections.available ? 'watching' : 'off';
  }

  /** Polls until the first traffic, the window's end, or stop(); the first poll is now. */
  start(): void {
    if (this.#state !== 'watching') return;
    const tick = () => {
      if (this.#state !== 'watching') return;
      this.#look();
      if (this.#state !== 'watching') return;
      if (this.#deps.clock.now() - this.#startedAt >= this.#deps.windowSeconds * 1000) this.#finish('window');
      else this.#timer = this.#deps.clock.setTimeout(tick, this.#deps.pollMs);
    };
    tick();
  }

  /**
   * Called after each /metrics answer. The histogram is observed once per pod, often before Prometheus first scraped
   * it: a series whose first sample already holds the observation shows no increase() and would be lost to every
   * rule. So the observation waits until one scrape has seen the histogram at zero.
   */
  scraped(): void {
    if (this.#scraped) return;
    this.#scraped = true;
    if (this.#pending !== undefined) this.#deps.metrics.firstTrafficDelay.observe(this.#pending);
    this.#pending = undefined;
  }

  /** Ends the watch without first traffic: a termination began (its polls take over), or the sidecar is stopping. */
  stop(reason: 'termination' | 'stopped' = 'stopped'): void {
    if (this.#state === 'watching') this.#finish(reason);
  }

  status(): StartupFigures {
    const since = (at: number) => (Number.isFinite(at) ? toSeconds(at - this.#startedAt) : null);
    const from = this.#from();
    return {
      state: this.#state,
      reason: this.#reason,
      startedAt: this.#startedAtWall.toISOString(),
      appListeningSeconds: since(this.#listeningAt),
      appReadySeconds: since(this.#readyAt),
      probeAnsweredSeconds: since(this.#probeAnsweredAt),
      firstTrafficSeconds: since(this.#firstTrafficAt),
      firstTrafficDelaySeconds:
        from && Number.isFinite(this.#firstTrafficAt) ? toSeconds(Math.max(0, this.#firstTrafficAt - from.at)) : null,
      delayFrom: from?.name ?? null,
      minReadySeconds: this.#deps.minReadySeconds ?? null,
    };
  }

  /**
   * Readiness when the check passed, else the listener's appearance: never later than the kubelet's readiness, so the
   * delay is never shorter than the one to cover. Not the kubelet's probes: a missed one would make readiness look
   * later and the delay shorter than it was.
   */
  #from(): { name: 'app_ready' | 'listening'; at: number } | undefined {
    if (Number.isFinite(this.#readyAt)) return { name: 'app_ready', at: this.#readyAt };
    if (Number.isFinite(this.#listeningAt)) return { name: 'listening', at: this.#listeningAt };
    return undefined;
  }

  #look(): void {
    const c = this.#deps.connections.compared();
    if (!c) {
      this.#finish('stopped');
      return;
    }
    // The listener has no time of its own in the socket table: the first read that shows it, to a poll interval.
    if (c.snapshot.listening && !Number.isFinite(this.#listeningAt)) this.#listeningAt = c.snapshot.at;
    this.#probeAnsweredAt = Math.min(this.#probeAnsweredAt, c.probeAnswered);
    if (c.snapshot.listening) this.#check();
    if (Number.isFinite(c.firstHeard)) {
      this.#firstTrafficAt = c.firstHeard;
      // A listener that came and went between two reads, or traffic that raced the first read, still started here.
      this.#listeningAt = Math.min(this.#listeningAt, this.#firstTrafficAt);
      this.#finish('first_traffic');
    }
  }

  /** One readiness check at a time, until the first passes; it counts from when it was sent. */
  #check(): void {
    const { readiness, clock } = this.#deps;
    if (!readiness || this.#checking || Number.isFinite(this.#readyAt)) return;
    this.#checking = true;
    const sentAt = clock.now();
    void readiness().then((ok) => {
      this.#checking = false;
      if (ok && this.#state === 'watching') this.#readyAt = Math.min(this.#readyAt, sentAt);
    });
  }

  #finish(reason: StartupEnd): void {
    this.#deps.clock.clearTimeout(this.#timer);
    this.#state = 'finished';
    this.#reason = reason;
    const figures = this.status();
    const { log, metrics, minReadySeconds } = this.#deps;
    const delay = figures.firstTrafficDelaySeconds;
    if (delay !== null && this.#scraped) metrics.firstTrafficDelay.observe(delay);
    else if (delay !== null) this.#pending = delay;
    // The rollout may have deleted an old pod before this one took traffic: the field report's no healthy upstream.
    const minReadyTooShort = delay !== null && minReadySeconds !== undefined && delay > minReadySeconds;
    log[minReadyTooShort ? 'warn' : 'info']({ ...figures, ...(minReadyTooShort && { minReadyTooShort }) }, 'startup finished');
  }
}
