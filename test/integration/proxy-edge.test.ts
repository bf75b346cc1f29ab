// Proxy mode against an app that answers in ways HTTP allows but clients rarely see, and clients that send what a
// gateway must normalise: each answered with a status, never a closed connection without one.
import { createServer as createNetServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, onCleanup } from '../cleanup.js';
import { rawExchange, statusLines } from '../http.js';
import { startSidecar } from '../inprocess.js';

afterEach(cleanup);

/** An app that answers every request with the bytes given, and records the request heads it received. */
async function rawApp(answer: string): Promise<{ port: number; heads: string[] }> {
  const heads: string[] = [];
  const server = createNetServer((socket: Socket) => {
    let buffer = '';
    socket.on('data', (d) => {
      buffer += d.toString('latin1');
      while (buffer.includes('\r\n\r\n')) {
        heads.push(buffer.slice(0, buffer.indexOf('\r\n\r\n')));
        buffer = buffer.slice(buffer.indexOf('\r\n\r\n') + 4);
        socket.write(answer);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onCleanup(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as { port: number }).port, heads };
}

async function proxyTo(appPort: number) {
  const sidecar = await startSidecar({ DRAIN_PROXY_LISTEN: '127.0.0.1:0', DRAIN_PROXY_UPSTREAM: `127.0.0.1:${appPort}` });
  if (!sidecar.proxy) throw new Error('proxy mode did not start');
  return (sidecar.proxy.server.address() as { port: number }).port;
}

describe('proxy mode at the edges of HTTP', () => {
  it.each([204, 304])('answers the client with the status when the app sends a %i with a body', async (status) => {
    const app = await rawApp(`HTTP/1.1 ${status} X\r\nContent-Length: 5\r\n\r\nhello`);
    const { text } = await rawExchange(await proxyTo(app.port), 'GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n');
    expect(statusLines(text)).toEqual([status]);
    expect(text).not.toContain('hello');
  });

  it('forwards an absolute-form request in origin form, with the Host the request names', async () => {
    const app = await rawApp('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    const port = await proxyTo(app.port);
    const { text } = await rawExchange(port, 'GET http://evil.example/x?y=1 HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n');
    expect(statusLines(text)).toEqual([200]);
    const [head] = app.heads;
    expect(head?.split('\r\n')[0]).toBe('GET /x?y=1 HTTP/1.1');
    expect(head).toMatch(/\r\nhost: evil\.example\r\n/i);
    expect(head?.match(/\r\nhost:/gi)).toHaveLength(1);
  });
});
