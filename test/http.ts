// A raw HTTP client for tests: the path is sent exactly as given (as the kubelet sends it), and every call is bounded.
import { request } from 'node:http';

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
