// Builds dist/drain-sidecar: the esbuild bundle inside a Node single executable application, made from the official
// Node binary that the npm package node-linux-<arch> carries at a pinned version and integrity.
// Usage: node scripts/build-sea.mjs [x64|arm64]   (default: this machine's architecture)
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// postject's sentinel; Node looks for this fuse to know a blob was injected.
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// package.json "sea": the Node version, and each tarball's integrity from the registry (a mismatch is refused).
const { nodeVersion: NODE_VERSION, integrity: INTEGRITY } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).sea;
const arch = process.argv[2] ?? process.arch;
if (!(arch in INTEGRITY)) throw new Error(`unsupported architecture ${arch}; use x64 or arm64`);
// Checked before anything is fetched or overwritten.
if (arch !== process.arch)
  throw new Error(
    `the blob for ${arch} must be made by a ${arch} Node; build on ${arch} (docker buildx runs the build stage there)`,
  );

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { cwd: ROOT, stdio: 'inherit', ...opts });

/**
 * The official Node binary for arch, with its headers (test/image/standin-bases.sh lays them out as the node image
 * does), fetched once into .cache/ and checked against the pinned integrity.
 */
function nodeBinary() {
  const dir = join(ROOT, '.cache', `node-linux-${arch}-${NODE_VERSION}`);
  const bin = join(dir, 'bin', 'node');
  if (existsSync(bin) && existsSync(join(dir, 'include', 'node'))) return bin;
  const tmp = mkdtempSync(join(tmpdir(), 'node-linux-'));
  try {
    const out = execFileSync('npm', ['pack', `node-linux-${arch}@${NODE_VERSION}`, '--json', '--pack-destination', tmp], {
      encoding: 'utf8',
    });
    const [pack] = JSON.parse(out);
    if (pack.integrity !== INTEGRITY[arch])
      throw new Error(`node-linux-${arch}@${NODE_VERSION}: integrity ${pack.integrity} is not the pinned one`);
    mkdirSync(dir, { recursive: true });
    run('tar', ['-xzf', join(tmp, pack.filename), '-C', dir, '--strip-components=1', 'package/bin/node', 'package/include']);
    return bin;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// The Node binary first: its headers are the addon's fallback when the running Node has none.
const node = nodeBinary();
run('npm', ['run', '-s', 'build']);
const out = join(ROOT, 'dist', 'drain-sidecar');
rmSync(out, { force: true });
copyFileSync(node, out);
chmodSync(out, 0o755);
// Stripping before injection saves ~18 MB and works; stripping after injection corrupts the blob.
try {
  run('strip', ['--strip-all', out]);
} catch {
  console.warn('build-sea: strip failed or is missing (Debian package binutils); the executable keeps its symbols');
}

// The blob must come from the very binary it goes into: the V8 version and flags must match.
const config = JSON.parse(readFileSync(join(ROOT, 'sea-config.json'), 'utf8'));
const blob = join(ROOT, config.output);
run(out, ['--experimental-sea-config', 'sea-config.json']);
run(process.execPath, [join(ROOT, 'node_modules/postject/dist/cli.js'), out, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', FUSE]);
rmSync(blob);
console.log(`build-sea: ${out} (node ${NODE_VERSION}, ${arch})`);
