import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { Drain } from '../../src/drain.js';
import { Scrapes, Shutdown } from '../../src/shutdown.js';
import { testWiring, useFakeClock } from '../helpers.js';

function setup({ grace = 30, hold = 2, finalScrape = 15 } = {}) {
  const wiring = testWiring();
  const drain = new Drain({ clock: systemClock, metrics: wiring.metrics, log: wiring.log, gracePeriodSeconds: grace });
  const scrapes = new Scrapes();
  const app = { listening: false };
  const exit = vi.fn();
  const shutdown = new Shutdown({
    clock: systemClock,
    drain,
    scrapes,
    metrics: wiring.metrics,
    log: wiring.log,
    config: { gracePeriodSeconds: grace, shutdownHoldSeconds: hold, finalScrapeSeconds: finalScrape },
    appStopped: () => !app.listening,
    exit,
  });
  const sleep = (seconds: number, gone = new EventEmitter()) =>
    drain.hold({ endpoint: 'sleep', ms: seconds * 1000, gone, malformed: false, clamped: false, userAgent: undefined });
  const finished = () => wiring.lines.filter((l) => l.msg === 'drain finished');
  return { ...wiring, drain, scrapes, app, exit, shutdown, sleep, finished };
}

/** Advances fake time until exit is called; returns the milliseconds that took (or Infinity past the limit). */
async function msUntilExit(exit: ReturnType<typeof vi.fn>, limitMs = 120_000): Promise<number> {
  for (let t = 0; t <= limitMs; t += 100) {
    if (exit.mock.calls.length > 0) return t;
    await vi.advanceTimersByTimeAsync(100);
  }
  return Number.POSITIVE_INFINITY;
}

describe('Shutdown', () => {
  beforeEach(useFakeClock);
  afterEach(() => vi.useRealTimers());

  it('without any hook call, exits 0 once the hold has passed and logs that no hook came', async () => {
    const { shutdown, exit, finished, value } = setup({ hold: 2 });
    shutdown.sigterm();
    expect(shutdown.terminating).toBe(true);
    expect(await value('drain_sidecar_terminating')).toBe(1);
    expect(await msUntilExit(exit)).toBe(2000);
    expect(exit).toHaveBeenCalledWith(0);
    expect(finished()).toEqual([expect.objectContaining({ trigger: 'sigterm', reason: 'no_hook', hookCalls: {} })]);
  });

  it('keeps serving a hook that is in progress at SIGTERM (regular sidecar order), then exits', async () => {
    const { shutdown, exit, sleep } = setup();
    const hook = sleep(20);
    shutdown.sigterm();
    expect(await msUntilExit(exit)).toBe(20_000);
    expect(await hook).toMatchObject({ reason: 'elapsed', waitedSeconds: 20 });
  });

  it('serves a hook call that arrives just after SIGTERM, within the same episode', async () => {
    const { shutdown, exit, sleep, finished } = setup({ hold: 2 });
    shutdown.sigterm();
    await vi.advanceTimersByTimeAsync(300);
    const hook = sleep(10);
    expect(await msUntilExit(exit)).toBe(10_000);
    expect(await hook).toMatchObject({ episode: 1, reason: 'elapsed' });
    expect(finished()).toEqual([
      expect.objectContaining({ episode: 1, trigger: 'sigterm', reason: 'elapsed', hookCalls: { ok: 1 } }),
    ]);
  });

  it('logs a second SIGTERM and does not obey it', async () => {
    const { shutdown, exit, sleep, lines } = setup();
    const hook = sleep(10);
    shutdown.sigterm();
    await vi.advanceTimersByTimeAsync(1000);
    shutdown.sigterm();
    expect(exit).not.toHaveBeenCalled();
    expect(lines.find((l) => l.msg === 'second sigterm ignored; still draining')).toMatchObject({
      waitingFor: ['hooks', 'hold'],
    });
    expect(await msUntilExit(exit)).toBe(9000);
    await hook;
  });

  it("waits for the app's listeners to close", async () => {
    const { shutdown, exit, app } = setup();
    app.listening = true;
    shutdown.sigterm();
    await vi.advanceTimersByTimeAsync(5000);
    expect(exit).not.toHaveBeenCalled();
    app.listening = false;
    expect(await msUntilExit(exit)).toBeLessThanOrEqual(100);
  });

  it('exits at the deadline, a second before the kubelet would kill, when the app never stops', async () => {
    const { shutdown, exit, app, lines, finished } = setup({ grace: 10 });
    app.listening = true;
    shutdown.sigterm();
    expect(await msUntilExit(exit)).toBe(9000);
    expect(exit).toHaveBeenCalledWith(0);
    expect(lines.find((l) => l.msg === 'shutdown deadline reached; exiting before the kubelet kills')).toMatchObject({
      waitingFor: ['app'],
    });
    expect(finished()).toEqual([expect.objectContaining({ reason: 'exit' })]);
  });

  it('as a native sidecar, SIGTERMed after the app exited, counts the deadline from the hook call that began the termination', async () => {
    const { shutdown, exit, sleep, scrapes, finished } = setup({ grace: 30, finalScrape: 15 });
    // Scraped before, so it would wait 15 s for a final scrape: the deadline, 9 s after this SIGTERM, comes first.
    scrapes.served(performance.now());
    const hook = sleep(20);
    await vi.advanceTimersByTimeAsync(20_000);
    await hook;
    await vi.advanceTimersByTimeAsync(1000);
    shutdown.sigterm();
    expect(await msUntilExit(exit)).toBe(8000);
    // The SIGTERM belonged to the episode already logged: no second, empty episode.
    expect(finished()).toHaveLength(1);
  });

  it('as a regular sidecar, counts the deadline from SIGTERM, however recently a hook call without the token came', async () => {
    const { shutdown, exit, app, sleep } = setup({ grace: 10, hold: 0 });
    // Seven seconds before the real termination, a caller without the token ends a hook call at once.
    const early = sleep(0);
    await vi.advanceTimersByTimeAsync(7000);
    await early;
    // The termination: the app still listens when the sidecar hears SIGTERM, and the kubelet's hook call follows.
    app.listening = true;
    shutdown.sigterm();
    const hook = sleep(5);
    await vi.advanceTimersByTimeAsync(4000);
    expect(exit).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1000);
    expect(await hook).toMatchObject({ reason: 'elapsed', waitedSeconds: 5 });
    app.listening = false;
    expect(await msUntilExit(exit)).toBeLessThanOrEqual(100);
  });

  it('opens its own episode when SIGTERM comes long after the last drain', async () => {
    const { shutdown, exit, sleep, finished } = setup({ grace: 30 });
    const hook = sleep(1);
    await vi.advanceTimersByTimeAsync(60_000);
    await hook;
    shutdown.sigterm();
    expect(await msUntilExit(exit)).toBe(2000);
    expect(finished().map((l) => l.trigger)).toEqual(['hook', 'sigterm']);
  });

  it('once scraped, waits for one more scrape after the drain and exits after it was served', async () => {
    const { shutdown, exit, sleep, scrapes } = setup({ finalScrape: 15 });
    scrapes.served(performance.now());
    const hook = sleep(5);
    shutdown.sigterm();
    await vi.advanceTimersByTimeAsync(8000);
    await hook;
    expect(exit).not.toHaveBeenCalled();
    scrapes.served(performance.now());
    expect(await msUntilExit(exit)).toBeLessThanOrEqual(100);
  });

  it('does not wait for a scrape that started before the drain ended', async () => {
    const { shutdown, exit, sleep, scrapes } = setup({ finalScrape: 15 });
    const hook = sleep(5);
    shutdown.sigterm();
    await vi.advanceTimersByTimeAsync(4000);
    scrapes.served(performance.now());
    expect(await msUntilExit(exit)).toBe(1000 + 15_000);
    await hook;
  });

  it("waits for a scrape that began after the app's exit, so refusals counted until then leave the pod", async () => {
    const { shutdown, exit, sleep, scrapes, app } = setup({ finalScrape: 15 });
    scrapes.served(performance.now());
    app.listening = true;
    const hook = sleep(5);
    shutdown.sigterm();
    await vi.advanceTimersByTimeAsync(6000);
    await hook;
    scrapes.served(performance.now());
    await vi.advanceTimersByTimeAsync(2000);
    app.listening = false;
    await vi.advanceTimersByTimeAsync(1000);
    expect(exit).not.toHaveBeenCalled();
    scrapes.served(performance.now());
    expect(await msUntilExit(exit)).toBeLessThanOrEqual(100);
  });

  it('exits without waiting for a scrape when /metrics was never scraped', async () => {
    const { shutdown, exit } = setup({ finalScrape: 15 });
    shutdown.sigterm();
    expect(await msUntilExit(exit)).toBe(2000);
  });

  it('exits at once on SIGINT, closing the open episode', async () => {
    const { shutdown, exit, sleep, finished } = setup();
    void sleep(20);
    shutdown.interrupt();
    expect(exit).toHaveBeenCalledWith(0);
    expect(finished()).toEqual([expect.objectContaining({ reason: 'exit' })]);
  });
});
