// Observer mode: the sidecar's own preStop hook (/observe) beside an app that something else holds (a native
// preStop.sleep, an exec sleep, the app's own drain). An HTTP app on loopback, a client pool that keeps sending during
// the termination, and the sidecar in-process with the built addon.
import { Agent, createServer, request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, listenLocal, onCleanup } from '../cleanup.js';
import { get, metric } from '../http.js';
import { startSidecar } from '../inprocess.js';

afterEach(cleanup);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('GET /observe', () => {
  it('is held until the app stops listening, then answers with appStoppedSeconds and the traffic figures', async () => {
    const app = createServer((_req, res) => res.end('ok'));
    app.keepAliveTimeout = 60_000;
    const appPort = await listenLocal(app);
    const { port, lines } = await startSidecar({ DRAIN_APP_PORTS: String(appPort), DRAIN_POLL_SECONDS: '0.1' });
    const agent = new Agent({ keepAlive: true, maxSockets: 2 });
    onCleanup(() => agent.destroy());
    const send = () =>
      new Promise<void>((resolve) => {
        request({ host: '127.0.0.1', port: appPort, agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        })
          .on('error', () => resolve())
          .end();
      });
    await send();
    const observed = get(port, '/observe', { 'User-Agent': 'kube-lifecycle/1.34' });
    // The app keeps serving what arrives for a while (its own hook holds it), then stops listening and exits.
    for (let i = 0; i < 5; i++) {
      await sleep(100);
      await send();
    }
    await sleep(300);
    app.close();
    app.closeAllConnections();
    const answer = await observed;
    expect(answer.status).toBe(200);
    const body = answer.json();
    expect(body).toMatchObject({ endpoint: 'observe', reason: 'app_stopped', watching: true });
    expect(body.appStoppedSeconds).toBeGreaterThanOrEqual(0.7);
    expect(body.appStoppedSeconds).toBeLessThan(1.5);
    expect(body.lateRequestsEstimate).toBeGreaterThanOrEqual(5);
    expect(body.lastArrivalSeconds).toBeGreaterThan(0.3);
    const finished = lines.find((l) => l.msg === 'drain finished');
    expect(finished).toMatchObject({ trigger: 'observe', reason: 'app_stopped', level: 'info' });
    expect(finished?.appStoppedSeconds).toBe(body.appStoppedSeconds);
    // What the recommended-seconds rule compares against: how long the pod really kept serving.
    expect(await metric(port, 'drain_sidecar_hook_wait_seconds')).toBe(body.appStoppedSeconds);
    expect(await metric(port, 'drain_sidecar_drains_total{reason="app_stopped"}')).toBe(1);
    expect(await metric(port, 'drain_sidecar_drains_total{reason="no_hook"}')).toBe(0);
  });

  it('answers at once, saying it sees nothing, without app ports', async () => {
    const { port } = await startSidecar();
    const answer = await get(port, '/observe');
    expect(answer.status).toBe(200);
    expect(answer.ms).toBeLessThan(500);
    expect(answer.json()).toMatchObject({
      endpoint: 'observe',
      watching: false,
      hint: expect.stringContaining('DRAIN_APP_PORTS'),
    });
  });

  it('follows the hook rules: the token, and the bound of hooks', async () => {
    const { port } = await startSidecar({ DRAIN_HOOK_TOKEN: 'tok' });
    expect((await get(port, '/observe')).status).toBe(401);
  });
});
