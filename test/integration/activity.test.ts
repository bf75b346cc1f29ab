// Requests on pooled keep-alive connections, seen passively through sock_diag: an HTTP app on loopback, a client pool
// that opens its connections before the drain and only reuses them, and the sidecar in-process with the built addon.
import { Agent, createServer, request, type Server } from 'node:http';
import { createServer as createTcpServer, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, listenLocal, onCleanup } from '../cleanup.js';
import { get, metric } from '../http.js';
import { startSidecar } from '../inprocess.js';
import { within } from '../process.js';

afterEach(cleanup);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An HTTP app on a free loopback port that keeps connections alive and counts the ones it accepted. */
async function startApp(handler?: () => Promise<void>): Promise<{ port: number; accepted: () => number; server: Server }> {
  let accepted = 0;
  const server = createServer(async (_req, res) => {
    await handler?.();
    res.end('ok');
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', () => accepted++);
  return { port: await listenLocal(server), accepted: () => accepted, server };
}

/** A keep-alive pool of `size` connections to the app, opened now. */
async function pool(port: number, size: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: size });
  onCleanup(() => agent.destroy());
  const send = () =>
    new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', agent, timeout: 5000 }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('timeout', () => req.destroy(new Error('app request timed out')));
      req.on('error', reject);
      req.end();
    });
  await Promise.all(Array.from({ length: size }, send));
  return { send };
}

/** Scrapes /metrics once a second over one keep-alive connection, as Prometheus does. */
function scrapeEverySecond(sidecarPort: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const timer = setInterval(() => {
    request({ host: '127.0.0.1', port: sidecarPort, path: '/metrics', agent }, (res) => res.resume())
      .on('error', () => undefined)
      .end();
  }, 1000);
  onCleanup(() => {
    clearInterval(timer);
    agent.destroy();
  });
}

const POLL = { DRAIN_POLL_SECONDS: '0.2' };

describe('activity on pooled keep-alive connections (sock_diag)', () => {
  it('sees requests on connections opened before the drain, times the last one, and returns idle quiet seconds after it', async () => {
    const app = await startApp();
    const { port, lines } = await startSidecar({ ...POLL, DRAIN_APP_PORTS: String(app.port) });
    const { send } = await pool(app.port, 4);
    expect(app.accepted()).toBe(4);

    const hookSentAt = performance.now();
    const hook = get(port, '/drain?min=0.5&max=10&quiet=1');
    await sleep(100); // the hook call is in before the load balancer's next request
    let sent = 0;
    let lastSentAt = 0;
    while (performance.now() - hookSentAt < 2000) {
      lastSentAt = performance.now();
      await send();
      sent++;
      await sleep(40);
    }
    const answer = await within(12_000, 'the /drain answer', hook);
    const answeredAt = performance.now();

    expect(app.accepted()).toBe(4); // every request went over the pool: no new connection
    expect(answer.json()).toMatchObject({
      reason: 'idle',
      tracking: true,
      lateArrivals: 0,
      connectionsAtEnd: 4,
      lateRequestsEstimate: sent,
    });
    const lastArrival = answer.json().lastArrivalSeconds as number;
    expect(Math.abs(hookSentAt / 1000 + lastArrival - lastSentAt / 1000)).toBeLessThan(0.5);
    // Idle no sooner than quiet after the last request, and within half a second past that.
    expect(answeredAt - lastSentAt).toBeGreaterThanOrEqual(1000);
    expect(answeredAt - lastSentAt).toBeLessThan(1500);
    expect(await metric(port, `drain_sidecar_late_requests_estimate_total{port="${app.port}"}`)).toBe(sent);
    expect(await metric(port, 'drain_sidecar_last_arrival_seconds_count')).toBe(1);
    expect(await metric(port, 'drain_sidecar_activity_tracking')).toBe(1);
    expect(lines.find((l) => l.msg === 'drain finished')).toMatchObject({
      reason: 'idle',
      traffic: { lateArrivals: 0, lateRequestsEstimate: sent, connectionsAtEnd: 4 },
    });
  });

  it('keeps /drain waiting while requests still arrive on pooled connections, until its max', async () => {
    const app = await startApp();
    const { port } = await startSidecar({ ...POLL, DRAIN_APP_PORTS: String(app.port) });
    const { send } = await pool(app.port, 2);
    const hook = get(port, '/drain?min=0.2&max=2&quiet=0.6');
    let done = false;
    void hook.finally(() => {
      done = true;
    });
    while (!done) {
      await send();
      await sleep(100);
    }
    const answer = await hook;
    expect(answer.json()).toMatchObject({ reason: 'deadline', lateArrivals: 0 });
    expect(answer.json().lateRequestsEstimate).toBeGreaterThan(10);
    expect(answer.ms).toBeGreaterThanOrEqual(1990);
  });

  it('does not count scrapes of the sidecar or the hook connection as app traffic', async () => {
    const app = await startApp();
    const { port } = await startSidecar({ ...POLL, DRAIN_APP_PORTS: String(app.port) });
    await pool(app.port, 3); // open and idle for the whole drain
    scrapeEverySecond(port);
    await sleep(1100);

    const answer = await within(8000, 'the /drain answer', get(port, '/drain?min=0.5&max=6&quiet=2.5'));
    expect(answer.json()).toMatchObject({
      reason: 'idle',
      connectionsAtEnd: 3,
      lateArrivals: 0,
      lateRequestsEstimate: 0,
      lastArrivalSeconds: null,
    });
    // quiet counts from the hook's start: nothing else arrived, so idle comes at quiet, not at max.
    expect(answer.ms).toBeGreaterThanOrEqual(2500);
    expect(answer.ms).toBeLessThan(3200);
    expect(await metric(port, `drain_sidecar_late_requests_estimate_total{port="${app.port}"}`)).toBe(0);
  });

  it("does not count the app's own outbound calls (to a stand-in database) as traffic to the app", async () => {
    // The database: answers each line it receives.
    const db = createTcpServer((s) => s.on('data', (d) => s.write(d)).on('error', () => undefined));
    await new Promise<void>((r) => db.listen(0, '127.0.0.1', r));
    onCleanup(() => db.close());
    const dbPort = (db.address() as { port: number }).port;
    const app = await startApp();
    const { port } = await startSidecar({ ...POLL, DRAIN_APP_PORTS: String(app.port) });
    await pool(app.port, 2);

    // The app's background job: one query every 100 ms on its pooled database connection, while no request arrives.
    const conn = new Socket();
    await new Promise<void>((r) => conn.connect(dbPort, '127.0.0.1', r));
    let answers = 0;
    conn.on('data', () => answers++);
    const job = setInterval(() => conn.write('SELECT 1\n'), 100);
    onCleanup(() => {
      clearInterval(job);
      conn.destroy();
    });

    const answer = await within(8000, 'the /drain answer', get(port, '/drain?min=0.3&max=5&quiet=1'));
    expect(answers).toBeGreaterThan(5);
    expect(answer.json()).toMatchObject({ reason: 'idle', lateRequestsEstimate: 0, lastArrivalSeconds: null });
    expect(answer.ms).toBeLessThan(1700);
  });

  it('waits for a request still being answered on a pooled connection', async () => {
    let release: () => void = () => undefined;
    const app = await startApp(() => new Promise<void>((r) => (release = r)));
    const { port } = await startSidecar({ ...POLL, DRAIN_APP_PORTS: String(app.port) });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onCleanup(() => agent.destroy());
    const slow = new Promise<void>((resolve) =>
      request({ host: '127.0.0.1', port: app.port, path: '/', agent }, (res) => res.resume().on('end', resolve)).end(),
    );
    await sleep(200);
    const hook = get(port, '/drain?min=0.2&max=6&quiet=0.5');
    await sleep(1500);
    const releasedAt = performance.now();
    release();
    await slow;
    const answer = await within(8000, 'the /drain answer', hook);
    // Quiet had long passed (the request arrived before the drain): only the request in flight held the hook.
    expect(answer.json()).toMatchObject({ reason: 'idle', lateRequestsEstimate: 0 });
    expect(answer.ms).toBeGreaterThanOrEqual(1500);
    expect(performance.now() - releasedAt).toBeLessThan(1000);
  });
});
