/**
 * The worker's secret scope for one test process, as a real worker has it (src/transports/secret-scope.ts):
 * every key, password and certificate file a test's spec references lives under one credentials directory
 * (UNDERLAY_CREDENTIALS_DIR, made on first use with mode 700 and removed at exit), and env vars holding secrets
 * carry the worker's prefix (UNDERLAY_SECRET_).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SECRET_PREFIX } from '../../src/transports/secret-scope';

export const SECRET_PREFIX = DEFAULT_SECRET_PREFIX;

let dir: string | undefined;

/** This process's credentials directory; sets UNDERLAY_CREDENTIALS_DIR the first time. */
export function credentialsDir(): string {
  if (!dir) {
    const made = mkdtempSync(join(tmpdir(), 'underlay-credentials-'));
    dir = made;
    process.env.UNDERLAY_CREDENTIALS_DIR = made;
    process.once('exit', () => rmSync(made, { recursive: true, force: true }));
  }
  return dir;
}

/** A fresh directory inside the credentials directory (for one sshd, sushy, vcsim, ...). */
export function credentialsSubdir(prefix: string): Promise<string> {
  return mkdtemp(join(credentialsDir(), prefix));
}
