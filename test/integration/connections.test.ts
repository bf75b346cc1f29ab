// Passive watch of an app on real loopback sockets: the kernel's tables, read by the sidecar as in a pod.
import { createServer, type Server, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup, listenLocal, onCleanup } from '../cleanup.js';
import { get, metric } from '../http.js';
import { startSidecar } from '../inprocess.js';
import { startSidecarProcess, within } from '../process.js';

afterEach(cleanup);

/** A TCP "app" on a free loopback port that keeps every connection open until the client closes it. */
async function startApp(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.on('error', () => undefined));
  return { server, port: await listenLocal(server) };
}

async function connect(port: number, n: number, localAddress = '127.0.0.1'): Promise<Socket[]> {
  const sockets = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const s = new Socket();
          s.once('error', reject);
          s.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
        }),
    ),
  );
  onCleanup(() => {
    for (const s of sockets) s.destroy();
  });
  return sockets;
}

const FAST = { DRAIN_POLL_SECONDS: '0.05' };

describe('passive connection tracking', () => {
  it('reads the established connections to the app port at scrape time', async () => {
    const app = await startApp();
    const { port } = await startSidecar({ ...FAST, DRAIN_APP_PORTS: String(app.port) });
    const series = `drain_sidecar_app_connections{port="${app.port}"}`;
    expect(await metric(port, series)).toBe(0);
    expect(await metric(port, `drain_sidecar_app_listening{port="${app.port}"}`)).toBe(1);
    const clients = await connect(app.port, 4);
    await vi.waitFor(async () => expect(await metric(port, series)).toBe(4), { timeout: 2000 });
    for (const c of clients) c.destroy();
    await vi.waitFor(async () => expect(await metric(port, series)).toBe(0), { timeout: 2000 });
    expect(await metric(port, 'drain_sidecar_connection_tracking')).toBe(1);
  });

  it("counts at scrape time, in the addon, what /status's full read shows; the kubelet's and its own connections apart", async () => {
    const app = await startApp();
    // No start-up watch: its polls would answer the scrapes, and this is about the scrape's own read.
    const { port } = await startSidecar({ DRAIN_APP_PORTS: String(app.port), DRAIN_STARTUP_WINDOW_SECONDS: '0' });
    expect((await get(port, '/healthz', { 'User-Agent': 'kube-probe/1.34' })).status).toBe(200);
    await connect(app.port, 30, '127.0.0.3');
    await connect(app.port, 3, '127.0.0.1'); // the kubelet: the address its probe of the sidecar came from
    await connect(app.port, 2, '127.0.0.87'); // the sidecar's own readiness checks
    await new Promise((r) => setTimeout(r, 300));
    expect(await metric(port, `drain_sidecar_app_connections{port="${app.port}"}`)).toBe(30);
    expect(await metric(port, `drain_sidecar_app_listening{port="${app.port}"}`)).toBe(1);
    const status = (await get(port, '/status')).json().app as { ports: { established: number; probes: number }[] };
    expect(status.ports[0]).toMatchObject({ established: 30, probes: 3 });
  });

  it('shows the tracked ports in /status', async () => {
    const app = await startApp();
    const { port } = await startSidecar({ ...FAST, DRAIN_APP_PORTS: String(app.port) });
    await connect(app.port, 2);
    await vi.waitFor(
      async () => {
        expect((await get(port, '/status')).json().app).toEqual({
          signal: 'sock_diag',
          ports: [expect.objectContaining({ port: app.port, established: 2, listening: true, inFlight: 0 })],
        });
      },
      { timeout: 2000 },
    );
  });

  it('counts connections opened during a drain as late arrivals, and /drain returns idle once they close', async () => {
    const app = await startApp();
    const { port, lines } = await startSidecar({ ...FAST, DRAIN_APP_PORTS: String(app.port) });
    const before = await connect(app.port, 2);
    await vi.waitFor(async () => expect(await metric(port, `drain_sidecar_app_connections{port="${app.port}"}`)).toBe(2), {
      timeout: 2000,
    });
    // Quiet outlasts the 300 ms the late connections stay open, so they are closed when /drain returns.
    const hook = get(port, '/drain?min=0.2&max=8&quiet=1');
    await new Promise((r) => setTimeout(r, 300));
    const late = await connect(app.port, 3);
    await new Promise((r) => setTimeout(r, 300));
    const closedAt = performance.now();
    for (const c of [...before, ...late]) c.destroy();
    const answer = await within(9000, 'the /drain answer', hook);
    expect(answer.status).toBe(200);
    expect(performance.now() - closedAt).toBeLessThan(2000);
    expect(answer.json()).toMatchObject({
      endpoint: 'drain',
      reason: 'idle',
      tracking: true,
      connectionsAtStart: 2,
      connectionsAtEnd: 0,
      lateArrivals: 3,
      lastArrivalSeconds: expect.any(Number),
    });
    expect(await metric(port, `drain_sidecar_late_connections_total{port="${app.port}"}`)).toBe(3);
    expect(await metric(port, 'drain_sidecar_last_arrival_seconds_count')).toBe(1);
    expect(lines.find((l) => l.msg === 'drain finished')).toMatchObject({
      reason: 'idle',
      traffic: { connectionsAtStart: 2, connectionsAtEnd: 0, lateArrivals: 3 },
    });
  });

  it('without the sock_diag addon, falls back to /proc/net and says so', async () => {
    const app = await startApp();
    const { port } = await startSidecar({ ...FAST, DRAIN_APP_PORTS: String(app.port) }, { sockDiag: false });
    await connect(app.port, 2);
    await vi.waitFor(
      async () => {
        expect((await get(port, '/status')).json().app).toEqual({
          signal: 'proc_net',
          ports: [expect.objectContaining({ port: app.port, established: 2, listening: true })],
        });
      },
      { timeout: 2000 },
    );
    expect(await metric(port, 'drain_sidecar_connection_tracking')).toBe(1);
    expect(await metric(port, 'drain_sidecar_activity_tracking')).toBe(0);
  });

  it('without the sock_diag addon, returns deadline from /drain while a connection stays open', async () => {
    const app = await startApp();
    const { port } = await startSidecar({ ...FAST, DRAIN_APP_PORTS: String(app.port) }, { sockDiag: false });
    await connect(app.port, 1);
    const answer = await within(5000, 'the /drain answer', get(port, '/drain?min=0.1&max=1&quiet=0.2'));
    expect(answer.json()).toMatchObject({ reason: 'deadline', connectionsAtEnd: 1, lateArrivals: 0, lastArrivalSeconds: null });
    expect(answer.ms).toBeGreaterThanOrEqual(990);
    expect(await metric(port, 'drain_sidecar_drain_end_connections_total')).toBe(1);
  });

  it('makes /drain a sleep of its min when no app port is configured', async () => {
    const { port } = await startSidecar(FAST);
    const answer = await get(port, '/drain?min=0.3&max=5');
    expect(answer.json()).toMatchObject({ reason: 'elapsed', tracking: false, minSeconds: 0.3 });
    expect(answer.ms).toBeGreaterThanOrEqual(290);
    expect(answer.ms).toBeLessThan(2000);
  });

  it('after SIGTERM, exits only once the app has closed its listener', async () => {
    const app = await startApp();
    const sidecar = await startSidecarProcess({ ...FAST, DRAIN_APP_PORTS: String(app.port), DRAIN_SHUTDOWN_HOLD_SECONDS: '0' });
    sidecar.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 800));
    expect(sidecar.child.exitCode).toBe(null);
    app.server.close();
    expect(await within(3000, 'the exit after the app closed', sidecar.exited)).toEqual({ code: 0, signal: null });
  });
});
