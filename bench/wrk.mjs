// Shared by the proxy benches: wait for a port to answer, and load it with wrk.
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';

/** Resolves once 127.0.0.1:port answers an HTTP GET; rejects after 10 s. */
export function ready(port) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 10_000;
    const attempt = () => {
      const req = request({ host: '127.0.0.1', port, path: '/' }, (res) => {
        res.resume();
        resolve();
      });
      req.on('error', () => (Date.now() > deadline ? reject(new Error(`port ${port} not ready`)) : setTimeout(attempt, 50)));
      req.end();
    };
    attempt();
  });
}

/** wrk with 2 threads against 127.0.0.1:port: requests/s, p50 and p99 latency in ms, and non-2xx answers. */
export function wrk(port, { seconds, connections }) {
  const out = execFileSync(
    'wrk',
    [`-t${Math.min(2, connections)}`, `-c${connections}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`],
    {
      encoding: 'utf8',
    },
  );
  const ms = (label) => {
    const m = new RegExp(`^\\s+${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    if (!m) throw new Error(`no ${label}% latency in wrk output:\n${out}`);
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  };
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? '0');
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]), p50: ms('50'), p99: ms('99'), errors };
}
