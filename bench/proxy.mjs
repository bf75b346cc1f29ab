// Proxy mode's cost: requests per second and latency (p50, p99) for the app directly, through drain-sidecar's proxy (the
// single executable), and through nginx configured as an equivalent keep-alive reverse proxy (one worker), with the same
// load generator (wrk) and app, at 64 connections and at 1, interleaved over rounds (medians), printed as ratios to
// nginx. Give another build (an earlier commit's) to run it side by side. Needs wrk and nginx (Debian packages).
// Usage: npm run build:sea && node bench/proxy.mjs [other-executable] [--seconds=5] [--rounds=3]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeNginxConfig } from '../drill/nginx.mjs';
import { freePort, startSidecar } from './lab.mjs';
import { ready, wrk } from './wrk.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' } },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CONNECTIONS = [64, 1];
const executables = [join(ROOT, 'dist/drain-sidecar'), ...positionals];
const work = mkdtempSync(join(tmpdir(), 'proxy-bench-'));
const children = [];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  const app = await freePort();
  children.push(spawn(process.execPath, [join(ROOT, 'drill/app.mjs'), String(app), 'bench'], { stdio: 'ignore' }));
  const targets = [{ name: 'the app directly', port: app }];
  for (const exe of executables) {
    const env = { DRAIN_PROXY_LISTEN: '127.0.0.1:0', DRAIN_PROXY_UPSTREAM: `127.0.0.1:${app}` };
    const { child, proxy } = await startSidecar(exe, env);
    children.push(child);
    targets.push({ name: `through ${exe.replace(ROOT, '')}`, port: proxy });
  }
  const nginx = { name: 'through nginx', port: await freePort() };
  const nginxDir = join(work, 'nginx');
  writeNginxConfig({
    dir: nginxDir,
    port: nginx.port,
    servers: [`127.0.0.1:${app}`],
    keepalive: 512,
    locationExtra: [
      '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
      '      proxy_set_header X-Forwarded-Proto $scheme;',
      '      proxy_set_header X-Forwarded-Host $host;',
    ].join('\n'),
  });
  children.push(spawn('nginx', ['-p', nginxDir, '-c', join(nginxDir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' }));
  targets.push(nginx);
  await Promise.all(targets.map((t) => ready(t.port)));

  for (const t of targets) wrk(t.port, { seconds: SECONDS, connections: 64 }); // warm-up: JIT, pools
  const runs = new Map(targets.flatMap((t) => CONNECTIONS.map((c) => [`${t.name}/${c}`, []])));
  for (let round = 0; round < ROUNDS; round++)
    for (const connections of CONNECTIONS)
      for (const t of targets) runs.get(`${t.name}/${connections}`).push(wrk(t.port, { seconds: SECONDS, connections }));
  const figures = (t, c) => {
    const rs = runs.get(`${t.name}/${c}`);
    return { rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)) };
  };

  console.log(`wrk (same app, keep-alive), ${SECONDS} s per run, median of ${ROUNDS} interleaved rounds after a warm-up;`);
  console.log('ratios against nginx:\n');
  for (const connections of CONNECTIONS) {
    const base = figures(nginx, connections);
    console.log(`${connections} connection${connections > 1 ? 's' : ''}:\n`);
    console.log('| path | requests/s | p50 (ms) | p99 (ms) |\n|---|---|---|---|');
    for (const t of targets) {
      const f = figures(t, connections);
      const x = (v, b) => (t === nginx ? '' : ` (${(v / b).toFixed(2)}x)`);
      console.log(
        `| ${t.name} | ${f.rps.toFixed(0)}${x(f.rps, base.rps)} | ${f.p50.toFixed(3)}${x(f.p50, base.p50)} | ${f.p99.toFixed(2)} |`,
      );
    }
    console.log('');
  }
  const ours = targets[1];
  const throughput = figures(ours, 64).rps / figures(nginx, 64).rps;
  const added = figures(ours, 1).p50 - figures(nginx, 1).p50;
  console.log(
    `drain-sidecar against nginx: ${throughput.toFixed(2)}x the requests/s at 64 connections; ` +
      `${added >= 0 ? '+' : ''}${added.toFixed(3)} ms p50 at 1 connection.`,
  );
} finally {
  // SIGTERM: nginx's master then stops its workers too (after SIGKILL they would keep the port).
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode === null ? c.once('exit', r) : r()))));
  rmSync(work, { recursive: true, force: true });
}
