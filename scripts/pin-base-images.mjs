// Pins the Dockerfile's base images to the digests their tags point to now: resolves each ARG BUILD_BASE and
// RUNTIME_BASE tag with `docker buildx imagetools inspect` (the multi-architecture index's digest) and rewrites the line.
// Needs Docker with buildx and a reachable registry. Usage: node scripts/pin-base-images.mjs
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DOCKERFILE = fileURLToPath(new URL('../Dockerfile', import.meta.url));
let text = readFileSync(DOCKERFILE, 'utf8');
for (const arg of ['BUILD_BASE', 'RUNTIME_BASE']) {
  const line = new RegExp(`^ARG ${arg}=([^@\\s]+)(@sha256:[0-9a-f]{64})?$`, 'm');
  const m = line.exec(text);
  if (!m) throw new Error(`Dockerfile: no ARG ${arg}=<image>`);
  const tag = m[1];
  const digest = execFileSync('docker', ['buildx', 'imagetools', 'inspect', tag, '--format', '{{json .Manifest.Digest}}'], {
    encoding: 'utf8',
  })
    .trim()
    .replace(/"/g, '');
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`${tag}: unexpected digest ${digest}`);
  text = text.replace(line, `ARG ${arg}=${tag}@${digest}`);
  console.log(`${arg}=${tag}@${digest}`);
}
writeFileSync(DOCKERFILE, text);
