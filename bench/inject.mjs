// `drain-sidecar inject` and `check` on the built executable: documents per second and peak RSS on a stream of 10,000
// documents (Deployments with comments, Services, ConfigMaps), one Deployment of 20,000 lines, the whole corpus of public
// manifests under test/fixtures/corpus, and start to exit of `check` on one file. Side by side with `cat` of the same
// input as the floor of reading and writing it, and with another build when given. Prints figures; asserts nothing.
// Usage: npm run build:sea && node bench/inject.mjs [other-executable]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXE = `${ROOT}dist/drain-sidecar`;
const OTHER = process.argv[2];
const CORPUS = `${ROOT}test/fixtures/corpus`;
const DOCUMENTS = 10_000;
const RUNS = 3;

const deployment = (i) => `# workload ${i}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-${i} # generated
spec:
  selector:
    matchLabels: { app: app-${i} }
  template:
    metadata:
      labels: { app: app-${i} }
    spec:
      containers:
        - name: app
          image: registry.example.com/app:${i}
          ports: [{ containerPort: 8080 }]
          readinessProbe: { httpGet: { path: /, port: 8080 } }
`;
const service = (i) => `apiVersion: v1
kind: Service
metadata: { name: app-${i} }
spec:
  selector: { app: app-${i} }
  ports: [{ port: 80, targetPort: 8080 }]
`;
const configMap = (i) => `apiVersion: v1
kind: ConfigMap
metadata: { name: app-${i} }
data: { key: "value-${i}" }
`;
const makers = [deployment, service, configMap];
const stream = Array.from({ length: DOCUMENTS }, (_, i) => makers[i % 3](i)).join('---\n');
const dir = mkdtempSync(join(tmpdir(), 'bench-inject-'));
const file = join(dir, 'stream.yaml');
writeFileSync(file, stream);
const one = join(dir, 'one.yaml');
writeFileSync(one, deployment(0));
// One Deployment whose container has 5,000 environment variables: 20,000 lines in one document.
const env = Array.from({ length: 5_000 }, (_, i) => `            - name: VAR_${i}\n              value: "${i}"\n`).join('');
const long = join(dir, 'long.yaml');
writeFileSync(long, deployment(0).replace('          ports:', `          env:\n${env}          ports:`));

/** Wall time and peak RSS of a command, from GNU time's -f when present, else wall time only. */
function measure(cmd, args) {
  const start = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const ms = performance.now() - start;
  const rssKiB = Number(r.stderr.trim().split('\n').at(-1));
  return { ms, rssMiB: Number.isFinite(rssKiB) ? rssKiB / 1024 : undefined, status: r.status };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const inputs = [
  { name: `a stream of ${DOCUMENTS.toLocaleString('en')} documents`, args: [file], docs: DOCUMENTS, cat: [file] },
  { name: 'one Deployment of 20,000 lines', args: [long], docs: 1, cat: [long] },
  { name: 'the corpus (test/fixtures/corpus)', args: [CORPUS], docs: undefined, cat: ['-r', CORPUS] },
];
const builds = [['drain-sidecar', EXE], ...(OTHER ? [['other build', OTHER]] : [])];
console.log(`inject and check, median of ${RUNS} interleaved runs${OTHER ? `; other build: ${OTHER}` : ''}:\n`);
console.log('| input | command | wall (ms) | documents/s | peak RSS (MiB) |');
console.log('|---|---|---|---|---|');
const row = (input, name, xs) => {
  const ms = median(xs.map((x) => x.ms));
  const rss = median(xs.map((x) => x.rssMiB ?? Number.NaN));
  const rate = input.docs ? Math.round((input.docs / ms) * 1000).toLocaleString('en') : '-';
  const failed = xs.some((x) => x.status !== 0 && x.status !== 1) ? ' (failed)' : '';
  console.log(`| ${input.name} | ${name}${failed} | ${ms.toFixed(0)} | ${rate} | ${Number.isNaN(rss) ? '-' : rss.toFixed(1)} |`);
};
for (const input of inputs) {
  const rows = new Map([['cat (the floor)', []]]);
  for (const [name] of builds) for (const sub of ['inject', 'check']) rows.set(`${name} ${sub}`, []);
  for (let run = 0; run < RUNS; run++) {
    rows
      .get('cat (the floor)')
      .push(measure(input.cat[0] === '-r' ? 'grep' : 'cat', input.cat[0] === '-r' ? ['-rh', '', CORPUS] : input.cat));
    for (const [name, exe] of builds) {
      rows.get(`${name} inject`).push(measure(exe, ['inject', ...input.args]));
      rows.get(`${name} check`).push(measure(exe, ['check', ...input.args]));
    }
  }
  for (const [name, xs] of rows) row(input, name, xs);
}
const startToExit = [];
for (let run = 0; run < RUNS; run++) startToExit.push(measure(EXE, ['check', one]));
row({ name: 'one Deployment', docs: 1 }, 'drain-sidecar check (start to exit)', startToExit);

// What inject does with the corpus, workload by workload, from its own report on stderr.
const report = spawnSync(EXE, ['inject', CORPUS], { encoding: 'utf8', maxBuffer: 1 << 30 }).stderr.split('\n');
const files = spawnSync('find', [CORPUS, '-name', '*.y*ml'], { encoding: 'utf8' }).stdout.trim().split('\n').length;
const reasons = new Map();
const count = (outcome, reason) => {
  const key = `${outcome}|${reason}`;
  reasons.set(key, (reasons.get(key) ?? 0) + 1);
};
for (const line of report) {
  if (line.startsWith('injected ')) count('injected', '');
  else if (line.startsWith('unchanged ')) count('unchanged', 'already injected');
  else if (/^info +\S+: skipped: /.test(line)) count('skipped', line.replace(/^.*skipped: /, '').replace(/ \(.*$|, so .*$/, ''));
  else if (/^error /.test(line)) {
    const message = line.replace(/^error +\S+( container \S+)?: /, '').replace(/;.*$/, '');
    count(
      'refused',
      message
        .replace(/\(.*?\)/g, '')
        .replace(/\d+/g, 'N')
        .trim(),
    );
  }
}
console.log(
  `\nWhat inject does with the corpus: ${files} files of ${readdirSync(CORPUS, { withFileTypes: true }).filter((e) => e.isDirectory()).length} projects, one line per workload:\n`,
);
console.log('| outcome | workloads | why |');
console.log('|---|---|---|');
for (const [key, n] of [...reasons].sort()) {
  const [outcome, reason] = key.split('|');
  console.log(`| ${outcome} | ${n} | ${reason || '-'} |`);
}
