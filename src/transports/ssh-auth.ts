/**
 * Turns an SSH credential *reference* from the spec into an ssh2 auth method.
 *
 * Secrets are read here, on the worker, at connect time, and go straight into ssh2; they are never stored on a
 * session, put in an error, or logged. Error messages name where the secret should have come from (file path,
 * env var name) and what went wrong — never the secret nor any slice of it.
 */
import { stat, readFile } from 'node:fs/promises';
import { utils, type AgentAuthMethod, type ParsedKey, type PublicKeyAuthMethod } from 'ssh2';
import type { SshCredentialRefSpec } from '../spec/server';
import { CredentialUnavailableError } from '../common/errors';

export interface ResolvedAuth {
  method: PublicKeyAuthMethod | AgentAuthMethod;
  /** Where the credential came from, safe to show ("key file /x", "key from $VAR", "ssh-agent via $SSH_AUTH_SOCK"). */
  source: string;
}

/** Resolves a credential reference; throws CredentialUnavailableError (non-retryable) if it cannot be used. */
export async function resolveAuth(cred: SshCredentialRefSpec, username: string, host: string): Promise<ResolvedAuth> {
  if ('agent' in cred) {
    const envName = cred.agentSocketEnv ?? 'SSH_AUTH_SOCK';
    const socketPath = process.env[envName];
    if (!socketPath) {
      throw new CredentialUnavailableError(`ssh-agent socket env var $${envName} is not set`, { host });
    }
    // Checked up front so a stale socket is reported as a credential problem, not as "authentication failed".
    const st = await stat(socketPath).catch(() => undefined);
    if (!st?.isSocket()) {
      throw new CredentialUnavailableError(`ssh-agent socket ${socketPath} (from $${envName}) does not exist or is not a socket`, {
        host,
      });
    }
    return { method: { type: 'agent', username, agent: socketPath }, source: `ssh-agent via $${envName}` };
  }

  const passphrase = cred.passphraseEnv === undefined ? undefined : readEnv(cred.passphraseEnv, 'key passphrase', host);
  let keyText: Buffer;
  let source: string;
  if ('privateKeyFile' in cred) {
    source = `key file ${cred.privateKeyFile}`;
    try {
      keyText = await readFile(cred.privateKeyFile);
    } catch (e) {
      // Only the errno code: fs messages are harmless today, but the code is all a caller needs.
      const code = (e as NodeJS.ErrnoException).code ?? 'read error';
      throw new CredentialUnavailableError(`cannot read private key file ${cred.privateKeyFile} (${code})`, { host });
    }
  } else {
    source = `key from $${cred.privateKeyEnv}`;
    keyText = Buffer.from(readEnv(cred.privateKeyEnv, 'private key', host), 'utf8');
  }

  try {
    const key = parsePrivateKey(keyText, passphrase, source, cred.passphraseEnv, host);
    return { method: { type: 'publickey', username, key }, source };
  } finally {
    keyText.fill(0); // our copy of the key text is no longer needed; the parsed key lives only inside ssh2
  }
}

function readEnv(name: string, what: string, host: string): string {
  const v = process.env[name];
  if (v === undefined || v === '') {
    throw new CredentialUnavailableError(`env var $${name} (${what}) is not set`, { host });
  }
  return v;
}

/**
 * Parses up front (rather than letting ssh2 do it inside connect) so a bad key or passphrase is a
 * CredentialUnavailableError before any network traffic, and the parser's own text never reaches the caller.
 */
function parsePrivateKey(text: Buffer, passphrase: string | undefined, source: string, passphraseEnv: string | undefined, host: string): ParsedKey {
  const parsed: ParsedKey | ParsedKey[] | Error = utils.parseKey(text, passphrase);
  if (parsed instanceof Error) {
    // Map to fixed texts: parser messages can embed header fields read from the key data.
    const m = parsed.message;
    let why = 'is not a usable private key (unparseable or unsupported format)';
    if (/no passphrase given/i.test(m)) why = 'is encrypted but no passphraseEnv is configured';
    else if (/integrity check failed|bad passphrase/i.test(m)) why = `could not be decrypted (wrong passphrase in $${passphraseEnv})`;
    throw new CredentialUnavailableError(`${source} ${why}`, { host });
  }
  // OpenSSH-format files may hold several keys; ssh2 itself uses the first.
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || !key.isPrivateKey()) {
    throw new CredentialUnavailableError(`${source} holds no private key`, { host });
  }
  return key;
}
