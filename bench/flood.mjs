// What the admin and proxy ports withstand: the built executable under floods of idle and slow-header connections, with
// and without an attacker that reconnects every connection the sidecar closes. Probes /healthz and a hook call from a new
// client meanwhile. Then a hook storm: 5,000 concurrent tokenless /sleep?s=3 and the kubelet's hook call a second
// later, side by side with another build when given. Prints the figures (scripts/bench.mjs writes them into
// bench/README.md).
// Usage: npm run build:sea && node bench/flood.mjs [other-executable]
import { readFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { flood, startSidecar } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IDLE = 10_000;
const SLOW = 1_000;
const CHURN = 2_000;
const PROBES = 50;
const PROBE_INTERVAL_MS = 100;

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

function get(port, path, timeoutMs = 5000, headers = {}) {
  const start = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - start }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, ms: performance.now() - start }));
    req.end();
  });
}

async function metric(port, series) {
  const body = await new Promise((resolve) => {
    request({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve(text));
    }).end();
  });
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : undefined;
}

/** Private memory (RssAnon): what each pod pays, the executable's shared file pages aside. */
function privateMiB(pid) {
  const m = /RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : undefined;
}

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : undefined;
}

/** Keeps `size` connections open, reconnecting each one the sidecar closes, until stopped. */
function churn(port, size) {
  let stopped = false;
  let opened = 0;
  const live = new Set();
  const open = () => {
    if (stopped) return;
    const s = connect(port, '127.0.0.1');
    opened++;
    live.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      live.delete(s);
      setImmediate(open);
    });
  };
  for (let i = 0; i < size; i++) open();
  return {
    opened: () => opened,
    stop: () => {
      stopped = true;
      for (const s of live) s.destroy();
    },
  };
}

async function probe(adminPort, path) {
  const answers = [];
  for (let i = 0; i < PROBES; i++) {
    answers.push(await get(adminPort, path, 2000));
    await pause(PROBE_INTERVAL_MS);
  }
  const ok = answers.filter((a) => a.status === 200);
  const ms = ok.map((a) => a.ms).sort((a, b) => a - b);
  return { answered: `${ok.length} of ${PROBES}`, p50: ms[Math.floor(ms.length / 2)], max: ms.at(-1) };
}

async function scenario(name, env, target) {
  const app = createServer((_req, res) => res.end('app'));
  await new Promise((r) => app.listen(0, '127.0.0.1', r));
  const appPort = app.address().port;
  const proxyEnv = target === 'proxy' ? { DRAIN_PROXY_LISTEN: '127.0.0.1:0', DRAIN_PROXY_UPSTREAM: `127.0.0.1:${appPort}` } : {};
  const { child, admin: adminPort, proxy: proxyPort } = await startSidecar(`${ROOT}dist/drain-sidecar`, { ...env, ...proxyEnv });
  const port = target === 'proxy' ? proxyPort : adminPort;
  const sockets = [];
  const rssBefore = rssMiB(child.pid);
  const floodStart = performance.now();
  sockets.push(...(await flood(port, IDLE)));
  sockets.push(
    ...(await flood(port, SLOW, target === 'proxy' ? 'GET / HTTP/1.1\r\nHost: po' : 'GET /healthz HTTP/1.1\r\nHost: po')),
  );
  const floodSeconds = (performance.now() - floodStart) / 1000;
  const health = await probe(adminPort, '/healthz');
  const auth = env.DRAIN_HOOK_TOKEN ? { authorization: `Bearer ${env.DRAIN_HOOK_TOKEN}` } : {};
  const hook = await get(adminPort, '/sleep?s=0.2', 5000, auth);
  const proxied = target === 'proxy' ? await get(proxyPort, '/') : undefined;
  const attacker = churn(port, CHURN);
  await pause(500);
  const underChurn = await probe(adminPort, '/healthz');
  const churnHook = await get(adminPort, '/sleep?s=0.2', 5000, auth);
  const churnProxied = target === 'proxy' ? await get(proxyPort, '/') : undefined;
  attacker.stop();
  const listener = target === 'proxy' ? 'proxy' : 'admin';
  const evicted = await metric(adminPort, `drain_sidecar_shed_connections_total{listener="${listener}",reason="evicted_idle"}`);
  const rssAfter = rssMiB(child.pid);
  for (const s of sockets) s.destroy();
  child.kill('SIGKILL');
  app.close();
  app.closeAllConnections();
  const row = {
    scenario: name,
    flood: `${IDLE.toLocaleString('en')} idle + ${SLOW.toLocaleString('en')} slow-header in ${floodSeconds.toFixed(1)} s`,
    healthz: `${health.answered}, p50 ${health.p50?.toFixed(1)} ms, max ${health.max?.toFixed(1)} ms`,
    hook: `${hook.status}, ${hook.ms.toFixed(0)} ms for s=0.2${proxied ? `; proxied request ${proxied.status}` : ''}`,
    churn: `${CHURN.toLocaleString('en')} reconnecting (${attacker.opened().toLocaleString('en')} connections opened): /healthz ${underChurn.answered}, max ${underChurn.max?.toFixed(1)} ms; hook ${churnHook.status}${churnProxied ? `; proxied ${churnProxied.status}` : ''}`,
    evicted: evicted?.toLocaleString('en'),
    rss: `${rssBefore} → ${rssAfter} MiB`,
  };
  return row;
}

/**
 * A storm of tokenless hook calls, then the kubelet's: how each storm call ended (answered, or its connection closed
 * unanswered), how long the kubelet's was held and how it was answered, and the sidecar's RSS at the storm's peak.
 */
async function storm(exe) {
  const STORM = 5_000;
  const { child, admin } = await startSidecar(exe, {}, 'ignore');
  const before = privateMiB(child.pid);
  const start = performance.now();
  const sockets = await flood(admin, STORM, 'GET /sleep?s=3 HTTP/1.1\r\nHost: pod\r\n\r\n', '127.0.20.1');
  const answered = new Set();
  for (const s of sockets) s.once('data', () => answered.add(s));
  await pause(1000);
  const peak = privateMiB(child.pid);
  const kubeletCall = get(admin, '/sleep?s=20', 30_000);
  await pause(4000 - (performance.now() - start));
  const held = sockets.filter((s) => !s.destroyed && !answered.has(s)).length;
  const unanswered = sockets.filter((s) => s.destroyed && !answered.has(s)).length;
  const kubelet = await kubeletCall;
  for (const s of sockets) s.destroy();
  child.kill('SIGKILL');
  return {
    build: exe === `${ROOT}dist/drain-sidecar` ? 'drain-sidecar' : 'other build',
    storm: `${answered.size.toLocaleString('en')} answered, ${held.toLocaleString('en')} still held, ${unanswered.toLocaleString('en')} closed unanswered`,
    kubelet: `${kubelet.status || 'reset'} after ${(kubelet.ms / 1000).toFixed(2)} s`,
    rss: `${before} → ${peak} MiB`,
  };
}

const storms = [await storm(`${ROOT}dist/drain-sidecar`), ...(process.argv[2] ? [await storm(process.argv[2])] : [])];

const rows = [
  await scenario('admin port, defaults', {}, 'admin'),
  await scenario('admin port, token set', { DRAIN_HOOK_TOKEN: 'bench' }, 'admin'),
  await scenario('proxy port, defaults', {}, 'proxy'),
];
const table = [
  '| port under attack | flood | new client /healthz (admin) | hook call from a new client | attacker reconnecting what it loses | connections evicted | sidecar RSS |',
  '|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.scenario} | ${r.flood} | ${r.healthz} | ${r.hook} | ${r.churn} | ${r.evicted} | ${r.rss} |`),
].join('\n');
console.log(table);
console.log(
  [
    '',
    "Hook storm: 5,000 concurrent tokenless `/sleep?s=3`, then the kubelet's `/sleep?s=20` a second later (default DRAIN_MAX_HOOKS 64, DRAIN_DEFAULT_SLEEP_SECONDS 20):",
    '',
    "| build | storm calls 4 s in | the kubelet's hook call | private memory (RssAnon) before → 1 s into the storm |",
    '|---|---|---|---|',
    ...storms.map((r) => `| ${r.build} | ${r.storm} | ${r.kubelet} | ${r.rss} |`),
  ].join('\n'),
);
