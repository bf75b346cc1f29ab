// The single executable as a child process: signals, exit codes and the log lines that outlive the pod.
import { describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };
import { get } from '../http.js';
import { run, startSidecarProcess, within } from '../process.js';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the sidecar process', () => {
  it('finishes a sleep in progress after SIGTERM with 200, logs drain finished, then exits 0', async () => {
    const sidecar = await startSidecarProcess({ DRAIN_SHUTDOWN_HOLD_SECONDS: '0.2' });
    const hook = get(sidecar.port, '/sleep?s=1');
    await pause(200);
    sidecar.child.kill('SIGTERM');
    const answer = await within(5000, 'the sleep to be answered', hook);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ reason: 'elapsed', requested: { s: 1 } });
    expect(await within(5000, 'the exit', sidecar.exited)).toEqual({ code: 0, signal: null });
    expect(sidecar.lines.filter((l) => l.msg === 'drain finished')).toEqual([
      expect.objectContaining({ episode: 1, trigger: 'hook', reason: 'elapsed', hookCalls: { ok: 1 } }),
    ]);
  });

  it('serves a hook call that arrives just after SIGTERM, as the regular-sidecar race has it', async () => {
    const sidecar = await startSidecarProcess({ DRAIN_SHUTDOWN_HOLD_SECONDS: '1' });
    sidecar.child.kill('SIGTERM');
    await pause(300);
    const answer = await within(5000, 'the late hook call', get(sidecar.port, '/sleep?s=0.5'));
    expect(answer.status).toBe(200);
    expect(await within(5000, 'the exit', sidecar.exited)).toEqual({ code: 0, signal: null });
    expect(sidecar.lines.find((l) => l.msg === 'drain finished')).toMatchObject({ trigger: 'sigterm', reason: 'elapsed' });
  });

  it('ignores a second SIGTERM while a hook is held', async () => {
    const sidecar = await startSidecarProcess({ DRAIN_SHUTDOWN_HOLD_SECONDS: '0' });
    const hook = get(sidecar.port, '/sleep?s=1');
    await pause(200);
    sidecar.child.kill('SIGTERM');
    await pause(100);
    sidecar.child.kill('SIGTERM');
    expect((await within(5000, 'the sleep', hook)).status).toBe(200);
    expect(await within(5000, 'the exit', sidecar.exited)).toEqual({ code: 0, signal: null });
    expect(sidecar.lines.some((l) => l.msg === 'second sigterm ignored; still draining')).toBe(true);
  });

  it('once scraped, waits for the final scrape after the drain and exits only after answering it', async () => {
    const sidecar = await startSidecarProcess({ DRAIN_SHUTDOWN_HOLD_SECONDS: '0', DRAIN_FINAL_SCRAPE_SECONDS: '10' });
    await get(sidecar.port, '/metrics');
    await get(sidecar.port, '/sleep?s=0.2');
    sidecar.child.kill('SIGTERM');
    await pause(500);
    expect(sidecar.child.exitCode).toBe(null);
    const scrape = await within(5000, 'the final scrape', get(sidecar.port, '/metrics'));
    expect(scrape.body).toContain('drain_sidecar_drains_total{reason="elapsed"} 1');
    expect(scrape.body).toContain('drain_sidecar_drain_duration_seconds_count 1');
    expect(scrape.body).toContain('drain_sidecar_terminating 1');
    expect(await within(2000, 'the exit after the final scrape', sidecar.exited)).toEqual({ code: 0, signal: null });
  });

  it('does not take a HEAD /metrics, which carries no figures, for the final scrape', async () => {
    const sidecar = await startSidecarProcess({ DRAIN_SHUTDOWN_HOLD_SECONDS: '0', DRAIN_FINAL_SCRAPE_SECONDS: '10' });
    await get(sidecar.port, '/metrics');
    sidecar.child.kill('SIGTERM');
    await pause(300);
    expect((await get(sidecar.port, '/metrics', {}, undefined, 'HEAD')).status).toBe(200);
    await pause(500);
    expect(sidecar.child.exitCode).toBe(null);
    await get(sidecar.port, '/metrics');
    expect(await within(2000, 'the exit after the final scrape', sidecar.exited)).toEqual({ code: 0, signal: null });
  });

  it('exits promptly on SIGINT', async () => {
    const sidecar = await startSidecarProcess();
    void get(sidecar.port, '/sleep?s=20').catch(() => undefined);
    await pause(200);
    sidecar.child.kill('SIGINT');
    expect(await within(2000, 'the exit', sidecar.exited)).toEqual({ code: 0, signal: null });
  });

  it('refuses bad configuration with every error and exit code 2', async () => {
    const proc = run([], { DRAIN_PORT: 'http', DRAIN_MAX_HOOKS: '0' });
    expect(await within(5000, 'the exit', proc.exited)).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toContain('--port (DRAIN_PORT) must be a whole number');
    expect(proc.stderr()).toContain('--max-hooks (DRAIN_MAX_HOOKS) must be a whole number');
  });

  it('reports its version and the Node.js 24 inside it', async () => {
    const proc = run(['--version']);
    expect(await within(5000, 'the exit', proc.exited)).toEqual({ code: 0, signal: null });
    expect(proc.stdout()).toBe(`drain-sidecar ${pkg.version} (node v${pkg.sea.nodeVersion})\n`);
    expect(proc.stderr()).toBe('');
  });

  it('exits 1 when its port is taken', async () => {
    const first = await startSidecarProcess();
    const second = run([], { DRAIN_HOST: '127.0.0.1', DRAIN_PORT: String(first.port) });
    expect(await within(5000, 'the exit', second.exited)).toEqual({ code: 1, signal: null });
    expect(second.stdout()).toContain('cannot listen');
    first.child.kill('SIGINT');
    await first.exited;
  });
});
