// Proxy mode's cost: requests per second and latency (p50, p99) for the app directly, through drain-sidecar's proxy (the
// single executable), and through nginx configured as an equivalent keep-alive reverse proxy (one worker), with the same
// load generator (wrk) and connection count, one after the other in one run, printed as ratios to the direct figures.
// Needs wrk and nginx (Debian packages). Usage: npm run build:sea && node bench/proxy.mjs [seconds] [connections]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.argv[2] ?? 10);
const CONNECTIONS = Number(process.argv[3] ?? 64);
const APP = 18_600;
const SIDECAR_ADMIN = 18_601;
const SIDECAR_PROXY = 18_602;
const NGINX = 18_603;
const work = mkdtempSync(join(tmpdir(), 'proxy-bench-'));
const children = [];

function start(cmd, args, env = {}) {
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

function ready(port) {
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

/** wrk's figures: requests/s, and the p50 and p99 latency in ms. */
function load(port) {
  const out = execFileSync('wrk', ['-t2', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', `http://127.0.0.1:${port}/`], {
    encoding: 'utf8',
  });
  const ms = (label) => {
    const m = new RegExp(`^\\s+${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    if (!m) throw new Error(`no ${label}% latency in wrk output:\n${out}`);
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  };
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? '0';
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]), p50: ms('50'), p99: ms('99'), errors: Number(errors) };
}

try {
  start(process.execPath, [join(ROOT, 'drill/app.mjs'), String(APP), 'bench']);
  start(join(ROOT, 'dist/drain-sidecar'), [], {
    DRAIN_HOST: '127.0.0.1',
    DRAIN_PORT: String(SIDECAR_ADMIN),
    DRAIN_PROXY_LISTEN: `127.0.0.1:${SIDECAR_PROXY}`,
    DRAIN_PROXY_UPSTREAM: `127.0.0.1:${APP}`,
    DRAIN_LOG_LEVEL: 'warn',
  });
  const nginxDir = join(work, 'nginx');
  mkdirSync(join(nginxDir, 'tmp'), { recursive: true });
  writeFileSync(
    join(nginxDir, 'nginx.conf'),
    `worker_processes 1;
pid ${nginxDir}/nginx.pid;
error_log ${nginxDir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${nginxDir}/tmp/body;
  proxy_temp_path ${nginxDir}/tmp/proxy;
  fastcgi_temp_path ${nginxDir}/tmp/fastcgi;
  uwsgi_temp_path ${nginxDir}/tmp/uwsgi;
  scgi_temp_path ${nginxDir}/tmp/scgi;
  upstream app { server 127.0.0.1:${APP}; keepalive 512; }
  server {
    listen 127.0.0.1:${NGINX};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }
  }
}
`,
  );
  start('nginx', ['-p', nginxDir, '-c', join(nginxDir, 'nginx.conf'), '-g', 'daemon off;']);
  await Promise.all([ready(APP), ready(SIDECAR_PROXY), ready(NGINX)]);

  const targets = [
    ['the app directly', APP],
    ['through drain-sidecar', SIDECAR_PROXY],
    ['through nginx', NGINX],
  ];
  for (const [, port] of targets) load(port); // warm-up
  const results = targets.map(([name, port]) => ({ name, ...load(port) }));
  const [direct] = results;
  console.log(`wrk, 2 threads, ${CONNECTIONS} keep-alive connections, ${SECONDS} s each, after a warm-up round:\n`);
  console.log('| path | requests/s | p50 (ms) | p99 (ms) | non-2xx |');
  console.log('|---|---|---|---|---|');
  for (const r of results) {
    const ratio = (v, base) => (r === direct ? '' : ` (${(v / base).toFixed(2)}x)`);
    console.log(
      `| ${r.name} | ${r.rps.toFixed(0)}${ratio(r.rps, direct.rps)} | ${r.p50.toFixed(2)}${ratio(r.p50, direct.p50)} | ${r.p99.toFixed(2)}${ratio(r.p99, direct.p99)} | ${r.errors} |`,
    );
  }
} finally {
  // SIGTERM: nginx's master then stops its workers too (after SIGKILL they would keep the port).
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode === null ? c.once('exit', r) : r()))));
  rmSync(work, { recursive: true, force: true });
}
