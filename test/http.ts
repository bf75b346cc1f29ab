// A raw HTTP client for tests: the path is sent exactly as given (as the kubelet sends it), and every call is bounded.
import { request } from 'node:http';
import { connect } from 'node:net';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: () => Record<string, unknown>;
  ms: number;
}

/** One request to 127.0.0.1:port; fails after 10 s rather than hanging. */
export function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
  method = 'GET',
): Promise<Answer> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, signal, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          json: () => JSON.parse(body),
          ms: performance.now() - start,
        }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The value of one series in the sidecar's /metrics, or undefined when absent. */
export const metric = async (port: number, series: string): Promise<number | undefined> => {
  const { body } = await get(port, '/metrics');
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

/**
 * Writes raw bytes to 127.0.0.1:port and collects every byte that comes back until the server closes the connection or
 * stays silent for quietMs (so a keep-alive answer ends the wait too). Bounded by 10 s.
 */
export function rawExchange(port: number, bytes: string | Buffer, quietMs = 150): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    let quiet: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(quiet);
      clearTimeout(bound);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const bound = setTimeout(done, 10_000);
    const rearm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    };
    socket.on('connect', () => {
      socket.write(bytes);
      rearm();
    });
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      rearm();
    });
    socket.on('end', () => {
      closed = true;
      done();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') {
        closed = true;
        done();
      } else reject(err);
    });
  });
}

/** The status codes of every HTTP response in a raw byte stream, in order. */
export const statusLines = (text: string): number[] => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

/** Polls /healthz on 127.0.0.1:port until it answers 200; fails after ms naming what was awaited. */
export async function waitForHealthz(port: number, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if ((await get(port, '/healthz').catch(() => undefined))?.status === 200) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
