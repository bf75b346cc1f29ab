// Writes generated text between `<!-- name:start -->` and `<!-- name:end -->` in a Markdown file, so figures in the docs
// come from the scripts that measure them and are never copied by hand. Throws when the markers are missing.
import { readFileSync, writeFileSync } from 'node:fs';

export function writeSection(file, name, content) {
  const text = readFileSync(file, 'utf8');
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a === -1 || b === -1 || b < a) throw new Error(`${file} lacks the ${name} markers`);
  writeFileSync(file, `${text.slice(0, a + start.length)}\n${content.trim()}\n${text.slice(b)}`);
}
