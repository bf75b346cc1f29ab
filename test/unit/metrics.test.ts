import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { END_REASONS, exposition, HOOK_ENDPOINTS, HOOK_OUTCOMES, METRIC_SPECS } from '../../src/metrics.js';
import { testWiring } from '../helpers.js';

const OPENMETRICS = 'application/openmetrics-text; version=1.0.0';

function promtool(text: string) {
  const run = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 10_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('metrics', () => {
  it('passes promtool check metrics, default process metrics included', async () => {
    const { registry, metrics } = testWiring();
    metrics.drainDuration.observe(12);
    const { body, contentType } = await exposition(registry, '*/*');
    expect(contentType).toContain('text/plain; version=0.0.4');
    expect(body).toContain('process_resident_memory_bytes');
    expect(promtool(body)).toEqual({ status: 0, output: '' });
  });

  it('starts every labelled hook counter and drain histogram at zero, but outcomes /observe cannot have', async () => {
    const { registry } = testWiring();
    const { body } = await exposition(registry, undefined);
    for (const endpoint of HOOK_ENDPOINTS) {
      for (const outcome of HOOK_OUTCOMES) {
        const series = `drain_sidecar_hook_calls_total{endpoint="${endpoint}",outcome="${outcome}"} 0`;
        if (endpoint === 'observe' && !['ok', 'unauthorized'].includes(outcome)) expect(body).not.toContain(series);
        else expect(body).toContain(series);
      }
    }
    for (const reason of END_REASONS) expect(body).toContain(`drain_sidecar_drains_total{reason="${reason}"} 0`);
  });

  it('carries the version and Node.js version in build_info', async () => {
    const { registry } = testWiring();
    const { body } = await exposition(registry, undefined);
    expect(body).toContain(`drain_sidecar_build_info{version="0.0.0-test",node_version="${process.version}"} 1`);
  });

  it('answers OpenMetrics when asked, with counters named by their family and # EOF', async () => {
    const { registry, metrics } = testWiring();
    metrics.hookCalls.inc({ endpoint: 'sleep', outcome: 'ok' });
    const { body, contentType } = await exposition(registry, OPENMETRICS);
    expect(contentType).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(body).toContain('# TYPE drain_sidecar_hook_calls counter');
    expect(body).toContain('drain_sidecar_hook_calls_total{endpoint="sleep",outcome="ok"} 1');
    expect(body.endsWith('# EOF\n')).toBe(true);
  });

  it('keeps the _total names in Prometheus text after an OpenMetrics scrape', async () => {
    const { registry } = testWiring();
    await exposition(registry, OPENMETRICS);
    const { body } = await exposition(registry, undefined);
    expect(body).toContain('# TYPE drain_sidecar_hook_calls_total counter');
    expect(body).toContain('# TYPE process_cpu_seconds_total counter');
    expect(promtool(body).status).toBe(0);
  });

  it('names every metric with the prefix, counters with _total, and never a gauge with _total', () => {
    for (const spec of Object.values(METRIC_SPECS)) {
      expect(spec.name).toMatch(/^drain_sidecar_[a-z_]+$/);
      expect(spec.name.endsWith('_total')).toBe(spec.type === 'counter');
    }
  });
});
