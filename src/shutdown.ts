// The sidecar's own termination. One rule serves the regular sidecar (SIGTERM at the same moment as the app's hook) and
// the native one (SIGTERM after the app has exited): keep serving until no hook is held, the app's listeners are gone
// and a short hold for a racing hook call has passed; then wait (bounded) for one more scrape; exit at the latest just
// before the kubelet's SIGKILL.

import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Drain } from './drain.js';
import type { Metrics } from './metrics.js';

// The kubelet kills at the end of the grace period; exiting this much earlier lets the last log line out.
const EXIT_MARGIN_MS = 1000;
// How often the exit conditions are checked after SIGTERM; the app's listeners are only known by looking.
const CHECK_INTERVAL_MS = 100;

/** When /metrics answers were written in full, so the last figures can be known to have left the pod. */
export class Scrapes {
  #count = 0;
  #lastStartedAt = Number.NEGATIVE_INFINITY;

  /** Records a scrape whose answer has been written in full; startedAt is when its request arrived (monotonic). */
  served(startedAt: number): void {
    this.#count++;
    this.#lastStartedAt = Math.max(this.#lastStartedAt, startedAt);
  }

  get count(): number {
    return this.#count;
  }

  /** Monotonic arrival time of the latest fully served scrape, or -Infinity. */
  get lastStartedAt(): number {
    return this.#lastStartedAt;
  }
}

export interface ShutdownDeps {
  clock: Clock;
  drain: Drain;
  metrics: Metrics;
  log: Logger;
  scrapes: Scrapes;
  config: Pick<Config, 'gracePeriodSeconds' | 'shutdownHoldSeconds' | 'finalScrapeSeconds'>;
  /** True once the app's listeners are gone, or when no app port is configured. */
  appStopped: () => boolean;
  exit: (code: number) => void;
}

export type Blocker = 'hooks' | 'hold' | 'app' | 'final_scrape';

export class Shutdown {
  #sigtermAt: number | undefined;
  #deadline = Number.POSITIVE_INFINITY;
  #holdUntil = 0;
  /** When nothing but the final scrape was left to wait for. */
  #drainedAt: number | undefined;
  #timer: unknown;
  #exited = false;
  readonly #deps: ShutdownDeps;

  constructor(deps: ShutdownDeps) {
    this.#deps = deps;
  }

  get terminating(): boolean {
    return this.#sigtermAt !== undefined;
  }

  sigterm(): void {
    const { clock, drain, metrics, log, config } = this.#deps;
    if (this.#sigtermAt !== undefined) {
      log.warn({ waitingFor: this.#waitingFor(clock.now()) }, 'second sigterm ignored; still draining');
      return;
    }
    const now = clock.now();
    this.#sigtermAt = now;
    metrics.terminating.set(1);
    const graceMs = config.gracePeriodSeconds * 1000;
    // SIGTERM is the one sure sign of a termination. A regular sidecar hears it as the hooks start, with the app still
    // listening (or a hook in progress): the kubelet's SIGKILL is due a grace period from now. A native sidecar hears it
    // only after the app has exited, late in the termination the latest episode began: SIGKILL is due a grace period
    // from that start. Only then is the episode's start believed, so a hook call without the token seconds before the
    // real termination cannot move the deadline earlier.
    const late = drain.inTermination() && drain.hooksInProgress === 0 && this.#deps.appStopped();
    const terminationStart = late ? drain.lastStartedAt : now;
    if (!drain.inTermination()) drain.begin('sigterm');
    this.#deadline = terminationStart + graceMs - EXIT_MARGIN_MS;
    this.#holdUntil = now + config.shutdownHoldSeconds * 1000;
    log.info(
      { holdSeconds: config.shutdownHoldSeconds, deadlineInSeconds: Math.max(0, Math.round(this.#deadline - now) / 1000) },
      'sigterm received; serving until the drain is over',
    );
    this.#check();
  }

  /** SIGINT: a person at a terminal wants it to stop now. */
  interrupt(): void {
    this.#deps.drain.finish('exit');
    this.#deps.log.info('interrupted; exiting');
    this.#exit(0);
  }

  /** Stops checking: the sidecar is closing. */
  stop(): void {
    this.#exited = true;
    this.#deps.clock.clearTimeout(this.#timer);
  }

  #check(): void {
    if (this.#exited) return;
    const { clock, drain, log } = this.#deps;
    const now = clock.now();
    let waitingFor = this.#waitingFor(now);
    if (waitingFor.length === 0 && this.#drainedAt === undefined) {
      this.#drained(now);
      waitingFor = this.#waitingFor(now);
    }
    if (waitingFor.length > 0 && now < this.#deadline) {
      this.#timer = clock.setTimeout(() => this.#check(), CHECK_INTERVAL_MS);
      return;
    }
    if (waitingFor.length > 0) {
      log.warn({ waitingFor }, 'shutdown deadline reached; exiting before the kubelet kills');
      drain.finish('exit');
    }
    this.#exit(0);
  }

  /** Nothing holds the sidecar any more but the final scrape: closes an episode no hook call joined. */
  #drained(now: number): void {
    // SIGTERM opened this episode and no hook call joined it: the app's preStop hook is likely missing.
    if (this.#deps.drain.open) this.#deps.drain.finish('no_hook');
    // The final scrape must begin after this point, not merely after the drain: refusals after the app's exit are
    // counted until now, and would otherwise leave with the pod.
    this.#drainedAt = now;
  }

  /** What the exit still waits for; changes nothing. */
  #waitingFor(now: number): Blocker[] {
    const { drain, scrapes, appStopped, config } = this.#deps;
    const waitingFor: Blocker[] = [];
    if (drain.hooksInProgress > 0) waitingFor.push('hooks');
    if (now < this.#holdUntil) waitingFor.push('hold');
    if (!appStopped()) waitingFor.push('app');
    if (waitingFor.length > 0 || this.#drainedAt === undefined) return waitingFor;
    const finalScraped = scrapes.lastStartedAt >= this.#drainedAt;
    const scrapeWaitOver = now >= this.#drainedAt + config.finalScrapeSeconds * 1000;
    if (scrapes.count > 0 && !finalScraped && !scrapeWaitOver) waitingFor.push('final_scrape');
    return waitingFor;
  }

  #exit(code: number): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#deps.clock.clearTimeout(this.#timer);
    this.#deps.exit(code);
  }
}
