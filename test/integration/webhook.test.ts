// The admission webhook over real HTTPS with a certificate made here: reviews of realistic pods, each patch applied with a
// JSON Patch library and the patched pod validated and compared with what `inject` writes for the same template;
// certificate rotation on disk; hostile and malformed requests.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { flood, makeCertificate as makeCertificateFiles } from '../../bench/lab.mjs';
import type { PodSpec } from '../../src/inject.js';
import { createWebhook } from '../../src/webhook.js';
import { expectConsistentPod, type Manifest, validate } from '../kube.js';
import { EXECUTABLE, within } from '../process.js';

const { applyPatch } = fastJsonPatch;
const dir = mkdtempSync(join(tmpdir(), 'webhook-'));
const certFile = join(dir, 'tls.crt');
const keyFile = join(dir, 'tls.key');

/** A new certificate for localhost, moved over the files as a kubelet updates a Secret's volume; its fingerprint. */
function makeCertificate(cn: string): string {
  makeCertificateFiles(certFile, keyFile, cn);
  return new X509Certificate(readFileSync(certFile)).fingerprint256;
}

let port = 0;
let webhook: ReturnType<typeof createWebhook>;
let firstFingerprint = '';

beforeAll(async () => {
  firstFingerprint = makeCertificate('drain-sidecar-webhook-1');
  webhook = createWebhook(
    { certFile, keyFile, port: 0, host: '127.0.0.1', reloadSeconds: 0.1, image: 'drain-sidecar:test' },
    pino({ level: 'silent' }),
  );
  port = (await webhook.start()).port;
});
afterAll(() => webhook.stop());

interface Answer {
  status: number;
  body: Record<string, unknown>;
  fingerprint: string;
}

/** One HTTPS request, trusting whatever the server presents (the test checks its fingerprint itself). */
function post(path: string, body: string | Buffer, contentType = 'application/json', method = 'POST'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method,
        rejectUnauthorized: false,
        agent: false,
        headers: { 'content-type': contentType },
        timeout: 10_000,
      },
      (res) => {
        const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? '';
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {}, fingerprint }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** A pod as a ReplicaSet creates it: generateName, an owner, the opt-in label, named ports. */
function replicaSetPod(
  overrides: { labels?: Record<string, string>; spec?: Partial<PodSpec>; annotations?: Record<string, string> } = {},
) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-5d8f7c9b4-',
      namespace: 'shop',
      labels: { app: 'web', 'pod-template-hash': '5d8f7c9b4', 'drain-sidecar.dev/inject': 'true', ...overrides.labels },
      annotations: overrides.annotations,
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d8f7c9b4', uid: 'c0ffee', controller: true }],
    },
    spec: {
      terminationGracePeriodSeconds: 40,
      containers: [
        {
          name: 'web',
          image: 'registry.example.com/web:2',
          ports: [
            { name: 'http', containerPort: 8080 },
            { name: 'admin', containerPort: 8081 },
          ],
          readinessProbe: { httpGet: { path: '/ready', port: 'http' } },
        },
      ],
      ...overrides.spec,
    },
  };
}

const reviewOf = (object: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'e911857d-c318-11e8-bbad-025000000001',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: 'shop',
      object,
      ...extra,
    },
  });

type Response = { uid: string; allowed: boolean; patchType?: string; patch?: string; warnings?: string[] };
const responseOf = (a: Answer) => (a.body as { response: Response }).response;
type PatchedPod = Manifest & { metadata: Record<string, unknown>; spec: PodSpec };
const patched = (pod: object, r: Response): PatchedPod =>
  applyPatch(structuredClone(pod), JSON.parse(Buffer.from(r.patch ?? '', 'base64').toString()), true, false)
    .newDocument as PatchedPod;

describe('the admission webhook', () => {
  it('injects an opted-in ReplicaSet pod: the patched pod is valid, consistent, and what inject writes', async () => {
    const pod = replicaSetPod();
    const answer = await post('/mutate', reviewOf(pod));
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
    const r = responseOf(answer);
    expect(r).toMatchObject({ uid: 'e911857d-c318-11e8-bbad-025000000001', allowed: true, patchType: 'JSONPatch' });
    const result = patched(pod, r);
    validate({ ...result, metadata: { ...result.metadata, name: 'web-5d8f7c9b4-x2k9q' } });
    expectConsistentPod(result.spec);
    // The same template through `drain-sidecar inject`, as a team would run it on the manifest.
    const viaInject = spawnSync(EXECUTABLE, ['inject', '--image', 'drain-sidecar:test', '-'], {
      input: JSON.stringify(pod),
      encoding: 'utf8',
    });
    expect(viaInject.status).toBe(0);
    expect(result.spec).toEqual(JSON.parse(viaInject.stdout).spec);
  });

  it('answers a reinvocation of an injected pod with no patch, and a dry run as any other', async () => {
    const pod = replicaSetPod();
    const result = patched(pod, responseOf(await post('/mutate', reviewOf(pod))));
    const again = responseOf(await post('/mutate', reviewOf(result)));
    expect(again).toEqual({ uid: 'e911857d-c318-11e8-bbad-025000000001', allowed: true });
    const dry = responseOf(await post('/mutate', reviewOf(pod, { dryRun: true })));
    expect(dry.patch).toBe(responseOf(await post('/mutate', reviewOf(pod))).patch);
  });

  it('observes a pod whose app has a preStop hook of its own, and refuses it only in a mode that would replace it', async () => {
    const own = replicaSetPod();
    const hook = { exec: { command: ['/bin/sleep', '5'] } };
    Object.assign(own.spec.containers[0] as object, { lifecycle: { preStop: hook } });
    const { spec } = patched(own, responseOf(await post('/mutate', reviewOf(own))));
    expect(spec.containers[0]?.lifecycle?.preStop).toEqual(hook);
    expect(spec.initContainers?.[0]?.lifecycle?.preStop).toEqual({ httpGet: { port: 9555, path: '/observe' } });
    expectConsistentPod(spec);
    const asked = replicaSetPod({ annotations: { 'drain-sidecar.dev/mode': 'sleep' } });
    Object.assign(asked.spec.containers[0] as object, { lifecycle: { preStop: hook } });
    const r = responseOf(await post('/mutate', reviewOf(asked)));
    expect(r.allowed).toBe(true);
    expect(r.patch).toBeUndefined();
    expect(r.warnings).toEqual([
      expect.stringContaining('ReplicaSet/web-5d8f7c9b4 container web: has a preStop hook already (exec)'),
    ]);
  });

  it('never blocks a pod it cannot inject: allowed unchanged, the reason in warnings, counted', async () => {
    const hostNetwork = responseOf(await post('/mutate', reviewOf(replicaSetPod({ spec: { hostNetwork: true } }))));
    expect(hostNetwork).toMatchObject({ allowed: true, warnings: [expect.stringContaining("share the node's ports")] });
    const metrics = (await webhook.registry.getSingleMetricAsString('drain_sidecar_webhook_reviews_total')).split('\n');
    expect(metrics.find((l) => l.includes('outcome="refused"'))).toMatch(/ [1-9]\d*$/);
  });

  it('leaves pods without the opt-in label, opted-out pods and other resources alone', async () => {
    const unlabelled = responseOf(
      await post('/mutate', reviewOf(replicaSetPod({ labels: { 'drain-sidecar.dev/inject': 'false' } }))),
    );
    expect(unlabelled).toEqual({ uid: 'e911857d-c318-11e8-bbad-025000000001', allowed: true });
    const optedOut = responseOf(
      await post('/mutate', reviewOf(replicaSetPod({ annotations: { 'drain-sidecar.dev/inject': 'false' } }))),
    );
    expect(optedOut.patch).toBeUndefined();
    const deployment = responseOf(
      await post('/mutate', reviewOf({}, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } })),
    );
    expect(deployment).toEqual({ uid: 'e911857d-c318-11e8-bbad-025000000001', allowed: true });
  });

  it('reads the same annotations as inject', async () => {
    const pod = replicaSetPod({
      annotations: {
        'drain-sidecar.dev/mode': 'drain',
        'drain-sidecar.dev/sleep-seconds': '12',
        'drain-sidecar.dev/app-ports': '8080',
      },
    });
    const result = patched(pod, responseOf(await post('/mutate', reviewOf(pod))));
    const { spec } = result;
    expect(spec.containers[0]?.lifecycle?.preStop?.httpGet).toEqual({ port: 9555, path: '/drain?max=12' });
    expect(spec.initContainers?.[0]?.env).toContainEqual({ name: 'DRAIN_APP_PORTS', value: '8080' });
  });

  it('answers malformed, oversized, mistyped and foreign requests with clear JSON errors, and keeps serving', async () => {
    const notJson = await post('/mutate', '{"apiVersion":');
    expect(notJson).toMatchObject({ status: 400, body: { error: 'bad_review', message: 'the body is not JSON' } });
    const v1beta1 = await post('/mutate', reviewOf(replicaSetPod()).replace('admission.k8s.io/v1', 'admission.k8s.io/v1beta1'));
    expect(v1beta1).toMatchObject({
      status: 400,
      body: { error: 'bad_review', message: expect.stringContaining('admission.k8s.io/v1') },
    });
    const noUid = await post(
      '/mutate',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }),
    );
    expect(noUid).toMatchObject({ status: 400, body: { message: 'the review has no request.uid' } });
    const huge = await post('/mutate', Buffer.alloc(4 * 1024 * 1024, 'a'));
    expect(huge).toMatchObject({ status: 413, body: { error: 'too_large' } });
    // Pods no API server would send: a null container, a containerPort that is a string.
    const nullContainer = JSON.parse(reviewOf(replicaSetPod()));
    nullContainer.request.object.spec.containers = [null];
    const stringPort = JSON.parse(reviewOf(replicaSetPod()));
    stringPort.request.object.spec.containers[0].ports = [{ containerPort: '8080' }];
    for (const body of [nullContainer, stringPort]) {
      expect(await post('/mutate', JSON.stringify(body))).toMatchObject({
        status: 400,
        body: { error: 'bad_review', message: 'a container of the pod is not an object with a name and numeric containerPorts' },
      });
    }
    const text = await post('/mutate', reviewOf(replicaSetPod()), 'text/plain');
    expect(text).toMatchObject({ status: 415, body: { error: 'unsupported_media_type' } });
    expect((await post('/nowhere', '{}')).status).toBe(404);
    expect(responseOf(await post('/mutate', reviewOf(replicaSetPod()))).patchType).toBe('JSONPatch');
  });

  it('serves a new client while 1,100 connections never start TLS, and closes those after the handshake bound', {
    timeout: 30_000,
  }, async () => {
    const silent = await flood(port, 1_100);
    const closed = Promise.all(silent.map((s) => new Promise((done) => (s.destroyed ? done(0) : s.once('close', done)))));
    const answer = await within(3000, 'a review', post('/mutate', reviewOf(replicaSetPod())));
    expect(responseOf(answer).patchType).toBe('JSONPatch');
    await within(8000, 'the silent connections to be closed', closed);
    const shed = await webhook.registry.getSingleMetricAsString('drain_sidecar_webhook_shed_connections_total');
    expect(shed).toMatch(/drain_sidecar_webhook_shed_connections_total\{reason="evicted_idle"\} [1-9]/);
  });

  it('bounds the bytes of reviews in progress: outsized reviews at once get 429 with JSON, and it keeps serving', {
    timeout: 30_000,
  }, async () => {
    const big = JSON.parse(reviewOf(replicaSetPod({ annotations: { 'example.com/blob': 'a'.repeat(2_900_000) } })));
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => post('/mutate', JSON.stringify(big)).catch((err: Error) => ({ status: 0, body: { err } }))),
    );
    expect(answers.filter((a) => a.status === 200).length).toBeGreaterThan(0);
    // Refused before its body is read, a client may see the 429 or, still sending, a reset.
    const refused = answers.filter((a) => a.status !== 200);
    expect(refused.length).toBeGreaterThan(0);
    for (const a of refused.filter((r) => r.status === 429))
      expect(a.body).toMatchObject({ error: 'busy', message: expect.stringContaining('bytes of reviews') });
    expect(responseOf(await post('/mutate', reviewOf(replicaSetPod()))).patchType).toBe('JSONPatch');
  });

  it('presents a rotated certificate at the next handshake, without a restart', async () => {
    expect((await post('/mutate', reviewOf(replicaSetPod()))).fingerprint).toBe(firstFingerprint);
    const second = makeCertificate('drain-sidecar-webhook-2');
    expect(second).not.toBe(firstFingerprint);
    await vi.waitFor(async () => expect((await post('/mutate', reviewOf(replicaSetPod()))).fingerprint).toBe(second), {
      timeout: 5000,
      interval: 100,
    });
  });
});

describe('k8s/webhook', () => {
  const read = (file: string) =>
    parseAllDocuments(readFileSync(join(import.meta.dirname, '../../k8s/webhook', file), 'utf8')).map(
      (d) => d.toJS() as Manifest,
    );
  const docs = read('webhook.yaml');
  const certificates = read('cert-manager.yaml');
  const byKind = <T>(kind: string, from = docs) => from.find((d) => d.kind === kind) as unknown as T;
  interface Configuration {
    metadata: { annotations: Record<string, string> };
    webhooks: { timeoutSeconds: number; namespaceSelector: { matchExpressions: { values: string[] }[] } }[];
  }
  interface WebhookDeployment {
    spec: {
      replicas: number;
      template: {
        spec: { containers: { args: string[]; securityContext: unknown }[]; volumes: { secret: { secretName: string } }[] };
      };
    };
  }
  interface CertificateSpec {
    metadata: { name: string; namespace: string };
    spec: { secretName: string; dnsNames: string[] };
  }

  it('registers the webhook so that it never blocks a pod and sees only opted-in pods outside its own namespace', () => {
    const [hook] = byKind<Configuration>('MutatingWebhookConfiguration').webhooks;
    expect(hook).toMatchObject({
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Ignore',
      reinvocationPolicy: 'IfNeeded',
      clientConfig: { service: { name: 'drain-sidecar-webhook', namespace: 'drain-sidecar', path: '/mutate' } },
      objectSelector: { matchLabels: { 'drain-sidecar.dev/inject': 'true' } },
      rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
    });
    expect(hook?.timeoutSeconds).toBeLessThanOrEqual(5);
    const excluded = hook?.namespaceSelector.matchExpressions[0];
    expect(excluded).toMatchObject({ key: 'kubernetes.io/metadata.name', operator: 'NotIn' });
    expect(excluded?.values).toEqual(expect.arrayContaining(['kube-system', 'drain-sidecar']));
  });

  interface Selector {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
  }
  /** A label selector as the API server evaluates it. */
  const matches = (selector: Selector | undefined, labels: Record<string, string>): boolean =>
    Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
    (selector?.matchExpressions ?? []).every((e) => {
      const has = e.key in labels;
      if (e.operator === 'Exists') return has;
      if (e.operator === 'DoesNotExist') return !has;
      const inValues = has && (e.values ?? []).includes(labels[e.key] as string);
      return e.operator === 'In' ? inValues : !inValues;
    });

  it('injects every new pod of a namespace labelled drain-sidecar.dev/inject=enabled, but pods that opt out', async () => {
    const { webhooks } = byKind<{
      webhooks: {
        name: string;
        objectSelector?: Selector;
        namespaceSelector?: Selector;
        clientConfig: { service: { path: string } };
      }[];
    }>('MutatingWebhookConfiguration');
    const namespaces: Record<string, Record<string, string>> = {
      enabled: { 'kubernetes.io/metadata.name': 'shop', 'drain-sidecar.dev/inject': 'enabled' },
      plain: { 'kubernetes.io/metadata.name': 'other' },
      system: { 'kubernetes.io/metadata.name': 'kube-system', 'drain-sidecar.dev/inject': 'enabled' },
    };
    const pods: Record<string, Record<string, string>> = {
      unlabelled: { app: 'web' },
      'opted in': { app: 'web', 'drain-sidecar.dev/inject': 'true' },
      'opted out': { app: 'web', 'drain-sidecar.dev/inject': 'false' },
    };
    const injected: string[] = [];
    for (const [ns, nsLabels] of Object.entries(namespaces)) {
      for (const [podName, labels] of Object.entries(pods)) {
        // What the API server calls: every entry whose selectors match, at its path.
        const called = webhooks.filter((w) => matches(w.objectSelector, labels) && matches(w.namespaceSelector, nsLabels));
        expect(called.length, `${ns}/${podName}`).toBeLessThanOrEqual(1);
        for (const w of called) {
          const pod = replicaSetPod();
          (pod.metadata as { labels: Record<string, string> }).labels = labels;
          const path = w.clientConfig.service.path;
          const r = responseOf(await post(path, reviewOf(pod)));
          if (r.patch) injected.push(`${ns}/${podName}`);
        }
      }
    }
    expect(injected.sort()).toEqual(['enabled/opted in', 'enabled/unlabelled', 'plain/opted in']);
    // The webhook's own check: an opted-out pod sent to the namespace path is still left alone.
    const optedOut = replicaSetPod();
    (optedOut.metadata as { labels: Record<string, string> }).labels = pods['opted out'] as Record<string, string>;
    expect(responseOf(await post('/mutate/namespace', reviewOf(optedOut))).patch).toBeUndefined();
  });

  it('runs two hardened replicas behind a PodDisruptionBudget, serving the certificate cert-manager makes', () => {
    const deployment = byKind<WebhookDeployment>('Deployment');
    expect(deployment.spec.replicas).toBe(2);
    expect(byKind<{ spec: { minAvailable: number } }>('PodDisruptionBudget').spec.minAvailable).toBe(1);
    const [container] = deployment.spec.template.spec.containers;
    expect(container?.args.slice(0, 3)).toEqual(['webhook', '--tls-cert-file=/tls/tls.crt', '--tls-key-file=/tls/tls.key']);
    expect(container?.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    const certificate = byKind<CertificateSpec>('Certificate', certificates);
    expect(byKind<Configuration>('MutatingWebhookConfiguration').metadata.annotations['cert-manager.io/inject-ca-from']).toBe(
      `${certificate.metadata.namespace}/${certificate.metadata.name}`,
    );
    expect(deployment.spec.template.spec.volumes[0]?.secret.secretName).toBe(certificate.spec.secretName);
    expect(certificate.spec.dnsNames).toContain('drain-sidecar-webhook.drain-sidecar.svc');
    for (const d of [...docs, ...certificates]) validate(d);
  });
});
