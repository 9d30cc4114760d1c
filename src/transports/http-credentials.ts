/**
 * HTTP credentials by reference (env vars or a two-line file) and the one redaction every HTTP transport applies
 * to text it quotes in an error: credentials removed, secret-looking fields masked, one short line.
 */
import { CredentialUnavailableError } from '../common/errors';
import type { z } from 'zod';
import type { HttpCredentialRef } from '../spec/server';
import { readScopedEnv, readScopedFile, secretScopeFromEnv, type SecretScope } from './secret-scope';

export type HttpCredentialRefSpec = z.output<typeof HttpCredentialRef>;

const EXCERPT_CHARS = 300;

export interface Secrets {
  username: string;
  password: string;
}

/**
 * Reads an HTTP credential reference within the worker's secret scope (secret-scope.ts). `field` is the spec path
 * of the credentials object (e.g. `hypervisor.bmc.credentials`), for error messages.
 */
export async function resolveCredentials(
  cred: HttpCredentialRefSpec,
  host: string,
  field = 'credentials',
  scope: SecretScope = secretScopeFromEnv(),
): Promise<Secrets> {
  if ('file' in cred) {
    const buf = readScopedFile(cred.file, { kind: 'secret', what: 'credential file' }, { host, field: `${field}.file` }, scope);
    const text = buf.toString('utf8');
    buf.fill(0);
    const [username = '', password = ''] = text.split('\n').map((l) => l.replace(/\r$/, ''));
    if (!username || !password) {
      throw new CredentialUnavailableError(`credential file ${cred.file} must hold two lines: username, password`, { host, field: `${field}.file` });
    }
    return { username, password };
  }
  return {
    username: readScopedEnv(cred.usernameEnv, 'username', { host, field: `${field}.usernameEnv` }, scope),
    password: readScopedEnv(cred.passwordEnv, 'password', { host, field: `${field}.passwordEnv` }, scope),
  };
}

/** A short, single-line excerpt with anything secret-looking masked, and the credentials themselves removed. */
export function excerpt(text: string, secrets?: Secrets): string {
  let s = text.replace(/"([A-Za-z_@.-]*(?:pass|token|secret|auth|cookie|key|credential)[A-Za-z_@.-]*)"\s*:\s*"(?:[^"\\]|\\.)*"/gi, '"$1":"***"');
  s = s.replace(/\b(Basic|Bearer)\s+[A-Za-z0-9+/=._-]+/g, '$1 ***');
  for (const secret of secrets ? [secrets.password, secrets.username] : []) {
    if (secret.length >= 3) s = s.split(secret).join('***');
  }
  s = s.replace(/\s+/g, ' ').trim();
  return s.length > EXCERPT_CHARS ? s.slice(0, EXCERPT_CHARS) + '…' : s;
}
