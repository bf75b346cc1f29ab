// Memory charged to each pod after the first on a node: the executable's code is file-backed and shared through the
// page cache by every pod on the node, so what each pod adds is its private memory (RssAnon in /proc/PID/status).
// Measured idle and after traffic (passive: 1,000 hook calls of /sleep?s=0 and 100 scrapes, watching one app port;
// proxy: 20,000 proxied requests on 16 connections and 100 scrapes), in the image's environment and others (below),
// side by side in one run with the variants interleaved over rounds. Prints figures; asserts nothing.
// Usage: npm run build:sea && node bench/memory.mjs [other-executable ...]   (e.g. a build of an earlier commit)
import { readFileSync } from 'node:fs';
import { Agent, createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { buildFloor, FLOOR_NAME, FLOOR_REFERENCE } from './floor.mjs';
import { freePort, get, IMAGE_ENV, startSidecar } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HOOKS = 1000;
const SCRAPES = 100;
const PROXIED = 20_000;
const ROUNDS = 3;
// The environments each executable runs in: the image's (Dockerfile ENV: MALLOC_ARENA_MAX=1), none, and NODE_OPTIONS
// adding --jitless to the executable's own options (sea-config.json execArgv; not a V8 option the executable sets
// itself: its execArgv acts as the command line, which wins over NODE_OPTIONS).
const ENVIRONMENTS = [IMAGE_ENV, {}, { ...IMAGE_ENV, NODE_OPTIONS: '--jitless' }];
const describe = (env) =>
  env === IMAGE_ENV
    ? ' (the image: MALLOC_ARENA_MAX=1)'
    : Object.keys(env).length === 0
      ? ' without MALLOC_ARENA_MAX'
      : ` with ${Object.entries(env)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`;
const EXECUTABLES = [`${ROOT}dist/drain-sidecar`, ...process.argv.slice(2)];
const floor = buildFloor();
const VARIANTS = [
  ...EXECUTABLES.flatMap((exe) => ENVIRONMENTS.map((env) => [`${exe.replace(ROOT, '')}${describe(env)}`, env, exe])),
  // The floor has no proxy mode: its row has passive figures only.
  ...(floor ? [[FLOOR_NAME, {}, floor]] : []),
];

const privateMiB = (pid) => Number(/RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** The executable in env, settled for a second before it is measured. */
async function start(exe, env, extra) {
  // The executable's own warnings (a rejected code cache under --jitless) are not the bench's output.
  const s = await startSidecar(exe, { ...env, ...extra }, 'ignore');
  await pause(1000);
  return s;
}

const app = createServer((_req, res) => res.end('ok'));
await new Promise((r) => app.listen(0, '127.0.0.1', r));
const appPort = app.address().port;

async function passive(exe, env) {
  const s = await start(exe, env, { DRAIN_APP_PORTS: String(appPort), DRAIN_SHUTDOWN_HOLD_SECONDS: '0' });
  const idle = privateMiB(s.child.pid);
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  for (let i = 0; i < HOOKS; i += 32) await Promise.all(Array.from({ length: 32 }, () => get(s.admin, '/sleep?s=0', agent)));
  for (let i = 0; i < SCRAPES; i++) await get(s.admin, '/metrics', agent);
  agent.destroy();
  await pause(2000);
  const after = privateMiB(s.child.pid);
  s.child.kill('SIGKILL');
  return { idle, after };
}

async function proxy(exe, env) {
  const listen = await freePort();
  const s = await start(exe, env, {
    DRAIN_PROXY_LISTEN: `127.0.0.1:${listen}`,
    DRAIN_PROXY_UPSTREAM: `127.0.0.1:${appPort}`,
  });
  s.proxy = listen;
  const idle = privateMiB(s.child.pid);
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  for (let i = 0; i < PROXIED; i += 16) await Promise.all(Array.from({ length: 16 }, () => get(s.proxy, '/', agent)));
  for (let i = 0; i < SCRAPES; i++) await get(s.admin, '/metrics');
  agent.destroy();
  await pause(2000);
  const after = privateMiB(s.child.pid);
  s.child.kill('SIGKILL');
  return { idle, after };
}

const results = new Map(VARIANTS.map(([name]) => [name, { passive: [], proxy: [] }]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, env, exe] of VARIANTS) {
    results.get(name).passive.push(await passive(exe, env));
    if (exe !== floor) results.get(name).proxy.push(await proxy(exe, env));
  }
}
app.close();

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = results.get(VARIANTS[0][0]);
const cell = (runs, key, baseRuns) => {
  if (runs.length === 0) return '-';
  const v = median(runs.map((r) => r[key]));
  const b = median(baseRuns.map((r) => r[key]));
  return `${v.toFixed(1)}${runs === baseRuns ? '' : ` (${(v / b).toFixed(2)}x)`}`;
};
console.log(`private memory (RssAnon, MiB), median of ${ROUNDS} interleaved rounds; ratios against the first row:\n`);
console.log(
  '| executable | passive idle | passive after 1,000 hooks and 100 scrapes | proxy idle | proxy after 20,000 requests and 100 scrapes |',
);
console.log('|---|---|---|---|---|');
for (const [name] of VARIANTS) {
  const r = results.get(name);
  console.log(
    `| ${name} | ${cell(r.passive, 'idle', base.passive)} | ${cell(r.passive, 'after', base.passive)} | ${cell(r.proxy, 'idle', base.proxy)} | ${cell(r.proxy, 'after', base.proxy)} |`,
  );
}
if (!floor) console.log(`\n${FLOOR_NAME}, not built in this run; where it was: ${FLOOR_REFERENCE.memory}.`);
