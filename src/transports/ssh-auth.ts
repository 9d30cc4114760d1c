/**
 * Turns an SSH credential *reference* from the spec into an ssh2 auth method.
 *
 * Secrets are read here, on the worker, at connect time, and go straight into ssh2; they are never stored on a
 * session, put in an error, or logged. Error messages name where the secret should have come from (file path,
 * env var name) and what went wrong — never the secret nor any slice of it.
 *
 * What a reference may name is the worker's decision (secret-scope.ts): env vars with its secret prefix, files in
 * its credentials directory (owner-only, like OpenSSH), and the agent socket of SSH_AUTH_SOCK or a prefixed var.
 */
import { stat } from 'node:fs/promises';
import { utils, type AgentAuthMethod, type ParsedKey, type PublicKeyAuthMethod } from 'ssh2';
import type { SshCredentialRefSpec } from '../spec/server';
import { CredentialUnavailableError } from '../common/errors';
import { readScopedEnv, readScopedFile, secretScopeFromEnv, type SecretScope } from './secret-scope';

const FIELD = 'management.credentials';

export interface ResolvedAuth {
  method: PublicKeyAuthMethod | AgentAuthMethod;
  /** Where the credential came from, safe to show ("key file /x", "key from $VAR", "ssh-agent via $SSH_AUTH_SOCK"). */
  source: string;
}

/** Resolves a credential reference; throws CredentialUnavailableError (non-retryable) if it cannot be used. */
export async function resolveAuth(
  cred: SshCredentialRefSpec,
  username: string,
  host: string,
  scope: SecretScope = secretScopeFromEnv(),
): Promise<ResolvedAuth> {
  if ('agent' in cred) {
    const envName = cred.agentSocketEnv ?? 'SSH_AUTH_SOCK';
    const field = `${FIELD}.agentSocketEnv`;
    const socketPath = readScopedEnv(envName, 'ssh-agent socket', { host, field }, scope, true);
    // Checked up front so a stale socket is reported as a credential problem, not as "authentication failed".
    // The path is not echoed: a spec may name any prefixed variable here, and that one may hold a password.
    const st = await stat(socketPath).catch(() => undefined);
    if (!st?.isSocket()) {
      throw new CredentialUnavailableError(`the ssh-agent socket named by $${envName} does not exist or is not a socket`, { host, field });
    }
    return { method: { type: 'agent', username, agent: socketPath }, source: `ssh-agent via $${envName}` };
  }

  const passphrase =
    cred.passphraseEnv === undefined ? undefined : readScopedEnv(cred.passphraseEnv, 'key passphrase', { host, field: `${FIELD}.passphraseEnv` }, scope);
  let keyText: Buffer;
  let source: string;
  if ('privateKeyFile' in cred) {
    source = `key file ${cred.privateKeyFile}`;
    keyText = readScopedFile(cred.privateKeyFile, { kind: 'secret', what: 'private key file' }, { host, field: `${FIELD}.privateKeyFile` }, scope);
  } else {
    source = `key from $${cred.privateKeyEnv}`;
    keyText = Buffer.from(readScopedEnv(cred.privateKeyEnv, 'private key', { host, field: `${FIELD}.privateKeyEnv` }, scope), 'utf8');
  }

  try {
    const key = parsePrivateKey(keyText, passphrase, source, cred.passphraseEnv, host);
    return { method: { type: 'publickey', username, key }, source };
  } finally {
    keyText.fill(0); // our copy of the key text is no longer needed; the parsed key lives only inside ssh2
  }
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
