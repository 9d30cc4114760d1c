/**
 * Payload-encryption keys, by reference only — never in a spec, a flag or a log line:
 *
 *   UNDERLAY_CODEC_KEYS_FILE=/etc/underlay/codec.keys   lines `<key id> <base64 of 32 bytes>`; the first key
 *                                                       encrypts, the others only decrypt (rotation); blank
 *                                                       lines and `#` comments are ignored
 *   UNDERLAY_CODEC_KEY=<base64> UNDERLAY_CODEC_KEY_ID=<id>   a single key
 *
 * Neither set → no encryption (payloads stay plain JSON, as before).
 * The client (connectClient), the worker (createWorker) and the codec server all read the same settings.
 *
 * With encryption on, decode refuses unencrypted payloads (codec.ts); UNDERLAY_CODEC_ACCEPT_PLAINTEXT=true lifts
 * that while histories from before encryption are still open (a migration), and only then.
 *
 * The key file is read like an SSH private key: a regular file, owner-only (chmod 600), at most 64 KiB. These
 * names are `UNDERLAY_CODEC_*`, a family no spec may reference (src/transports/secret-scope.ts), and the key file
 * must live outside the credentials directory specs may name.
 */
import type { DataConverter } from '@temporalio/common';
import { AesGcmPayloadCodec, PayloadCodecError, type CodecKey } from '../common/codec';
import { FileCheckError, MAX_SECRET_BYTES, readCheckedFile } from '../transports/secret-scope';

export const ENV_KEYS_FILE = 'UNDERLAY_CODEC_KEYS_FILE';
export const ENV_KEY = 'UNDERLAY_CODEC_KEY';
export const ENV_KEY_ID = 'UNDERLAY_CODEC_KEY_ID';
export const ENV_ACCEPT_PLAINTEXT = 'UNDERLAY_CODEC_ACCEPT_PLAINTEXT';

/** The module whose `failureConverter` encrypts failure messages too; bundle it into prebuilt workflow bundles. */
export const FAILURE_CONVERTER_PATH = require.resolve('../common/failure-converter');

type Env = Record<string, string | undefined>;

/** Parses a key file's text. Errors name the line and key id, never the key. */
export function parseKeyFile(text: string, source = 'key file'): CodecKey[] {
  const keys: CodecKey[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const parts = line.split(/\s+/);
    if (parts.length !== 2) throw new PayloadCodecError(`${source} line ${i + 1}: expected "<key id> <base64 key>"`);
    keys.push({ id: parts[0]!, key: decodeKey(parts[1]!, `${source} line ${i + 1} (key id "${parts[0]}")`) });
  }
  if (keys.length === 0) throw new PayloadCodecError(`${source}: no keys`);
  return keys;
}

function decodeKey(b64: string, where: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new PayloadCodecError(`${where}: the key is not base64`);
  const key = Buffer.from(b64, 'base64');
  if (key.length !== 32) throw new PayloadCodecError(`${where}: the key is ${key.length} bytes, AES-256 needs 32 (e.g. \`openssl rand -base64 32\`)`);
  return key;
}

/** The configured keys, or undefined when encryption is off. Throws on a half or broken configuration. */
export function loadCodecKeys(env: Env = process.env): CodecKey[] | undefined {
  const file = env[ENV_KEYS_FILE];
  const single = env[ENV_KEY];
  const singleId = env[ENV_KEY_ID];
  if (file && (single || singleId)) throw new PayloadCodecError(`set either ${ENV_KEYS_FILE} or ${ENV_KEY} + ${ENV_KEY_ID}, not both`);
  if (file) {
    let buf: Buffer;
    try {
      buf = readCheckedFile(file, { maxBytes: MAX_SECRET_BYTES, ownerOnly: true });
    } catch (err) {
      throw new PayloadCodecError(`${ENV_KEYS_FILE}=${file}: ${err instanceof FileCheckError ? err.detail : 'unreadable'}`);
    }
    const text = buf.toString('utf8');
    buf.fill(0);
    return parseKeyFile(text, file);
  }
  if (single || singleId) {
    if (!single || !singleId) throw new PayloadCodecError(`${ENV_KEY} and ${ENV_KEY_ID} go together: set both`);
    return [{ id: singleId, key: decodeKey(single.trim(), ENV_KEY) }];
  }
  return undefined;
}

/** The payload codec from the environment, or undefined when encryption is off. */
export function codecFromEnv(env: Env = process.env, opts: { acceptPlaintext?: boolean } = {}): AesGcmPayloadCodec | undefined {
  const keys = loadCodecKeys(env);
  const flag = env[ENV_ACCEPT_PLAINTEXT];
  if (flag !== undefined && flag !== '' && flag !== 'true' && flag !== 'false') throw new PayloadCodecError(`${ENV_ACCEPT_PLAINTEXT}: expected true or false`);
  return keys && new AesGcmPayloadCodec(keys, { acceptPlaintext: opts.acceptPlaintext ?? flag === 'true' });
}

/** The data converter for clients and workers: encryption of payloads and failures when keys are configured. */
export function dataConverterFromEnv(env: Env = process.env): DataConverter | undefined {
  const codec = codecFromEnv(env);
  return codec && encryptingDataConverter(codec);
}

export function encryptingDataConverter(codec: AesGcmPayloadCodec): DataConverter {
  return { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH };
}
