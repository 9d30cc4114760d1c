/** The AES-256-GCM payload codec, its keys by reference, and the failure converter that encrypts messages. */
import assert from 'node:assert/strict';
import { randomBytes, webcrypto } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ApplicationFailure, defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING, METADATA_KEY_ID, PayloadCodecError, type CodecKey } from '../../src/common/codec';
import { failureConverter } from '../../src/common/failure-converter';
import { codecFromEnv, dataConverterFromEnv, FAILURE_CONVERTER_PATH, loadCodecKeys, parseKeyFile } from '../../src/workers/codec-keys';

const key = (id: string): CodecKey => ({ id, key: randomBytes(32) });
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString('utf8');
const secretSpec = { management: { address: '192.0.2.17', credentials: { privateKeyFile: '/etc/underlay/keys/onboard_ed25519' } } };
const plain = (): Payload => defaultPayloadConverter.toPayload(secretSpec);

function flip(p: Payload, at: number): Payload {
  const data = Buffer.from(p.data!);
  data[at] = data[at]! ^ 0x01;
  return { ...p, data };
}

describe('AesGcmPayloadCodec', () => {
  test('roundtrip: the payload comes back byte for byte; the wire form is ciphertext with the key id', async () => {
    const codec = new AesGcmPayloadCodec([key('k1')]);
    const original = plain();
    const [enc] = await codec.encode([original]);
    assert.equal(text(enc!.metadata!.encoding), ENCRYPTED_ENCODING);
    assert.equal(text(enc!.metadata![METADATA_KEY_ID]), 'k1');
    assert.deepEqual(Object.keys(enc!.metadata!).sort(), ['encoding', METADATA_KEY_ID].sort(), 'the original metadata (json/plain) is inside the ciphertext');
    const wire = Buffer.from(temporal.api.common.v1.Payload.encode(enc!).finish());
    for (const s of ['192.0.2.17', 'onboard_ed25519', 'json/plain']) assert.ok(!wire.includes(s), `${s} not in clear`);
    const [dec] = await codec.decode([enc!]);
    assert.deepEqual(text(dec!.data), text(original.data));
    assert.equal(text(dec!.metadata!.encoding), 'json/plain');
    assert.deepEqual(defaultPayloadConverter.fromPayload(dec!), secretSpec);
  });

  test('a fresh IV per payload: the same value encrypts differently every time', async () => {
    const codec = new AesGcmPayloadCodec([key('k1')]);
    const [a, b] = await codec.encode([plain(), plain()]);
    assert.notDeepEqual(Buffer.from(a!.data!), Buffer.from(b!.data!));
  });

  test("the wire format is the samples' one: 12-byte IV ‖ AES-GCM(ciphertext ‖ tag) of the Payload protobuf", async () => {
    const k = key('k1');
    const [enc] = await new AesGcmPayloadCodec([k]).encode([plain()]);
    const data = enc!.data!;
    const cryptoKey = await webcrypto.subtle.importKey('raw', k.key, 'AES-GCM', false, ['decrypt']);
    const bytes = await webcrypto.subtle.decrypt({ name: 'AES-GCM', iv: data.subarray(0, 12) }, cryptoKey, data.subarray(12));
    const payload = temporal.api.common.v1.Payload.decode(new Uint8Array(bytes));
    assert.deepEqual(defaultPayloadConverter.fromPayload(payload), secretSpec);
  });

  test('rotation: the new key encrypts, the old one still decrypts; a codec without the new key names it', async () => {
    const old = key('2025-01');
    const fresh = key('2026-06');
    const before = new AesGcmPayloadCodec([old]);
    const rotated = new AesGcmPayloadCodec([fresh, old]);
    const [oldPayload] = await before.encode([plain()]);
    const [decOld] = await rotated.decode([oldPayload!]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(decOld!), secretSpec, 'history written with the old key stays readable');
    const [newPayload] = await rotated.encode([plain()]);
    assert.equal(text(newPayload!.metadata![METADATA_KEY_ID]), '2026-06');
    assert.equal(rotated.encryptionKeyId, '2026-06');
    assert.deepEqual(rotated.keyIds, ['2026-06', '2025-01']);
    await assert.rejects(before.decode([newPayload!]), (err: Error) => {
      assert.ok(err instanceof PayloadCodecError);
      assert.match(err.message, /encrypted with key id "2026-06", which is not configured \(configured: 2025-01\)/);
      return true;
    });
  });

  test('a missing key id is a clear error', async () => {
    const codec = new AesGcmPayloadCodec([key('k1')]);
    const [enc] = await codec.encode([plain()]);
    const { [METADATA_KEY_ID]: _dropped, ...meta } = enc!.metadata!;
    await assert.rejects(codec.decode([{ ...enc!, metadata: meta }]), /no "encryption-key-id" metadata/);
  });

  test('the right id with the wrong key, or tampered ciphertext, IV or tag: authentication fails', async () => {
    const k = key('k1');
    const codec = new AesGcmPayloadCodec([k]);
    const [enc] = await codec.encode([plain()]);
    const len = enc!.data!.length;
    for (const [what, p] of [
      ['IV', flip(enc!, 0)],
      ['ciphertext', flip(enc!, 20)],
      ['tag', flip(enc!, len - 1)],
    ] as const) {
      await assert.rejects(codec.decode([p]), /key id "k1": authentication failed \(wrong key for this id, or the data was altered\)/, what);
    }
    await assert.rejects(new AesGcmPayloadCodec([{ id: 'k1', key: randomBytes(32) }]).decode([enc!]), /authentication failed/);
    await assert.rejects(codec.decode([{ ...enc!, data: enc!.data!.subarray(0, 20) }]), /too short/);
  });

  test('an unencrypted payload is refused by decode (a client without the key wrote it); accepted only when asked', async () => {
    const codec = new AesGcmPayloadCodec([key('k1')]);
    const p = plain();
    await assert.rejects(codec.decode([p]), (err: Error) => {
      assert.ok(err instanceof PayloadCodecError);
      assert.match(err.message, /refusing an unencrypted payload \(encoding json\/plain\)/);
      assert.ok(!err.message.includes('192.0.2.17'), 'the data is not shown');
      return true;
    });
    const [enc] = await codec.encode([plain()]);
    await assert.rejects(codec.decode([enc!, p]), PayloadCodecError, 'one plaintext payload fails the batch');
    const lenient = new AesGcmPayloadCodec([key('k1')], { acceptPlaintext: true });
    assert.deepEqual(await lenient.decode([p]), [p]);
    // The migration switch, from the environment; anything but true/false is a configuration error.
    const k = { UNDERLAY_CODEC_KEY: randomBytes(32).toString('base64'), UNDERLAY_CODEC_KEY_ID: 'k1' };
    assert.equal(codecFromEnv(k)!.acceptPlaintext, false);
    assert.equal(codecFromEnv({ ...k, UNDERLAY_CODEC_ACCEPT_PLAINTEXT: 'true' })!.acceptPlaintext, true);
    assert.throws(() => codecFromEnv({ ...k, UNDERLAY_CODEC_ACCEPT_PLAINTEXT: 'yes' }), /expected true or false/);
  });

  test('bad keys are refused at construction, without showing them', () => {
    const short = randomBytes(16);
    assert.throws(() => new AesGcmPayloadCodec([]), /no encryption key/);
    assert.throws(
      () => new AesGcmPayloadCodec([{ id: 'k1', key: short }]),
      (err: Error) => {
        assert.match(err.message, /key "k1" is 16 bytes, AES-256 needs 32/);
        assert.ok(!err.message.includes(short.toString('base64')));
        return true;
      },
    );
    assert.throws(() => new AesGcmPayloadCodec([key('k1'), key('k1')]), /configured twice/);
    assert.throws(() => new AesGcmPayloadCodec([key('has space')]), /invalid key id/);
  });
});

describe('codec keys by reference', () => {
  const b64 = () => randomBytes(32).toString('base64');

  test('a key file: first key encrypts, the others decrypt; comments and blank lines ignored', () => {
    const dir = mkdtempSync(join(tmpdir(), 'underlay-keys-'));
    try {
      const file = join(dir, 'codec.keys');
      writeFileSync(file, `# rotated 2026-06\n2026-06 ${b64()}\n\n2025-01   ${b64()}\n`, { mode: 0o600 });
      const keys = loadCodecKeys({ UNDERLAY_CODEC_KEYS_FILE: file });
      assert.deepEqual(
        keys?.map((k) => k.id),
        ['2026-06', '2025-01'],
      );
      assert.equal(codecFromEnv({ UNDERLAY_CODEC_KEYS_FILE: file })?.encryptionKeyId, '2026-06');
      assert.throws(() => loadCodecKeys({ UNDERLAY_CODEC_KEYS_FILE: join(dir, 'missing') }), /UNDERLAY_CODEC_KEYS_FILE=.*missing: ENOENT/);
      // Read like an SSH private key: owner-only, a regular file, size-capped.
      chmodSync(file, 0o640);
      assert.throws(() => loadCodecKeys({ UNDERLAY_CODEC_KEYS_FILE: file }), /accessible by group or others \(mode 0640\)/);
      assert.throws(() => loadCodecKeys({ UNDERLAY_CODEC_KEYS_FILE: '/dev/zero' }), /not a regular file/);
      writeFileSync(join(dir, 'huge'), 'x'.repeat(65 * 1024), { mode: 0o600 });
      assert.throws(() => loadCodecKeys({ UNDERLAY_CODEC_KEYS_FILE: join(dir, 'huge') }), /over the limit/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a single key from the environment; nothing set → encryption off', () => {
    assert.deepEqual(
      loadCodecKeys({ UNDERLAY_CODEC_KEY: b64(), UNDERLAY_CODEC_KEY_ID: 'k1' })?.map((k) => k.id),
      ['k1'],
    );
    assert.equal(loadCodecKeys({}), undefined);
    assert.equal(dataConverterFromEnv({}), undefined);
    const dc = dataConverterFromEnv({ UNDERLAY_CODEC_KEY: b64(), UNDERLAY_CODEC_KEY_ID: 'k1' });
    assert.equal(dc?.payloadCodecs?.length, 1);
    assert.equal(dc?.failureConverterPath, FAILURE_CONVERTER_PATH);
  });

  test('broken configurations are errors that never echo a key', () => {
    const secret = randomBytes(16).toString('base64');
    const check = (env: Record<string, string>, re: RegExp) =>
      assert.throws(
        () => loadCodecKeys(env),
        (err: Error) => {
          assert.match(err.message, re);
          assert.ok(!err.message.includes(secret), 'key material in the message');
          return true;
        },
      );
    check({ UNDERLAY_CODEC_KEY: secret, UNDERLAY_CODEC_KEY_ID: 'k1' }, /UNDERLAY_CODEC_KEY: the key is 16 bytes, AES-256 needs 32/);
    check({ UNDERLAY_CODEC_KEY: secret }, /go together/);
    check({ UNDERLAY_CODEC_KEY_ID: 'k1' }, /go together/);
    check({ UNDERLAY_CODEC_KEY: `${secret}!!`, UNDERLAY_CODEC_KEY_ID: 'k1' }, /not base64/);
    check({ UNDERLAY_CODEC_KEYS_FILE: '/x', UNDERLAY_CODEC_KEY: secret, UNDERLAY_CODEC_KEY_ID: 'k1' }, /not both/);
    assert.throws(
      () => parseKeyFile(`k1 ${secret}\n`, 'keys'),
      (err: Error) => /keys line 1 \(key id "k1"\): the key is 16 bytes/.test(err.message) && !err.message.includes(secret),
    );
    assert.throws(() => parseKeyFile(`k1\n`, 'keys'), /keys line 1: expected "<key id> <base64 key>"/);
    assert.throws(() => parseKeyFile(`# only a comment\n`, 'keys'), /keys: no keys/);
  });
});

describe('failure converter', () => {
  test('message and stack travel as an encoded payload (so the codec encrypts them), and come back', () => {
    const failure = failureConverter.errorToFailure(ApplicationFailure.create({ message: 'host 192.0.2.17 refused', type: 'X' }), defaultPayloadConverter);
    assert.equal(failure.message, 'Encoded failure');
    assert.equal(failure.stackTrace, '');
    assert.ok(failure.encodedAttributes);
    assert.equal(text(failure.encodedAttributes.metadata?.encoding), 'json/plain', 'a payload like any other: the codec encrypts it');
    const back = failureConverter.failureToError(failure, defaultPayloadConverter);
    assert.equal(back.message, 'host 192.0.2.17 refused');
  });
});
