// The series a freshly started executable exports, against the budget README states: every series is paid once per
// pod across a fleet. promtool checks each exposition.
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, onCleanup } from '../cleanup.js';
import { get } from '../http.js';
import { startSidecarProcess } from '../process.js';

afterEach(cleanup);

const SERIES_BUDGET = { passive: 90, proxy: 135 };

async function scrape(env: Record<string, string>): Promise<{ series: string[]; body: string }> {
  const sidecar = await startSidecarProcess(env);
  onCleanup(() => sidecar.child.kill('SIGKILL'));
  const { body } = await get(sidecar.port, '/metrics');
  return { series: body.split('\n').filter((l) => l !== '' && !l.startsWith('#')), body };
}

const promtool = (text: string) =>
  spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 10_000 });

describe('the series budget', () => {
  it(`stays within ${SERIES_BUDGET.passive} series idle in passive mode, watching one app port`, async () => {
    // With the workload's minReadySeconds, as inject passes it.
    const { series, body } = await scrape({ DRAIN_APP_PORTS: '8080', DRAIN_MIN_READY_SECONDS: '10' });
    expect(series.length).toBeLessThanOrEqual(SERIES_BUDGET.passive);
    expect(series.some((s) => s.startsWith('drain_sidecar_proxy_'))).toBe(false);
    expect(series).toContain('drain_sidecar_drains_total{reason="no_hook"} 0');
    expect(series.filter((s) => /^(process|nodejs)_/.test(s)).map((s) => s.split(' ')[0])).toEqual([
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_heap_size_used_bytes',
      'process_open_fds',
    ]);
    expect(promtool(body)).toMatchObject({ status: 0, stdout: '', stderr: '' });
  });

  it(`stays within ${SERIES_BUDGET.proxy} series idle in proxy mode`, async () => {
    const { series, body } = await scrape({
      DRAIN_PROXY_LISTEN: '127.0.0.1:0',
      DRAIN_PROXY_UPSTREAM: '127.0.0.1:8080',
      DRAIN_MIN_READY_SECONDS: '10',
    });
    expect(series.length).toBeLessThanOrEqual(SERIES_BUDGET.proxy);
    expect(series).toContain('drain_sidecar_proxy_refused_requests_total{reason="refused"} 0');
    expect(promtool(body)).toMatchObject({ status: 0, stdout: '', stderr: '' });
  });

  it('exports the full Node runtime set only when asked, and none when told', async () => {
    const basic = (await scrape({})).series.length;
    const full = await scrape({ DRAIN_RUNTIME_METRICS: 'full' });
    const none = (await scrape({ DRAIN_RUNTIME_METRICS: 'none' })).series;
    expect(full.series.length).toBeGreaterThan(basic + 20);
    expect(none.some((s) => /^(process|nodejs)_/.test(s))).toBe(false);
    expect(promtool(full.body)).toMatchObject({ status: 0 });
  });
});
