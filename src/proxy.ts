// Proxy mode (opt-in): the Service targets the sidecar's proxy port and the sidecar forwards to the app on loopback. It
// then knows every request: how many are in flight, which arrived after a drain began, and which it had to refuse
// because the app was gone. During a drain every answer carries `Connection: close`, so keep-alive clients reconnect to
// other pods. Bodies stream both ways; upgrades (WebSocket) are tunnelled. Requests reach the app through undici's
// connection pool, which costs less CPU per request than Node's own client (bench/proxy.mjs, bench/proxy-impl.mjs).

import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import Pool from 'undici/lib/dispatcher/pool.js';
import { type Clock, secondsSince } from './clock.js';
import type { Metrics, ProxyCode, UPSTREAM_REASONS } from './metrics.js';
import { boundConnections } from './server.js';

export interface ProxyDeps {
  upstream: { host: string; port: number };
  /** Client connections held at once; see boundConnections. */
  maxConnections: number;
  /** Bound on the app's silence, and on a pause in a client's upload. */
  timeoutMs: number;
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
// A request head from a load balancer arrives at once. No bound on the whole request: uploads may take long, and each
// one holds a connection the connection bound counts as busy.
const PROXY_SERVER_OPTIONS = { headersTimeout: 10_000, requestTimeout: 0, connectionsCheckingInterval: 1_000 };
// Keep-alive connections to the app: enough for a busy pod, a bound all the same.
const MAX_UPSTREAM_CONNECTIONS = 512;
const RETRY_AFTER_SECONDS = '1';

// Node's server answers `Expect: 100-continue` itself before the request reaches the proxy; undici refuses the header.
const NOT_FORWARDED = new Set([...HOP_BY_HOP, 'expect']);

/** The headers one hop passes to the next: hop-by-hop ones dropped, and those the Connection header names. */
function forwardable(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const listed = headers.connection ? headers.connection.split(',').map((h) => h.trim().toLowerCase()) : [];
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !NOT_FORWARDED.has(name) && !listed.includes(name)) out[name] = value;
  }
  return out;
}

type UpstreamReason = (typeof UPSTREAM_REASONS)[number];

/** Why the app could not be reached, as a bounded label value. */
function upstreamReason(err: NodeJS.ErrnoException): UpstreamReason {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'refused';
    // UND_ERR_SOCKET: undici's name for a connection the app closed in the middle of an exchange.
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return 'reset';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'UPSTREAM_TIMEOUT':
      return 'timeout';
    default:
      return 'other';
  }
}

const timeoutError = () => Object.assign(new Error('upstream timeout'), { code: 'UPSTREAM_TIMEOUT' });

/** The status class label of an answer. */
/**
 * The request target as the app gets it: origin form (`/path?query`). A request in absolute form (`GET http://host/x`,
 * which servers must accept) names its host in the target, and that host wins over a Host header (RFC 9112 section
 * 3.2.2): both reach the app as origin form and one Host, so the app and the proxy cannot disagree on either.
 */
function target(req: IncomingMessage): { path: string; host: string | undefined } {
  const url = req.url ?? '/';
  if (url.startsWith('/') || url === '*') return { path: url, host: req.headers.host };
  try {
    const parsed = new URL(url);
    return { path: `${parsed.pathname}${parsed.search}`, host: parsed.host };
  } catch {
    return { path: url, host: req.headers.host };
  }
}

// Answers that never carry a body, whatever the app sends after their head.
const bodiless = (method: string | undefined, status: number) => method === 'HEAD' || status === 204 || status === 304;

const codeClass = (status: number): ProxyCode =>
  status >= 100 && status < 600 ? (`${Math.floor(status / 100)}xx` as ProxyCode) : '5xx';

/** An answer written straight to a socket that is closed after it: for the tunnel path, where no ServerResponse exists. */
function rawAnswer(status: number, reason: string, headers: Record<string, string>, body = ''): string {
  const lines = [`HTTP/1.1 ${status} ${reason}`, 'connection: close', `content-length: ${Buffer.byteLength(body)}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

const jsonError = (error: string, message: string, hint: string) => JSON.stringify({ error, message, hint });

export class DrainProxy {
  readonly server: Server;
  #inFlight = 0;
  #lateTotal = 0;
  #refusedTotal = 0;
  #lastArrivalAt = Number.NEGATIVE_INFINITY;
  #appDown = false;
  /** Client sockets handed over for an Upgrade. */
  readonly #tunnels = new Set<Socket>();
  readonly #pool: Pool;
  readonly #deps: ProxyDeps;

  constructor(deps: ProxyDeps) {
    this.#deps = deps;
    const { host, port } = deps.upstream;
    this.#pool = new Pool(`http://${host.includes(':') ? `[${host}]` : host}:${port}`, {
      connections: MAX_UPSTREAM_CONNECTIONS,
      // The app is on loopback: a connection is accepted or refused at once. Then one bound on its silence.
      headersTimeout: deps.timeoutMs,
      bodyTimeout: deps.timeoutMs,
    });
    this.server = createServer(PROXY_SERVER_OPTIONS, (req, res) => this.#forward(req, res));
    this.server.on('upgrade', (req, socket, head) => this.#tunnel(req, socket as Socket, head));
    boundConnections(
      this.server,
      deps.maxConnections,
      (reason) => deps.metrics.shedConnections.inc({ listener: 'proxy', reason }),
      { tunnels: true },
    );
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

  /** Closes the port, every client connection (tunnels too, which the server no longer tracks) and the upstream pool. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const socket of this.#tunnels) socket.destroy();
      void this.#pool.destroy();
    });
  }

  #arrived(): void {
    if (!this.#deps.inTermination()) return;
    this.#lateTotal++;
    this.#lastArrivalAt = this.#deps.clock.now();
    this.#deps.metrics.proxyLateRequests.inc();
  }

  /** The request's headers as the app gets them: hop-by-hop ones dropped, X-Forwarded-* added. */
  #upstreamHeaders(req: IncomingMessage): Record<string, string | string[]> {
    const headers = forwardable(req.headers);
    const { host } = target(req);
    if (host !== undefined) headers.host = host;
    const peer = req.socket.remoteAddress ?? '';
    const prior = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${prior}, ${peer}` : peer;
    // A load balancer that terminated TLS sets these for the app; the proxy's port is reachable by it alone (see README).
    headers['x-forwarded-proto'] ??= 'http';
    if (host) headers['x-forwarded-host'] ??= host;
    return headers;
  }

  #forward(req: IncomingMessage, res: ServerResponse): void {
    const { clock, metrics, inTermination, timeoutMs } = this.#deps;
    const start = clock.now();
    this.#arrived();
    this.#inFlight++;
    metrics.proxyInFlight.inc();
    let done = false;
    const finish = (code: ProxyCode) => {
      if (done) return;
      done = true;
      this.#inFlight--;
      metrics.proxyInFlight.dec();
      metrics.proxyRequests.inc({ code });
      metrics.proxyRequestDuration.observe((clock.now() - start) / 1000);
    };

    // Framing: the body goes on exactly as this server's parser delimited it, whatever the method: with its
    // Content-Length, or chunked (undici frames a body of unknown length chunked for every method, and closes that
    // connection to the app afterwards when the method expects no body).
    const te = req.headers['transfer-encoding'];
    // The parser accepts only codings that end in chunked; it removes chunked alone, so any other coding (gzip, chunked)
    // would reach the app undeclared. Refused rather than guessed.
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      this.#reject(
        req,
        res,
        finish,
        501,
        'not_implemented',
        `Transfer-Encoding ${JSON.stringify(te.slice(0, 40))} is not forwarded`,
        'send the body with Content-Length or Transfer-Encoding: chunked alone',
      );
      return;
    }
    const length = req.headers['content-length'];
    const body = te !== undefined || (length !== undefined && length !== '0') ? req : null;

    let upstream: Dispatcher.DispatchController | undefined;
    let answered: ProxyCode = '5xx';
    let timer: NodeJS.Timeout | undefined;
    if (body) {
      // An upload may take long, but not stall: silence from the client ends it (as the client going away). The bound
      // on the app's silence starts once the body has all arrived.
      req.setTimeout(timeoutMs, () => res.destroy());
      req.once('end', () => {
        req.socket.setTimeout(0);
        if (!done && !res.headersSent) timer = setTimeout(() => upstream?.abort(timeoutError()), timeoutMs);
      });
    }
    // The app failed after its answer began: the client sees a cut-off answer. An upstream error, whatever the phase.
    const cutOff = (err: Error) => {
      metrics.proxyUpstreamErrors.inc({ reason: upstreamReason(err) });
      finish('5xx');
      res.destroy(err);
    };
    this.#pool.dispatch(
      {
        path: target(req).path,
        method: req.method ?? 'GET',
        headers: this.#upstreamHeaders(req),
        body,
        headersTimeout: body ? 0 : timeoutMs,
      },
      {
        onRequestStart: (controller) => {
          upstream = controller;
          // Finished before it reached the app: the client went away while the request waited for a connection.
          if (done) controller.abort(new Error('client gone'));
        },
        onResponseStart: (_controller, status, headers, statusMessage) => {
          // Informational answers (103 Early Hints) are the app's business with this hop; the final one is relayed.
          if (status < 200) return;
          clearTimeout(timer);
          if (this.#appDown) this.#deps.log.info('app reachable again');
          this.#appDown = false;
          const out = forwardable(headers);
          if (inTermination()) out.connection = 'close';
          res.writeHead(status, statusMessage, out);
          answered = codeClass(status);
          // Complete with its head: bytes the app sends after it are no body of it, and must not cost the client it.
          if (bodiless(req.method, status)) res.end();
        },
        onResponseData: (controller, chunk) => {
          if (res.writableEnded) return;
          if (res.write(chunk)) return;
          controller.pause();
          res.once('drain', () => controller.resume());
        },
        onResponseEnd: () => {
          if (!res.writableEnded) res.end();
        },
        onResponseError: (_controller, err: Error) => {
          clearTimeout(timer);
          // The client went away first and the request to the app was aborted for it: nothing failed on the app's side.
          if (done) return;
          // The answer was complete (a 204 the app followed with stray bytes): the app misbehaved, the client has it all.
          if (res.writableEnded) {
            metrics.proxyUpstreamErrors.inc({ reason: upstreamReason(err) });
            return;
          }
          if (res.headersSent) return cutOff(err);
          if ((err as NodeJS.ErrnoException).code === 'UND_ERR_INVALID_ARG') {
            // undici refuses what it cannot write as HTTP (a character Node's parser let through in a header).
            this.#reject(
              req,
              res,
              finish,
              400,
              'bad_request',
              'the request cannot be forwarded as HTTP/1.1',
              'send valid header names and values',
            );
            return;
          }
          this.#refuse(res, upstreamReason(err));
          finish('5xx');
        },
      },
    );
    // A client that goes away aborts the request to the app.
    res.on('close', () => {
      if (res.writableFinished) return finish(answered);
      clearTimeout(timer);
      finish('aborted');
      upstream?.abort(new Error('client gone'));
    });
  }

  /** Answers a request the proxy will not forward; the connection closes after it, as its body may be unread. */
  #reject(
    req: IncomingMessage,
    res: ServerResponse,
    finish: (code: ProxyCode) => void,
    status: 400 | 501,
    error: string,
    message: string,
    hint: string,
  ): void {
    this.#deps.metrics.proxyRejected.inc();
    this.#deps.log.warn({ status, error, method: req.method }, 'request not forwarded');
    res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
    res.end(jsonError(error, message, hint));
    finish(codeClass(status));
  }

  /** Counts a request the app could not answer: refused during a termination (true), an upstream error otherwise. */
  #failed(reason: UpstreamReason): boolean {
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
  #refuse(res: ServerResponse, reason: UpstreamReason): void {
    if (this.#failed(reason)) {
      res.writeHead(503, { 'content-type': 'application/json', connection: 'close', 'retry-after': RETRY_AFTER_SECONDS });
      res.end(jsonError('terminating', `the app is gone (${reason})`, 'retry: another pod serves'));
      return;
    }
    // Once per outage, not once per request: the counter has the count.
    if (!this.#appDown) this.#deps.log.warn({ reason }, 'app unreachable');
    this.#appDown = true;
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(jsonError('bad_gateway', `the app could not be reached (${reason})`, 'see the app'));
  }

  /**
   * Upgrade (WebSocket): the request goes to the app through Node's client, framed as any other; on 101 the two sockets
   * are joined and bytes flow both ways untouched. Any other answer is an ordinary response: it is relayed and the
   * connection closes, so no later request on it can pass the proxy as raw tunnel bytes.
   */
  #tunnel(req: IncomingMessage, client: Socket, head: Buffer): void {
    const { upstream, timeoutMs } = this.#deps;
    this.#arrived();
    this.#tunnels.add(client);
    client.once('close', () => this.#tunnels.delete(client));
    client.on('error', () => client.destroy());
    const reject = (message: string, hint: string) => {
      this.#deps.metrics.proxyRejected.inc();
      client.end(rawAnswer(400, 'Bad Request', { 'content-type': 'application/json' }, jsonError('bad_request', message, hint)));
    };
    // Bytes after the head would reach the app only after a 101, as tunnel data: a body here has no unambiguous framing.
    if (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0) {
      reject('an Upgrade request with a body is not forwarded', 'send the Upgrade request without a body');
      return;
    }
    const headers = this.#upstreamHeaders(req);
    headers.connection = 'upgrade';
    headers.upgrade = String(req.headers.upgrade);
    let up: ReturnType<typeof request>;
    try {
      up = request({ ...upstream, method: req.method, path: target(req).path, headers, agent: false, timeout: timeoutMs });
    } catch {
      reject('the request cannot be forwarded as HTTP/1.1', 'send valid header names and values');
      return;
    }
    up.on('timeout', () => up.destroy(timeoutError()));
    up.on('upgrade', (answer, app, appHead) => {
      this.#deps.metrics.proxyRequests.inc({ code: codeClass(answer.statusCode ?? 101) });
      const lines = [`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}`];
      for (let i = 0; i < answer.rawHeaders.length; i += 2) lines.push(`${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}`);
      client.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (appHead.length > 0) client.write(appHead);
      if (head.length > 0) app.write(head);
      app.pipe(client);
      client.pipe(app);
      const close = () => {
        app.destroy();
        client.destroy();
      };
      app.on('error', close);
      app.on('close', close);
      client.on('close', close);
    });
    up.on('response', (answer) => {
      const out = forwardable(answer.headers);
      const lines = [`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}`, 'connection: close'];
      // Without Content-Length the body ends when the connection closes (RFC 9112 section 6.3).
      for (const [name, value] of Object.entries(out)) for (const v of [value].flat()) lines.push(`${name}: ${v}`);
      client.write(`${lines.join('\r\n')}\r\n\r\n`);
      this.#deps.metrics.proxyRequests.inc({ code: codeClass(answer.statusCode ?? 502) });
      answer.pipe(client);
      answer.on('error', () => client.destroy());
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      const refused = this.#failed(upstreamReason(err));
      if (!client.writableEnded)
        client.end(
          refused
            ? rawAnswer(503, 'Service Unavailable', { 'retry-after': RETRY_AFTER_SECONDS })
            : rawAnswer(502, 'Bad Gateway', {}),
        );
    });
    client.on('close', () => up.destroy());
    up.end();
  }
}
