// The `inject` and `check` subcommands: read Kubernetes manifests (files, directories, or - for stdin; YAML streams,
// `kind: List`, JSON), find every pod template, and apply the injection core (src/inject.ts). The edits are spliced into
// the source text (src/manifest.ts), so a document without an edit is written back byte for byte and an edited one
// changes only where the sidecar goes in; what would not read back as intended is refused, and nothing is written then.

import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import pkg from '../package.json' with { type: 'json' };
import {
  check,
  type Derived,
  type Finding,
  IMAGE,
  type InjectOptions,
  inject,
  MODES,
  type Mode,
  proxyServiceEdits,
  recordedServiceEdits,
  type ServiceInfo,
  uninjectEdits,
  type Workload,
  workloadMinReadySeconds,
} from './inject.js';
import { applyToObject, type Edit, editSource, InputError, type Path, parseSource, type Source } from './manifest.js';

export interface CliIo {
  stdin: () => Buffer;
  out: (text: string) => void;
  err: (text: string) => void;
}

// Exit codes: as the sidecar's own, 2 for what the user must fix in how the command was called or what it read.
const EXIT_FINDINGS = 1;
const EXIT_USAGE = 2;

const MANIFEST = /\.(ya?ml|json)$/;

class UsageError extends Error {}

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
  if (!template.spec.containers.every((c) => c !== null && typeof c === 'object')) return [];
  const minReady = get(o, ['spec', 'minReadySeconds']);
  return [
    {
      workload: { kind, name, template, minReadySeconds: workloadMinReadySeconds(kind, minReady) },
      templatePath: [...base, ...templatePath],
    },
  ];
}

/** The Services of an input, with where each is (document and path) for the proxy's targetPort edit. */
function services(objects: unknown[]): (ServiceInfo & { path: Path; doc: number })[] {
  return objects.flatMap((obj, doc) => {
    const items =
      (obj as Json)?.kind === 'List' && Array.isArray((obj as Json).items)
        ? ((obj as Json).items as unknown[]).map((it, i) => [it, ['items', i]] as const)
        : [[obj, []] as const];
    return items
      .filter(([it]) => (it as Json)?.kind === 'Service')
      .map(([it, path]) => {
        const s = it as { metadata?: { name?: string; annotations?: Record<string, string> }; spec?: ServiceInfo };
        return {
          name: s.metadata?.name ?? '',
          annotations: s.metadata?.annotations,
          selector: s.spec?.selector,
          ports: Array.isArray(s.spec?.ports) ? s.spec.ports : [],
          path: [...path],
          doc,
        };
      });
  });
}

// Invalid UTF-8 (or UTF-16) would come back as U+FFFD and change bytes the edit never touched; a BOM is kept.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decode(name: string, bytes: Buffer): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new UsageError(`${name}: not UTF-8 text; inject reads and writes UTF-8 only`);
  }
}

/** Files named on the command line, directories walked for *.yaml, *.yml and *.json, `-` for stdin; all read first. */
function readInputs(paths: { path: string; recursive: boolean }[], io: CliIo): Source[] {
  if (paths.length === 0) throw new UsageError('no input: give files, directories, or - for stdin (-f, or as arguments)');
  const files: string[] = [];
  const walk = (p: string, recursive: boolean, top: boolean): void => {
    if (statSync(p).isDirectory()) {
      if (!top && !recursive) return;
      for (const entry of readdirSync(p).sort()) {
        const child = join(p, entry);
        if (statSync(child).isDirectory() || MANIFEST.test(entry)) walk(child, recursive, false);
      }
    } else files.push(p);
  };
  for (const { path: p, recursive } of paths) {
    if (p === '-') files.push(p);
    else {
      try {
        walk(p, recursive, true);
      } catch {
        throw new UsageError(`${p}: cannot be read`);
      }
    }
  }
  return files.map((f) => {
    const name = f === '-' ? '(stdin)' : f;
    let bytes: Buffer;
    try {
      bytes = f === '-' ? io.stdin() : readFileSync(f);
    } catch {
      throw new UsageError(`${name}: cannot be read`);
    }
    return parseSource(name, decode(name, bytes));
  });
}

/** Text as printed: ending with a line break (in the text's own style), so that the next input's can follow. */
const withFinalLineBreak = (text: string): string =>
  text.endsWith('\n') || text === '' ? text : `${text}${text.includes('\r\n') ? '\r\n' : '\n'}`;

/** Writes a file whole or not at all: a temporary file beside it, then a rename; the file's mode is kept. */
function writeAtomically(file: string, text: string): void {
  const temporary = join(dirname(file), `.${basename(file)}.drain-sidecar-${process.pid}.tmp`);
  try {
    writeFileSync(temporary, text, { mode: statSync(file).mode & 0o7777, flush: true });
    renameSync(temporary, file);
  } catch (err) {
    rmSync(temporary, { force: true });
    throw new UsageError(`${file}: cannot be written (${(err as NodeJS.ErrnoException).code ?? 'error'}); it is left as it was`);
  }
}

interface Flags {
  positional: string[];
  /** -f/--filename, repeatable, as kubectl has it. */
  filenames: string[];
  values: Map<string, string>;
  switches: Set<string>;
}

// The short flags kubectl users type without thinking.
const SHORT: Record<string, string> = { '-f': '--filename', '-o': '--output', '-R': '--recursive' };

function readFlags(argv: string[], valued: string[], switches: string[]): Flags {
  const flags: Flags = { positional: [], filenames: [], values: new Map(), switches: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const [given, inline] =
      arg.startsWith('-') && arg !== '-' && eq !== -1 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const name = SHORT[given] ?? given;
    if (name === '--filename' || valued.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${given} needs a value`);
      if (name === '--filename') flags.filenames.push(value);
      else flags.values.set(name, value);
    } else if (name === '--recursive' || switches.includes(name)) flags.switches.add(name);
    else if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown flag ${given.slice(0, 40)}`);
    else flags.positional.push(arg);
  }
  return flags;
}

/** The inputs: positional arguments (directories walked whole, as before) and -f (directories walked with -R only). */
const inputsOf = (flags: Flags, io: CliIo): Source[] =>
  readInputs(
    [
      ...flags.positional.map((path) => ({ path, recursive: true })),
      ...flags.filenames.map((path) => ({ path, recursive: flags.switches.has('--recursive') })),
    ],
    io,
  );

const INJECT_HELP = `Usage: drain-sidecar inject [flags] [-f] <file|dir|->...

Adds drain-sidecar and its preStop hooks to every pod template in the input, with every setting derived from the pod
spec. Writes the result to stdout (or back to the files with --in-place); says on stderr what it did.

  --mode MODE                sleep: the hook /sleep?s=N (the default); drain: /drain?max=N; proxy: the sidecar in
                             front of the app; observe: the app keeps or gets a native preStop.sleep (Kubernetes
                             1.30+) and the sidecar's own hook /observe measures the drain (the default for a pod
                             whose app already has a preStop hook)
  --sleep N                  hook seconds, at least 5 (default: min(20, max(5, terminationGracePeriodSeconds - 10)))
  --image REF                the sidecar image (default ${IMAGE})
  --regular                  a regular container instead of a native sidecar (clusters before 1.29)
  --replace-hooks            replace preStop hooks of another kind instead of reporting them
  --port N                   the sidecar's port (required for hostNetwork pods)
  --app-ports N,N            the app ports of every workload without the annotation (default: derived, see README)
  --in-place                 rewrite the files instead of printing
  -f, --filename PATH        a file, a directory or - (stdin); repeatable; arguments without -f work too
  -R, --recursive            walk the subdirectories of a -f directory (arguments are always walked whole)
  -o, --output yaml|json     print in this format (default: the input's, every untouched byte kept)
  --version                  print the version

Per-workload overrides, as pod-template annotations: drain-sidecar.dev/inject: "false" (or "true" for a Job or
CronJob), drain-sidecar.dev/mode, drain-sidecar.dev/sleep-seconds, drain-sidecar.dev/app-ports.
Exit codes: 0 done, 1 a workload could not be injected (a conflicting hook, a grace period too short), 2 bad input
or an edit that would not read back as intended (nothing is written for that file; with --in-place, for any file).
`;

const CHECK_HELP = `Usage: drain-sidecar check [-o text|json] [-f] [-R] <file|dir|->...

Reports every drain misconfiguration in the pod templates of the input, injected or written by hand.
Exit codes: 0 no error, 1 errors found, 2 unreadable input.
`;

function injectOptions(flags: Flags): InjectOptions {
  const mode = flags.values.get('--mode');
  if (mode !== undefined && !MODES.includes(mode as Mode))
    throw new UsageError(`--mode must be sleep, drain, proxy or observe; got ${JSON.stringify(mode)}`);
  const number = (flag: string, min: number, max: number): number | undefined => {
    const raw = flags.values.get(flag);
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!/^\d+(\.\d+)?$/.test(raw) || n < min || n > max)
      throw new UsageError(`${flag} must be a number from ${min} to ${max}; got ${JSON.stringify(raw)}`);
    return n;
  };
  const port = number('--port', 1, 65535);
  const portList = flags.values.get('--app-ports');
  const appPorts = portList?.split(',').map((p) => p.trim());
  if (appPorts && !appPorts.every((p) => /^\d+$/.test(p) && Number(p) >= 1 && Number(p) <= 65535))
    throw new UsageError(`--app-ports must be comma-separated port numbers; got ${JSON.stringify(portList)}`);
  const sleepSeconds = number('--sleep', 1, 43_200);
  return {
    ...(mode !== undefined && { mode: mode as Mode }),
    image: flags.values.get('--image') ?? IMAGE,
    regular: flags.switches.has('--regular'),
    replaceHooks: flags.switches.has('--replace-hooks'),
    ...(port !== undefined && { port }),
    ...(appPorts && { appPorts: [...new Set(appPorts.map(Number))] }),
    ...(sleepSeconds !== undefined && { sleepSeconds }),
  };
}

const findingLine = (f: Finding): string =>
  `${f.severity.padEnd(7)} ${f.workload}${f.container ? ` container ${f.container}` : ''}: ${f.message}${f.fix ? `; ${f.fix}` : ''}\n`;

const describeHook = (d: Derived): string =>
  d.mode === 'observe'
    ? `observe mode: app hooks kept, native preStop.sleep ${d.hookSeconds} s where there was none (Kubernetes 1.30+), the sidecar's own hook /observe`
    : `${d.mode === 'proxy' ? 'proxy mode, ' : ''}hook ${d.mode === 'sleep' ? '/sleep' : '/drain'} ${d.hookSeconds} s`;

/** One input after inject: its new text, or undefined where an edit could not be made as intended. */
interface Injected {
  source: Source;
  text: string | undefined;
  changed: boolean;
}

function injectSource(source: Source, options: InjectOptions, io: CliIo): { result: Injected; refused: boolean } {
  let refused = false;
  const svc = services(source.objects);
  const intended = structuredClone(source.objects);
  const edits = new Map<number, { base: Path; edits: Edit[] }[]>();
  const record = (doc: number, base: Path, list: Edit[]) => {
    edits.set(doc, [...(edits.get(doc) ?? []), { base, edits: list }]);
    applyToObject(intended[doc], base, list);
  };
  source.objects.forEach((obj, docIndex) => {
    for (const found of podTemplates(obj)) {
      const result = inject(found.workload, options, svc);
      const id = `${found.workload.kind}/${found.workload.name}`;
      for (const f of result.findings) io.err(findingLine(f));
      if (result.outcome === 'refused') refused = true;
      if (result.outcome !== 'injected' && result.outcome !== 'unchanged') continue;
      const d = result.derived;
      io.err(
        result.outcome === 'injected'
          ? `injected ${id}: ${describeHook(d)}, grace period ${d.grace} s, app ports ${d.ports.join(',')}${d.sidecarPort === 9555 ? '' : `, sidecar port ${d.sidecarPort}`}\n`
          : `unchanged ${id}: already injected\n`,
      );
      if (result.edits.length > 0) record(docIndex, found.templatePath, result.edits);
      if (d.mode !== 'proxy') continue;
      const matching = svc.filter((s) => proxyServiceEdits(s, found.workload, d).length > 0);
      for (const s of matching) {
        const service = get(source.objects[s.doc], s.path) as { metadata?: { annotations?: Record<string, string> } };
        record(s.doc, s.path, recordedServiceEdits(service, proxyServiceEdits(s, found.workload, d)));
        io.err(`moved Service/${s.name} to the proxy port ${d.proxyPort}\n`);
      }
      if (matching.length === 0) {
        io.err(`info    ${id}: no Service selecting it in this input; point its Service's targetPort at ${d.proxyPort}\n`);
      }
    }
  });
  if (edits.size === 0) return { result: { source, text: source.text, changed: false }, refused };
  try {
    const text = editSource(source, edits, intended);
    return { result: { source, text, changed: true }, refused };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    io.err(`drain-sidecar inject: ${err.message}\n`);
    return { result: { source, text: undefined, changed: false }, refused };
  }
}

function runInject(argv: string[], io: CliIo): number {
  const flags = readFlags(
    argv,
    ['--mode', '--sleep', '--image', '--port', '--app-ports', '--output'],
    ['--regular', '--replace-hooks', '--in-place'],
  );
  const options = injectOptions(flags);
  const inPlace = flags.switches.has('--in-place');
  const output = flags.values.get('--output');
  if (output !== undefined && output !== 'yaml' && output !== 'json')
    throw new UsageError(`-o must be yaml or json; got ${JSON.stringify(output.slice(0, 40))}`);
  if (output && inPlace) throw new UsageError('-o converts what is printed; --in-place keeps each file as it is written');
  const sources = inputsOf(flags, io);
  if (inPlace && sources.some((s) => s.name === '(stdin)')) throw new UsageError('--in-place rewrites files; stdin is none');
  let refused = false;
  const results = sources.map((source) => {
    const r = injectSource(source, options, io);
    refused ||= r.refused;
    return r.result;
  });
  const broken = results.filter((r) => r.text === undefined);
  if (inPlace) {
    // All or nothing: one input that cannot be edited as intended, and no file is written.
    if (broken.length > 0) {
      io.err(`drain-sidecar inject: ${broken.length} file${broken.length > 1 ? 's' : ''} could not be edited; no file written\n`);
      return EXIT_USAGE;
    }
    for (const r of results) if (r.changed) writeAtomically(r.source.name, r.text as string);
  } else if (output && results.some((r) => (output === 'json') !== r.source.json)) {
    // Another format than the input's: the objects rendered anew, as kubectl prints them (several as a List).
    const objects = results
      .filter((r) => r.text !== undefined)
      .flatMap((r) => parseSource(r.source.name, r.text as string).objects)
      .filter((o) => o !== null && o !== undefined);
    const one = objects.length === 1 ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects };
    io.out(output === 'json' ? `${JSON.stringify(one, null, 4)}\n` : stringify(one, { indentSeq: false, lineWidth: 0 }));
  } else {
    const printed = results.filter((r) => r.text !== undefined);
    printed.forEach((r, i) => {
      const text = r.text as string;
      io.out(withFinalLineBreak(text));
      if (i < printed.length - 1 && !r.source.json) io.out('---\n');
    });
  }
  if (broken.length > 0) return EXIT_USAGE;
  return refused ? EXIT_FINDINGS : 0;
}

function runCheck(argv: string[], io: CliIo): number {
  const flags = readFlags(argv, ['--output'], []);
  const output = flags.values.get('--output') ?? 'text';
  if (output !== 'text' && output !== 'json')
    throw new UsageError(`--output must be text or json; got ${JSON.stringify(output)}`);
  const findings: Finding[] = [];
  for (const input of inputsOf(flags, io)) {
    const svc = services(input.objects);
    for (const obj of input.objects) for (const found of podTemplates(obj)) findings.push(...check(found.workload, svc));
  }
  if (output === 'json') io.out(`${JSON.stringify(findings, null, 2)}\n`);
  else for (const f of findings) io.out(findingLine(f));
  return findings.some((f) => f.severity === 'error') ? EXIT_FINDINGS : 0;
}

const UNINJECT_HELP = `Usage: drain-sidecar uninject [-f] [-R] <file|dir|->... [--in-place]

Takes out of every pod template exactly what inject put in (the sidecar, the hooks it added and not those it kept,
labels and annotations), from the record inject leaves on the template (the annotation drain-sidecar.dev/injected).
A Service whose targetPort proxy mode moved goes back to the app's port, from the record inject left on it.
Exit codes: 0 done, 2 bad input or an edit that would not read back as intended (nothing written for that file).
`;

function runUninject(argv: string[], io: CliIo): number {
  const flags = readFlags(argv, [], ['--in-place']);
  const inPlace = flags.switches.has('--in-place');
  const sources = inputsOf(flags, io);
  if (inPlace && sources.some((s) => s.name === '(stdin)')) throw new UsageError('--in-place rewrites files; stdin is none');
  const results = sources.map((source) => {
    const intended = structuredClone(source.objects);
    const edits = new Map<number, { base: Path; edits: Edit[] }[]>();
    const undo = (doc: number, base: Path, list: Edit[], id: string) => {
      edits.set(doc, [...(edits.get(doc) ?? []), { base, edits: list }]);
      applyToObject(intended[doc], base, list);
      io.err(`uninjected ${id}\n`);
    };
    source.objects.forEach((obj, doc) => {
      for (const found of podTemplates(obj)) {
        const list = uninjectEdits(found.workload.template);
        if (list) undo(doc, found.templatePath, list, `${found.workload.kind}/${found.workload.name}`);
      }
    });
    // A Service whose targetPort proxy mode moved, back to the app's port.
    for (const s of services(source.objects)) {
      const list = uninjectEdits(get(source.objects[s.doc], s.path) as { metadata?: { annotations?: Record<string, string> } });
      if (list) undo(s.doc, s.path, list, `Service/${s.name}`);
    }
    if (edits.size === 0) return { source, text: source.text, changed: false };
    try {
      return { source, text: editSource(source, edits, intended), changed: true };
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      io.err(`drain-sidecar uninject: ${err.message}\n`);
      return { source, text: undefined, changed: false };
    }
  });
  const broken = results.filter((r) => r.text === undefined);
  if (inPlace) {
    if (broken.length > 0) return EXIT_USAGE;
    for (const r of results) if (r.changed) writeAtomically(r.source.name, r.text as string);
  } else {
    const printed = results.filter((r) => r.text !== undefined);
    printed.forEach((r, i) => {
      const text = r.text as string;
      io.out(withFinalLineBreak(text));
      if (i < printed.length - 1 && !r.source.json) io.out('---\n');
    });
  }
  return broken.length > 0 ? EXIT_USAGE : 0;
}

const SUBCOMMANDS = {
  inject: { run: runInject, help: INJECT_HELP },
  uninject: { run: runUninject, help: UNINJECT_HELP },
  check: { run: runCheck, help: CHECK_HELP },
} as const;

/** Runs a subcommand; returns the exit code. */
export function runSubcommand(name: keyof typeof SUBCOMMANDS, argv: string[], io: CliIo): number {
  const sub = SUBCOMMANDS[name];
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(sub.help);
    return 0;
  }
  if (argv.includes('--version')) {
    io.out(`drain-sidecar ${pkg.version}\n`);
    return 0;
  }
  try {
    return sub.run(argv, io);
  } catch (err) {
    if (err instanceof UsageError || err instanceof InputError) {
      io.err(`drain-sidecar ${name}: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
