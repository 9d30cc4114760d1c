/**
 * Payload encryption, the worker's secrets and the codec server, end to end on a real Temporal dev server.
 *
 * The client (connectClient) and the worker (createWorker) take the codec from the environment, exactly as
 * `underlay onboard` and `underlay worker` do. Onboardings run over the in-memory host (fake steps) behind a
 * connector that resolves the spec's credential reference with the real resolver (an encrypted key file in the
 * worker's credentials directory, its passphrase in a UNDERLAY_SECRET_ variable), as the SSH connector does
 * before dialling. Then the history the server stores — fetched raw, without any data converter — and every line
 * the worker logged are scanned: for the spec's addresses and references (absent with the codec, present
 * without: the control), and for every secret VALUE (the passphrase, the key's text, the codec key, the codec
 * server token, other secrets in the environment and the credentials directory) — absent with the codec off and
 * on, for a successful onboarding, a failed step and a failed credential.
 *
 * Then: a spec naming a secret outside the worker's scope fails at the first step before any connection; a
 * plaintext spec started by a client without the key is refused by the worker; and the codec server decodes for
 * the Web UI and the `temporal` CLI — only for callers with the token or a client certificate, only under its
 * own Host name, only for the configured browser origins.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Client, WorkflowFailedError } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import type { Connector } from '../../src/activities/run-step';
import { startOnboarding } from '../../src/cli/onboarding';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING } from '../../src/common/codec';
import { VerificationError } from '../../src/common/errors';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { resolveAuth } from '../../src/transports/ssh-auth';
import { codecFromEnv, FAILURE_CONVERTER_PATH } from '../../src/workers/codec-keys';
import { codecTokenFromEnv, isLoopback, startCodecServer, type CodecServer } from '../../src/workers/codec-server';
import { connectClient } from '../../src/workers/connection';
import { createWorker } from '../../src/workers/worker';
import { credentialsDir, credentialsSubdir } from '../helpers/credentials';
import { FakeHost, fakeSteps, nullConnector } from '../helpers/fake-steps';
import { generateKey } from '../helpers/sshd';
import { makeCertificate } from '../helpers/sushy';
import { startTemporal, TEMPORAL_BIN } from '../helpers/temporal';

type History = temporal.api.history.v1.IHistory;
const execFileP = promisify(execFile);

const UI_ORIGIN = 'http://localhost:8233';
const TOKEN = randomBytes(32).toString('base64');
const PASSPHRASE = `pass-${randomBytes(12).toString('base64url')}`;
const WRONG_PASSPHRASE = `wrong-${randomBytes(12).toString('base64url')}`;
/** Secrets the worker holds that no spec here references: they must not show up either. */
const ENV_SECRET = `envsecret-${randomBytes(12).toString('base64url')}`;
const FILE_SECRET = `filesecret-${randomBytes(12).toString('base64url')}`;

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
/** Built with the failure converter, as `Worker.create({ workflowsPath })` does when encryption is on. */
let bundle: WorkflowBundleWithSourceMap;
let client: Client;
let codecServer: CodecServer;
let keyText = '';
let seq = 0;
let connects = 0;
/** Every line the worker's Runtime logged, and everything this process wrote to stdout/stderr. */
const logs: string[] = [];

before(async () => {
  process.env.UNDERLAY_CODEC_KEY_ID = 'test-2026';
  process.env.UNDERLAY_CODEC_KEY = randomBytes(32).toString('base64');
  const dir = await credentialsSubdir('onboard-');
  const key = await generateKey(dir, 'onboard_ed25519', PASSPHRASE);
  keyText = await readFile(key.privateKeyPath, 'utf8');
  await writeFile(join(dir, 'bmc.cred'), `admin\n${FILE_SECRET}\n`, { mode: 0o600 });
  process.env.UNDERLAY_SECRET_ONBOARD_PASSPHRASE = PASSPHRASE;
  process.env.UNDERLAY_SECRET_BMC_PASSWORD = ENV_SECRET;
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      logs.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof stream.write;
  }
  const logger = new DefaultLogger('DEBUG', (e) =>
    logs.push(`${e.level} ${e.message} ${JSON.stringify(e.meta ?? {}, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`),
  );
  const noop = () => undefined;
  let example: ServerSpec;
  [env, example, bundle] = await Promise.all([
    startTemporal({ logger }),
    loadSpecFile('examples/kvm-macvtap.yaml'),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../../src/workflows'),
      failureConverterPath: FAILURE_CONVERTER_PATH,
      logger: { trace: noop, debug: noop, info: noop, warn: noop, error: (m: string) => console.error(m), log: noop },
    }),
  ]);
  // The example's key, but in this worker's credentials directory (relative to it) with its passphrase by reference.
  baseSpec = {
    ...example,
    management: {
      ...example.management,
      credentials: { privateKeyFile: relative(credentialsDir(), key.privateKeyPath), passphraseEnv: 'UNDERLAY_SECRET_ONBOARD_PASSPHRASE' },
    },
  };
  process.env.TEMPORAL_ADDRESS = env.address;
  client = await connectClient(); // the CLI's client: codec from the environment
  codecServer = await startCodecServer({
    codec: codecFromEnv(process.env, { acceptPlaintext: true })!,
    listen: '127.0.0.1:0',
    corsOrigins: [UI_ORIGIN],
    tokens: [TOKEN],
  });
});
after(async () => {
  await codecServer?.close();
  await client?.connection.close();
  await env?.teardown();
});

/** What the SSH connector does before it dials: read the key and its passphrase by reference (then no SSH). */
const resolvingConnector: Connector = async (spec, step, onProgress) => {
  connects++;
  await resolveAuth(spec.management.credentials, spec.management.user, spec.id);
  return nullConnector(spec, step, onProgress);
};

/** What must never be stored in clear with the codec on: addresses, the gateway, the credential reference, MACs, the host key. */
function specValuesOf(spec: ServerSpec): string[] {
  const creds = spec.management.credentials as { privateKeyFile?: string };
  const out = [spec.management.address, creds.privateKeyFile!, spec.management.hostKey];
  for (const v of spec.vlans) {
    if (v.address) out.push(v.address.split('/')[0]!);
    if (v.gateway) out.push(v.gateway);
  }
  for (const n of spec.nics) if (n.mac) out.push(n.mac);
  assert.ok(out.length >= 5 && out.every(Boolean), `spec values: ${out.join(' ')}`);
  return out;
}

/** What must never be stored or logged at all, codec or not: the values of the worker's secrets. */
function secretValues(): string[] {
  // The key file's base64 body lines (its header and footer are not secret).
  const body = keyText.split('\n').filter((l) => l && !l.startsWith('-----'));
  assert.ok(body.length >= 3);
  return [PASSPHRASE, WRONG_PASSPHRASE, ENV_SECRET, FILE_SECRET, TOKEN, process.env.UNDERLAY_CODEC_KEY!, ...body];
}

/** Onboards over fake steps with a worker configured from the environment (or explicitly without a codec). */
async function onboard(host: FakeHost, opts: { plain?: boolean; spec?: Partial<ServerSpec> } = {}) {
  const spec: ServerSpec = { ...baseSpec, ...opts.spec, id: `codec-${process.pid}-${++seq}` };
  const taskQueue = `tq-${spec.id}`;
  const useClient = opts.plain ? new Client({ connection: env.connection, namespace: 'default' }) : client;
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: bundle,
    activities: createActivities(resolvingConnector, fakeSteps(host)),
    ...(opts.plain ? { dataConverter: undefined } : {}),
  });
  const logsBefore = logs.length;
  const { handle, outcome } = await worker.runUntil(async () => {
    const handle = await startOnboarding(useClient, spec, { taskQueue });
    const outcome = await handle.result().then(
      (result) => ({ ok: true as const, result }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return { handle, outcome };
  });
  return { spec, outcome, history: await rawHistory(handle.workflowId, handle.firstExecutionRunId), logs: logs.slice(logsBefore).join('') };
}

/** Raw: the gRPC service, no data converter, no codec — what the server stores. */
async function rawHistory(workflowId: string, runId?: string): Promise<History> {
  const raw = await env.client.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId, runId } });
  return raw.history!;
}

function historyBytes(history: History): Buffer {
  return Buffer.from(temporal.api.history.v1.History.encode(history).finish());
}

function inClear(history: History, needles: string[]): string[] {
  const bytes = historyBytes(history);
  const json = JSON.stringify(temporal.api.history.v1.History.toObject(temporal.api.history.v1.History.fromObject(history)));
  return needles.filter((s) => bytes.includes(s) || json.includes(s) || bytes.includes(Buffer.from(s).toString('base64')));
}

/** No secret value in the stored history, nor in anything the worker logged (the whole process's output). */
function assertNoSecretValues(history: History, label: string): void {
  assert.deepEqual(inClear(history, secretValues()), [], `${label}: a secret value is in the stored history`);
  const all = logs.join('');
  assert.ok(all.length > 0);
  assert.deepEqual(
    secretValues().filter((s) => all.includes(s)),
    [],
    `${label}: a secret value is in the worker's log output`,
  );
}

/**
 * Every Payload in the history (inputs, results, heartbeat and failure details, encoded failure attributes) —
 * except search attributes, which Temporal indexes and no codec ever touches (they carry no addresses).
 */
function payloadsOf(history: History): Array<{ path: string; payload: Payload }> {
  const out: Array<{ path: string; payload: Payload }> = [];
  const walk = (v: unknown, path: string): void => {
    if (!v || typeof v !== 'object' || v instanceof Uint8Array) return;
    const o = v as Record<string, unknown>;
    const meta = o.metadata as Record<string, unknown> | undefined;
    if (meta && typeof meta === 'object' && meta.encoding instanceof Uint8Array) out.push({ path, payload: o as Payload });
    else for (const [k, x] of Object.entries(o)) if (k !== 'searchAttributes') walk(x, `${path}.${k}`);
  };
  walk(history, 'history');
  return out;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const toJson = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, b64(v!)])),
  data: b64(p.data ?? new Uint8Array()),
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${codecServer.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Origin: UI_ORIGIN, Authorization: `Bearer ${TOKEN}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { res, json: (await res.json()) as { payloads?: Array<{ metadata?: Record<string, string>; data?: string }>; error?: string } };
}

/** A raw HTTP request (fetch will not send a forged Host header). */
function rawPost(url: string, headers: Record<string, string>, body = '{"payloads":[]}', setHost = true): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', setHost, headers: { 'Content-Type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('payload encryption and the worker’s secrets on a real Temporal dev server', () => {
  test('control: without the codec the stored history shows the addresses and the key path — never a secret value', async () => {
    const { spec, outcome, history } = await onboard(new FakeHost(), { plain: true });
    assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
    assert.deepEqual(inClear(history, specValuesOf(spec)).sort(), specValuesOf(spec).sort(), 'the check finds plaintext when there is plaintext');
    assertNoSecretValues(history, 'codec off, success');
  });

  test('an onboarding with the codec: nothing of the spec in clear in the stored history; the client still reads it', async () => {
    const { spec, outcome, history } = await onboard(new FakeHost());
    assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
    assert.equal(outcome.result.steps.attach.state, 'done', 'the client decrypted the result');
    assert.deepEqual(inClear(history, specValuesOf(spec)), []);
    const payloads = payloadsOf(history);
    assert.ok(payloads.length >= 13, `${payloads.length} payloads (workflow input, 6 activity inputs and results, …)`);
    for (const { path, payload } of payloads) assert.equal(Buffer.from(payload.metadata!.encoding!).toString(), ENCRYPTED_ENCODING, path);
    assertNoSecretValues(history, 'codec on, success');
  });

  test('a failed onboarding: failure messages that name addresses are encrypted too', async () => {
    const host = new FakeHost();
    const message = `gateway ${baseSpec.vlans[0]!.gateway} unreachable from ${baseSpec.management.address} (key ${(baseSpec.management.credentials as { privateKeyFile: string }).privateKeyFile})`;
    host.faults = [{ step: 'vlan', phase: 'verify', error: () => new VerificationError(message, { step: 'vlan' }) }];
    const { spec, outcome, history } = await onboard(host);
    assert.ok(!outcome.ok);
    assert.ok(outcome.error instanceof WorkflowFailedError);
    assert.ok(outcome.error.cause?.message.includes(message), 'the client decrypts the failure message');
    assert.deepEqual(inClear(history, [...specValuesOf(spec), 'unreachable from']), []);
    assert.ok(historyBytes(history).includes('Encoded failure'), 'failures carry the placeholder message');
    assertNoSecretValues(history, 'codec on, failed step');
  });

  for (const plain of [true, false]) {
    test(`a credential that fails (wrong passphrase), codec ${plain ? 'off' : 'on'}: the failure names the reference, never a value`, async () => {
      process.env.UNDERLAY_SECRET_ONBOARD_PASSPHRASE = WRONG_PASSPHRASE;
      try {
        const host = new FakeHost();
        const { outcome, history } = await onboard(host, { plain });
        assert.ok(!outcome.ok && outcome.error instanceof WorkflowFailedError);
        assert.match(String(outcome.error.cause?.message), /wrong passphrase in \$UNDERLAY_SECRET_ONBOARD_PASSPHRASE/);
        assert.deepEqual(host.applyCalls(), [], 'no step ran');
        if (plain)
          assert.deepEqual(inClear(history, ['wrong passphrase in $UNDERLAY_SECRET_ONBOARD_PASSPHRASE']).length, 1, 'control: the message is in clear');
        assertNoSecretValues(history, `codec ${plain ? 'off' : 'on'}, failed credential`);
      } finally {
        process.env.UNDERLAY_SECRET_ONBOARD_PASSPHRASE = PASSPHRASE;
      }
    });
  }

  test('a spec naming the codec key as its passphrase fails at the first step, before any connection; the key is nowhere', async () => {
    const host = new FakeHost();
    const before = connects;
    const { outcome, history } = await onboard(host, {
      plain: true, // history in clear: the scan would see the key if it had been read anywhere
      spec: { management: { ...baseSpec.management, credentials: { privateKeyFile: 'x', passphraseEnv: 'UNDERLAY_CODEC_KEY' } } },
    });
    assert.ok(!outcome.ok && outcome.error instanceof WorkflowFailedError);
    const msg = String(outcome.error.cause?.message);
    assert.match(msg, /management\.credentials\.passphraseEnv: \$UNDERLAY_CODEC_KEY is one of the worker's own settings/);
    assert.match(String(outcome.error.cause?.message), /cable/);
    assert.equal(connects, before, 'the connector was never called');
    assert.deepEqual(host.calls, []);
    assertNoSecretValues(history, 'out-of-scope reference');
  });

  test('a plaintext spec from a client without the key is refused by the worker: no step runs', async () => {
    const host = new FakeHost();
    const spec: ServerSpec = { ...baseSpec, id: `codec-${process.pid}-${++seq}` };
    const taskQueue = `tq-${spec.id}`;
    const plainClient = new Client({ connection: env.connection, namespace: 'default' });
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: bundle,
      activities: createActivities(resolvingConnector, fakeSteps(host)),
    });
    const logsBefore = logs.length;
    const handle = await startOnboarding(plainClient, spec, { taskQueue });
    let history: History = {};
    await worker.runUntil(async () => {
      for (let i = 0; i < 100; i++) {
        history = await rawHistory(handle.workflowId);
        if (history.events?.some((e) => e.workflowTaskFailedEventAttributes)) return;
        await new Promise((r) => setTimeout(r, 200));
      }
    });
    await handle.terminate('test: plaintext input refused');
    assert.ok(
      history.events?.some((e) => e.workflowTaskFailedEventAttributes),
      'the workflow task failed: the worker did not accept the input',
    );
    assert.ok(!history.events?.some((e) => e.activityTaskScheduledEventAttributes), 'no activity was scheduled');
    assert.deepEqual(host.calls, []);
    // The worker's log names the refusal (its type; the payload itself is never logged).
    assert.match(logs.slice(logsBefore).join(''), /Failed to process Workflow Activation.*PayloadCodecError/);
  });
});

describe('the codec server', () => {
  test('decodes the stored payloads for the Web UI, and encodes what the UI sends', async () => {
    const { spec, history } = await onboard(new FakeHost());
    const started = history.events!.find((e) => e.workflowExecutionStartedEventAttributes)!.workflowExecutionStartedEventAttributes!.input!.payloads!;
    const stored = [...started, ...payloadsOf(history).map((p) => p.payload)];
    const { res, json } = await post('/decode', { payloads: stored.map(toJson) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), UI_ORIGIN);
    assert.equal(json.payloads!.length, stored.length);
    for (const p of json.payloads!) assert.equal(Buffer.from(p.metadata!.encoding!, 'base64').toString(), 'json/plain');
    const input = JSON.parse(Buffer.from(json.payloads![0]!.data!, 'base64').toString()) as { spec: ServerSpec };
    assert.equal(input.spec.id, spec.id);
    assert.equal(input.spec.management.address, spec.management.address);
    assert.deepEqual(input.spec.management.credentials, spec.management.credentials);

    // …and encodes what the UI sends (e.g. a signal typed in the browser) so the worker can read it.
    const plain = { metadata: { encoding: b64(Buffer.from('json/plain')) }, data: b64(Buffer.from('{"x":1}')) };
    const enc = await post('/encode', { payloads: [plain] });
    assert.equal(enc.res.status, 200);
    assert.equal(Buffer.from(enc.json.payloads![0]!.metadata!.encoding!, 'base64').toString(), ENCRYPTED_ENCODING);
    const [back] = await codecFromEnv()!.decode([
      {
        metadata: {
          encoding: Buffer.from(enc.json.payloads![0]!.metadata!.encoding!, 'base64'),
          'encryption-key-id': Buffer.from(enc.json.payloads![0]!.metadata!['encryption-key-id']!, 'base64'),
        },
        data: Buffer.from(enc.json.payloads![0]!.data!, 'base64'),
      },
    ]);
    assert.equal(Buffer.from(back!.data!).toString(), '{"x":1}');
    // A plaintext payload is shown as it is (display only: it reveals nothing it does not already show).
    const shown = await post('/decode', { payloads: [plain] });
    assert.equal(shown.res.status, 200);
    assert.equal(shown.json.payloads![0]!.data, plain.data);
  });

  test('CORS preflight, unknown key, bad requests, size limit', async () => {
    const preflight = await fetch(`${codecServer.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: UI_ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace,authorization' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), UI_ORIGIN);
    assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /X-Namespace/i);
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /Authorization/);

    const [other] = await new AesGcmPayloadCodec([{ id: 'elsewhere', key: randomBytes(32) }]).encode([{ metadata: {}, data: Buffer.from('x') }]);
    const unknown = await post('/decode', { payloads: [toJson(other!)] });
    assert.equal(unknown.res.status, 400);
    assert.match(unknown.json.error!, /key id "elsewhere", which is not configured \(configured: test-2026\)/);

    assert.equal((await post('/decode', 'not json')).res.status, 400);
    assert.match((await post('/decode', { nope: 1 })).json.error!, /expected \{"payloads": \[...\]\}/);
    assert.match((await post('/decode', { payloads: [{ data: '***' }] })).json.error!, /payloads\[0\]\.data: expected a base64 string/);
    assert.equal((await fetch(`${codecServer.url}/decode`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status, 405);
    assert.equal((await post('/other', { payloads: [] })).res.status, 404);
    const big = await post('/decode', JSON.stringify({ payloads: [{ data: 'A'.repeat(5 * 1024 * 1024) }] }));
    assert.equal(big.res.status, 413);
  });

  test('authentication: no token or a wrong one → 401 for /decode and /encode, nothing decoded', async () => {
    const [enc] = await codecFromEnv()!.encode([{ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('{"secret":1}') }]);
    for (const path of ['/decode', '/encode']) {
      for (const auth of [undefined, 'Bearer wrong-token-wrong-token', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, `bearer ${TOKEN}`]) {
        const r = await fetch(`${codecServer.url}${path}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', ...(auth ? { Authorization: auth } : {}) },
          body: JSON.stringify({ payloads: [toJson(enc!)] }),
        });
        assert.equal(r.status, 401, `${path} with ${auth ?? 'no Authorization'}`);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
        assert.doesNotMatch(await r.text(), /secret/);
      }
    }
    // The Temporal CLI's own flag: --codec-auth sends the header as given.
    assert.equal((await post('/decode', { payloads: [toJson(enc!)] })).res.status, 200);
  });

  test('Host and Origin: a DNS-rebinding Host, a look-alike loopback name, a foreign page → refused', async () => {
    const port = new URL(codecServer.url).port;
    const auth = { Authorization: `Bearer ${TOKEN}` };
    for (const host of [`evil.example:${port}`, `127.evil.example:${port}`, `127.0.0.1.nip.io:${port}`, `127.0.0.1:${Number(port) + 1}`, '127.0.0.1']) {
      assert.equal((await rawPost(codecServer.url + '/decode', { ...auth, Host: host })).status, 421, `Host: ${host}`);
    }
    // No Host at all: node's HTTP server refuses it itself (requireHostHeader), before the handler.
    assert.equal((await rawPost(codecServer.url + '/decode', auth, undefined, false)).status, 400, 'no Host header');
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
      assert.equal((await rawPost(codecServer.url + '/decode', { ...auth, Host: host })).status, 200, `Host: ${host}`);
    }
    const foreign = await post('/decode', { payloads: [] }, { Origin: 'http://evil.example' });
    assert.equal(foreign.res.status, 403);
    assert.equal(foreign.res.headers.get('access-control-allow-origin'), null);
    const preflight = await fetch(`${codecServer.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(preflight.status, 403);
    assert.equal(preflight.headers.get('access-control-allow-origin'), null, 'other origins get no CORS grant');

    assert.equal(isLoopback('127.evil.example'), false);
    assert.equal(isLoopback('127.0.0.1.nip.io'), false);
    assert.equal(isLoopback('0.0.0.0'), false);
    assert.equal(isLoopback('::'), false);
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) assert.equal(isLoopback(h), true, h);
  });

  test('start-up refusals: no authentication, --insecure-no-auth off loopback, a non-loopback address without TLS, a short token', async () => {
    const codec = codecFromEnv()!;
    await assert.rejects(startCodecServer({ codec, listen: '127.0.0.1:0' }), /configure a token/);
    await assert.rejects(startCodecServer({ codec, listen: '0.0.0.0:0', insecureNoAuth: true }), /loopback address only/);
    await assert.rejects(startCodecServer({ codec, listen: '0.0.0.0:0', tokens: [TOKEN] }), /needs TLS/);
    await assert.rejects(startCodecServer({ codec, listen: '127.0.0.1:0', tokens: ['short'] }), /at least 16 characters/);
    const dev = await startCodecServer({ codec, listen: '127.0.0.1:0', insecureNoAuth: true });
    try {
      assert.equal((await fetch(`${dev.url}/decode`, { method: 'POST', body: '{"payloads":[]}' })).status, 200, 'local dev: loopback without auth');
    } finally {
      await dev.close();
    }
  });

  test('the token by reference: inline or an owner-only file outside the credentials directory', async () => {
    const inside = await credentialsSubdir('token-');
    const outsideDir = await mkdtemp(join(tmpdir(), 'underlay-token-'));
    try {
      const file = join(outsideDir, 'codec.token');
      await writeFile(file, `${TOKEN}\n`, { mode: 0o600 });
      const env = { UNDERLAY_CREDENTIALS_DIR: credentialsDir() };
      assert.equal(codecTokenFromEnv({ ...env, UNDERLAY_CODEC_TOKEN_FILE: file }), TOKEN);
      assert.equal(codecTokenFromEnv({ ...env, UNDERLAY_CODEC_TOKEN: TOKEN }), TOKEN);
      assert.equal(codecTokenFromEnv(env), undefined);
      assert.throws(() => codecTokenFromEnv({ ...env, UNDERLAY_CODEC_TOKEN: TOKEN, UNDERLAY_CODEC_TOKEN_FILE: file }), /not both/);
      await chmod(file, 0o644);
      assert.throws(() => codecTokenFromEnv({ ...env, UNDERLAY_CODEC_TOKEN_FILE: file }), /accessible by group or others/);
      const specReachable = join(inside, 'codec.token');
      await writeFile(specReachable, TOKEN, { mode: 0o600 });
      assert.throws(
        () => codecTokenFromEnv({ ...env, UNDERLAY_CODEC_TOKEN_FILE: specReachable }),
        /inside the credentials directory .* where a spec could name it/,
      );
    } finally {
      await rm(outsideDir, { recursive: true, force: true });
    }
  });

  test('mTLS: a client certificate from the configured CA is required; none or another CA fails the handshake', async () => {
    const dir = await credentialsSubdir('mtls-');
    const server = await makeCertificate(dir, 'codec-server');
    const ca = await makeCa(dir, 'clients-ca');
    const good = await makeClientCert(dir, 'operator', ca);
    const rogueCa = await makeCa(dir, 'rogue-ca');
    const rogue = await makeClientCert(dir, 'rogue', rogueCa);
    const [cert, key, clientCa, serverCa] = await Promise.all([
      readFile(server.certFile),
      readFile(server.keyFile),
      readFile(ca.cert),
      readFile(server.certFile),
    ]);
    const srv = await startCodecServer({ codec: codecFromEnv()!, listen: '127.0.0.1:0', tls: { cert, key, clientCa } });
    try {
      assert.match(srv.url, /^https:/);
      const call = async (client?: { cert: string; key: string }) =>
        new Promise<number>((resolve, reject) => {
          const u = new URL(`${srv.url}/decode`);
          const req = httpsRequest(
            {
              host: u.hostname,
              port: u.port,
              path: u.pathname,
              method: 'POST',
              ca: serverCa,
              ...(client ? { cert: readFileSync(client.cert, 'utf8'), key: readFileSync(client.key, 'utf8') } : {}),
              headers: { 'Content-Type': 'application/json' },
            },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
          req.end('{"payloads":[]}');
        });
      assert.equal(await call(good), 200);
      await assert.rejects(call(), /certificate|socket hang up|ECONNRESET|alert/i, 'no client certificate');
      await assert.rejects(call(rogue), /certificate|socket hang up|ECONNRESET|alert|unknown ca/i, 'a certificate from another CA');
    } finally {
      await srv.close();
    }
  });

  test('the real temporal CLI decodes through it with --codec-auth, and gets nothing without', async () => {
    const { spec } = await onboard(new FakeHost());
    const args = [
      'workflow',
      'show',
      '--address',
      env.address,
      '--namespace',
      'default',
      '-w',
      `onboard-${spec.id}`,
      '--output',
      'json',
      '--codec-endpoint',
      codecServer.url,
    ];
    const inputOf = (stdout: string) => {
      const h = JSON.parse(stdout) as {
        events: Array<{ workflowExecutionStartedEventAttributes?: { input: { payloads: Array<{ metadata: { encoding: string }; data: string }> } } }>;
      };
      const p = h.events.find((e) => e.workflowExecutionStartedEventAttributes)!.workflowExecutionStartedEventAttributes!.input.payloads[0]!;
      return { encoding: Buffer.from(p.metadata.encoding, 'base64').toString(), data: Buffer.from(p.data, 'base64').toString() };
    };
    const ok = await execFileP(TEMPORAL_BIN, [...args, '--codec-auth', `Bearer ${TOKEN}`], { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
    const decoded = inputOf(ok.stdout);
    assert.equal(decoded.encoding, 'json/plain');
    assert.ok(decoded.data.includes(spec.management.address), 'decoded: the address is readable');
    const denied = await execFileP(TEMPORAL_BIN, args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }).then(
      (r) => ({ failed: false, out: r.stdout, err: r.stderr }),
      (e: { stdout?: string; stderr?: string }) => ({ failed: true, out: e.stdout ?? '', err: e.stderr ?? '' }),
    );
    // The CLI gets 401s from the codec server, retries until its deadline and fails: nothing decoded is shown.
    assert.equal(denied.failed, true, denied.out.slice(0, 300));
    assert.doesNotMatch(denied.out, /anNvbi9wbGFpbg==/, 'no json/plain payload in the output');
  });
});

/** A self-signed CA (CA:TRUE) by openssl, arguments passed as-is. */
async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await execFileP('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key };
}

/** A client certificate (extendedKeyUsage clientAuth) signed by `ca`. */
async function makeClientCert(dir: string, name: string, ca: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, 'extendedKeyUsage=clientAuth\n');
  await execFileP('openssl', [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    key,
    '-out',
    csr,
  ]);
  await execFileP('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', cert]);
  return { cert, key };
}
