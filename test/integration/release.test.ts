// What a release rests on and the tests can read: the workflows (they cannot run here: no Docker engine, no registry),
// one image reference, the license, changelog and security policy, and docs that cite nothing outside the repository.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import validator from '@action-validator/core';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import pkg from '../../package.json' with { type: 'json' };
import { IMAGE } from '../../src/inject.js';

const ROOT = resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(resolve(ROOT, file), 'utf8');
const tracked = () => execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
}
interface Workflow {
  on: Record<string, unknown>;
  permissions?: Record<string, string>;
  jobs: Record<string, { permissions?: Record<string, string>; steps: Step[] }>;
}

describe('the GitHub Actions workflows', () => {
  it.each(['ci.yml', 'release.yml'])('%s is valid against the workflow schema', (file) => {
    expect(validator.validateWorkflow(read(`.github/workflows/${file}`)).errors).toEqual([]);
  });

  it('rejects a broken workflow (the validation is live)', () => {
    const broken = read('.github/workflows/ci.yml').replace('runs-on: ubuntu-24.04', 'runs-on: [ubuntu-24.04]\n    stepz: []');
    expect(validator.validateWorkflow(broken).errors.length).toBeGreaterThan(0);
  });

  it('runs .ci/run on every pull request', () => {
    const ci = parse(read('.github/workflows/ci.yml')) as Workflow;
    expect(Object.keys(ci.on)).toContain('pull_request');
    expect(Object.values(ci.jobs).flatMap((j) => j.steps.map((s) => s.run ?? ''))).toContainEqual(
      expect.stringContaining('bash .ci/run'),
    );
  });

  it('releases a signed multi-architecture image with SBOM, provenance and semver tags on a version tag', () => {
    const release = parse(read('.github/workflows/release.yml')) as Workflow;
    expect(release.on).toEqual({ push: { tags: ['v*.*.*'] } });
    const [job] = Object.values(release.jobs);
    expect(job?.permissions).toMatchObject({ packages: 'write', 'id-token': 'write' });
    const step = (action: string) => job?.steps.find((s) => s.uses?.startsWith(`${action}@`));
    expect(step('docker/build-push-action')?.with).toMatchObject({
      platforms: 'linux/amd64,linux/arm64',
      push: true,
      sbom: true,
      provenance: 'mode=max',
    });
    expect(String(step('docker/metadata-action')?.with?.tags)).toContain('type=semver,pattern={{version}}');
    expect(step('sigstore/cosign-installer')).toBeDefined();
    expect(job?.steps.some((s) => s.run?.includes('cosign sign --yes'))).toBe(true);
    // Every action pinned by commit, not by a tag that can move.
    for (const s of job?.steps ?? []) if (s.uses) expect(s.uses).toMatch(/@[0-9a-f]{40}$/);
  });
});

describe('the image reference', () => {
  it('is one: package.json image at its version, in inject, the manifests and the README', () => {
    expect(IMAGE).toBe(`${pkg.image}:${pkg.version}`);
    const files = tracked().filter((f) => /^k8s\/.*\.yaml$/.test(f) || f === 'README.md' || f === 'SECURITY.md');
    const references = files.flatMap((f) =>
      [...read(f).matchAll(/(?:image:\s*|--image=|docker pull |cosign verify )(\S*drain-sidecar:\S+)/g)].map((m) => [f, m[1]]),
    );
    expect(references.length).toBeGreaterThan(4);
    for (const [file, ref] of references) expect([file, ref]).toEqual([file, IMAGE]);
  });
});

describe('the repository', () => {
  it('carries the full Apache 2.0 license that package.json names', () => {
    expect(pkg.license).toBe('Apache-2.0');
    const license = read('LICENSE');
    expect(license).toContain('Apache License');
    expect(license).toContain('TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION');
    expect(license).toContain('END OF TERMS AND CONDITIONS');
  });

  it('keeps a changelog with an Unreleased section and the current version', () => {
    const changelog = read('CHANGELOG.md');
    expect(changelog).toContain('## [Unreleased]');
    expect(changelog).toContain(`## [${pkg.version}]`);
  });

  it('says how to report a vulnerability and how to restrict the admin port', () => {
    const security = read('SECURITY.md');
    expect(security).toMatch(/## Reporting a vulnerability/);
    expect(security).toContain('DRAIN_HOOK_TOKEN');
    expect(security).toContain('networkpolicy.yaml');
  });

  it('cites no document outside itself, and leaves no placeholder unfilled', () => {
    for (const file of tracked().filter((f) => /\.(md|ts|mjs|yaml|yml|c|json)$/.test(f) && f !== 'package-lock.json')) {
      const text = read(file);
      expect([file, /\bDESIGN(\.md| section)|\.\.\/shared\//.test(text)]).toEqual([file, false]);
      expect([file, /\{NODE\}/.test(text)]).toEqual([file, false]);
    }
  });

  it('links README to documents that exist', () => {
    const links = [...read('README.md').matchAll(/\]\(((?!https?:)[^)#]+)(#[^)]*)?\)/g)].map((m) => m[1] as string);
    expect(links.length).toBeGreaterThan(3);
    for (const link of links) expect(() => readFileSync(resolve(ROOT, link))).not.toThrow();
  });
});
