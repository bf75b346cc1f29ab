// `drain-sidecar inject` and `check` on the built executable: documents per second and peak RSS on a stream of 10,000
// documents (Deployments with comments, Services, ConfigMaps), and start to exit of `check` on one file. Side by side with
// `cat` of the same stream as the floor of reading and writing it. Prints figures; asserts nothing.
// Usage: npm run build:sea && node bench/inject.mjs
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXE = `${ROOT}dist/drain-sidecar`;
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

/** Wall time and peak RSS of a command, from GNU time's -f when present, else wall time only. */
function measure(cmd, args) {
  const start = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const ms = performance.now() - start;
  const rssKiB = Number(r.stderr.trim().split('\n').at(-1));
  return { ms, rssMiB: Number.isFinite(rssKiB) ? rssKiB / 1024 : undefined, status: r.status };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = { cat: [], inject: [], check: [], checkOne: [] };
for (let run = 0; run < RUNS; run++) {
  rows.cat.push(measure('cat', [file]));
  rows.inject.push(measure(EXE, ['inject', file]));
  rows.check.push(measure(EXE, ['check', file]));
  rows.checkOne.push(measure(EXE, ['check', one]));
}
const summary = (name, xs, docs) => {
  const ms = median(xs.map((x) => x.ms));
  const rss = median(xs.map((x) => x.rssMiB ?? Number.NaN));
  return `| ${name} | ${ms.toFixed(0)} | ${docs ? Math.round((docs / ms) * 1000).toLocaleString('en') : '-'} | ${Number.isNaN(rss) ? '-' : rss.toFixed(1)} |`;
};
console.log(`inject and check, ${DOCUMENTS.toLocaleString('en')} documents (a third of them Deployments), median of ${RUNS}:\n`);
console.log('| command | wall (ms) | documents/s | peak RSS (MiB) |');
console.log('|---|---|---|---|');
console.log(summary('cat (the floor)', rows.cat, DOCUMENTS));
console.log(summary('drain-sidecar inject', rows.inject, DOCUMENTS));
console.log(summary('drain-sidecar check', rows.check, DOCUMENTS));
console.log(summary('drain-sidecar check, one Deployment (start to exit)', rows.checkOne, 1));
