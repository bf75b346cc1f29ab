// The root logger: JSON lines with a string level, a `severity` that Cloud Logging and other collectors read (pino's
// numeric level reads as INFO there for every line), and an RFC 3339 time.

import type { DestinationStream } from 'pino';
import { type Logger, pino } from 'pino';

// Google Cloud Logging's LogSeverity names; most collectors accept them.
export const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

export function createLogger(level: string, destination: DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label, severity: SEVERITY[label] ?? 'DEFAULT' }) },
    },
    destination,
  );
}
