// The kubelet's probes are not traffic: a "kubelet" on 127.0.0.2 probes the app and the sidecar as the kubelet does (a
// new connection per probe, User-Agent kube-probe), a "load balancer" on 127.0.0.3 sends the traffic. Real sockets, the
// sidecar in-process with the built sock_diag addon (and without it, on /proc/net).
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, listenLocal, onCleanup } from '../cleanup.js';
import { get, metric } from '../http.js';
import { startSidecar } from '../inprocess.js';
import { within } from '../process.js';

afterEach(cleanup);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KUBELET = '127.0.0.2';
const BALANCER = '127.0.0.3';
const PROBE_UA = 'kube-probe/1.34';

/** One GET from a given loopback address; resolves with the status (0 on a transport error). */
function getFrom(localAddress: string, port: number, path: string, agent: Agent | false, headers = {}): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, localAddress, agent, headers, timeout: 3000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

/**
 * An HTTP app on a free port: on 127.0.0.1, or dual-stack on `::` as most apps listen, where the kernel reports an
 * IPv4 peer as IPv4-mapped IPv6 (the sidecar must still recognise the kubelet's address).
 */
async function startApp(host: '127.0.0.1' | '::' = '127.0.0.1'): Promise<number> {
  const server = createServer((_req, res) => res.end('ok'));
  server.keepAliveTimeout = 60_000;
  if (host === '127.0.0.1') return listenLocal(server);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  onCleanup(() => {
    server.close();
    server.closeAllConnections();
  });
  return (server.address() as AddressInfo).port;
}

/**
 * The kubelet's probes every periodMs, as pkg/probe/http makes them: a new connection each (keep-alives disabled, so
 * `Connection: close`), User-Agent kube-probe; of the app's port and, when sidecarPort is given, of the sidecar's.
 */
function probeEvery(periodMs: number, appPort: number, sidecarPort?: number) {
  let probes = 0;
  const headers = { 'User-Agent': PROBE_UA, Connection: 'close' };
  const probe = () => {
    probes++;
    void getFrom(KUBELET, appPort, '/healthz', false, headers);
    if (sidecarPort) void getFrom(KUBELET, sidecarPort, '/readyz', false, headers);
  };
  probe();
  const timer = setInterval(probe, periodMs);
  onCleanup(() => clearInterval(timer));
  return { count: () => probes };
}

/** A load balancer's pool of keep-alive connections to the app from its own address, opened now. */
async function balancer(appPort: number, size: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: size, localAddress: BALANCER });
  onCleanup(() => agent.destroy());
  const send = async () => expect(await getFrom(BALANCER, appPort, '/', agent)).toBe(200);
  await Promise.all(Array.from({ length: size }, send));
  return { send };
}

/** Sends a request every 50 ms for ms; resolves with how many were sent and when the last one was. */
async function trafficFor(ms: number, send: () => Promise<void>) {
  const start = performance.now();
  let sent = 0;
  let lastSentAt = 0;
  while (performance.now() - start < ms) {
    lastSentAt = performance.now();
    await send();
    sent++;
    await sleep(50);
  }
  return { sent, lastSentAt };
}

describe('probes are not traffic', () => {
  it('returns /drain idle once the traffic stops although the kubelet keeps probing the app, and counts the traffic alone', async () => {
    const appPort = await startApp('::');
    const { port, lines } = await startSidecar({ DRAIN_POLL_SECONDS: '0.1', DRAIN_APP_PORTS: String(appPort) });
    const probes = probeEvery(500, appPort, port);
    const { send } = await balancer(appPort, 2);
    await sleep(600); // the sidecar has heard from the kubelet

    const hook = get(port, '/drain?min=0.5&max=8&quiet=1');
    await sleep(100);
    const { sent, lastSentAt } = await trafficFor(1500, send);
    const answer = await within(10_000, 'the /drain answer', hook);
    const answeredAt = performance.now();

    expect(answer.json()).toMatchObject({ reason: 'idle', lateArrivals: 0, lateRequestsEstimate: sent });
    // The probes went on through the quiet second and after it, and were counted apart.
    expect(probes.count()).toBeGreaterThanOrEqual(5);
    expect(answer.json().probeConnections).toBeGreaterThanOrEqual(3);
    expect(answeredAt - lastSentAt).toBeGreaterThanOrEqual(1000);
    expect(answeredAt - lastSentAt).toBeLessThan(1600);
    expect(await metric(port, `drain_sidecar_late_requests_estimate_total{port="${appPort}"}`)).toBe(sent);
    expect(await metric(port, `drain_sidecar_late_connections_total{port="${appPort}"}`)).toBe(0);
    const status = (await get(port, '/status')).json();
    expect(status.probes).toMatchObject({ kubeletAddresses: [KUBELET] });
    expect(lines.find((l) => l.msg === 'drain finished')).toMatchObject({
      traffic: { lateArrivals: 0, lateRequestsEstimate: sent },
    });
  });

  it('takes the probes for traffic when the kubelet has not probed the sidecar: /drain then runs to its max', async () => {
    const appPort = await startApp();
    const { port } = await startSidecar({ DRAIN_POLL_SECONDS: '0.1', DRAIN_APP_PORTS: String(appPort) });
    probeEvery(500, appPort);
    await sleep(600);
    const answer = await within(6000, 'the /drain answer', get(port, '/drain?min=0.5&max=2.5&quiet=1'));
    expect(answer.json()).toMatchObject({ reason: 'deadline' });
    expect(answer.json().lateArrivals).toBeGreaterThanOrEqual(3);
    expect(answer.json().probeConnections).toBe(0);
  });

  it('on the /proc/net fallback, also excludes the probes by their address', async () => {
    const appPort = await startApp();
    const { port } = await startSidecar({ DRAIN_POLL_SECONDS: '0.1', DRAIN_APP_PORTS: String(appPort) }, { sockDiag: false });
    probeEvery(300, appPort, port);
    await sleep(400);
    const answer = await within(8000, 'the /drain answer', get(port, '/drain?min=0.5&max=5&quiet=1'));
    // Without tcp_info, idle needs no connection established; the probes' come and go and are not counted.
    expect(answer.json()).toMatchObject({ reason: 'idle', lateArrivals: 0 });
    expect(answer.json().probeConnections).toBeGreaterThanOrEqual(2);
    expect(answer.ms).toBeLessThan(2000);
  });
});

describe('time to first traffic', () => {
  it('records when the app listened, became ready and got its first request, once; probes and its own checks are not traffic', async () => {
    const startedAt = performance.now();
    // The app listens at once and answers its readiness path 503 until it has warmed up, as many apps do.
    let readyAt = 0;
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/ready' && !readyAt ? 503 : 200;
      res.end('ok');
    });
    // The app's port is known before it listens: take a free one, then let it go.
    const placeholder = createServer();
    await new Promise<void>((resolve) => placeholder.listen(0, '127.0.0.1', resolve));
    const appPort = (placeholder.address() as AddressInfo).port;
    await new Promise<void>((resolve) => placeholder.close(() => resolve()));
    const { port, lines } = await startSidecar({
      DRAIN_POLL_SECONDS: '0.1',
      DRAIN_APP_PORTS: String(appPort),
      DRAIN_APP_READINESS: `http://:${appPort}/ready`,
      DRAIN_MIN_READY_SECONDS: '0.5',
    });
    const probes = probeEvery(400, appPort, port);
    await sleep(500);
    await new Promise<void>((resolve) => server.listen(appPort, '127.0.0.1', resolve));
    onCleanup(() => {
      server.close();
      server.closeAllConnections();
    });
    const listenedAt = performance.now();
    await sleep(700);
    readyAt = performance.now();
    await sleep(1000);
    expect((await get(port, '/status')).json().startup).toMatchObject({ state: 'watching', firstTrafficSeconds: null });
    // Prometheus has scraped the histogram at zero before the traffic.
    expect(await metric(port, 'drain_sidecar_first_traffic_delay_seconds_count')).toBe(0);
    const firstSentAt = performance.now();
    const { send } = await balancer(appPort, 1);
    await send();
    await sleep(300);

    const finished = lines.filter((l) => l.msg === 'startup finished');
    expect(finished).toHaveLength(1);
    const s = finished[0] as unknown as Record<string, number>;
    const since = (at: number) => (at - startedAt) / 1000;
    expect(s.reason).toBe('first_traffic');
    expect(Math.abs((s.appListeningSeconds as number) - since(listenedAt))).toBeLessThan(0.3);
    // The first check after the app turned ready, one poll later at most; never before.
    expect(s.appReadySeconds).toBeGreaterThanOrEqual(since(readyAt) - 0.15);
    expect(s.appReadySeconds).toBeLessThan(since(readyAt) + 0.35);
    expect(Math.abs((s.firstTrafficSeconds as number) - since(firstSentAt))).toBeLessThan(0.3);
    expect(s.delayFrom).toBe('app_ready');
    expect(s.firstTrafficDelaySeconds).toBeCloseTo((s.firstTrafficSeconds as number) - (s.appReadySeconds as number), 2);
    // Later after readiness than the workload's minReadySeconds: a warning that says so.
    expect(finished[0]).toMatchObject({ level: 'warn', minReadyTooShort: true, minReadySeconds: 0.5 });
    expect(probes.count()).toBeGreaterThanOrEqual(5);

    expect(await metric(port, 'drain_sidecar_first_traffic_delay_seconds_count')).toBe(1);
    expect(await metric(port, 'drain_sidecar_min_ready_seconds')).toBe(0.5);
    expect((await get(port, '/status')).json().startup).toMatchObject({ state: 'finished', reason: 'first_traffic' });
    // More traffic changes nothing: one figure per pod start.
    await send();
    await sleep(300);
    expect(lines.filter((l) => l.msg === 'startup finished')).toHaveLength(1);
    expect(await metric(port, 'drain_sidecar_first_traffic_delay_seconds_count')).toBe(1);
  });

  it('observes the histogram only after a scrape has seen it at zero, so that increase() counts the pod', async () => {
    const appPort = await startApp();
    const { port, lines } = await startSidecar({ DRAIN_POLL_SECONDS: '0.1', DRAIN_APP_PORTS: String(appPort) });
    const { send } = await balancer(appPort, 1);
    await send();
    await sleep(300);
    expect(lines.filter((l) => l.msg === 'startup finished')).toMatchObject([
      { reason: 'first_traffic', delayFrom: 'listening' },
    ]);
    expect(await metric(port, 'drain_sidecar_first_traffic_delay_seconds_count')).toBe(0);
    expect(await metric(port, 'drain_sidecar_first_traffic_delay_seconds_count')).toBe(1);
  });

  it('ends the watch when the window passes without traffic, and exports no min_ready_seconds unless given', async () => {
    const appPort = await startApp();
    const { port, lines } = await startSidecar({
      DRAIN_POLL_SECONDS: '0.1',
      DRAIN_APP_PORTS: String(appPort),
      DRAIN_STARTUP_WINDOW_SECONDS: '0.5',
    });
    probeEvery(200, appPort, port);
    await sleep(900);
    expect(lines.filter((l) => l.msg === 'startup finished')).toMatchObject([
      { reason: 'window', firstTrafficSeconds: null, firstTrafficDelaySeconds: null },
    ]);
    expect(await metric(port, 'drain_sidecar_first_traffic_delay_seconds_count')).toBe(0);
    expect(await metric(port, 'drain_sidecar_min_ready_seconds')).toBeUndefined();
  });
});
