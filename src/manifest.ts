// Users' manifest files, read and edited in place. An edit is spliced into the source text at the offsets the yaml
// package's parsed nodes carry (their `range`), so every byte outside it stays as it was: comments, quoting, spacing,
// anchors, CRLF line ends, `---`/`...` markers and other documents. Only the inserted text is rendered, in the style of
// the collection it goes into: block or flow, JSON-quoted keys or plain ones, sequences indented under their key or not,
// the indentation step of the document. The result is re-parsed and compared with the intended object before anything
// is written (verify): an edit that would come out wrong is refused, never written.
//
// Why splicing by range and not Document.toString(): the yaml package re-renders a whole document in its own style
// (spacing, quoting, line breaks), so a diff would show more than the injection; and why not line matching: a line of a
// rendered document matched by text to a source line lands edits in the wrong place when lines repeat.

import { isDeepStrictEqual } from 'node:util';
import {
  type Document,
  isAlias,
  isCollection,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Node,
  type Pair,
  parseAllDocuments,
  stringify,
  visit,
  type YAMLMap,
  type YAMLSeq,
} from 'yaml';

export type Path = (string | number)[];

/**
 * One edit of an object, at a path of keys and indices: JSON Patch without the string form. `add` at an index appends;
 * `remove` takes out what an `add` put in (uninject), its text whole.
 */
export interface Edit {
  op: 'add' | 'replace' | 'remove';
  path: Path;
  value?: unknown;
}

/** What the user must fix in what was read; the message names the file and, where it can, the line. */
export class InputError extends Error {}

// kubectl's own limit on a request body is 3 MiB; a manifest file many times that is not one a person wrote.
export const MAX_INPUT_BYTES = 32 * 1024 * 1024;
// Aliases expanded per document: manifests use a handful; a "billion laughs" document uses millions.
const MAX_ALIAS_COUNT = 1_000;
const PARSE_OPTIONS = { merge: true, prettyErrors: false, logLevel: 'error' } as const;

export interface Source {
  name: string;
  text: string;
  docs: Document.Parsed[];
  /** Plain objects, one per document, as kubectl reads them. */
  objects: unknown[];
  /** The input is one JSON document. */
  json: boolean;
}

const lineOf = (text: string, offset: number): number => {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
};

/** Parses a manifest file: a YAML stream (JSON included, as YAML's flow style). Throws InputError. */
export function parseSource(name: string, text: string): Source {
  if (text.length > MAX_INPUT_BYTES) throw new InputError(`${name}: larger than ${MAX_INPUT_BYTES / 1024 / 1024} MiB`);
  let docs: Document.Parsed[];
  let objects: unknown[];
  try {
    docs = parseAllDocuments(text, PARSE_OPTIONS) as Document.Parsed[];
    if (!Array.isArray(docs)) docs = [];
    const bad = docs.find((d) => d.errors.length > 0);
    if (bad) {
      const e = bad.errors[0] as { message: string; pos: [number, number] };
      throw new InputError(`${name}:${lineOf(text, e.pos[0])}: not valid YAML: ${e.message.split('\n')[0]}`);
    }
    objects = docs.map((d) => d.toJS({ maxAliasCount: MAX_ALIAS_COUNT }));
  } catch (err) {
    if (err instanceof InputError) throw err;
    // The yaml package throws for an alias bomb (ReferenceError) and a nesting too deep for the stack (RangeError).
    const problem = err instanceof RangeError ? 'nested too deeply' : (err as Error).message.split('\n')[0];
    throw new InputError(`${name}: cannot be read as YAML: ${problem}`);
  }
  const json = docs.length === 1 && /^\s*[[{]/.test(text);
  return { name, text, docs, objects, json };
}

/** Applies edits to a plain object, as the API server applies the same edits as a JSON patch. */
export function applyToObject(root: unknown, base: Path, edits: Edit[]): void {
  for (const e of edits) {
    const path = [...base, ...e.path];
    const parent = path.slice(0, -1).reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], root);
    const key = path.at(-1) as string | number;
    if (e.op === 'remove') {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete (parent as Record<string | number, unknown>)[key];
    } else if (Array.isArray(parent) && e.op === 'add') parent.splice(key as number, 0, structuredClone(e.value));
    else (parent as Record<string | number, unknown>)[key] = structuredClone(e.value);
  }
}

/** A replacement of source text: [start, end) becomes text. */
interface Splice {
  start: number;
  end: number;
  text: string;
}

/** How a document is written, read off its own text so that what is inserted looks like what is there. */
interface Style {
  eol: string;
  /** Spaces per nesting level in block collections. */
  step: number;
  /** Block sequences indented under their key (`key:\n  - a`), or not (`key:\n- a`, as kubectl writes them). */
  indentSeq: boolean;
}

const column = (text: string, offset: number): number => offset - (text.lastIndexOf('\n', offset - 1) + 1);
const leadingSpaces = (text: string, offset: number): number => {
  const start = text.lastIndexOf('\n', offset - 1) + 1;
  return /^ */.exec(text.slice(start, offset))?.[0].length ?? 0;
};
const spaces = (n: number) => ' '.repeat(n);

/** The column of a block sequence's `-` indicators: the first item's dash. */
function dashColumn(text: string, seq: YAMLSeq): number | undefined {
  const first = seq.items[0] as Node | undefined;
  if (!first?.range) return undefined;
  let i = first.range[0] - 1;
  while (i >= 0 && (text[i] === ' ' || text[i] === '\t')) i--;
  return text[i] === '-' ? column(text, i) : undefined;
}

function styleOf(text: string, doc: Document.Parsed): Style {
  const eol = text.slice(doc.range[0], doc.range[2]).includes('\r\n') ? '\r\n' : '\n';
  let step: number | undefined;
  let indentSeq: boolean | undefined;
  visit(doc, {
    Pair(_, pair) {
      const key = pair.key as Node | null;
      const value = pair.value as Node | null;
      if (!key?.range || !value?.range || !isCollection(value) || value.flow || value.items.length === 0) return;
      const keyColumn = column(text, key.range[0]);
      if (isMap(value) && step === undefined) {
        const first = (value.items[0] as Pair<Node>).key;
        if (first?.range) step = column(text, first.range[0]) - keyColumn;
      }
      if (isSeq(value) && indentSeq === undefined) {
        const dash = dashColumn(text, value);
        if (dash !== undefined) indentSeq = dash > keyColumn;
      }
      if (step !== undefined && indentSeq !== undefined) return visit.BREAK;
    },
  });
  return { eol, step: step !== undefined && step > 0 ? step : 2, indentSeq: indentSeq ?? false };
}

/** Renders a value in block style, the first line at the current column and the rest indented by `indent`. */
function renderBlock(value: unknown, indent: number, style: Style): string {
  const text = stringify(value, { indent: style.step, indentSeq: style.indentSeq, lineWidth: 0 }).replace(/\n$/, '');
  return text.split('\n').join(`${style.eol}${spaces(indent)}`);
}

/** Renders a value for a flow collection: JSON where its keys are quoted (a JSON file), YAML flow style otherwise. */
function renderFlow(value: unknown, flow: Flow, indent: number | undefined, eol: string): string {
  if (flow.json) {
    const text = indent === undefined ? JSON.stringify(value) : JSON.stringify(value, null, flow.step);
    return text.split('\n').join(`${eol}${spaces(indent ?? 0)}`);
  }
  return stringify(value, { collectionStyle: 'flow', flowCollectionPadding: flow.padding, lineWidth: 0 }).trim();
}

/** How a flow collection is written: JSON (quoted keys), its indentation step where items have lines of their own, and
 * whether `{ a: 1 }` or `{a: 1}`. */
interface Flow {
  json: boolean;
  step: number;
  padding: boolean;
}

/** The offset of the start of the line after `offset`, or the text's end. */
function nextLineStart(text: string, offset: number): number {
  if (offset > 0 && text[offset - 1] === '\n') return offset;
  const nl = text.indexOf('\n', offset);
  return nl === -1 ? text.length : nl + 1;
}

/** A block insertion at a line start: its own line, with a line break before it at the end of a file without one. */
function insertLines(text: string, offset: number, lines: string, eol: string): Splice {
  const at = nextLineStart(text, offset);
  const before = at === text.length && at > 0 && text[at - 1] !== '\n' ? eol : '';
  return { start: at, end: at, text: `${before}${lines}${before ? '' : eol}` };
}

class Editor {
  private readonly style: Style;
  private readonly shared = new Set<Node>();

  constructor(
    private readonly text: string,
    private readonly doc: Document.Parsed,
    private readonly name: string,
  ) {
    this.style = styleOf(text, doc);
    visit(doc, {
      Alias: (_, alias) => {
        const source = alias.resolve(doc);
        if (source) this.shared.add(source as Node);
      },
    });
  }

  private fail(node: Node | undefined | null, problem: string): never {
    const line = node?.range ? `:${lineOf(this.text, node.range[0])}` : '';
    throw new InputError(`${this.name}${line}: ${problem}`);
  }

  /** The node at a path; every node on the way must be this document's own (an alias or an anchored node is shared). */
  private resolve(path: Path): Node {
    let node = this.doc.contents as Node | null;
    for (const key of path) {
      if (!node) this.fail(undefined, `nothing at ${path.join('.')}`);
      if (isAlias(node)) this.fail(node, `${path.join('.')} is an alias (*${node.source}); expand it to let inject edit it`);
      if (this.shared.has(node)) this.fail(node, 'the pod template is shared through an anchor; expand its aliases first');
      if (typeof key === 'number' && isSeq(node)) node = node.items[key] as Node;
      else if (typeof key === 'string' && isMap(node)) node = this.pair(node, key)?.value as Node | null;
      else this.fail(node, `expected a ${typeof key === 'number' ? 'list' : 'mapping'} at ${path.join('.')}`);
    }
    if (!node) this.fail(undefined, `nothing at ${path.join('.')}`);
    if (isAlias(node)) this.fail(node, `${path.join('.')} is an alias (*${node.source}); expand it to let inject edit it`);
    if (this.shared.has(node)) this.fail(node, `${path.join('.')} is shared through an anchor; expand its aliases first`);
    return node;
  }

  private pair(map: YAMLMap, key: string): Pair<Node, Node | null> | undefined {
    return (map.items as Pair<Node, Node | null>[]).find((p) => isScalar(p.key) && String(p.key.value) === key);
  }

  /** A flow collection's style, read off its first item and its brackets. */
  private flowStyle(flow: YAMLMap | YAMLSeq): Flow {
    const first = flow.items[0];
    const range = (isPair(first) ? (first.key as Node | null) : (first as Node | undefined))?.range;
    const json = isPair(first)
      ? range != null && this.text[range[0]] === '"'
      : this.text.slice(this.doc.range[0], this.doc.range[1]).trimStart().startsWith('{"');
    const start = (flow.range as [number, number, number])[0];
    const col = this.flowItemColumn(flow);
    const step = col === undefined ? 0 : col - leadingSpaces(this.text, start);
    return { json, step: step > 0 ? step : 2, padding: this.text[start + 1] === ' ' };
  }

  /** Where a flow collection's items go on their own lines, the column they start at. */
  private flowItemColumn(flow: YAMLMap | YAMLSeq): number | undefined {
    const first = flow.items[0];
    const node = (isPair(first) ? first.key : first) as Node | undefined;
    if (!node?.range || !flow.range) return undefined;
    const opening = flow.range[0];
    return this.text.slice(opening, node.range[0]).includes('\n') ? column(this.text, node.range[0]) : undefined;
  }

  /** Inserts an item or a pair (text rendered by `item`) at the end of a flow collection. */
  private flowAppend(flow: YAMLMap | YAMLSeq, render: (style: Flow, indent: number | undefined) => string): Splice {
    const range = flow.range as [number, number, number];
    const style = this.flowStyle(flow);
    const last = flow.items.at(-1);
    if (last === undefined) {
      const close = this.text.lastIndexOf(isMap(flow) ? '}' : ']', range[1]);
      return { start: close, end: close, text: render(style, undefined) };
    }
    const lastNode = (isPair(last) ? (last.value ?? last.key) : last) as Node;
    const end = (lastNode.range as [number, number, number])[1];
    const col = this.flowItemColumn(flow);
    const separator = col === undefined ? ', ' : `,${this.style.eol}${spaces(col)}`;
    return { start: end, end, text: `${separator}${render(style, col)}` };
  }

  /** Sets key to value in a mapping: a new pair at its end, or the value of the pair that has the key replaced. */
  private setPair(map: YAMLMap, key: string, value: unknown): Splice {
    const existing = this.pair(map, key);
    if (existing) return this.replaceValue(map, existing, value);
    const { eol } = this.style;
    if (map.flow) {
      return this.flowAppend(map, (flow, indent) => {
        const k = flow.json ? JSON.stringify(key) : stringify(key).trim();
        return `${k}: ${renderFlow(value, flow, indent, eol)}`;
      });
    }
    const first = (map.items[0] as Pair<Node> | undefined)?.key;
    if (!first?.range || !map.range) this.fail(map, `cannot add ${key} to an empty mapping`);
    const col = column(this.text, first.range[0]);
    return insertLines(this.text, map.range[1], `${spaces(col)}${renderBlock({ [key]: value }, col, this.style)}`, eol);
  }

  private replaceValue(map: YAMLMap, pair: Pair<Node, Node | null>, value: unknown): Splice {
    const key = pair.key as Node & { range: [number, number, number] };
    const old = pair.value;
    const { eol } = this.style;
    if (map.flow) {
      if (!old?.range) this.fail(key, 'cannot replace a missing value');
      const text = renderFlow(value, this.flowStyle(map), this.flowItemColumn(map), eol);
      return { start: old.range[0], end: old.range[1], text };
    }
    if (isScalar(old) && old.range && (value === null || typeof value !== 'object')) {
      // A scalar for a scalar: only the value's own characters change.
      return { start: old.range[0], end: old.range[1], text: stringify(value).trim() };
    }
    // The whole pair is written anew at its key's column; a block value's range ends with its line break.
    const end = old?.range ? old.range[1] : key.range[2];
    const col = column(this.text, key.range[0]);
    let text = renderBlock({ [String((key as { value?: unknown }).value)]: value }, col, this.style);
    if (this.text[end - 1] === '\n') text += eol;
    return { start: key.range[0], end, text };
  }

  private append(seq: YAMLSeq, value: unknown): Splice {
    const { eol } = this.style;
    if (seq.flow) {
      return this.flowAppend(seq, (flow, indent) => renderFlow(value, flow, indent, eol));
    }
    const dash = dashColumn(this.text, seq);
    if (dash === undefined || !seq.range) this.fail(seq, 'cannot append to this list');
    return insertLines(this.text, seq.range[1], `${spaces(dash)}${renderBlock([value], dash, this.style)}`, eol);
  }

  /**
   * Takes an item or a pair out with the text an insertion gave it: in block style its whole lines (and the line break
   * before them at the end of a file without a final one), in flow style the separator before it, or after it when it
   * is the first.
   */
  private remove(parent: YAMLMap | YAMLSeq, index: number): Splice {
    const item = parent.items[index] as Pair<Node, Node | null> | Node;
    const first = (isPair(item) ? item.key : item) as Node;
    const last = (isPair(item) ? (item.value ?? item.key) : item) as Node;
    const start = (first.range as [number, number, number])[0];
    const end = (last.range as [number, number, number])[1];
    if (parent.flow) {
      if (parent.items.length === 1) {
        const range = parent.range as [number, number, number];
        return { start: range[0] + 1, end: this.text.lastIndexOf(isMap(parent) ? '}' : ']', range[1]), text: '' };
      }
      if (index > 0) {
        const before = parent.items[index - 1] as Pair<Node, Node | null> | Node;
        const prevEnd = ((isPair(before) ? (before.value ?? before.key) : before) as Node).range as [number, number, number];
        return { start: prevEnd[1], end, text: '' };
      }
      const next = parent.items[1] as Pair<Node, Node | null> | Node;
      const nextStart = ((isPair(next) ? next.key : next) as Node).range as [number, number, number];
      return { start, end: nextStart[0], text: '' };
    }
    const lineStart = this.text.lastIndexOf('\n', start - 1) + 1;
    const stop = nextLineStart(this.text, end);
    const atEnd = stop === this.text.length && this.text[stop - 1] !== '\n';
    return { start: atEnd ? lineStart - this.style.eol.length : lineStart, end: stop, text: '' };
  }

  splice(base: Path, e: Edit): Splice {
    const path = [...base, ...e.path];
    const parent = this.resolve(path.slice(0, -1));
    const key = path.at(-1) as string | number;
    if (e.op === 'remove') {
      const index =
        typeof key === 'number' && isSeq(parent)
          ? key
          : isMap(parent)
            ? (parent.items as Pair<Node>[]).findIndex((p) => isScalar(p.key) && String(p.key.value) === key)
            : -1;
      if (index < 0 || index >= (parent as YAMLSeq).items.length) this.fail(parent, `nothing to remove at ${path.join('.')}`);
      return this.remove(parent as YAMLMap | YAMLSeq, index);
    }
    if (typeof key === 'number') {
      if (!isSeq(parent) || e.op !== 'add' || key !== parent.items.length)
        this.fail(parent, `inject appends to lists only (${path.join('.')})`);
      return this.append(parent, e.value);
    }
    if (!isMap(parent)) this.fail(parent, `expected a mapping at ${path.slice(0, -1).join('.')}`);
    if (e.op === 'replace' && !this.pair(parent, key)) this.fail(parent, `nothing to replace at ${path.join('.')}`);
    return this.setPair(parent, key, e.value);
  }
}

/**
 * The edits of each document (by index), spliced into the source text, each edited document checked against the object
 * it is meant to be (intended, by document index). Throws InputError for an edit it cannot make or that would not read
 * back as intended; the text outside the edited documents is not parsed again, so the cost is linear in the input.
 */
export function editSource(source: Source, edits: Map<number, { base: Path; edits: Edit[] }[]>, intended: unknown[]): string {
  const { text } = source;
  const parts: string[] = [];
  let at = 0;
  for (const index of [...edits.keys()].sort((a, b) => a - b)) {
    const doc = source.docs[index] as Document.Parsed;
    const editor = new Editor(text, doc, source.name);
    const splices = (edits.get(index) ?? [])
      .flatMap((g) => g.edits.map((e) => editor.splice(g.base, e)))
      .map((s, order) => ({ ...s, order }))
      // In order of their offsets; at one offset, the first edit's text first.
      .sort((a, b) => a.start - b.start || a.order - b.order);
    const [start, , end] = doc.range;
    let segment = '';
    let pos = start;
    for (const s of splices) {
      segment += text.slice(pos, s.start) + s.text;
      pos = Math.max(pos, s.end);
    }
    segment += text.slice(pos, end);
    verify(source.name, segment, [intended[index]], () => lineOf(text, start) - 1);
    parts.push(text.slice(at, start), segment);
    at = end;
  }
  parts.push(text.slice(at));
  return parts.join('');
}

/** The first path at which two plain values differ, or undefined. */
function difference(a: unknown, b: unknown, path: Path = []): Path | undefined {
  if (isDeepStrictEqual(a, b)) return undefined;
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const key = Array.isArray(a) ? Number(k) : k;
      const d = difference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], [...path, key]);
      if (d) return d;
    }
  }
  return path;
}

/**
 * Checks that edited text reads back as the intended objects, one per document, and throws InputError naming the file
 * and the line where it does not (linesBefore: the lines of the file before this text): what inject writes is what it
 * meant.
 */
export function verify(name: string, text: string, intended: unknown[], linesBefore = () => 0): void {
  const source = parseSource(name, text);
  if (source.objects.length !== intended.length) {
    throw new InputError(
      `${name}: the edited text has ${source.objects.length} documents, not ${intended.length}; nothing written`,
    );
  }
  source.objects.forEach((obj, i) => {
    const path = difference(obj, intended[i]);
    if (!path) return;
    const doc = source.docs[i] as Document.Parsed;
    let node: unknown = doc.contents;
    for (const k of path) {
      const next = isMap(node) ? node.get(k, true) : isSeq(node) ? node.get(k as number, true) : undefined;
      if (!next) break;
      node = next;
    }
    const range = (node as Node | undefined)?.range;
    throw new InputError(
      `${name}:${linesBefore() + lineOf(text, range?.[0] ?? doc.range[0])}: the edit would not read back as intended (at ${path.join('.') || 'the document'}); nothing written for this file`,
    );
  });
}
