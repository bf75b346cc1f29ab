// Hostile HTTP/1.1 through the proxy, written byte by byte as an attacker would, against a real upstream (Node's HTTP
// server, keep-alive) that records every request it parses. The rule: the app parses exactly the requests the proxy's
// own parser read, each with the body the client framed, and no client ever receives another request's response.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cleanup, listenLocal } from '../cleanup.js';
import { metric, rawExchange, statusLines } from '../http.js';
import { startSidecar } from '../inprocess.js';

interface Seen {
  method: string;
  url: string;
  body: string;
  headers: IncomingHttpHeaders;
}

let seen: Seen[];
let proxyPort: number;
let adminPort: number;

beforeEach(async () => {
  seen = [];
  const app = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        body: Buffer.concat(chunks).toString('latin1'),
        headers: req.headers,
      });
      // Every answer names the request it answers, so a desynchronised connection shows.
      res.end(JSON.stringify({ answers: req.url }));
    });
  });
  app.keepAliveTimeout = 60_000;
  const appPort = await listenLocal(app);
  const sidecar = await startSidecar({ DRAIN_PROXY_LISTEN: '127.0.0.1:0', DRAIN_PROXY_UPSTREAM: `127.0.0.1:${appPort}` });
  adminPort = sidecar.port;
  proxyPort = sidecar.proxyPort;
});

afterEach(cleanup);

// What an attacker hides in a body: a whole second request.
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: pod\r\n\r\n';
const chunked = (body: string) => `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;

/** After any case, a fresh client on the same proxy (and its pooled upstream connections) gets its own answer. */
async function nextClientGetsItsOwnAnswer(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const { text } = await rawExchange(proxyPort, `GET /next-${i} HTTP/1.1\r\nHost: pod\r\n\r\n`);
    expect(statusLines(text)).toEqual([200]);
    expect(text).toContain(`{"answers":"/next-${i}"}`);
  }
}

describe('proxy framing under hostile input', () => {
  it.each(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH'])(
    'forwards a chunked %s body framed, so the app reads it as that request body and nothing more',
    async (method) => {
      const request = `${method} /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(SMUGGLED)}`;
      const { text } = await rawExchange(proxyPort, request);
      expect(statusLines(text)).toEqual([200]);
      expect(seen.map((s) => [s.method, s.url, s.body])).toEqual([[method, '/a', SMUGGLED]]);
      expect(seen[0]?.headers['x-forwarded-for']).toBe('127.0.0.1');
      await nextClientGetsItsOwnAnswer();
      expect(seen.map((s) => s.url)).not.toContain('/smuggled');
    },
  );

  it('forwards a Content-Length body on a GET with its length', async () => {
    const { text } = await rawExchange(
      proxyPort,
      `GET /a HTTP/1.1\r\nHost: pod\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    );
    expect(statusLines(text)).toEqual([200]);
    expect(seen.map((s) => [s.url, s.body])).toEqual([['/a', SMUGGLED]]);
    await nextClientGetsItsOwnAnswer();
  });

  it('forwards pipelined requests one by one, each answered in order', async () => {
    const { text } = await rawExchange(
      proxyPort,
      `GET /one HTTP/1.1\r\nHost: pod\r\n\r\nPOST /two HTTP/1.1\r\nHost: pod\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: pod\r\n\r\n`,
    );
    expect(statusLines(text)).toEqual([200, 200, 200]);
    expect(text.indexOf('"/one"')).toBeLessThan(text.indexOf('"/two"'));
    expect(text.indexOf('"/two"')).toBeLessThan(text.indexOf('"/three"'));
    expect(seen.map((s) => [s.url, s.body])).toEqual([
      ['/one', ''],
      ['/two', 'abc'],
      ['/three', ''],
    ]);
  });

  // Ambiguous framing: the proxy must refuse it (a 4xx/5xx, nothing forwarded) or forward exactly one request.
  it.each([
    [
      'CL and TE together',
      `POST /a HTTP/1.1\r\nHost: pod\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(SMUGGLED)}`,
    ],
    [
      'TE and CL together',
      `GET /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n${chunked(SMUGGLED)}`,
    ],
    [
      'two different Content-Lengths',
      `POST /a HTTP/1.1\r\nHost: pod\r\nContent-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
    ['a Content-Length list', `POST /a HTTP/1.1\r\nHost: pod\r\nContent-Length: 0, ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
    ['chunked, identity', `POST /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked, identity\r\n\r\n${chunked(SMUGGLED)}`],
    ['gzip, chunked', `GET /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${chunked(SMUGGLED)}`],
    [
      'two Transfer-Encoding lines',
      `GET /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(SMUGGLED)}`,
    ],
    [
      'TE with a space before the colon',
      `GET /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding : chunked\r\n\r\n${chunked(SMUGGLED)}`,
    ],
    [
      'obs-fold of Transfer-Encoding',
      `GET /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n${chunked(SMUGGLED)}`,
    ],
    [
      'obs-fold of another header',
      `GET /a HTTP/1.1\r\nHost: pod\r\nX-Folded: one\r\n two\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
    ['bare LF line ends', `GET /a HTTP/1.1\nHost: pod\nTransfer-Encoding: chunked\n\n${chunked(SMUGGLED)}`],
    [
      'bare LF inside chunk framing',
      `GET /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\n${SMUGGLED}\n0\n\n`,
    ],
    [
      'a chunk size with a sign',
      `POST /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\n\r\n+${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    ],
    [
      'a chunk extension and a trailer',
      `GET /a HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)};ext=1\r\n${SMUGGLED}\r\n0\r\nX-Trailer: ${SMUGGLED.replace(/\r\n/g, ' ')}\r\n\r\n`,
    ],
    [
      'a NUL in a header value',
      `GET /a HTTP/1.1\r\nHost: pod\r\nX-Nul: a\0b\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
    [
      'an Upgrade with a body',
      `GET /a HTTP/1.1\r\nHost: pod\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
  ])('%s: refused, or forwarded as exactly one request', async (_name, request) => {
    const { text } = await rawExchange(proxyPort, request);
    const statuses = statusLines(text);
    expect(statuses.length).toBeGreaterThanOrEqual(1);
    if (seen.length === 0) expect(statuses[0]).toBeGreaterThanOrEqual(400);
    else {
      expect(seen).toHaveLength(1);
      expect(seen[0]?.url).toBe('/a');
      expect(statuses).toEqual([200]);
    }
    expect(seen.map((s) => s.url)).not.toContain('/smuggled');
    await nextClientGetsItsOwnAnswer();
    expect(seen.map((s) => s.url)).not.toContain('/smuggled');
    // The admin port is unaffected.
    expect(await metric(adminPort, 'drain_sidecar_hooks_in_progress')).toBe(0);
  });

  it('closes the connection after an Upgrade the app refused, so nothing after it passes unaccounted', async () => {
    const { text, closed } = await rawExchange(
      proxyPort,
      `GET /ws HTTP/1.1\r\nHost: pod\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /after HTTP/1.1\r\nHost: pod\r\n\r\n`,
    );
    expect(statusLines(text)).toEqual([200]);
    expect(text.toLowerCase()).toContain('connection: close');
    expect(closed).toBe(true);
    expect(seen.map((s) => s.url)).toEqual(['/ws']);
    expect(seen[0]?.headers['x-forwarded-for']).toBe('127.0.0.1');
  });
});
