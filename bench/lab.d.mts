import type { ChildProcess } from 'node:child_process';
import type { Agent } from 'node:http';
import type { Socket } from 'node:net';

export function makeCertificate(certFile: string, keyFile: string, cn?: string): void;
export function flood(port: number, n: number, send?: string, localAddress?: string): Promise<Socket[]>;
export function startSidecar(
  exe: string,
  env?: Record<string, string>,
  stderr?: 'inherit' | 'ignore',
): Promise<{ child: ChildProcess; admin: number; proxy: number | undefined }>;
export function freePort(): Promise<number>;
export function get(port: number, path: string, agent?: Agent): Promise<void>;
