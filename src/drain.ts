// Drain episodes: the state machine behind the hook endpoints. An episode opens with the first hook call (or SIGTERM)
// and closes when the last hook call in it returns; every wait in it is capped by a grace period from the call's start.

import type { Logger } from 'pino';
import { type Clock, type Closes, delay, toSeconds } from './clock.js';
import type { Connections, EpisodeTraffic } from './connections.js';
import type { EndReason, HookEndpoint, HookOutcome, Metrics } from './metrics.js';
import type { DrainProxy, RequestTraffic } from './proxy.js';
import { Termination } from './termination.js';

export type Trigger = 'hook' | 'observe' | 'sigterm';

export interface EpisodeSummary {
  episode: number;
  trigger: Trigger;
  startedAt: string;
  durationSeconds: number;
  reason: EndReason;
  budgetSeconds: number;
  hookCalls: Partial<Record<HookOutcome, number>>;
  maxHooksInProgress: number;
  /** What the app's connections did; absent when they are not watched. */
  traffic?: EpisodeTraffic;
  /** Proxy mode: what the requests did. */
  requests?: RequestTraffic;
  /** Observer mode: seconds from the episode's start until the app's listeners were gone. */
  appStoppedSeconds?: number;
}

interface Episode {
  id: number;
  trigger: Trigger;
  startedAt: number;
  startedAtWall: Date;
  budgetEndsAt: number;
  hookCalls: Partial<Record<HookOutcome, number>>;
  maxHooksInProgress: number;
  traffic: (() => EpisodeTraffic) | undefined;
  requests: (() => RequestTraffic) | undefined;
  appStoppedAt: number | undefined;
}

/** For /drain: the hold ends early, once minMs have passed and isIdle() says the app's traffic has stopped. */
export interface IdleRule {
  minMs: number;
  pollMs: number;
  isIdle: () => boolean;
  /** Why the hold ended when isIdle said so: idle (/drain), or app_stopped (/observe). */
  reason?: 'idle' | 'app_stopped';
}

export interface IdleRuleOptions {
  clock: Clock;
  /** When the /drain call began: arrivals before it do not count against quiet. */
  startedAt: number;
  minSeconds: number;
  quietSeconds: number;
  pollMs: number;
  /** Proxy mode: every request is known. */
  proxy?: Pick<DrainProxy, 'inFlight' | 'lastArrivalAt'>;
  /** Passive mode, when the app's sockets can be read. */
  connections?: Pick<Connections, 'pollBusy' | 'lastArrivalAt'>;
}

/**
 * /drain's idle rule: nothing in flight and nothing arrived for quietSeconds. Proxy mode knows every request; passive
 * mode knows when each connection last received payload (sock_diag), or on the /proc/net fallback only connections, so
 * there idle needs none established (pollBusy says how). Undefined when neither is watched: /drain then waits its min.
 */
export function idleRule({
  clock,
  startedAt,
  minSeconds,
  quietSeconds,
  pollMs,
  proxy,
  connections,
}: IdleRuleOptions): IdleRule | undefined {
  const quietSince = (lastArrivalAt: number) => clock.now() - Math.max(startedAt, lastArrivalAt) >= quietSeconds * 1000;
  const isIdle = proxy
    ? () => proxy.inFlight === 0 && quietSince(proxy.lastArrivalAt)
    : connections && (() => !connections.pollBusy() && quietSince(connections.lastArrivalAt));
  return isIdle && { minMs: minSeconds * 1000, pollMs, isIdle };
}

// One rule for the level of `drain finished`: a wait that ended as designed is info; one cut short by the grace budget,
// left by its caller, ended at /drain's max with traffic still coming, or opened by SIGTERM with no hook call at all is
// a warning, since requests may have been lost. `hook call finished` is a warning by the same rule, and otherwise debug:
// the episode's one line counts its calls, and a burst of hook calls should not cost a log line each.
const END_LEVEL: Record<EndReason, 'info' | 'warn'> = {
  elapsed: 'info',
  idle: 'info',
  app_stopped: 'info',
  deadline: 'warn',
  budget: 'warn',
  caller_gone: 'warn',
  no_hook: 'warn',
  exit: 'warn',
};

export interface HoldRequest {
  endpoint: HookEndpoint;
  /** How long the caller asked to be held, after clamping. */
  ms: number;
  /** Closes when the caller goes away. */
  gone: Closes;
  malformed: boolean;
  clamped: boolean;
  /** The caller's User-Agent (the kubelet sends kube-lifecycle/<version>), for the log only. */
  userAgent: string | undefined;
  idle?: IdleRule;
}

export interface HoldResult {
  episode: number;
  outcome: HookOutcome;
  reason: EndReason;
  waitedSeconds: number;
  /** /observe: seconds from the episode's start until the app's listeners were gone; null when they never went. */
  appStoppedSeconds?: number | null;
}

export interface DrainDeps {
  clock: Clock;
  metrics: Metrics;
  log: Logger;
  gracePeriodSeconds: number;
  connections?: Connections;
  proxy?: DrainProxy;
  /** Shared with whatever counts late arrivals; its own when not given. */
  termination?: Termination;
}

export class Drain {
  #current: Episode | undefined;
  #last: EpisodeSummary | undefined;
  readonly #termination: Termination;
  #nextId = 1;
  #inProgress = 0;
  #listeners = new Set<() => void>();
  readonly #deps: DrainDeps;

  constructor(deps: DrainDeps) {
    this.#deps = deps;
    this.#termination = deps.termination ?? new Termination(deps.clock, deps.gracePeriodSeconds);
  }

  get hooksInProgress(): number {
    return this.#inProgress;
  }

  get open(): boolean {
    return this.#current !== undefined;
  }

  /** Monotonic time the latest episode started, or -Infinity. */
  get lastStartedAt(): number {
    return this.#termination.startedAt;
  }

  /**
   * An episode is open, or the latest began less than a grace period ago: the kubelet's termination it belongs to may
   * still be running (a native sidecar hears SIGTERM only after the app has exited, late in it).
   */
  inTermination(): boolean {
    return this.#termination.active;
  }

  get lastEpisode(): EpisodeSummary | undefined {
    return this.#last;
  }

  /** Calls fn whenever hooks start or end, or an episode opens or closes. */
  onChange(fn: () => void): void {
    this.#listeners.add(fn);
  }

  /** Opens an episode unless one is open; returns it. */
  begin(trigger: Trigger): Episode {
    if (this.#current) return this.#current;
    const { clock, metrics, log, gracePeriodSeconds } = this.#deps;
    const now = this.#termination.begin();
    const episode: Episode = {
      id: this.#nextId++,
      trigger,
      startedAt: now,
      startedAtWall: clock.wallNow(),
      budgetEndsAt: now + gracePeriodSeconds * 1000,
      hookCalls: {},
      maxHooksInProgress: 0,
      traffic: this.#deps.connections?.traffic(now),
      requests: this.#deps.proxy?.traffic(now),
      appStoppedAt: undefined,
    };
    this.#current = episode;
    metrics.draining.set(1);
    log.info({ episode: episode.id, trigger }, 'drain started');
    this.#changed();
    return episode;
  }

  /** Counts a hook call that was answered at once and held nothing (401, 429): it touches no episode. */
  refuse(endpoint: HookEndpoint, outcome: 'rejected_busy' | 'unauthorized'): void {
    this.#deps.metrics.hookCalls.inc({ endpoint, outcome });
  }

  /**
   * Holds a hook call within the current episode (opening one if needed), capped by a grace period from its own start.
   * Not from the episode's start: a call without the token (when none is set) may have opened the episode seconds
   * before the real termination, and the kubelet's own hook call must still be held as long as its grace period allows.
   */
  async hold(req: HoldRequest): Promise<HoldResult> {
    const { clock, metrics, gracePeriodSeconds } = this.#deps;
    const observing = req.idle?.reason === 'app_stopped';
    const episode = this.begin(observing ? 'observe' : 'hook');
    episode.budgetEndsAt = Math.max(episode.budgetEndsAt, clock.now() + gracePeriodSeconds * 1000);
    this.#inProgress++;
    episode.maxHooksInProgress = Math.max(episode.maxHooksInProgress, this.#inProgress);
    metrics.hooksInProgress.set(this.#inProgress);
    // What an observed hook waits for is not asked but measured: set once the app has stopped.
    if (!observing) metrics.hookWait.set(req.ms / 1000);
    this.#changed();

    const start = clock.now();
    const reason = await this.#wait(req, gracePeriodSeconds * 1000);
    if (reason === 'app_stopped') episode.appStoppedAt ??= clock.now();
    const appStoppedSeconds = episode.appStoppedAt === undefined ? null : toSeconds(episode.appStoppedAt - episode.startedAt);
    if (appStoppedSeconds !== null) metrics.hookWait.set(appStoppedSeconds);
    const waitedSeconds = toSeconds(clock.now() - start);
    const outcome: HookOutcome =
      reason === 'caller_gone' ? 'caller_gone' : req.malformed ? 'malformed' : req.clamped ? 'clamped' : 'ok';
    episode.hookCalls[outcome] = (episode.hookCalls[outcome] ?? 0) + 1;
    metrics.hookCalls.inc({ endpoint: req.endpoint, outcome });

    const result = { episode: episode.id, outcome, reason, waitedSeconds, ...(observing && { appStoppedSeconds }) };
    const level = END_LEVEL[reason] === 'info' ? 'debug' : 'warn';
    this.#deps.log[level]({ endpoint: req.endpoint, userAgent: req.userAgent, ...result }, 'hook call finished');

    this.#inProgress--;
    metrics.hooksInProgress.set(this.#inProgress);
    if (this.#inProgress === 0) this.finish(reason);
    else this.#changed();
    return result;
  }

  /** Waits out a hold: its time, its idle rule, the caller going away, and the episode's budget, whichever ends first. */
  async #wait(req: HoldRequest, budgetMs: number): Promise<EndReason> {
    const { clock } = this.#deps;
    const limit = Math.min(req.ms, budgetMs);
    // /observe waits for the app, at most a grace period: reaching it is the budget's end, not a deadline it set.
    const observing = req.idle?.reason === 'app_stopped';
    const atLimit: EndReason = limit < req.ms || observing ? 'budget' : req.idle ? 'deadline' : 'elapsed';
    if (!req.idle) return (await delay(clock, limit, req.gone)) ? atLimit : 'caller_gone';
    const start = clock.now();
    for (;;) {
      const held = clock.now() - start;
      if (held >= limit) return atLimit;
      if (held >= req.idle.minMs && req.idle.isIdle()) return req.idle.reason ?? 'idle';
      // Wake at min exactly, then every poll.
      const step = held < req.idle.minMs ? Math.min(req.idle.pollMs, req.idle.minMs - held) : req.idle.pollMs;
      if (!(await delay(clock, Math.min(step, limit - held), req.gone))) return 'caller_gone';
    }
  }

  /** Closes the open episode, if any: records its figures and logs the one `drain finished` line. */
  finish(reason: EndReason): EpisodeSummary | undefined {
    const episode = this.#current;
    if (!episode) return undefined;
    const { clock, metrics, log, gracePeriodSeconds } = this.#deps;
    const now = clock.now();
    const summary: EpisodeSummary = {
      episode: episode.id,
      trigger: episode.trigger,
      startedAt: episode.startedAtWall.toISOString(),
      durationSeconds: toSeconds(now - episode.startedAt),
      reason,
      budgetSeconds: gracePeriodSeconds,
      hookCalls: episode.hookCalls,
      maxHooksInProgress: episode.maxHooksInProgress,
      ...(episode.traffic && { traffic: episode.traffic() }),
      ...(episode.requests && { requests: episode.requests() }),
      ...(episode.appStoppedAt !== undefined && { appStoppedSeconds: toSeconds(episode.appStoppedAt - episode.startedAt) }),
    };
    this.#current = undefined;
    this.#termination.end();
    this.#last = summary;
    metrics.draining.set(0);
    metrics.drainDuration.observe(summary.durationSeconds);
    metrics.drains.inc({ reason });
    if (summary.traffic) {
      metrics.drainEndConnections.inc(summary.traffic.connectionsAtEnd);
      if (summary.traffic.lastArrivalSeconds !== null) metrics.lastArrival.observe(summary.traffic.lastArrivalSeconds);
    }
    const lastRequest = summary.requests?.lastRequestArrivalSeconds;
    if (lastRequest !== undefined && lastRequest !== null) metrics.lastRequestArrival.observe(lastRequest);
    log[END_LEVEL[reason]](summary, 'drain finished');
    this.#changed();
    return summary;
  }

  /** The open episode as /status shows it. */
  status(): Record<string, unknown> | null {
    const episode = this.#current;
    if (!episode) return null;
    const now = this.#deps.clock.now();
    return {
      episode: episode.id,
      trigger: episode.trigger,
      startedAt: episode.startedAtWall.toISOString(),
      elapsedSeconds: toSeconds(now - episode.startedAt),
      budgetRemainingSeconds: toSeconds(Math.max(0, episode.budgetEndsAt - now)),
      hookCalls: episode.hookCalls,
    };
  }

  #changed(): void {
    for (const fn of this.#listeners) fn();
  }
}
