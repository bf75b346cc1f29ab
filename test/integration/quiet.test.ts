// A pod whose network namespace carries no traffic but the test's own (test/quiet-pod.mjs in a namespace made with
// unshare -n): between the test's segments, the sidecar's polls find the namespace's TCP counters unchanged and reuse
// their previous read instead of walking the kernel's socket table. What the drain reports must not suffer for it.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { EXECUTABLE } from '../process.js';

const SCRIPT = resolve(import.meta.dirname, '../quiet-pod.mjs');

describe('a quiet pod', () => {
  it('sees every request on pooled connections and the app closing its listener, with no segment between reads', async () => {
    const { stdout } = await promisify(execFile)(
      'unshare',
      ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$1" "$2"', process.execPath, SCRIPT, EXECUTABLE],
      { timeout: 40_000 },
    );
    const r = JSON.parse(stdout);
    expect(r.drain.traffic).toMatchObject({
      connectionsAtStart: 4,
      connectionsAtEnd: 4,
      lateArrivals: 0,
      lateRequestsEstimate: 5,
    });
    expect(Math.abs(r.drain.traffic.lastArrivalSeconds - r.lastSentSeconds)).toBeLessThan(0.1);
    // After SIGTERM the sidecar serves until the app stops listening; the close is seen by a read of the listeners alone
    // (the deadline, a grace period away, would be 29 s).
    expect(r.aliveBeforeClose).toBe(true);
    expect(r.code).toBe(0);
    expect(r.exitSeconds).toBeLessThan(3);
  });
});
