// A pod whose network namespace carries nothing but what this script does: run it in a namespace of its own
// (`unshare -n`, loopback up). An app (a TCP server answering "ok" to each line) with a pool of 4 connections held open,
// and the sidecar executable given as argv[2] watching the app's port. Between the segments this script makes, every
// poll of the sidecar finds the namespace's TCP counters unchanged and reuses its previous read; what follows must be
// seen all the same:
//   1. a /sleep?s=3 hook call, during which 3 requests come on the pool at 1 s and 2 more at 2 s;
//   2. SIGTERM with no hook, then the app closing its listener (no segment: the pool stays open) 1 s later.
// Prints one JSON line: the sidecar's `drain finished` line of the hook's episode, when the last requests were sent
// (seconds after the hook call), and how long after the listener closed the sidecar exited.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';

const APP_PORT = 8080;
const SIDECAR_PORT = 9555;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const app = createServer((socket) => socket.on('data', () => socket.write('ok\n')));
await new Promise((r) => app.listen(APP_PORT, '127.0.0.1', r));
const pool = await Promise.all(
  Array.from(
    { length: 4 },
    () =>
      new Promise((r) => {
        const s = connect(APP_PORT, '127.0.0.1', () => r(s));
      }),
  ),
);
const ask = (socket) =>
  new Promise((r) => {
    socket.once('data', r);
    socket.write('GET\n');
  });

const sidecar = spawn(process.argv[2], [], {
  env: {
    DRAIN_APP_PORTS: String(APP_PORT),
    DRAIN_PORT: String(SIDECAR_PORT),
    DRAIN_POLL_SECONDS: '0.2',
    DRAIN_SHUTDOWN_HOLD_SECONDS: '0',
    DRAIN_FINAL_SCRAPE_SECONDS: '0',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const lines = [];
const started = new Promise((resolve) => {
  createInterface({ input: sidecar.stdout }).on('line', (line) => {
    lines.push(line);
    if (line.includes('"msg":"drain-sidecar started"')) resolve();
  });
});
const exited = new Promise((r) => sidecar.on('exit', r));
const killer = setTimeout(() => sidecar.kill('SIGKILL'), 20_000);
await started;
await sleep(500);

const hookAt = performance.now();
const hook = new Promise((resolve, reject) =>
  request({ host: '127.0.0.1', port: SIDECAR_PORT, path: '/sleep?s=3', agent: false }, (res) => res.resume().on('end', resolve))
    .on('error', reject)
    .end(),
);
await sleep(1000);
await Promise.all(pool.slice(0, 3).map(ask));
await sleep(1000);
const lastSentAt = performance.now();
await Promise.all(pool.slice(0, 2).map(ask));
await hook;
await sleep(300);
const drain = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'drain finished');

sidecar.kill('SIGTERM');
await sleep(1000);
const aliveBeforeClose = sidecar.exitCode === null;
const closedAt = performance.now();
app.close();
const code = await exited;
const exitSeconds = (performance.now() - closedAt) / 1000;
clearTimeout(killer);
for (const s of pool) s.destroy();
console.log(JSON.stringify({ drain, lastSentSeconds: (lastSentAt - hookAt) / 1000, aliveBeforeClose, code, exitSeconds }));
