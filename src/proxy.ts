// Proxy mode (opt-in): the Service targets the sidecar's proxy port and the sidecar forwards to the app on loopback. It
// then knows every request: how many are in flight, which arrived after a drain began, and which it had to refuse
// because the app was gone. During a drain every answer carries `Connection: close`, so keep-alive clients reconnect to
// other pods. Bodies stream both ways; upgrades (WebSocket) are tunnelled.

import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { type Clock, secondsSince } from './clock.js';
import type { Metrics } from './metrics.js';

export interface ProxyDeps {
  upstream: { host: string; port: number };
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** True from the first hook call (or SIGTERM) of a termination until the sidecar exits; see sidecar.ts. During it
   * every answer carries `Connection: close`, and requests that find the app gone are refused with 503. */
  inTermination: () => boolean;
}

/** What the requests did during one drain episode or hook call. */
export interface RequestTraffic {
  inFlightAtStart: number;
  inFlightAtEnd: number;
  lateRequests: number;
  /** Seconds from the start to the last request that arrived since; null when none did. */
  lastRequestArrivalSeconds: number | null;
  refused: number;
}

// RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
// Bounded waits: for a tunnelled connection to the app, and for the app to answer a request.
const CONNECT_TIMEOUT_MS = 5_000;
const RESPONSE_TIMEOUT_MS = 60_000;
// Keep-alive sockets to the app: enough for a busy pod, a bound all the same.
const MAX_UPSTREAM_SOCKETS = 512;
const RETRY_AFTER_SECONDS = '1';

function forwardable(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const listed = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase()),
  );
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name) && !listed.has(name)) out[name] = value;
  }
  return out;
}

/** Why the app could not be reached, as a bounded label value. */
function upstreamReason(err: NodeJS.ErrnoException): 'refused' | 'reset' | 'timeout' | 'other' {
  if (err.code === 'ECONNREFUSED') return 'refused';
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return 'reset';
  if (err.code === 'ETIMEDOUT' || err.code === 'UPSTREAM_TIMEOUT') return 'timeout';
  return 'other';
}

export class DrainProxy {
  readonly server: Server;
  #inFlight = 0;
  #lateTotal = 0;
  #refusedTotal = 0;
  #lastArrivalAt = Number.NEGATIVE_INFINITY;
  #appDown = false;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: MAX_UPSTREAM_SOCKETS, noDelay: true });
  readonly #deps: ProxyDeps;

  constructor(deps: ProxyDeps) {
    this.#deps = deps;
    this.server = createServer((req, res) => this.#forward(req, res));
    this.server.on('upgrade', (req, socket, head) => this.#tunnel(req, socket as Socket, head));
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Monotonic time of the latest request that arrived during a termination, or -Infinity. */
  get lastArrivalAt(): number {
    return this.#lastArrivalAt;
  }

  /** Takes a baseline now; the returned function gives what the requests did since. */
  traffic(startedAt: number): () => RequestTraffic {
    const inFlightAtStart = this.#inFlight;
    const lateAtStart = this.#lateTotal;
    const refusedAtStart = this.#refusedTotal;
    return () => ({
      inFlightAtStart,
      inFlightAtEnd: this.#inFlight,
      lateRequests: this.#lateTotal - lateAtStart,
      lastRequestArrivalSeconds: secondsSince(startedAt, this.#lastArrivalAt),
      refused: this.#refusedTotal - refusedAtStart,
    });
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
    this.#agent.destroy();
  }

  #arrived(): void {
    if (!this.#deps.inTermination()) return;
    this.#lateTotal++;
    this.#lastArrivalAt = this.#deps.clock.now();
    this.#deps.metrics.proxyLateRequests.inc();
  }

  #forward(req: IncomingMessage, res: ServerResponse): void {
    const { upstream, clock, metrics, inTermination } = this.#deps;
    const start = clock.now();
    this.#arrived();
    this.#inFlight++;
    metrics.proxyInFlight.inc();
    let done = false;
    const finish = (codeClass: string) => {
      if (done) return;
      done = true;
      this.#inFlight--;
      metrics.proxyInFlight.dec();
      metrics.proxyRequests.inc({ code: codeClass });
      metrics.proxyRequestDuration.observe((clock.now() - start) / 1000);
    };

    const headers = forwardable(req.headers);
    const peer = req.socket.remoteAddress ?? '';
    const prior = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${prior}, ${peer}` : peer;
    headers['x-forwarded-proto'] ??= 'http';
    if (req.headers.host) headers['x-forwarded-host'] ??= req.headers.host;

    // The app is on loopback: a connection is accepted or refused at once, so one bound on silence covers both.
    const up = request({
      ...upstream,
      method: req.method,
      path: req.url,
      headers,
      agent: this.#agent,
      timeout: RESPONSE_TIMEOUT_MS,
    });
    up.on('timeout', () => up.destroy(Object.assign(new Error('upstream timeout'), { code: 'UPSTREAM_TIMEOUT' })));
    up.on('response', (answer) => {
      if (this.#appDown) this.#deps.log.info('app reachable again');
      this.#appDown = false;
      const out = forwardable(answer.headers);
      if (inTermination()) out.connection = 'close';
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, out);
      // pipe, not stream.pipeline: ~11,000 instead of ~7,000 requests/s in bench/proxy.mjs; the close handlers below
      // cover what pipeline would.
      answer.pipe(res);
      answer.on('error', (err) => res.destroy(err));
      res.once('finish', () => finish(`${String(answer.statusCode ?? 502)[0]}xx`));
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      // The client went away first and the request to the app was aborted for it: nothing failed on the app's side.
      if (done) return;
      if (res.headersSent) res.destroy(err);
      else this.#refuse(res, upstreamReason(err));
      finish('5xx');
    });
    // A client that goes away aborts the request to the app.
    res.on('close', () => {
      if (res.writableFinished) return;
      finish('aborted');
      up.destroy();
    });
    req.pipe(up);
  }

  /** Counts a request the app could not answer: refused during a termination (true), an upstream error otherwise. */
  #failed(reason: ReturnType<typeof upstreamReason>): boolean {
    const { metrics, inTermination } = this.#deps;
    if (!inTermination()) {
      metrics.proxyUpstreamErrors.inc({ reason });
      return false;
    }
    this.#refusedTotal++;
    metrics.proxyRefused.inc({ reason });
    return true;
  }

  /** The app could not answer: 503 during a termination, 502 otherwise. */
  #refuse(res: ServerResponse, reason: ReturnType<typeof upstreamReason>): void {
    if (this.#failed(reason)) {
      res.writeHead(503, { 'content-type': 'application/json', connection: 'close', 'retry-after': RETRY_AFTER_SECONDS });
      res.end(
        JSON.stringify({ error: 'terminating', message: `the app is gone (${reason})`, hint: 'retry: another pod serves' }),
      );
      return;
    }
    // Once per outage, not once per request: the counter has the count.
    if (!this.#appDown) this.#deps.log.warn({ reason }, 'app unreachable');
    this.#appDown = true;
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'bad_gateway', message: `the app could not be reached (${reason})`, hint: 'see the app' }));
  }

  /** Upgrade (WebSocket): the request head is replayed to the app, then bytes flow both ways untouched. */
  #tunnel(req: IncomingMessage, client: Socket, head: Buffer): void {
    const { upstream } = this.#deps;
    this.#arrived();
    const app = connect(upstream.port, upstream.host, () => {
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      app.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) app.write(head);
      app.pipe(client);
      client.pipe(app);
    });
    app.setTimeout(CONNECT_TIMEOUT_MS, () => app.destroy());
    app.once('connect', () => app.setTimeout(0));
    const close = () => {
      app.destroy();
      client.destroy();
    };
    app.on('error', (err: NodeJS.ErrnoException) => {
      const status = this.#failed(upstreamReason(err)) ? '503 Service Unavailable' : '502 Bad Gateway';
      if (!client.writableEnded) client.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      close();
    });
    app.on('close', close);
    client.on('error', close);
    client.on('close', close);
  }
}
