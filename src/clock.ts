// Time is injected so the drain and shutdown logic runs under fake timers in unit tests.

export interface Clock {
  /** Monotonic milliseconds: immune to wall-clock steps (NTP) during a drain. */
  now(): number;
  /** Wall-clock time, for log lines and /status only. */
  wallNow(): Date;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

// Resolved at call time, so vitest's fake timers (which replace the globals) apply to code under test.
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => new Date(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * What tells a wait that its caller went away: Node's socket or response, by its 'close' (a response also closes once
 * answered, which comes after the wait). Listened to directly: an AbortController per held hook call cost half a KiB
 * more (bench/burst.mjs).
 */
export interface Closes {
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/** Resolves true after ms, or false as soon as `gone` closes. A close already emitted is not seen: wait from the tick
 * the request came in, or from a wait that ended without one. */
export function delay(clock: Clock, ms: number, gone?: Closes): Promise<boolean> {
  return new Promise((resolve) => {
    const onClose = () => {
      clock.clearTimeout(timer);
      resolve(false);
    };
    const timer = clock.setTimeout(
      () => {
        gone?.off('close', onClose);
        resolve(true);
      },
      Math.max(0, ms),
    );
    gone?.once('close', onClose);
  });
}

/** A span of monotonic milliseconds as seconds, to the millisecond: the unit of every figure in logs and answers. */
export const toSeconds = (ms: number): number => Math.round(ms) / 1000;

/** Seconds from start to at, or null when at is before start (nothing happened since). */
export const secondsSince = (start: number, at: number): number | null => (at >= start ? toSeconds(at - start) : null);
