// Proxy mode with real upstream servers and real sockets: streaming, upgrades, the drain's Connection: close, and exact
// counts of requests refused during termination.
import { createHash } from 'node:crypto';
import { Agent, createServer, type IncomingMessage, request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup, listenLocal, onCleanup } from '../cleanup.js';
import { get, metric, rawExchange, statusLines } from '../http.js';
import { startSidecar } from '../inprocess.js';
import { within } from '../process.js';

afterEach(cleanup);

async function startProxy(upstreamPort: number, env: Record<string, string> = {}) {
  const sidecar = await startSidecar({
    DRAIN_PROXY_LISTEN: '127.0.0.1:0',
    DRAIN_PROXY_UPSTREAM: `127.0.0.1:${upstreamPort}`,
    DRAIN_POLL_SECONDS: '0.05',
    ...env,
  });
  if (!sidecar.proxy) throw new Error('proxy mode did not start');
  const proxyPort = (sidecar.proxy.server.address() as { port: number }).port;
  return { ...sidecar, proxyPort };
}

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** One request through the proxy with an optional body (a Buffer, or chunks written one by one). */
function send(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | Buffer[]; agent?: Agent } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers, agent: opts.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    if (Array.isArray(opts.body)) for (const chunk of opts.body) req.write(chunk);
    else if (opts.body) req.write(opts.body);
    req.end();
  });
}

/** A promise and its resolver (Promise.withResolvers is not in Node 20). */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Deterministic bytes, so both ends can hash them without keeping them. */
const block = (i: number) => createHash('sha512').update(String(i)).digest();

describe('proxy mode', () => {
  it('streams large request and response bodies byte-exact, with Content-Length and chunked', async () => {
    const RESPONSE_BLOCKS = 64 * 1024; // 4 MiB
    const app = createServer((req, res) => {
      const hash = createHash('sha256');
      req.on('data', (c) => hash.update(c));
      req.on('end', () => {
        res.writeHead(200, { 'x-request-sha256': hash.digest('hex') });
        for (let i = 0; i < RESPONSE_BLOCKS; i++) res.write(block(i));
        res.end();
      });
    });
    const { proxyPort } = await startProxy(await listenLocal(app));
    const body = Buffer.concat(Array.from({ length: 48 * 1024 }, (_, i) => block(i + 7))); // 3 MiB
    const expected = sha(Buffer.concat(Array.from({ length: RESPONSE_BLOCKS }, (_, i) => block(i))));

    const withLength = await send(proxyPort, { method: 'POST', body, headers: { 'content-length': String(body.length) } });
    expect(withLength.status).toBe(200);
    expect(withLength.headers['x-request-sha256']).toBe(sha(body));
    expect(sha(withLength.body)).toBe(expected);

    const chunks = Array.from({ length: 48 }, (_, i) => body.subarray(i * 64 * 1024, (i + 1) * 64 * 1024));
    const chunked = await send(proxyPort, { method: 'PUT', body: chunks });
    expect(chunked.headers['x-request-sha256']).toBe(sha(body));
    expect(sha(chunked.body)).toBe(expected);
  });

  it('forwards the first bytes of a body before the rest exists (no whole-body buffering)', async () => {
    const firstChunkAtApp = deferred();
    const app = createServer((req, res) => {
      req.once('data', () => firstChunkAtApp.resolve());
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first;');
        setTimeout(() => res.end('rest'), 300);
      });
    });
    const { proxyPort } = await startProxy(await listenLocal(app));
    const req = request({ host: '127.0.0.1', port: proxyPort, method: 'POST', path: '/' });
    req.on('error', () => undefined);
    req.write('part one;');
    await within(3000, 'the first request bytes at the app while the client holds the rest', firstChunkAtApp.promise);
    const firstAnswerBytes = new Promise<string>((resolve) =>
      req.on('response', (res) => res.once('data', (c: Buffer) => resolve(c.toString()))),
    );
    req.end('part two');
    expect(await within(3000, 'the first response bytes before the app has finished', firstAnswerBytes)).toBe('first;');
  });

  it('tunnels an Upgrade (WebSocket-style) connection both ways', async () => {
    const app = createServer();
    app.on('upgrade', (req, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: Upgrade\r\nx-seen-path: ${req.url}\r\n\r\n`);
      socket.on('data', (d) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    const { proxyPort, port } = await startProxy(await listenLocal(app));
    const socket = connect(proxyPort, '127.0.0.1');
    onCleanup(() => socket.destroy());
    let received = '';
    socket.on('data', (d) => {
      received += d.toString();
    });
    socket.write('GET /ws HTTP/1.1\r\nHost: pod\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    await vi.waitFor(() => expect(received).toContain('101 Switching Protocols'), { timeout: 3000 });
    expect(received).toContain('x-seen-path: /ws');
    socket.write('ping');
    await vi.waitFor(() => expect(received).toContain('echo:ping'), { timeout: 3000 });
    // The tunnel counts as a request, answered 1xx.
    expect(await metric(port, 'drain_sidecar_proxy_requests_total{code="1xx"}')).toBe(1);
  });

  it('removes hop-by-hop headers and adds X-Forwarded-For, -Proto and -Host', async () => {
    let seen: IncomingMessage['headers'] = {};
    const app = createServer((req, res) => {
      seen = req.headers;
      res.writeHead(200, { 'keep-alive': 'timeout=99', 'x-app': 'yes' });
      res.end();
    });
    const { proxyPort } = await startProxy(await listenLocal(app));
    const reply = await send(proxyPort, {
      headers: {
        host: 'shop.example',
        connection: 'x-private, keep-alive',
        'x-private': 'secret',
        te: 'trailers',
        'x-keep': '1',
      },
    });
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe('shop.example');
    expect(seen['x-keep']).toBe('1');
    expect(seen['x-private']).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(reply.headers['x-app']).toBe('yes');
    expect(reply.headers['keep-alive']).not.toBe('timeout=99');
  });

  it('forwards an upload sent with Expect: 100-continue (as curl sends bodies over 1 KiB), answering the 100 itself', async () => {
    const seen: { expect: string | undefined; body: string }[] = [];
    const app = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ expect: req.headers.expect, body: Buffer.concat(chunks).toString() });
        res.end('stored');
      });
    });
    const { proxyPort } = await startProxy(await listenLocal(app));
    const body = 'x'.repeat(2048);
    const { text } = await rawExchange(
      proxyPort,
      `PUT /upload HTTP/1.1\r\nHost: pod\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    expect(statusLines(text)).toEqual([100, 200]);
    expect(text).toContain('stored');
    expect(seen).toEqual([{ expect: undefined, body }]);
  });

  it('answers 502 when the app stays silent past DRAIN_PROXY_TIMEOUT_SECONDS, counted as an upstream timeout', async () => {
    const app = createServer(() => undefined);
    const { proxyPort, port } = await startProxy(await listenLocal(app), { DRAIN_PROXY_TIMEOUT_SECONDS: '1' });
    const started = performance.now();
    const reply = await send(proxyPort, { path: '/silent' });
    expect(reply.status).toBe(502);
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
    expect(await metric(port, 'drain_sidecar_proxy_upstream_errors_total{reason="timeout"}')).toBe(1);
  });

  it('ends an upload the client pauses past DRAIN_PROXY_TIMEOUT_SECONDS, and the request to the app with it', async () => {
    const appSawAbort = deferred();
    const app = createServer((req, res) => {
      req.resume();
      req.on('aborted', () => appSawAbort.resolve());
      req.on('end', () => res.end('whole'));
    });
    const { proxyPort, port } = await startProxy(await listenLocal(app), { DRAIN_PROXY_TIMEOUT_SECONDS: '1' });
    const socket = connect(proxyPort, '127.0.0.1');
    onCleanup(() => socket.destroy());
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('error', () => undefined);
    socket.write('PUT /upload HTTP/1.1\r\nHost: pod\r\nContent-Length: 100\r\n\r\nfirst bytes');
    await within(5000, 'the proxy to close the paused upload', closed);
    await within(3000, 'the app to see the abort', appSawAbort.promise);
    expect(await metric(port, 'drain_sidecar_proxy_requests_total{code="aborted"}')).toBe(1);
  });

  it('propagates a client that goes away to the app', async () => {
    const appSawAbort = deferred();
    const app = createServer((req, res) => {
      res.on('close', () => {
        if (!res.writableFinished) appSawAbort.resolve();
      });
      req.resume();
    });
    const { proxyPort, port } = await startProxy(await listenLocal(app));
    const caller = new AbortController();
    const req = request({ host: '127.0.0.1', port: proxyPort, path: '/slow', signal: caller.signal });
    req.on('error', () => undefined);
    req.end();
    await vi.waitFor(async () => expect(await metric(port, 'drain_sidecar_proxy_requests_in_flight')).toBe(1), { timeout: 3000 });
    caller.abort();
    await within(3000, 'the app to see the abort', appSawAbort.promise);
    await vi.waitFor(async () => expect(await metric(port, 'drain_sidecar_proxy_requests_total{code="aborted"}')).toBe(1), {
      timeout: 3000,
    });
    // The abort was the client's: not counted against the app.
    expect(await metric(port, 'drain_sidecar_proxy_upstream_errors_total{reason="reset"}')).toBe(0);
    expect(await metric(port, 'drain_sidecar_proxy_requests_in_flight')).toBe(0);
  });

  it('counts an app that fails after its answer began as an upstream error, not as the client going away', async () => {
    const app = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const { proxyPort, port } = await startProxy(await listenLocal(app));
    const req = request({ host: '127.0.0.1', port: proxyPort, path: '/cut' });
    const cut = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        res.on('data', () => undefined);
        res.on('error', () => resolve());
        res.on('close', () => resolve());
      });
      req.on('error', () => resolve());
    });
    req.end();
    await within(3000, 'the cut-off answer', cut);
    await vi.waitFor(
      async () => expect(await metric(port, 'drain_sidecar_proxy_upstream_errors_total{reason="reset"}')).toBe(1),
      {
        timeout: 3000,
      },
    );
    expect(await metric(port, 'drain_sidecar_proxy_requests_total{code="aborted"}')).toBe(0);
    expect(await metric(port, 'drain_sidecar_proxy_requests_total{code="5xx"}')).toBe(1);
  });

  it('shows in the in-flight gauge every request a slow app holds', async () => {
    const held: (() => void)[] = [];
    const app = createServer((_req, res) => held.push(() => res.end('ok')));
    const { proxyPort, port } = await startProxy(await listenLocal(app));
    const agent = new Agent({ keepAlive: true, maxSockets: 100 });
    onCleanup(() => agent.destroy());
    const replies = Promise.all(Array.from({ length: 40 }, () => send(proxyPort, { agent })));
    await vi.waitFor(async () => expect(await metric(port, 'drain_sidecar_proxy_requests_in_flight')).toBe(40), {
      timeout: 5000,
    });
    // The gauge counts a request once the proxy has it; release them only once the app has every one too.
    await vi.waitFor(() => expect(held).toHaveLength(40), { timeout: 5000 });
    for (const release of held.splice(0)) release();
    expect((await replies).every((r) => r.status === 200)).toBe(true);
    await vi.waitFor(async () => expect(await metric(port, 'drain_sidecar_proxy_requests_in_flight')).toBe(0), { timeout: 3000 });
    expect(await metric(port, 'drain_sidecar_proxy_requests_total{code="2xx"}')).toBe(40);
  });

  it('during a drain answers with Connection: close, and finishes a request that began before it', async () => {
    const app = createServer((req, res) => setTimeout(() => res.end(req.url), req.url === '/slow' ? 600 : 0));
    const { proxyPort, port } = await startProxy(await listenLocal(app));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onCleanup(() => agent.destroy());
    const before = await send(proxyPort, { agent });
    expect(before.headers.connection).toBe('keep-alive');
    const slow = send(proxyPort, { path: '/slow', agent });
    await new Promise((r) => setTimeout(r, 100));
    const hook = get(port, '/sleep?s=1');
    const slowReply = await slow;
    expect(slowReply.status).toBe(200);
    expect(slowReply.body.toString()).toBe('/slow');
    expect(slowReply.headers.connection).toBe('close');
    const during = await send(proxyPort, { agent });
    expect(during.headers.connection).toBe('close');
    expect((await hook).status).toBe(200);
    expect(await metric(port, 'drain_sidecar_proxy_late_requests_total')).toBe(1);
  });

  it('keeps idle keep-alive client connections when a drain starts, and closes each after its next answer', async () => {
    const app = createServer((_req, res) => res.end('ok'));
    const { proxyPort, port } = await startProxy(await listenLocal(app));
    const socket = connect(proxyPort, '127.0.0.1');
    onCleanup(() => socket.destroy());
    let received = '';
    socket.on('data', (d) => {
      received += d;
    });
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.write('GET / HTTP/1.1\r\nHost: pod\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    const hook = get(port, '/sleep?s=1');
    // A load balancer reusing its pooled connection just after the drain began: the request is served, not cut.
    await new Promise((r) => setTimeout(r, 200));
    expect(socket.destroyed).toBe(false);
    socket.write('GET / HTTP/1.1\r\nHost: pod\r\n\r\n');
    await within(3000, 'the connection to close after the second answer', closed);
    const answers = received.split('HTTP/1.1 ').slice(1);
    expect(answers.map((a) => a.slice(0, 3))).toEqual(['200', '200']);
    expect(answers[1]).toMatch(/^connection: close\r$/im);
    expect((await hook).status).toBe(200);
  });

  it('after the app stops during termination, answers 503 to every request and counts each exactly; outside, 502', async () => {
    const app = createServer((_req, res) => res.end('ok'));
    const appPort = await listenLocal(app);
    const { proxyPort, port } = await startProxy(appPort);
    // Outside termination: the same failure is the app's problem, a 502.
    app.close();
    app.closeAllConnections();
    const outside = await send(proxyPort);
    expect(outside.status).toBe(502);
    expect(await metric(port, 'drain_sidecar_proxy_upstream_errors_total{reason="refused"}')).toBe(1);

    const hook = get(port, '/sleep?s=1.5');
    await new Promise((r) => setTimeout(r, 100));
    const replies = [];
    for (let i = 0; i < 7; i++) replies.push(await send(proxyPort));
    expect(replies.map((r) => r.status)).toEqual(Array(7).fill(503));
    expect(replies[0]?.headers.connection).toBe('close');
    expect(replies[0]?.headers['retry-after']).toBe('1');
    expect(JSON.parse(replies[0]?.body.toString() ?? '')).toMatchObject({ error: 'terminating' });
    expect(await metric(port, 'drain_sidecar_proxy_refused_requests_total{reason="refused"}')).toBe(7);
    const answer = (await hook).json();
    expect(answer).toMatchObject({ endpoint: 'sleep' });
    expect(await metric(port, 'drain_sidecar_proxy_upstream_errors_total{reason="refused"}')).toBe(1);
  });

  it('makes /drain wait for requests, not connections: idle once nothing is in flight and none arrived for quiet', async () => {
    const held: (() => void)[] = [];
    const app = createServer((_req, res) => held.push(() => res.end('ok')));
    const { proxyPort, port } = await startProxy(await listenLocal(app));
    const agent = new Agent({ keepAlive: true });
    onCleanup(() => agent.destroy());
    const inFlight = send(proxyPort, { agent });
    await vi.waitFor(() => expect(held).toHaveLength(1), { timeout: 3000 });
    const hook = get(port, '/drain?min=0.2&max=8&quiet=0.3');
    await new Promise((r) => setTimeout(r, 600));
    const releasedAt = performance.now();
    held.splice(0)[0]?.();
    await inFlight;
    const answer = await within(9000, 'the /drain answer', hook);
    expect(performance.now() - releasedAt).toBeLessThan(2000);
    expect(answer.json()).toMatchObject({
      reason: 'idle',
      tracking: true,
      requests: { inFlightAtStart: 1, inFlightAtEnd: 0, lateRequests: 0, lastRequestArrivalSeconds: null, refused: 0 },
    });
  });
});
