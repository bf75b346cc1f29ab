// Kubernetes objects in tests: validation against the schemas of a current release (kubernetes-models) and the rules
// that make a pod's drain settings consistent, shared by the manifests, inject and webhook tests.

import { Certificate, Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1';
import { Gateway, HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { GCPBackendPolicy, HealthCheckPolicy } from '@kubernetes-models/gke/networking.gke.io/v1';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { DaemonSet, Deployment, ReplicaSet, StatefulSet } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, Pod, ReplicationController, Service, ServiceAccount } from 'kubernetes-models/v1';
import { expect } from 'vitest';
import { parseConfig } from '../src/config.js';
import { MIN_APP_SHUTDOWN_SECONDS, type PodSpec, sidecarResources } from '../src/inject.js';
import { hookHoldSeconds } from '../src/params.js';

export type Manifest = { apiVersion: string; kind: string; metadata?: { name?: string }; [k: string]: unknown };

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/ReplicaSet': ReplicaSet,
  'batch/v1/Job': Job,
  'batch/v1/CronJob': CronJob,
  'v1/Pod': Pod,
  'v1/ReplicationController': ReplicationController,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'cert-manager.io/v1/Issuer': Issuer,
  'cert-manager.io/v1/Certificate': Certificate,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'gateway.networking.k8s.io/v1/Gateway': Gateway,
  'gateway.networking.k8s.io/v1/HTTPRoute': HTTPRoute,
  'networking.gke.io/v1/HealthCheckPolicy': HealthCheckPolicy,
  'networking.gke.io/v1/GCPBackendPolicy': GCPBackendPolicy,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

/** Validates an object against its kind's schema; a kind without one (a custom resource) must be told apart. */
export function validate(m: Manifest): void {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (!Model) throw new Error(`no schema for ${m.apiVersion} ${m.kind}`);
  new Model(m as never).validate();
}

export const hasSchema = (m: Manifest): boolean => `${m.apiVersion}/${m.kind}` in MODELS;

/**
 * The drain settings of a pod agree: the sidecar accepts its own settings without a warning, its grace period is the
 * pod's, every app container's hook calls its numeric port and leaves the app time to shut down, and it is hardened.
 */
export function expectConsistentPod(pod: PodSpec): void {
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  const sidecar = [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === 'drain-sidecar');
  expect(sidecar).toBeDefined();
  const env = Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.value ?? '']));
  const parsed = parseConfig(env, []);
  expect(parsed).toMatchObject({ ok: true, warnings: [] });
  if (parsed.ok !== true) return;
  expect(parsed.config.gracePeriodSeconds).toBe(grace);
  // A mesh's proxy is never hooked: it is not the app.
  const apps = pod.containers.filter((c) => !['drain-sidecar', 'istio-proxy', 'linkerd-proxy'].includes(c.name));
  // Observer mode: the sidecar's own hook calls /observe on its port, and every app container has a hook of some kind.
  const own = (sidecar?.lifecycle?.preStop as { httpGet?: { port: number; path?: string } } | undefined)?.httpGet;
  if (own) expect(own).toEqual({ port: parsed.config.port, path: '/observe' });
  for (const app of apps) {
    if (own) {
      expect(app.lifecycle?.preStop).toBeDefined();
      const sleep = (app.lifecycle?.preStop?.sleep as { seconds?: number } | undefined)?.seconds;
      if (sleep !== undefined) expect(sleep + MIN_APP_SHUTDOWN_SECONDS).toBeLessThanOrEqual(grace);
      continue;
    }
    const hook = app.lifecycle?.preStop?.httpGet;
    expect(hook?.port).toBe(parsed.config.port);
    const wait = hookHoldSeconds(hook?.path ?? '', parsed.config) ?? Number.POSITIVE_INFINITY;
    expect(wait + MIN_APP_SHUTDOWN_SECONDS).toBeLessThanOrEqual(grace);
  }
  expect(sidecar?.resources).toEqual(sidecarResources(parsed.config.proxyUpstream !== undefined));
  expect(sidecar?.securityContext).toMatchObject({
    runAsNonRoot: true,
    runAsUser: 65532,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
}
