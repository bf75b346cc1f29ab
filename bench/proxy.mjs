// Proxy mode's cost: requests per second and latency (p50, p99) for the app directly, through drain-sidecar's proxy (the
// single executable), and through nginx configured as an equivalent keep-alive reverse proxy (one worker), with the same
// load generator (wrk) and connection count, one after the other in one run, printed as ratios to the direct figures.
// Needs wrk and nginx (Debian packages). Usage: npm run build:sea && node bench/proxy.mjs [seconds] [connections]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNginxConfig } from '../drill/nginx.mjs';
import { ready, wrk } from './wrk.mjs';

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
  writeNginxConfig({
    dir: nginxDir,
    port: NGINX,
    servers: [`127.0.0.1:${APP}`],
    keepalive: 512,
    locationExtra: [
      '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
      '      proxy_set_header X-Forwarded-Proto $scheme;',
      '      proxy_set_header X-Forwarded-Host $host;',
    ].join('\n'),
  });
  start('nginx', ['-p', nginxDir, '-c', join(nginxDir, 'nginx.conf'), '-g', 'daemon off;']);
  await Promise.all([ready(APP), ready(SIDECAR_PROXY), ready(NGINX)]);

  const targets = [
    ['the app directly', APP],
    ['through drain-sidecar', SIDECAR_PROXY],
    ['through nginx', NGINX],
  ];
  for (const [, port] of targets) wrk(port, { seconds: SECONDS, connections: CONNECTIONS }); // warm-up
  const results = targets.map(([name, port]) => ({ name, ...wrk(port, { seconds: SECONDS, connections: CONNECTIONS }) }));
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
