// What a Prometheus scrape of the sidecar costs: bytes, series and time per /metrics answer, idle, during a drain and
// with 10,000 established connections to the app port, for each executable given (default: the built one), side by
// side in one run, proxy mode too, and the Go floor (bench/floor) when Go is installed. Scrapes are 250 ms apart, more
// than a poll interval, so each one reads the app's sockets afresh, as Prometheus's every 15-60 s do. Prints figures;
// asserts nothing.
// Usage: npm run build:sea && node bench/scrape.mjs [other-executable ...]   (e.g. a build of an earlier commit)
import { readFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { buildFloor, FLOOR_NAME, FLOOR_REFERENCE } from './floor.mjs';
import { startSidecar } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const floor = buildFloor();
const executables = [`${ROOT}dist/drain-sidecar`, ...process.argv.slice(2), ...(floor ? [floor] : [])];
const SPACING_MS = 250;
// What a dump walks besides the app's sockets (other namespaces' are not counted here).
const tcp = /TCP: inuse (\d+) orphan \d+ tw (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'));
const SCRAPES = 30;
const CONNECTIONS = 10_000;

function get(port, path) {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let bytes = 0;
      let body = '';
      res.on('data', (d) => {
        bytes += d.length;
        body += d;
      });
      res.on('end', () => resolve({ ms: performance.now() - start, bytes, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function measure(port) {
  const runs = [];
  for (let i = 0; i < SCRAPES; i++) {
    await new Promise((r) => setTimeout(r, SPACING_MS));
    runs.push(await get(port, '/metrics'));
  }
  const ms = runs.map((r) => r.ms).sort((a, b) => a - b);
  const last = runs.at(-1);
  return {
    bytes: last.bytes,
    series: last.body.split('\n').filter((l) => l && !l.startsWith('#')).length,
    p50: ms[Math.floor(ms.length / 2)].toFixed(2),
  };
}

const app = createTcpServer((s) => s.on('error', () => undefined));
await new Promise((r) => app.listen(0, '127.0.0.1', r));
const appPort = app.address().port;
const http = createServer((_req, res) => res.end('ok'));
await new Promise((r) => http.listen(0, '127.0.0.1', r));

const rows = [];
for (const exe of executables) {
  const name = exe === floor ? FLOOR_NAME : exe.replace(ROOT, '');
  const modes = [
    ['passive', { DRAIN_APP_PORTS: String(appPort) }],
    ['proxy', { DRAIN_PROXY_LISTEN: '127.0.0.1:0', DRAIN_PROXY_UPSTREAM: `127.0.0.1:${http.address().port}` }],
  ];
  for (const [mode, env] of exe === floor ? modes.slice(0, 1) : modes) {
    const { child, admin: port } = await startSidecar(exe, env);
    const idle = await measure(port);
    const hook = get(port, '/sleep?s=60').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const draining = await measure(port);
    let loaded;
    if (mode === 'passive') {
      const sockets = [];
      for (let i = 0; i < CONNECTIONS; i += 500) {
        await Promise.all(Array.from({ length: 500 }, () => new Promise((r) => sockets.push(connect(appPort, '127.0.0.1', r)))));
      }
      loaded = await measure(port);
      // Reset, not closed: TIME_WAIT sockets would make every later dump on this machine walk 10,000 more entries.
      for (const s of sockets) s.resetAndDestroy();
    }
    child.kill('SIGKILL');
    void hook;
    rows.push({ name, mode, idle, draining, loaded });
  }
}
app.close();
http.close();

const cell = (m) => (m ? `${m.series} / ${m.bytes.toLocaleString('en')} B / ${m.p50} ms` : '-');
console.log(`/metrics per scrape: series / bytes / median time of ${SCRAPES} scrapes, ${SPACING_MS} ms apart`);
console.log(`(TCP sockets in this namespace at the start: ${tcp?.[1]} in use, ${tcp?.[2]} in TIME_WAIT)\n`);
console.log(`| executable | mode | idle | during a drain | ${CONNECTIONS.toLocaleString('en')} app connections |`);
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.name} | ${r.mode} | ${cell(r.idle)} | ${cell(r.draining)} | ${cell(r.loaded)} |`);
if (!floor) console.log(`\n${FLOOR_NAME}, not built in this run; where it was: ${FLOOR_REFERENCE.scrape}.`);
