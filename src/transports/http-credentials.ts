/**
 * HTTP credentials by reference (env vars or a two-line file) and the one redaction every HTTP transport applies
 * to text it quotes in an error: credentials removed, secret-looking fields masked, one short line.
 */
import { readFile } from 'node:fs/promises';
import { CredentialUnavailableError } from '../common/errors';
import type { z } from 'zod';
import type { HttpCredentialRef } from '../spec/server';

export type HttpCredentialRefSpec = z.output<typeof HttpCredentialRef>;

const EXCERPT_CHARS = 300;

export interface Secrets {
  username: string;
  password: string;
}

export async function resolveCredentials(cred: HttpCredentialRefSpec, host: string): Promise<Secrets> {
  if ('file' in cred) {
    let text: string;
    try {
      text = await readFile(cred.file, 'utf8');
    } catch (e) {
      throw new CredentialUnavailableError(`cannot read credential file ${cred.file} (${(e as NodeJS.ErrnoException).code ?? 'read error'})`, { host });
    }
    const [username = '', password = ''] = text.split('\n').map((l) => l.replace(/\r$/, ''));
    if (!username || !password) throw new CredentialUnavailableError(`credential file ${cred.file} must hold two lines: username, password`, { host });
    return { username, password };
  }
  const read = (name: string, what: string): string => {
    const v = process.env[name];
    if (v === undefined || v === '') throw new CredentialUnavailableError(`env var $${name} (${what}) is not set`, { host });
    return v;
  };
  return { username: read(cred.usernameEnv, 'username'), password: read(cred.passwordEnv, 'password') };
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
