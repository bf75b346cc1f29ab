// The README's configuration and metrics tables are generated from the code's spec lists; this test keeps them equal.
// UPDATE_README=1 npm test -- test/unit/readme.test.ts rewrites them.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderConfigTable } from '../../src/config.js';
import { renderMetricsTable } from '../../src/metrics.js';

const README = resolve(import.meta.dirname, '../../README.md');

function section(text: string, name: string): { start: number; end: number } {
  const start = text.indexOf(`<!-- ${name}:start -->`);
  const end = text.indexOf(`<!-- ${name}:end -->`);
  if (start === -1 || end === -1) throw new Error(`README.md lacks the ${name} markers`);
  return { start: start + `<!-- ${name}:start -->`.length, end };
}

const TABLES: [string, () => string][] = [
  ['config-table', renderConfigTable],
  ['metrics-table', renderMetricsTable],
];

describe('README.md', () => {
  it.each(TABLES)('has the %s generated from the code', (name, render) => {
    const expected = `\n${render()}\n`;
    if (process.env.UPDATE_README === '1') {
      const text = readFileSync(README, 'utf8');
      const { start, end } = section(text, name);
      writeFileSync(README, text.slice(0, start) + expected + text.slice(end));
    }
    const text = readFileSync(README, 'utf8');
    const { start, end } = section(text, name);
    expect(text.slice(start, end)).toBe(expected);
  });
});
