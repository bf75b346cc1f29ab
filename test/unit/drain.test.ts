import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { Drain, type HoldRequest, type IdleRuleOptions, idleRule } from '../../src/drain.js';
import { testWiring, useFakeClock } from '../helpers.js';
import { conn, listener, POLL_MS, pooled, setupDiag, setup as setupProcNet, writeTables } from '../sockets.js';

function setup(gracePeriodSeconds = 30) {
  const wiring = testWiring();
  const drain = new Drain({ clock: systemClock, metrics: wiring.metrics, log: wiring.log, gracePeriodSeconds });
  const hold = (seconds: number, extra: Partial<HoldRequest> = {}) =>
    drain.hold({
      endpoint: 'sleep',
      ms: seconds * 1000,
      gone: new EventEmitter(),
      malformed: false,
      clamped: false,
      userAgent: 'kube-lifecycle/1.34',
      ...extra,
    });
  const finished = () => wiring.lines.filter((l) => l.msg === 'drain finished');
  return { ...wiring, drain, hold, finished };
}

describe('Drain', () => {
  beforeEach(useFakeClock);
  afterEach(() => vi.useRealTimers());

  it('holds a hook call for the requested time, then closes the episode with one drain finished line', async () => {
    const { drain, hold, finished, value, lines } = setup();
    let done = false;
    const result = hold(5).then((r) => {
      done = true;
      return r;
    });
    expect(drain.open).toBe(true);
    expect(await value('drain_sidecar_draining')).toBe(1);
    await vi.advanceTimersByTimeAsync(4999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await result).toEqual({ episode: 1, outcome: 'ok', reason: 'elapsed', waitedSeconds: 5 });
    expect(drain.open).toBe(false);
    expect(finished()).toEqual([
      expect.objectContaining({ episode: 1, trigger: 'hook', durationSeconds: 5, reason: 'elapsed', hookCalls: { ok: 1 } }),
    ]);
    expect(await value('drain_sidecar_hook_calls_total', { endpoint: 'sleep', outcome: 'ok' })).toBe(1);
    expect(await value('drain_sidecar_drains_total', { reason: 'elapsed' })).toBe(1);
    expect(await value('drain_sidecar_drain_duration_seconds', {}, 'drain_sidecar_drain_duration_seconds_sum')).toBe(5);
    expect(await value('drain_sidecar_draining')).toBe(0);
    // The episode's line counts the call; the call's own line is debug, so a burst of calls writes no line each.
    expect(lines.filter((l) => l.msg === 'hook call finished').map((l) => l.level)).toEqual(['debug']);
  });

  it('joins overlapping hook calls into one episode that ends when the last one returns', async () => {
    const { drain, hold, finished, value } = setup();
    const first = hold(10);
    await vi.advanceTimersByTimeAsync(2000);
    const second = hold(5, { clamped: true });
    expect(drain.hooksInProgress).toBe(2);
    expect(await value('drain_sidecar_hooks_in_progress')).toBe(2);
    await vi.advanceTimersByTimeAsync(5000);
    expect(await second).toMatchObject({ episode: 1, outcome: 'clamped', waitedSeconds: 5 });
    expect(drain.open).toBe(true);
    expect(finished()).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(3000);
    expect(await first).toMatchObject({ episode: 1, outcome: 'ok', waitedSeconds: 10 });
    expect(finished()).toEqual([
      expect.objectContaining({ episode: 1, durationSeconds: 10, hookCalls: { ok: 1, clamped: 1 }, maxHooksInProgress: 2 }),
    ]);
    expect(await value('drain_sidecar_hooks_in_progress')).toBe(0);
  });

  it('counts a malformed call that still held the pod', async () => {
    const { hold, value } = setup();
    const result = hold(20, { malformed: true });
    await vi.advanceTimersByTimeAsync(20_000);
    expect(await result).toMatchObject({ outcome: 'malformed', reason: 'elapsed', waitedSeconds: 20 });
    expect(await value('drain_sidecar_hook_calls_total', { endpoint: 'sleep', outcome: 'malformed' })).toBe(1);
  });

  it('stops waiting when the caller goes away, and counts it', async () => {
    const { hold, finished, value, lines } = setup();
    const caller = new EventEmitter();
    const result = hold(20, { gone: caller });
    await vi.advanceTimersByTimeAsync(3000);
    caller.emit('close');
    expect(await result).toMatchObject({ outcome: 'caller_gone', reason: 'caller_gone', waitedSeconds: 3 });
    expect(finished()).toEqual([expect.objectContaining({ reason: 'caller_gone', durationSeconds: 3 })]);
    expect(await value('drain_sidecar_hook_calls_total', { endpoint: 'sleep', outcome: 'caller_gone' })).toBe(1);
    expect(lines.find((l) => l.msg === 'hook call finished')?.level).toBe('warn');
  });

  it('cuts a wait at a grace period from its own start, never at the budget of the call that opened the episode', async () => {
    const { hold, finished } = setup(10);
    // A caller without the token opens the episode 7 s before the kubelet's own hook call.
    const early = hold(8);
    await vi.advanceTimersByTimeAsync(7000);
    const kubelet = hold(5);
    await vi.advanceTimersByTimeAsync(5000);
    expect(await early).toMatchObject({ reason: 'elapsed', waitedSeconds: 8 });
    expect(await kubelet).toMatchObject({ outcome: 'ok', reason: 'elapsed', waitedSeconds: 5 });
    // Longer than the grace period it is cut there.
    const long = hold(25);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await long).toMatchObject({ reason: 'budget', waitedSeconds: 10 });
    expect(finished().map((l) => l.reason)).toEqual(['elapsed', 'budget']);
  });

  it('starts a new episode, with a new budget, for a hook call after the last one ended', async () => {
    const { hold, finished } = setup(30);
    const first = hold(20);
    await vi.advanceTimersByTimeAsync(20_000);
    await first;
    const second = hold(20);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(await second).toMatchObject({ episode: 2, reason: 'elapsed', waitedSeconds: 20 });
    expect(finished().map((l) => l.episode)).toEqual([1, 2]);
  });

  it('counts refused calls without opening an episode', async () => {
    const { drain, value } = setup();
    drain.refuse('sleep', 'unauthorized');
    drain.refuse('sleep', 'rejected_busy');
    expect(drain.open).toBe(false);
    expect(await value('drain_sidecar_hook_calls_total', { endpoint: 'sleep', outcome: 'unauthorized' })).toBe(1);
    expect(await value('drain_sidecar_hook_calls_total', { endpoint: 'sleep', outcome: 'rejected_busy' })).toBe(1);
  });
});

describe('Drain with an idle rule (/drain)', () => {
  beforeEach(useFakeClock);
  afterEach(() => vi.useRealTimers());

  it('returns idle at min when the app is already quiet', async () => {
    const { hold } = setup();
    const result = hold(20, { idle: { minMs: 5000, pollMs: 200, isIdle: () => true } });
    await vi.advanceTimersByTimeAsync(5000);
    expect(await result).toMatchObject({ reason: 'idle', waitedSeconds: 5 });
  });

  it('returns idle at the first poll after the traffic stops', async () => {
    const { hold, finished } = setup();
    const app = { quiet: false };
    const result = hold(20, { idle: { minMs: 2000, pollMs: 200, isIdle: () => app.quiet } });
    await vi.advanceTimersByTimeAsync(7000);
    app.quiet = true;
    await vi.advanceTimersByTimeAsync(200);
    expect(await result).toMatchObject({ reason: 'idle', waitedSeconds: 7.2 });
    expect(finished()).toEqual([expect.objectContaining({ reason: 'idle', durationSeconds: 7.2 })]);
  });

  it('returns deadline at max while traffic goes on', async () => {
    const { hold } = setup();
    const result = hold(10, { idle: { minMs: 2000, pollMs: 200, isIdle: () => false } });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await result).toMatchObject({ reason: 'deadline', waitedSeconds: 10 });
  });

  it('stops when the caller goes away', async () => {
    const { hold } = setup();
    const caller = new EventEmitter();
    const result = hold(10, { gone: caller, idle: { minMs: 2000, pollMs: 200, isIdle: () => false } });
    await vi.advanceTimersByTimeAsync(3100);
    caller.emit('close');
    expect(await result).toMatchObject({ reason: 'caller_gone', outcome: 'caller_gone', waitedSeconds: 3.1 });
  });
});

describe("idleRule, /drain's rule for when the app's traffic has stopped", () => {
  beforeEach(useFakeClock);
  afterEach(() => vi.useRealTimers());

  const rule = (sources: Pick<IdleRuleOptions, 'proxy' | 'connections'>) =>
    idleRule({ clock: systemClock, startedAt: performance.now(), minSeconds: 2, quietSeconds: 1, pollMs: POLL_MS, ...sources });

  it('is absent when neither a proxy nor the app sockets are watched: /drain then waits its min', () => {
    expect(rule({})).toBeUndefined();
  });

  it('proxy mode: idle once nothing is in flight and no request arrived for quiet seconds', async () => {
    const { hold } = setup();
    const proxy = { inFlight: 1, lastArrivalAt: Number.NEGATIVE_INFINITY };
    const result = hold(20, { idle: rule({ proxy }) });
    await vi.advanceTimersByTimeAsync(3000);
    proxy.inFlight = 0;
    proxy.lastArrivalAt = performance.now();
    // Quiet runs from the last arrival: one second more.
    await vi.advanceTimersByTimeAsync(800);
    proxy.lastArrivalAt = performance.now();
    await vi.advanceTimersByTimeAsync(1000);
    expect(await result).toMatchObject({ reason: 'idle', waitedSeconds: 4.8 });
  });

  it('sock_diag: a request on a pooled connection holds it, a connection left idle in the pool does not', async () => {
    const { hold } = setup();
    const { connections, table, termination } = setupDiag();
    termination.active = true;
    table.rows = [pooled(2, 5, 4000)];
    const traffic = connections.traffic(performance.now());
    // As during a termination: polled every POLL_MS.
    connections.watch();
    const result = hold(20, { idle: rule({ connections: traffic && connections }) });
    await vi.advanceTimersByTimeAsync(1000);
    // At 1 s a request arrives on the pooled connection and is answered at once.
    table.rows = [pooled(2, 6, 0)];
    await vi.advanceTimersByTimeAsync(POLL_MS);
    // Min is 2 s; quiet since the request at ~1.2 s: idle at the first poll from 2.2 s on.
    await vi.advanceTimersByTimeAsync(2000);
    const { waitedSeconds, reason } = await result;
    expect(reason).toBe('idle');
    expect(waitedSeconds).toBeGreaterThanOrEqual(2.2);
    expect(waitedSeconds).toBeLessThanOrEqual(2.4);
    connections.stop();
  });

  it('/proc/net: holds while any connection is established, since requests on it cannot be seen', async () => {
    const { hold } = setup();
    const { connections, dir, termination } = setupProcNet();
    termination.active = true;
    writeTables(dir, [listener, conn(50001)]);
    const traffic = connections.traffic(performance.now());
    const result = hold(20, { idle: rule({ connections: traffic && connections }) });
    await vi.advanceTimersByTimeAsync(5000);
    writeTables(dir, [listener]);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(await result).toMatchObject({ reason: 'idle', waitedSeconds: 5.2 });
  });
});
