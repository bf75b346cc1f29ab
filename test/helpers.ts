// Shared test wiring: real metrics on a private registry and a logger whose lines the test can read.
import { resolve } from 'node:path';
import { Writable } from 'node:stream';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { vi } from 'vitest';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import type { SockDiag } from '../src/sockdiag.js';

export interface LogLine {
  level: string;
  severity: string;
  msg: string;
  [field: string]: unknown;
}

export function testWiring() {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const log = createLogger('debug', sink);
  const registry = new Registry();
  const metrics = createMetrics(registry, {
    version: '0.0.0-test',
    nodeVersion: process.version,
    appPorts: [],
    proxy: true,
    runtime: 'full',
    collectDefaultMetrics,
  });
  /** The value of one series (sample: e.g. `_count` of a histogram), or undefined when it does not exist. */
  const value = async (name: string, labels: Record<string, string> = {}, sample = name) => {
    const metric = registry.getSingleMetric(name);
    if (!metric) throw new Error(`no metric ${name}`);
    const { values } = await metric.get();
    const matches = (v: (typeof values)[number]) =>
      ((v as { metricName?: string }).metricName ?? name) === sample &&
      Object.entries(labels).every(([k, l]) => v.labels[k] === l);
    return values.find(matches)?.value;
  };
  return { lines, log, registry, metrics, value };
}

/** Fake timers that also drive performance.now(), the monotonic clock the code reads. */
export function useFakeClock(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance', 'Date'] });
}

/** The sock_diag addon as the build made it (test/global-setup.ts builds it). */
export function loadSockDiag(): SockDiag {
  const module = { exports: {} as SockDiag };
  process.dlopen(module, resolve(import.meta.dirname, '../dist/drain-sidecar-sockdiag.node'));
  return module.exports;
}
