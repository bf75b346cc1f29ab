// Integration tests run the single executable, as users do; build it (and the bundle inside it) once before any test.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync('npm', ['run', '-s', 'build:sea'], { stdio: 'inherit' });
}
