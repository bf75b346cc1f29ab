// The HTTP API on a real socket.
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup } from '../cleanup.js';
import { get, metric } from '../http.js';
import { startSidecar } from '../inprocess.js';

afterEach(cleanup);

describe('hook endpoints', () => {
  it('/sleep?s=0.5 answers 200 after half a second with what it did', async () => {
    const { port } = await startSidecar();
    const answer = await get(port, '/sleep?s=0.5', { 'User-Agent': 'kube-lifecycle/1.34', Accept: '*/*' });
    expect(answer.status).toBe(200);
    expect(answer.ms).toBeGreaterThanOrEqual(490);
    expect(answer.ms).toBeLessThan(1500);
    expect(answer.json()).toMatchObject({ endpoint: 'sleep', requested: { s: 0.5 }, reason: 'elapsed', clamped: false });
    expect(answer.body.length).toBeLessThan(1024);
  });

  it('accepts the double slash of kubelets before 1.26', async () => {
    const { port } = await startSidecar();
    const answer = await get(port, '//sleep?s=0.1');
    expect(answer.status).toBe(200);
    expect(answer.json()).toMatchObject({ endpoint: 'sleep', requested: { s: 0.1 } });
  });

  it('holds a malformed call for the default sleep, then answers 400 naming the problem', async () => {
    const { port, lines } = await startSidecar({ DRAIN_DEFAULT_SLEEP_SECONDS: '0.4' });
    const answer = await get(port, '/sleep?s=2o');
    expect(answer.status).toBe(400);
    expect(answer.ms).toBeGreaterThanOrEqual(390);
    expect(answer.json()).toMatchObject({
      error: 'bad_request',
      message: 's must be a decimal number of seconds such as s=20; got "2o"',
      heldSeconds: expect.any(Number),
    });
    expect(answer.json().hint).toContain('held for the default 0.4s');
    expect(lines.find((l) => l.msg === 'malformed hook call; holding the default')).toMatchObject({ level: 'error' });
    expect(await metric(port, 'drain_sidecar_hook_calls_total{endpoint="sleep",outcome="malformed"}')).toBe(1);
  });

  it.each(['/sleep/', '/SLEEP', '/%2fsleep', '/slep?s=20', '/Drain'])(
    'holds a hook path with a typo (%s) for the default sleep, then answers 404 naming the endpoint',
    async (path) => {
      const { port } = await startSidecar({ DRAIN_DEFAULT_SLEEP_SECONDS: '0.4' });
      const answer = await get(port, path);
      expect(answer.status).toBe(404);
      expect(answer.ms).toBeGreaterThanOrEqual(390);
      const endpoint = path.toLowerCase().includes('drain') ? 'drain' : 'sleep';
      expect(answer.json()).toMatchObject({
        error: 'bad_request',
        endpoint,
        message: expect.stringContaining(`the hook endpoint is /${endpoint}`),
      });
      expect(answer.json().hint).toContain('held for the default 0.4s');
      expect(await metric(port, `drain_sidecar_hook_calls_total{endpoint="${endpoint}",outcome="malformed"}`)).toBe(1);
    },
  );

  it('clamps a sleep above the maximum, logs and counts it', async () => {
    const { port, lines } = await startSidecar({ DRAIN_DEFAULT_SLEEP_SECONDS: '0.1', DRAIN_MAX_SLEEP_SECONDS: '0.3' });
    const answer = await get(port, '/sleep?s=600');
    expect(answer.status).toBe(200);
    expect(answer.ms).toBeLessThan(1500);
    expect(answer.json()).toMatchObject({ requested: { s: 600 }, clamped: true });
    expect(lines.find((l) => l.msg === 'hook wait clamped')).toMatchObject({ level: 'warn', requested: { s: 600 } });
    expect(await metric(port, 'drain_sidecar_hook_calls_total{endpoint="sleep",outcome="clamped"}')).toBe(1);
  });

  it('past DRAIN_MAX_HOOKS holds a call as long as a malformed one, without a slot, then answers 429 and counts it', async () => {
    const { port } = await startSidecar({ DRAIN_MAX_HOOKS: '2', DRAIN_DEFAULT_SLEEP_SECONDS: '0.6' });
    const held = [get(port, '/sleep?s=1'), get(port, '/sleep?s=1')];
    await vi.waitFor(async () => expect((await get(port, '/status')).json().hooksInProgress).toBe(2), { timeout: 2000 });
    const refused = await get(port, '/sleep?s=1');
    expect(refused.status).toBe(429);
    expect(refused.ms).toBeGreaterThanOrEqual(590);
    expect(refused.json()).toMatchObject({ error: 'too_many_hooks', hint: expect.stringContaining('held 0.6s first') });
    expect(refused.json().hint).toContain('DRAIN_MAX_HOOKS');
    expect((await Promise.all(held)).map((a) => a.status)).toEqual([200, 200]);
    expect(await metric(port, 'drain_sidecar_hook_calls_total{endpoint="sleep",outcome="rejected_busy"}')).toBe(1);
  });

  it('with a token, answers 401 at once without it and changes no drain state', async () => {
    const { port, lines } = await startSidecar({ DRAIN_HOOK_TOKEN: 'hunter2' });
    const attempts: Record<string, string>[] = [{}, { Authorization: 'Bearer wrong' }, { Authorization: 'hunter2' }];
    for (const headers of attempts) {
      const answer = await get(port, '/sleep?s=1', headers);
      expect(answer.status).toBe(401);
      expect(answer.ms).toBeLessThan(500);
      expect(answer.headers['www-authenticate']).toBe('Bearer');
      expect(answer.json()).toMatchObject({ error: 'unauthorized', hint: expect.stringContaining('httpHeaders') });
    }
    const status = (await get(port, '/status')).json();
    expect(status).toMatchObject({ state: 'serving', episode: null, lastEpisode: null });
    expect(await metric(port, 'drain_sidecar_hook_calls_total{endpoint="sleep",outcome="unauthorized"}')).toBe(3);
    expect((await get(port, '/sleep?s=0.1', { Authorization: 'Bearer hunter2' })).status).toBe(200);
    expect(JSON.stringify(lines)).not.toContain('hunter2');
    expect(JSON.stringify(status)).not.toContain('hunter2');
  });

  it('stops holding when the caller goes away, and counts it', async () => {
    const { port } = await startSidecar();
    const caller = new AbortController();
    const call = get(port, '/sleep?s=5', {}, caller.signal).catch((err: Error) => err);
    await vi.waitFor(async () => expect((await get(port, '/status')).json().hooksInProgress).toBe(1), { timeout: 2000 });
    caller.abort();
    await call;
    await vi.waitFor(
      async () => {
        expect(await metric(port, 'drain_sidecar_hook_calls_total{endpoint="sleep",outcome="caller_gone"}')).toBe(1);
      },
      { timeout: 2000 },
    );
    expect((await get(port, '/status')).json()).toMatchObject({ hooksInProgress: 0, lastEpisode: { reason: 'caller_gone' } });
  });
});

describe('probes, status and errors', () => {
  it('reports liveness, and readiness until SIGTERM', async () => {
    const { port, sigterm } = await startSidecar({ DRAIN_SHUTDOWN_HOLD_SECONDS: '5' });
    expect((await get(port, '/healthz')).status).toBe(200);
    expect((await get(port, '/readyz')).json()).toEqual({ status: 'ready' });
    sigterm();
    const ready = await get(port, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.json()).toEqual({ status: 'terminating' });
    expect((await get(port, '/healthz')).status).toBe(200);
  });

  it('shows the open episode and the effective configuration in /status', async () => {
    const { port } = await startSidecar({ DRAIN_APP_PORTS: '8080' });
    const held = get(port, '/sleep?s=0.5');
    await vi.waitFor(async () => expect((await get(port, '/status')).json().hooksInProgress).toBe(1), { timeout: 2000 });
    const status = (await get(port, '/status')).json();
    expect(status).toMatchObject({
      state: 'draining',
      episode: { episode: 1, trigger: 'hook', budgetRemainingSeconds: expect.any(Number) },
      config: { appPorts: [8080], gracePeriodSeconds: 30, hookToken: '(unset)' },
    });
    await held;
    expect((await get(port, '/status')).json()).toMatchObject({ state: 'serving', episode: null, lastEpisode: { episode: 1 } });
  });

  it('answers unknown paths 404 and wrong methods 405, with JSON bodies, and counts them', async () => {
    const { port } = await startSidecar();
    const missing = await get(port, '/nowhere');
    expect(missing.status).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found', hint: expect.stringContaining('/sleep') });
    const post = await get(port, '/sleep?s=1', {}, undefined, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect(post.json()).toMatchObject({ error: 'method_not_allowed' });
    expect(await metric(port, 'drain_sidecar_invalid_requests_total{reason="not_found"}')).toBe(1);
    expect(await metric(port, 'drain_sidecar_invalid_requests_total{reason="method_not_allowed"}')).toBe(1);
  });

  it('serves /metrics that promtool accepts, and OpenMetrics on request', async () => {
    const { port } = await startSidecar({ DRAIN_APP_PORTS: '8080,8443' });
    await get(port, '/sleep?s=0.1');
    const text = await get(port, '/metrics');
    expect(text.headers['content-type']).toContain('text/plain');
    expect(text.body).toContain('drain_sidecar_drains_total{reason="elapsed"} 1');
    expect(text.body).toContain('drain_sidecar_drain_duration_seconds_count 1');
    expect(text.body).toContain('drain_sidecar_late_connections_total{port="8443"} 0');
    expect(text.body).toContain('drain_sidecar_app_listening{port="8080"}');
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text.body, encoding: 'utf8', timeout: 10_000 });
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(check.status).toBe(0);
    const om = await get(port, '/metrics', { Accept: 'application/openmetrics-text;version=1.0.0,text/plain;q=0.5' });
    expect(om.headers['content-type']).toContain('application/openmetrics-text');
    expect(om.body.endsWith('# EOF\n')).toBe(true);
  });
});
