// Integration tests run the built bundle, as users do; build it once before any test.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync('npm', ['run', '-s', 'build'], { stdio: 'inherit' });
}
