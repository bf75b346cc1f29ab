// Builds dist/drain-sidecar-sockdiag.node, the sock_diag addon (native/sockdiag.c), with the machine's C compiler
// against Node's headers: the running Node's, else the pinned Node's that `npm run build:sea` fetched into .cache/. It
// uses Node-API 8 only, whose ABI is stable: the same file loads in Node 20 (the tests) and in Node 24 (the single
// executable). Usage: node scripts/build-addon.mjs
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { nodeVersion } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).sea;
const candidates = [
  join(dirname(dirname(process.execPath)), 'include', 'node'),
  join(ROOT, '.cache', `node-linux-${process.arch}-${nodeVersion}`, 'include', 'node'),
];
const headers = candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
if (!headers) throw new Error(`no node_api.h in ${candidates.join(' or ')}; run npm run build:sea, which fetches them`);
const out = join(ROOT, 'dist', 'drain-sidecar-sockdiag.node');
mkdirSync(dirname(out), { recursive: true });
execFileSync(
  process.env.CC ?? 'cc',
  ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-s', '-I', headers, '-o', out, join(ROOT, 'native', 'sockdiag.c')],
  { stdio: 'inherit' },
);
