// The source-preserving edit layer: every style YAML tools write, edited at the parsed nodes' ranges, with exact bytes
// where the style matters and the verify step that refuses what would not read back as intended.
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { applyToObject, type Edit, editSource, InputError, MAX_INPUT_BYTES, parseSource, verify } from '../../src/manifest.js';

const LIFECYCLE: Edit = {
  op: 'add',
  path: ['spec', 'containers', 0, 'lifecycle'],
  value: { preStop: { httpGet: { port: 9555, path: '/sleep?s=20' } } },
};
const SIDECAR: Edit = { op: 'add', path: ['spec', 'initContainers'], value: [{ name: 's', ports: [{ containerPort: 9555 }] }] };
const LABEL: Edit = { op: 'add', path: ['metadata', 'labels', 'drain-sidecar/enabled'], value: 'true' };

/** Edits document `doc` of text, checks the result with verify (as the CLI does) and returns it. */
function edit(text: string, edits: Edit[], doc = 0, base: (string | number)[] = []): string {
  const source = parseSource('in.yaml', text);
  const intended = structuredClone(source.objects);
  applyToObject(intended[doc], base, edits);
  const out = editSource(source, new Map([[doc, [{ base, edits }]]]), intended);
  // The whole text reads back as intended, not only the edited document.
  verify('in.yaml', out, intended);
  return out;
}

describe('editSource', () => {
  it('writes sequences as the document does: not indented (kubectl) in one document, indented in the next', () => {
    const kubectl = 'kind: Pod\nspec:\n  containers:\n  - name: a\n    ports:\n    - containerPort: 80\n';
    const indented = 'kind: Pod\nspec:\n  containers:\n    - name: a\n      image: x\n';
    const out = edit(`${kubectl}---\n${indented}`, [SIDECAR], 1);
    expect(out).toBe(`${kubectl}---\n${indented}  initContainers:\n    - name: s\n      ports:\n        - containerPort: 9555\n`);
    expect(edit(kubectl, [LIFECYCLE])).toBe(
      `${kubectl}    lifecycle:\n      preStop:\n        httpGet:\n          port: 9555\n          path: /sleep?s=20\n`,
    );
  });

  it('keeps comments, spacing, quoting, block scalars and markers byte for byte around the edit', () => {
    const text = [
      '# Source: chart/templates/deployment.yaml',
      '---',
      'kind:   Pod   # spaced',
      'metadata: {name: \'p\', labels: {app: "web"}}',
      'spec:',
      '  containers:',
      '  - name: a   # the app',
      '    args:',
      '    - |',
      '      line one',
      '      line two',
      '    # a comment after the last key',
      '...',
      '',
    ].join('\n');
    const out = edit(text, [LIFECYCLE, LABEL]);
    expect(out).toContain('metadata: {name: \'p\', labels: {app: "web", drain-sidecar/enabled: "true"}}\n');
    expect(out.startsWith('# Source: chart/templates/deployment.yaml\n---\nkind:   Pod   # spaced\n')).toBe(true);
    expect(
      out.endsWith('    lifecycle:\n      preStop:\n        httpGet:\n          port: 9555\n          path: /sleep?s=20\n...\n'),
    ).toBe(true);
  });

  it('keeps CRLF line ends and a file without a final line break', () => {
    const out = edit('kind: Pod\r\nspec:\r\n  containers:\r\n  - name: a', [LIFECYCLE]);
    expect(out).toBe(
      'kind: Pod\r\nspec:\r\n  containers:\r\n  - name: a\r\n    lifecycle:\r\n      preStop:\r\n        httpGet:\r\n          port: 9555\r\n          path: /sleep?s=20',
    );
  });

  it('writes JSON into JSON, at the indentation of the siblings', () => {
    const text =
      '{\n    "kind": "Pod",\n    "spec": {\n        "containers": [\n            {\n                "name": "a"\n            }\n        ]\n    }\n}\n';
    const out = edit(text, [LIFECYCLE]);
    expect(out).toBe(
      '{\n    "kind": "Pod",\n    "spec": {\n        "containers": [\n            {\n                "name": "a",\n                "lifecycle": {\n                    "preStop": {\n                        "httpGet": {\n                            "port": 9555,\n                            "path": "/sleep?s=20"\n                        }\n                    }\n                }\n            }\n        ]\n    }\n}\n',
    );
    expect(JSON.parse(out).spec.containers[0].lifecycle.preStop.httpGet.port).toBe(9555);
    expect(JSON.parse(edit('{"kind":"Pod","metadata":{},"spec":{"containers":[{"name":"a"}]}}', [LIFECYCLE]))).toBeTruthy();
  });

  it('replaces a value the edit replaces, and fills a key that is there with no value', () => {
    const text =
      'kind: Pod\nmetadata:\n  labels:\n  name: p\nspec:\n  containers:\n  - name: a\n    lifecycle:\n      preStop:\n        exec: {command: [sleep, "5"]}\n      postStart: {exec: {command: [x]}}\n';
    const out = edit(text, [
      { op: 'add', path: ['metadata', 'labels'], value: { a: 'b' } },
      { op: 'replace', path: ['spec', 'containers', 0, 'lifecycle', 'preStop'], value: { httpGet: { port: 9555 } } },
    ]);
    expect(out).toBe(
      'kind: Pod\nmetadata:\n  labels:\n    a: b\n  name: p\nspec:\n  containers:\n  - name: a\n    lifecycle:\n      preStop:\n        httpGet:\n          port: 9555\n      postStart: {exec: {command: [x]}}\n',
    );
  });

  it('refuses to edit through an alias or an anchored node, naming the line', () => {
    const shared = 'base: &c\n  name: a\nkind: Pod\nspec:\n  containers:\n  - *c\n';
    expect(() => edit(shared, [LIFECYCLE])).toThrow(/in\.yaml:6: spec\.containers\.0 is an alias \(\*c\)/);
    const anchored = 'kind: Pod\nspec:\n  containers: &list\n  - name: a\nother: *list\n';
    expect(() => edit(anchored, [LIFECYCLE])).toThrow(InputError);
  });

  it('merge keys are read as kubectl reads them', () => {
    const text = 'defaults: &d\n  image: x\nkind: Pod\nspec:\n  containers:\n  - <<: *d\n    name: a\n';
    const out = edit(text, [LIFECYCLE]);
    expect(parseSource('o', out).objects[0]).toMatchObject({ spec: { containers: [{ image: 'x', name: 'a' }] } });
  });
});

describe('verify', () => {
  it('refuses text that does not read back as intended, naming the file and the line', () => {
    const text = 'kind: Pod\nspec:\n  containers:\n  - name: a\n';
    const intended = parseAllDocuments(text).map((d) => d.toJS());
    expect(() => verify('f.yaml', text.replace('name: a', 'name: b'), intended)).toThrow(
      /^f\.yaml:4: the edit would not read back as intended \(at spec\.containers\.0\.name\)/,
    );
    expect(() => verify('f.yaml', `${text}  resources: {}\n`, intended)).toThrow(InputError);
  });
});

describe('parseSource', () => {
  it('answers a YAML bomb, a nesting too deep and bad syntax with one line naming the file', () => {
    const bomb = [
      'a: &a [x,x,x,x,x,x,x,x,x,x]',
      ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${`*${'abcdefg'[i]},`.repeat(10)}]`),
    ].join('\n');
    expect(() => parseSource('bomb.yaml', bomb)).toThrow(/^bomb\.yaml: cannot be read as YAML: /);
    expect(() => parseSource('deep.json', `${'['.repeat(100_000)}${']'.repeat(100_000)}`)).toThrow(/^deep\.json/);
    expect(() => parseSource('bad.yaml', 'a: b\n  c: [\n')).toThrow(/^bad\.yaml:\d+: not valid YAML/);
    expect(() => parseSource('big.yaml', `a: ${'x'.repeat(MAX_INPUT_BYTES)}`)).toThrow(/^big\.yaml: larger than 32 MiB/);
  });
});
