// Builds dist/drain-sidecar-sockdiag.node, the sock_diag addon (native/sockdiag.c), with the machine's C compiler
// against the running Node's own headers. It uses Node-API 8 only, whose ABI is stable: the same file loads in Node 20
// (the tests) and in Node 24 (the single executable). Usage: node scripts/build-addon.mjs
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const headers = join(dirname(dirname(process.execPath)), 'include', 'node');
const out = join(ROOT, 'dist', 'drain-sidecar-sockdiag.node');
mkdirSync(dirname(out), { recursive: true });
execFileSync(
  process.env.CC ?? 'cc',
  ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-s', '-I', headers, '-o', out, join(ROOT, 'native', 'sockdiag.c')],
  { stdio: 'inherit' },
);
