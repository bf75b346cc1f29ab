// When the pod is terminating, for everything the sidecar counts. A termination begins with the first hook call of a
// drain episode, or with SIGTERM when no hook call came: a native sidecar hears SIGTERM only after the app has exited,
// so anything the app refused between its exit and that signal still belongs to the termination. It lasts while the
// episode is open and at least one grace period from its start, the longest the kubelet lets the pod live after it.

import type { Clock } from './clock.js';

export class Termination {
  #startedAt = Number.NEGATIVE_INFINITY;
  #open = false;
  readonly #clock: Clock;
  readonly #graceMs: number;

  constructor(clock: Clock, gracePeriodSeconds: number) {
    this.#clock = clock;
    this.#graceMs = gracePeriodSeconds * 1000;
  }

  /** Marks a drain episode opening now; returns the time. */
  begin(): number {
    this.#startedAt = this.#clock.now();
    this.#open = true;
    return this.#startedAt;
  }

  /** Marks the episode closed; the termination lasts on until a grace period from its start has passed. */
  end(): void {
    this.#open = false;
  }

  /** Monotonic time the latest episode began, or -Infinity. */
  get startedAt(): number {
    return this.#startedAt;
  }

  get active(): boolean {
    return this.#open || this.#clock.now() - this.#startedAt < this.#graceMs;
  }
}
