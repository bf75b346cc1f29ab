// Cost of watching the app's connections: read and parse of /proc/net/tcp and tcp6 at 1,000 and 10,000 established
// loopback connections, next to the bare kernel read of the same files in the same run. The connections live in a
// network namespace this bench creates (root and `ip` needed) and deletes afterwards. Prints figures; asserts nothing.
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NS = `drain-bench-${process.pid}`;
const COUNTS = [1000, 10000];

const ip = (...args) => execFileSync('ip', args, { stdio: 'inherit' });

// Bundle the modules under test once, so the worker runs the same code the sidecar runs.
const { build } = await import('esbuild');
await build({
  stdin: {
    contents: `export { parseTcpTable } from './src/procnet.ts';
      export { Connections } from './src/connections.ts';
      export { createMetrics } from './src/metrics.ts';
      export { Registry } from 'prom-client';
      export { pino } from 'pino';`,
    resolveDir: ROOT,
    loader: 'ts',
  },
  bundle: true,
  platform: 'node',
  format: 'esm',
  outfile: `${ROOT}dist/bench/procnet.mjs`,
  logLevel: 'warning',
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
});

function runWorker(count) {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}bench/procnet-worker.mjs`, String(count)], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      code === 0 ? resolve() : reject(new Error(`worker for ${count} connections exited with ${code}`));
    });
  });
}

ip('netns', 'add', NS);
try {
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  for (const count of COUNTS) await runWorker(count);
} finally {
  ip('netns', 'del', NS);
}
