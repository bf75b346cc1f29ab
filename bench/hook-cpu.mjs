// CPU a hook call costs the sidecar (user + system, from /proc/PID/stat), with and without an app port watched: each
// watched call reads the app's sockets (a sock_diag dump walks the node's whole socket table). 1,000 calls of
// /sleep?s=0 and of /drain?min=0&max=0, one at a time, per executable given (default: the built one), side by side in
// one run with the executables interleaved over rounds. Prints figures; asserts nothing.
// Usage: npm run build:sea && node bench/hook-cpu.mjs [other-executable ...]
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { buildFloor, FLOOR_NAME } from './floor.mjs';
import { freePort, get } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// Last, the Go floor when it can be built: it reads no sockets, so its app-port rows are its bare /sleep and /healthz.
const floor = buildFloor();
const EXECUTABLES = [`${ROOT}dist/drain-sidecar`, ...process.argv.slice(2), ...(floor ? [floor] : [])];
const label = (exe) => (exe === floor ? FLOOR_NAME : exe.replace(ROOT, ''));
const CALLS = 1000;
const ROUNDS = 3;
const TICK_MS = 1000 / 100; // USER_HZ

const cpuMs = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
};

async function start(exe, env) {
  const port = await freePort();
  // Logging at error level: the per-call log line is not what is measured.
  const child = spawn(exe, [], {
    env: { PATH: process.env.PATH, DRAIN_HOST: '127.0.0.1', DRAIN_PORT: String(port), DRAIN_LOG_LEVEL: 'error', ...env },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  for (let i = 0; i < 100; i++) {
    if (
      await get(port, '/healthz').then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, port };
}

const app = createServer((_req, res) => res.end('ok'));
await new Promise((r) => app.listen(0, '127.0.0.1', r));
const appPort = app.address().port;

async function measure(exe, env, path) {
  const { child, port } = await start(exe, { DRAIN_SHUTDOWN_HOLD_SECONDS: '0', ...env });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 50; i++) await get(port, path, agent); // warm-up
  const before = cpuMs(child.pid);
  for (let i = 0; i < CALLS; i++) await get(port, path, agent);
  const used = cpuMs(child.pid) - before;
  agent.destroy();
  child.kill('SIGKILL');
  return used / CALLS;
}

const cases = [
  ['/sleep?s=0, no app port', {}, '/sleep?s=0'],
  ['/sleep?s=0, one app port', { DRAIN_APP_PORTS: String(appPort) }, '/sleep?s=0'],
  ['/drain?min=0&max=0, one app port', { DRAIN_APP_PORTS: String(appPort) }, '/drain?min=0&max=0'],
];
const results = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, env, path] of cases) {
    for (const exe of EXECUTABLES) {
      const key = `${name}|${exe}`;
      results.set(key, [...(results.get(key) ?? []), await measure(exe, env, path)]);
    }
  }
}
app.close();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`CPU per hook call (ms, user + system), ${CALLS} calls one at a time, median of ${ROUNDS} interleaved rounds:\n`);
console.log(`| call | ${EXECUTABLES.map(label).join(' | ')} |`);
console.log(`|---|${EXECUTABLES.map(() => '---|').join('')}`);
for (const [name] of cases) {
  const values = EXECUTABLES.map((exe) => median(results.get(`${name}|${exe}`)));
  console.log(
    `| ${name} | ${values.map((v, i) => `${v.toFixed(3)}${i === 0 ? '' : ` (${(v / values[0]).toFixed(2)}x)`}`).join(' | ')} |`,
  );
}
