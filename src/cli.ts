// The `inject` and `check` subcommands: read Kubernetes manifests (files, directories, or - for stdin; YAML streams,
// `kind: List`, JSON), find every pod template, and apply the injection core (src/inject.ts). Output keeps what it does
// not change: a document without an edit is written back byte for byte, and an edited YAML document keeps its comments,
// key order and formatting outside the edit (the yaml package's Document API), so a diff shows only the injection.

import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Composer, type Document, Parser } from 'yaml';
import {
  check,
  type Edit,
  type Finding,
  IMAGE,
  type InjectOptions,
  inject,
  type Mode,
  PROXY_PORT,
  proxyServiceEdits,
  type ServiceInfo,
  type Workload,
} from './inject.js';

export interface CliIo {
  stdin: () => string;
  out: (text: string) => void;
  err: (text: string) => void;
}

// Exit codes: as the sidecar's own, 2 for what the user must fix in how the command was called or what it read.
const EXIT_FINDINGS = 1;
const EXIT_USAGE = 2;

const YAML_OPTIONS = { lineWidth: 0 } as const;
const MANIFEST = /\.(ya?ml|json)$/;

class UsageError extends Error {}

type Path = (string | number)[];
type Json = Record<string, unknown>;

/** A pod template found in a document: where it is, and the workload it belongs to. */
interface Found {
  workload: Workload;
  /** Path of the pod template from the document root. */
  templatePath: Path;
}

const get = (o: unknown, path: Path): unknown =>
  path.reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Json)[k] : undefined), o);

/** Every pod template in a parsed object: Pods, CronJobs, Lists and any kind with spec.template.spec.containers. */
function podTemplates(obj: unknown, base: Path = []): Found[] {
  if (obj === null || typeof obj !== 'object') return [];
  const o = obj as Json;
  if (o.kind === 'List' && Array.isArray(o.items)) return o.items.flatMap((item, i) => podTemplates(item, [...base, 'items', i]));
  const kind = String(o.kind ?? '');
  const name = String(get(o, ['metadata', 'name']) ?? get(o, ['metadata', 'generateName']) ?? '(unnamed)');
  const templatePath: Path | undefined =
    kind === 'Pod'
      ? []
      : kind === 'CronJob'
        ? ['spec', 'jobTemplate', 'spec', 'template']
        : Array.isArray(get(o, ['spec', 'template', 'spec', 'containers']))
          ? ['spec', 'template']
          : undefined;
  if (!templatePath) return [];
  const template = get(o, templatePath) as Workload['template'] | undefined;
  if (!template || !Array.isArray(template.spec?.containers)) return [];
  const minReady = get(o, ['spec', 'minReadySeconds']);
  return [
    {
      workload: { kind, name, template, ...(typeof minReady === 'number' && { minReadySeconds: minReady }) },
      templatePath: [...base, ...templatePath],
    },
  ];
}

function services(
  objects: unknown[],
): (ServiceInfo & { path: Path; doc: number; ports?: { targetPort?: number | string; port?: number }[] })[] {
  return objects.flatMap((obj, doc) => {
    const items =
      (obj as Json)?.kind === 'List'
        ? ((obj as Json).items as unknown[]).map((it, i) => [it, ['items', i]] as const)
        : [[obj, []] as const];
    return items
      .filter(([it]) => (it as Json)?.kind === 'Service')
      .map(([it, path]) => {
        const s = it as {
          metadata?: { name?: string; annotations?: Record<string, string> };
          spec?: { selector?: Record<string, string>; ports?: [] };
        };
        return {
          name: s.metadata?.name ?? '',
          annotations: s.metadata?.annotations,
          selector: s.spec?.selector,
          ports: s.spec?.ports,
          path: [...path],
          doc,
        };
      });
  });
}

/** One input: its name and text, split into documents that can be edited and written back. */
interface Input {
  name: string;
  text: string;
  json: boolean;
  /** Plain objects, one per document. */
  objects: unknown[];
  /** YAML only: the documents and the source text of each. */
  docs?: Document[];
  segments?: string[];
}

function parseInput(name: string, text: string): Input {
  const json = name.endsWith('.json') || /^\s*[[{]/.test(text);
  if (json) {
    try {
      return { name, text, json, objects: [JSON.parse(text)] };
    } catch (err) {
      throw new UsageError(`${name}: not valid JSON: ${(err as Error).message}`);
    }
  }
  const tokens = [...new Parser().parse(text)];
  const docs = [...new Composer().compose(tokens)];
  const bad = docs.find((d) => d.errors.length > 0);
  if (bad) throw new UsageError(`${name}: not valid YAML: ${bad.errors[0]?.message}`);
  const starts = tokens.filter((t) => t.type === 'document').map((t) => t.offset);
  starts[0] = 0;
  const segments = starts.map((start, i) => text.slice(start, starts[i + 1] ?? text.length));
  return { name, text, json, objects: docs.map((d) => d.toJS()), docs, segments };
}

function applyToObject(root: unknown, base: Path, edits: Edit[]): void {
  for (const e of edits) {
    const path = [...base, ...e.path];
    const parent = get(root, path.slice(0, -1)) as Json | unknown[];
    const key = path.at(-1) as string | number;
    if (Array.isArray(parent) && e.op === 'add') parent.splice(key as number, 0, structuredClone(e.value));
    else (parent as Json)[key] = structuredClone(e.value);
  }
}

function applyToDocument(doc: Document, base: Path, edits: Edit[]): void {
  for (const e of edits) {
    const path = [...base, ...e.path];
    const last = path.at(-1);
    if (e.op === 'add' && typeof last === 'number') doc.addIn(path.slice(0, -1), doc.createNode(e.value));
    else doc.setIn(path, doc.createNode(e.value));
  }
}

/**
 * A re-rendered document with every line that the edit did not touch taken from the source as it was: the yaml package
 * keeps comments, key order and styles, but not spacing (`a:   1  # note` comes back `a: 1 # note`). Lines are matched
 * by a longest common subsequence on their text without whitespace.
 */
export function keepSourceLines(source: string, rendered: string): string {
  const a = source.split('\n');
  const b = rendered.split('\n');
  const key = (line: string) => line.replace(/\s+/g, '');
  const ka = a.map(key);
  const kb = b.map(key);
  // lcs(i, j): the longest common subsequence of a[i..] and b[j..].
  const width = b.length + 1;
  const table = new Uint32Array((a.length + 1) * width);
  const lcs = (i: number, j: number) => table[i * width + j] as number;
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      table[i * width + j] = ka[i] === kb[j] ? lcs(i + 1, j + 1) + 1 : Math.max(lcs(i + 1, j), lcs(i, j + 1));
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (j < b.length) {
    if (i < a.length && ka[i] === kb[j]) {
      out.push(a[i++] as string);
      j++;
    } else if (i < a.length && lcs(i + 1, j) >= lcs(i, j + 1)) i++;
    else out.push(b[j++] as string);
  }
  return out.join('\n');
}

/** The input written back: unchanged documents as they were read, changed ones rendered anew. */
function render(input: Input, changed: Set<number>): string {
  if (changed.size === 0) return input.text;
  const { docs, segments } = input;
  if (!docs || !segments) return `${JSON.stringify(input.objects[0], null, 2)}\n`;
  return segments
    .map((seg, i) => (changed.has(i) ? keepSourceLines(seg, (docs[i] as Document).toString(YAML_OPTIONS)) : seg))
    .join('');
}

/** Files named on the command line, directories walked for *.yaml, *.yml and *.json, `-` for stdin. */
function readInputs(paths: string[], io: CliIo): Input[] {
  if (paths.length === 0) throw new UsageError('no input: give files, directories, or - for stdin');
  const files: string[] = [];
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const entry of readdirSync(p).sort()) {
        const child = join(p, entry);
        if (statSync(child).isDirectory() || MANIFEST.test(entry)) walk(child);
      }
    } else files.push(p);
  };
  for (const p of paths) {
    if (p === '-') files.push(p);
    else {
      try {
        walk(p);
      } catch {
        throw new UsageError(`${p}: cannot be read`);
      }
    }
  }
  return files.map((f) => parseInput(f === '-' ? '(stdin)' : f, f === '-' ? io.stdin() : readFileSync(f, 'utf8')));
}

interface Flags {
  positional: string[];
  values: Map<string, string>;
  switches: Set<string>;
}

function readFlags(argv: string[], valued: string[], switches: string[]): Flags {
  const flags: Flags = { positional: [], values: new Map(), switches: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [name, inline] =
      arg.startsWith('--') && arg.includes('=')
        ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
        : [arg, undefined];
    if (valued.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${name} needs a value`);
      flags.values.set(name, value);
    } else if (switches.includes(name)) flags.switches.add(name);
    else if (arg.startsWith('--')) throw new UsageError(`unknown flag ${name.slice(0, 40)}`);
    else flags.positional.push(arg);
  }
  return flags;
}

const INJECT_HELP = `Usage: drain-sidecar inject [flags] <file|dir|->...

Adds drain-sidecar and its preStop hooks to every pod template in the input, with every setting derived from the pod
spec. Writes the result to stdout (or back to the files with --in-place); says on stderr what it did.

  --mode sleep|drain|proxy   the hook: /sleep?s=N (default), /drain?max=N, or proxy mode in front of the app
  --sleep N                  hook seconds (default: min(20, terminationGracePeriodSeconds - 10))
  --image REF                the sidecar image (default ${IMAGE})
  --regular                  a regular container instead of a native sidecar (clusters before 1.29)
  --replace-hooks            replace preStop hooks of another kind instead of reporting them
  --port N                   the sidecar's port (required for hostNetwork pods)
  --in-place                 rewrite the files instead of printing

Per-workload overrides, as pod-template annotations: drain-sidecar.dev/inject: "false" (or "true" for a Job or
CronJob), drain-sidecar.dev/mode, drain-sidecar.dev/sleep-seconds, drain-sidecar.dev/app-ports.
Exit codes: 0 done, 1 a workload could not be injected (a conflicting hook, a grace period too short), 2 bad input.
`;

const CHECK_HELP = `Usage: drain-sidecar check [--output text|json] <file|dir|->...

Reports every drain misconfiguration in the pod templates of the input, injected or written by hand.
Exit codes: 0 no error, 1 errors found, 2 unreadable input.
`;

function injectOptions(flags: Flags): InjectOptions {
  const mode = flags.values.get('--mode') ?? 'sleep';
  if (!['sleep', 'drain', 'proxy'].includes(mode))
    throw new UsageError(`--mode must be sleep, drain or proxy; got ${JSON.stringify(mode)}`);
  const number = (flag: string, min: number, max: number): number | undefined => {
    const raw = flags.values.get(flag);
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!/^\d+(\.\d+)?$/.test(raw) || n < min || n > max)
      throw new UsageError(`${flag} must be a number from ${min} to ${max}; got ${JSON.stringify(raw)}`);
    return n;
  };
  const port = number('--port', 1, 65535);
  const sleepSeconds = number('--sleep', 1, 43_200);
  return {
    mode: mode as Mode,
    image: flags.values.get('--image') ?? IMAGE,
    regular: flags.switches.has('--regular'),
    replaceHooks: flags.switches.has('--replace-hooks'),
    ...(port !== undefined && { port }),
    ...(sleepSeconds !== undefined && { sleepSeconds }),
  };
}

const findingLine = (f: Finding): string =>
  `${f.severity.padEnd(7)} ${f.workload}${f.container ? ` container ${f.container}` : ''}: ${f.message}${f.fix ? `; ${f.fix}` : ''}\n`;

function runInject(argv: string[], io: CliIo): number {
  const flags = readFlags(argv, ['--mode', '--sleep', '--image', '--port'], ['--regular', '--replace-hooks', '--in-place']);
  const options = injectOptions(flags);
  const inputs = readInputs(flags.positional, io);
  let failed = false;
  for (const input of inputs) {
    const changed = new Set<number>();
    const svc = services(input.objects);
    input.objects.forEach((obj, docIndex) => {
      for (const found of podTemplates(obj)) {
        const result = inject(found.workload, options);
        const id = `${found.workload.kind}/${found.workload.name}`;
        for (const f of result.findings) io.err(findingLine(f));
        if (result.outcome === 'refused') failed = true;
        if (result.outcome !== 'injected' && result.outcome !== 'unchanged') continue;
        const d = result.derived;
        io.err(
          result.outcome === 'injected'
            ? `injected ${id}: ${d.mode === 'proxy' ? 'proxy mode, ' : ''}hook ${d.mode === 'sleep' ? '/sleep' : '/drain'} ${d.hookSeconds} s, grace period ${d.grace} s, app ports ${d.ports.join(',') || '(none)'}\n`
            : `unchanged ${id}: already injected\n`,
        );
        if (result.edits.length > 0) {
          applyToObject(obj, found.templatePath, result.edits);
          if (input.docs) applyToDocument(input.docs[docIndex] as Document, found.templatePath, result.edits);
          changed.add(docIndex);
        }
        if (d.mode === 'proxy') {
          const matching = svc.flatMap((s) => proxyServiceEdits(s, found.workload, d.ports[0] as number).map((e) => ({ s, e })));
          for (const { s, e } of matching) {
            applyToObject(input.objects[s.doc], s.path, [e]);
            if (input.docs) applyToDocument(input.docs[s.doc] as Document, s.path, [e]);
            changed.add(s.doc);
            io.err(`moved Service/${s.name} to the proxy port ${e.value}\n`);
          }
          if (matching.length === 0) {
            io.err(`info    ${id}: no Service selecting it in this input; point its Service's targetPort at ${PROXY_PORT}\n`);
          }
        }
      }
    });
    const output = render(input, changed);
    if (flags.switches.has('--in-place') && input.name !== '(stdin)') {
      if (changed.size > 0) writeFileSync(input.name, output);
    } else io.out(output.endsWith('\n') || output === '' ? output : `${output}\n`);
    if (!flags.switches.has('--in-place') && inputs.length > 1 && !input.json && input !== inputs.at(-1)) io.out('---\n');
  }
  return failed ? EXIT_FINDINGS : 0;
}

function runCheck(argv: string[], io: CliIo): number {
  const flags = readFlags(argv, ['--output'], []);
  const output = flags.values.get('--output') ?? 'text';
  if (output !== 'text' && output !== 'json')
    throw new UsageError(`--output must be text or json; got ${JSON.stringify(output)}`);
  const findings: Finding[] = [];
  for (const input of readInputs(flags.positional, io)) {
    const svc = services(input.objects);
    for (const obj of input.objects) for (const found of podTemplates(obj)) findings.push(...check(found.workload, svc));
  }
  if (output === 'json') io.out(`${JSON.stringify(findings, null, 2)}\n`);
  else for (const f of findings) io.out(findingLine(f));
  return findings.some((f) => f.severity === 'error') ? EXIT_FINDINGS : 0;
}

const SUBCOMMANDS = {
  inject: { run: runInject, help: INJECT_HELP },
  check: { run: runCheck, help: CHECK_HELP },
} as const;

/** Runs a subcommand; returns the exit code. */
export function runSubcommand(name: keyof typeof SUBCOMMANDS, argv: string[], io: CliIo): number {
  const sub = SUBCOMMANDS[name];
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(sub.help);
    return 0;
  }
  try {
    return sub.run(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`drain-sidecar ${name}: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
