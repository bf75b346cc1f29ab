import type { Socket } from 'node:net';

export function makeCertificate(certFile: string, keyFile: string, cn?: string): void;
export function flood(port: number, n: number, send?: string): Promise<Socket[]>;
