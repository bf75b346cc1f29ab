// inject, check and the webhook on the public manifests of test/fixtures/corpus (SOURCES.md lists where each comes from),
// each also re-rendered in the styles real tools write: kubectl's `-o yaml` (sorted keys, sequences not indented),
// indented sequences with a 4-space step, flow style, JSON, and CRLF line ends. The oracle: for every document, what
// `inject` writes parses as the webhook's JSON patch applied to the parsed input; injecting twice gives the same bytes;
// a document without a pod template comes out byte for byte.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { runSubcommand } from '../../src/cli.js';
import { type PodSpec, type ServiceInfo, workloadMinReadySeconds } from '../../src/inject.js';
import { review } from '../../src/webhook.js';
import { expectConsistentPod, hasSchema, type Manifest, validate } from '../kube.js';

const { applyPatch } = fastJsonPatch;
const CORPUS = resolve(import.meta.dirname, '../fixtures/corpus');
const IMAGE = 'drain-sidecar:test';

const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
const corpus = files(CORPUS).sort();

/** Runs a subcommand in-process on stdin text. */
function run(args: string[], stdin: string) {
  let stdout = '';
  let stderr = '';
  const code = runSubcommand(args[0] as 'inject', args.slice(1), {
    stdin: () => Buffer.from(stdin),
    out: (t) => {
      stdout += t;
    },
    err: (t) => {
      stderr += t;
    },
  });
  return { code, stdout, stderr };
}

const objects = (text: string): unknown[] => parseAllDocuments(text, { merge: true, logLevel: 'error' }).map((d) => d.toJS());

/** Every document of a file in another style; the same objects. */
const STYLES: Record<string, (text: string) => string> = {
  original: (t) => t,
  kubectl: (t) =>
    objects(t)
      .map((o) => stringify(o, { sortMapEntries: true, indentSeq: false, lineWidth: 0 }))
      .join('---\n'),
  indented: (t) =>
    objects(t)
      .map((o) => stringify(o, { indent: 4, indentSeq: true, lineWidth: 0 }))
      .join('---\n'),
  flow: (t) =>
    objects(t)
      .map((o) => stringify(o, { collectionStyle: 'flow', lineWidth: 0 }))
      .join('---\n'),
  json: (t) => {
    const all = objects(t).filter((o) => o !== null);
    return `${JSON.stringify(all.length === 1 ? all[0] : { apiVersion: 'v1', kind: 'List', items: all }, null, 2)}\n`;
  },
  crlf: (t) => t.replace(/\r?\n/g, '\r\n'),
};

type Obj = Record<string, unknown>;

/** The pod templates of a document, with their JSON Pointer, as inject finds them. */
function templates(doc: unknown, base = ''): { pointer: string; kind: string; template: Obj; minReady?: unknown }[] {
  const o = doc as Obj | null;
  if (!o || typeof o !== 'object') return [];
  if (o.kind === 'List' && Array.isArray(o.items)) return o.items.flatMap((it, i) => templates(it, `${base}/items/${i}`));
  const spec = o.spec as Obj | undefined;
  if (o.kind === 'Pod') return [{ pointer: base, kind: 'Pod', template: o }];
  if (o.kind === 'CronJob') return [];
  const template = spec?.template as Obj | undefined;
  return template && Array.isArray((template.spec as Obj | undefined)?.containers)
    ? [{ pointer: `${base}/spec/template`, kind: String(o.kind), template, minReady: spec?.minReadySeconds }]
    : [];
}

function servicesOf(docs: unknown[]): ServiceInfo[] {
  return docs
    .flatMap((d) => ((d as Obj)?.kind === 'List' ? ((d as Obj).items as unknown[]) : [d]))
    .filter((d) => (d as Obj)?.kind === 'Service')
    .map((d) => {
      const s = d as { metadata?: { name?: string }; spec?: ServiceInfo };
      return { name: s.metadata?.name ?? '', selector: s.spec?.selector, ports: s.spec?.ports ?? [] };
    });
}

const OPT_IN = 'drain-sidecar.dev/inject';

/** The document as the webhook would have it: each template reviewed as a pod that opts in, its patch applied. */
function webhookApplied(doc: unknown, services: ServiceInfo[]): unknown {
  const expected = structuredClone(doc);
  for (const { pointer, kind, template, minReady } of templates(doc)) {
    // The workload's minReadySeconds, which inject passes on and no review carries.
    const minReadySeconds = workloadMinReadySeconds(kind, minReady);
    // The CLI skips batch workloads by kind; a pod that carries the opt-in label is injected whatever owns it.
    if (kind === 'Job') continue;
    const metadata = structuredClone((template.metadata ?? {}) as Obj);
    metadata.labels = { ...(metadata.labels as Obj), [OPT_IN]: 'true' };
    const pod = { metadata, spec: structuredClone(template.spec) };
    const { response } = review(
      {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', object: pod },
      },
      { image: IMAGE, regular: false, replaceHooks: false },
      services,
      'pod',
      { minReadySeconds },
    );
    const patched = response.patch
      ? applyPatch(pod, JSON.parse(Buffer.from(response.patch, 'base64').toString())).newDocument
      : pod;
    const labels = patched.metadata.labels as Obj;
    delete labels[OPT_IN];
    const original = template.metadata as Obj | undefined;
    if (!original?.labels && Object.keys(labels).length === 0) delete patched.metadata.labels;
    const target = (pointer === '' ? expected : fastJsonPatch.getValueByPointer(expected, pointer)) as Obj;
    if (original || Object.keys(patched.metadata).length > 0) target.metadata = patched.metadata;
    target.spec = patched.spec;
  }
  return expected;
}

/** Each document's source text, by its own range. */
const documentTexts = (text: string): string[] =>
  parseAllDocuments(text, { logLevel: 'error' }).map((d) => text.slice(d.range[0], d.range[1]).replace(/\r?\n$/, ''));

describe('the corpus', () => {
  it('has at least 30 workload files of at least 8 projects', () => {
    const withTemplates = corpus.filter((f) => objects(readFileSync(f, 'utf8')).some((d) => templates(d).length > 0));
    expect(withTemplates.length).toBeGreaterThanOrEqual(30);
    expect(new Set(withTemplates.map((f) => relative(CORPUS, f).split('/')[0])).size).toBeGreaterThanOrEqual(8);
  });
});

describe.each(Object.keys(STYLES))('inject on the corpus, %s style', (style) => {
  it.each(corpus.map((f) => relative(CORPUS, f)))('%s', (name) => {
    const input = (STYLES[style] as (t: string) => string)(readFileSync(join(CORPUS, name), 'utf8'));
    const first = run(['inject', '--image', IMAGE, '-'], input);
    // 1: a workload refused (a conflicting hook, a grace period too short); never 2, a broken edit.
    expect(first.stderr).not.toMatch(/could not|would not read back/);
    expect([0, 1]).toContain(first.code);
    const before = objects(input);
    const after = objects(first.stdout);
    expect(after).toHaveLength(before.length);
    const services = servicesOf(before);
    before.forEach((doc, i) => {
      expect(after[i]).toEqual(webhookApplied(doc, services));
    });
    // Documents without a pod template: byte for byte.
    const inTexts = documentTexts(input);
    const outTexts = documentTexts(first.stdout);
    before.forEach((doc, i) => {
      if (templates(doc).length === 0 && (doc as Obj)?.kind !== 'CronJob') expect(outTexts[i]).toBe(inTexts[i]);
    });
    // What was injected is a valid, consistent pod.
    for (const doc of after) {
      const items = (doc as Obj)?.kind === 'List' ? ((doc as Obj).items as Manifest[]) : [doc as Manifest];
      for (const m of items) if (m && hasSchema(m)) validate(m);
      for (const { template } of templates(doc)) {
        const spec = template.spec as PodSpec;
        if ([...(spec.initContainers ?? []), ...spec.containers].some((c) => c.name === 'drain-sidecar'))
          expectConsistentPod(spec);
      }
    }
    const second = run(['inject', '--image', IMAGE, '-'], first.stdout);
    expect(second.stdout).toBe(first.stdout);
    expect(second.code).toBe(first.code);
    // uninject takes out exactly what inject put in: the input again, byte for byte.
    const undone = run(['uninject', '-'], first.stdout);
    expect(undone.code).toBe(0);
    expect(undone.stdout).toBe(
      input.endsWith('\n') || input === '' ? input : `${input}${input.includes('\r\n') ? '\r\n' : '\n'}`,
    );
  });
});

interface CheckFinding {
  severity: string;
  workload: string;
  container?: string;
  message: string;
}

/** The container a finding names, looked up in the documents it came from, and whether it is a regular container. */
function containerOf(docs: unknown[], f: CheckFinding): (Obj & { regular: boolean }) | undefined {
  const [kind, name] = f.workload.split('/');
  for (const doc of docs.flatMap((d) => ((d as Obj)?.kind === 'List' ? ((d as Obj).items as unknown[]) : [d]))) {
    const o = doc as Obj;
    if (o?.kind !== kind || (o.metadata as Obj | undefined)?.name !== name) continue;
    for (const { template } of templates(o)) {
      const spec = template.spec as PodSpec;
      const c = [...spec.containers, ...(spec.initContainers ?? [])].find((x) => x.name === f.container);
      if (c) return { ...(c as Obj), regular: spec.containers.includes(c) };
    }
  }
  return undefined;
}

describe('check on the corpus', () => {
  it('reports, before and after inject, only what each file really has: every finding is justified by the file itself', () => {
    let printed = 0;
    for (const file of corpus) {
      const text = readFileSync(file, 'utf8');
      for (const input of [text, run(['inject', '--image', IMAGE, '-'], text).stdout]) {
        const docs = objects(input);
        const findings = JSON.parse(run(['check', '--output', 'json', '-'], input).stdout) as CheckFinding[];
        printed += findings.length;
        for (const f of findings) {
          const c = containerOf(docs, f);
          const where = `${relative(CORPUS, file)}: ${f.workload} ${f.container}: ${f.message}`;
          if (f.message === 'has no readiness probe') {
            // A container that declares a port other than a metrics port, and no readiness probe.
            const ports = (c?.ports ?? []) as { name?: string; protocol?: string }[];
            expect(c?.readinessProbe, where).toBeUndefined();
            expect(
              ports.some((p) => (p.protocol ?? 'TCP') === 'TCP' && !/metrics|prom|admin/i.test(p.name ?? '')),
              where,
            ).toBe(true);
          } else if (/^the (istio|linkerd) proxy runs as a regular container/.test(f.message)) {
            // The mesh's proxy is in containers (not a native sidecar), and the app's hook holds longer than it serves.
            expect(c?.name, where).toMatch(/^(istio|linkerd)-proxy$/);
            expect(c?.regular, where).toBe(true);
            expect(input, where).toContain('name: drain-sidecar');
          } else {
            expect.fail(`unjustified finding: ${where}`);
          }
        }
      }
    }
    expect(printed).toBeGreaterThan(0);
  });
});
