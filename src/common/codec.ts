/**
 * AES-256-GCM payload encryption for everything underlay sends to Temporal: workflow and activity inputs and
 * results (the spec with its addresses and credential references), heartbeat details, queries, memo, summaries,
 * and — with the failure converter in failure-converter.ts — failure messages and stack traces.
 *
 * Wire format (the same as temporalio/samples-typescript `encryption`, so its codec servers interoperate):
 *   metadata  encoding = "binary/encrypted", encryption-key-id = <key id>
 *   data      12-byte random IV ‖ AES-256-GCM ciphertext of the whole original Payload protobuf ‖ 16-byte tag
 *
 * Keys rotate by id: the first key encrypts, every key decrypts. A payload without `encoding: binary/encrypted`
 * is REFUSED by decode: where encryption is configured, a plaintext payload can only come from a client without
 * the key — someone starting `onboardServer` with a spec the operators' tooling never encrypted. The worker reads
 * everything it wrote itself (it encrypts all of it). `acceptPlaintext` lifts the refusal: the codec server uses
 * it for display (decoding a plaintext payload reveals nothing), and UNDERLAY_CODEC_ACCEPT_PLAINTEXT=true does
 * during a migration to encryption, while histories written before it are still open.
 *
 * Runs outside the workflow sandbox (client, worker main thread, codec server): node:crypto is fine here, and
 * workflow code must never import this file.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const METADATA_KEY_ID = 'encryption-key-id';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Key ids travel in clear in every payload's metadata: keep them short and printable. */
const KEY_ID = /^[A-Za-z0-9._:@-]{1,64}$/;

export interface CodecKey {
  id: string;
  /** 32 bytes. Never logged, never part of an error message. */
  key: Uint8Array;
}

/** A payload cannot be decrypted (unknown or missing key id, wrong key, tampered data) or a key is unusable. */
export class PayloadCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadCodecError';
  }
}

export interface CodecOptions {
  /** Pass unencrypted payloads through decode instead of refusing them. Default false. */
  acceptPlaintext?: boolean;
}

export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly keys = new Map<string, Buffer>();
  /** The id new payloads are encrypted with. */
  readonly encryptionKeyId: string;
  readonly acceptPlaintext: boolean;

  /** `keys[0]` encrypts; all of them decrypt (rotation: put the new key first, keep the old ones after it). */
  constructor(keys: readonly CodecKey[], opts: CodecOptions = {}) {
    this.acceptPlaintext = opts.acceptPlaintext ?? false;
    const first = keys[0];
    if (!first) throw new PayloadCodecError('payload codec: no encryption key configured');
    for (const k of keys) {
      checkKeyId(k.id);
      if (k.key.length !== KEY_BYTES) throw new PayloadCodecError(`payload codec: key "${k.id}" is ${k.key.length} bytes, AES-256 needs ${KEY_BYTES}`);
      if (this.keys.has(k.id)) throw new PayloadCodecError(`payload codec: key id "${k.id}" is configured twice`);
      this.keys.set(k.id, Buffer.from(k.key));
    }
    this.encryptionKeyId = first.id;
  }

  /** The configured key ids, encryption key first (ids only: never the keys). */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.get(this.encryptionKeyId)!;
    return payloads.map((p) => ({
      metadata: {
        [METADATA_ENCODING_KEY]: Buffer.from(ENCRYPTED_ENCODING),
        [METADATA_KEY_ID]: Buffer.from(this.encryptionKeyId),
      },
      data: encrypt(temporal.api.common.v1.Payload.encode(p).finish(), key),
    }));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      if (text(p.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) {
        if (this.acceptPlaintext) return p;
        // The encoding is shown (it is a short label like json/plain), never the data.
        const encoding = printableLabel(text(p.metadata?.[METADATA_ENCODING_KEY]));
        throw new PayloadCodecError(
          `refusing an unencrypted payload (encoding ${encoding}): payload encryption is configured, so every payload must be encrypted — it was written by a client without the key`,
        );
      }
      const keyId = text(p.metadata?.[METADATA_KEY_ID]);
      if (!keyId) throw new PayloadCodecError(`cannot decrypt payload: it has no "${METADATA_KEY_ID}" metadata`);
      const key = this.keys.get(keyId);
      if (!key) {
        throw new PayloadCodecError(
          `cannot decrypt payload: it was encrypted with key id "${keyId}", which is not configured (configured: ${this.keyIds.join(', ')})`,
        );
      }
      const plain = decrypt(p.data ?? new Uint8Array(), key, keyId);
      try {
        return temporal.api.common.v1.Payload.decode(plain);
      } catch {
        throw new PayloadCodecError(`cannot decrypt payload with key id "${keyId}": the decrypted bytes are not a Payload`);
      }
    });
  }
}

function checkKeyId(id: string): void {
  if (!KEY_ID.test(id)) throw new PayloadCodecError(`payload codec: invalid key id ${JSON.stringify(id)} (1–64 of A-Z a-z 0-9 . _ : @ -)`);
}

function printableLabel(s: string | undefined): string {
  if (s === undefined) return 'none';
  return /^[A-Za-z0-9/._+-]{1,40}$/.test(s) ? s : '(unprintable)';
}

function text(b: Uint8Array | null | undefined): string | undefined {
  return b ? Buffer.from(b).toString('utf8') : undefined;
}

function encrypt(plain: Uint8Array, key: Buffer): Uint8Array {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

function decrypt(data: Uint8Array, key: Buffer, keyId: string): Buffer {
  if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadCodecError(`cannot decrypt payload with key id "${keyId}": ${data.length} bytes is too short`);
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, IV_BYTES));
  decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(buf.subarray(IV_BYTES, buf.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new PayloadCodecError(`cannot decrypt payload with key id "${keyId}": authentication failed (wrong key for this id, or the data was altered)`);
  }
}
