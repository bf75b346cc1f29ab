// Runs benchmarks and writes what each prints into bench/README.md, in the section named after it, with the date and
// the machine, so the figures there are the scripts' own. Usage: node scripts/bench.mjs [name ...] (default: all that
// can run here; signals needs root and `ip`).
import { execFileSync, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { writeSection } from './sections.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The ones that time socket dumps run before flood, whose 100,000 closed connections linger in TIME_WAIT for a minute
// in the table every dump walks.
const ALL = [
  'footprint',
  'memory',
  'deps',
  'hook-cpu',
  'scrape',
  'busy',
  'burst',
  'signals',
  'proxy',
  'flood',
  'inject',
  'webhook',
];
const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ALL;
const root = process.getuid?.() === 0 && spawnSync('ip', ['-V']).status === 0;
const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, Node ${process.version}`;

for (const name of names) {
  if (name === 'signals' && !root) {
    console.log('bench: signals skipped (needs root and ip)');
    continue;
  }
  console.log(`bench: ${name}`);
  const out = execFileSync(process.execPath, [`${ROOT}bench/${name}.mjs`], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 26,
  });
  process.stdout.write(out);
  const when = new Date().toISOString().slice(0, 10);
  writeSection(`${ROOT}bench/README.md`, name, `\`node bench/${name}.mjs\`, ${when}, ${machine}:\n\n${out.trim()}`);
}
