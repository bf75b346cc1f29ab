// The Go floor (bench/floor/main.go): built here when Go is installed, else the figures measured where it was, for
// reference. Used by the memory, hook-cpu and scrape benchmarks as one more executable.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The label the benchmarks print for it. */
export const FLOOR_NAME = 'Go floor (bench/floor)';

/** What it measured on a 2-core machine like CI's, for a run without Go, by benchmark. */
export const FLOOR_REFERENCE = {
  memory: 'private memory 1.0 MiB idle, 5.8 MiB after 1,000 hook calls and 100 scrapes',
  scrape: '0.75 ms per scrape',
};

/**
 * Builds the floor into dist/bench/floor and returns its path, or undefined (with a line on stderr) when `go` is not
 * on PATH. Go's build cache goes to a temporary directory when HOME has none.
 */
export function buildFloor() {
  if (spawnSync('go', ['version']).status !== 0) {
    console.error('bench: no Go here (Debian: apt-get install golang-go); the Go floor is left out of this run');
    return undefined;
  }
  const out = `${ROOT}dist/bench/floor`;
  mkdirSync(`${ROOT}dist/bench`, { recursive: true });
  execFileSync('go', ['build', '-o', out, 'main.go'], {
    cwd: `${ROOT}bench/floor`,
    env: { GOCACHE: '/tmp/drain-sidecar-gocache', GO111MODULE: 'off', ...process.env },
    stdio: 'inherit',
  });
  return out;
}
