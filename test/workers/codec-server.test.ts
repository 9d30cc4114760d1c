/**
 * Payload encryption end to end on a real Temporal dev server: the client (connectClient) and the worker
 * (createWorker) take the codec from the environment, exactly as `underlay onboard` and `underlay worker` do;
 * the history the server stores — fetched raw, without any data converter — holds none of the spec's addresses
 * or credential references, not even in failure messages; and the codec server decodes those stored payloads
 * for the Web UI.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Client, WorkflowFailedError } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { startOnboarding } from '../../src/cli/onboarding';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING } from '../../src/common/codec';
import { VerificationError } from '../../src/common/errors';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { codecFromEnv, FAILURE_CONVERTER_PATH } from '../../src/workers/codec-keys';
import { startCodecServer, type CodecServer } from '../../src/workers/codec-server';
import { connectClient } from '../../src/workers/connection';
import { createWorker } from '../../src/workers/worker';
import { FakeHost, fakeSteps, nullConnector } from '../helpers/fake-steps';
import { startTemporal } from '../helpers/temporal';

type History = temporal.api.history.v1.IHistory;

const UI_ORIGIN = 'http://localhost:8233';
let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
/** Built with the failure converter, as `Worker.create({ workflowsPath })` does when encryption is on. */
let bundle: WorkflowBundleWithSourceMap;
let client: Client;
let codecServer: CodecServer;
let seq = 0;

before(async () => {
  process.env.UNDERLAY_CODEC_KEY_ID = 'test-2026';
  process.env.UNDERLAY_CODEC_KEY = randomBytes(32).toString('base64');
  const noop = () => undefined;
  [env, baseSpec, bundle] = await Promise.all([
    startTemporal(),
    loadSpecFile('examples/kvm-macvtap.yaml'),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../../src/workflows'),
      failureConverterPath: FAILURE_CONVERTER_PATH,
      logger: { trace: noop, debug: noop, info: noop, warn: noop, error: (m: string) => console.error(m), log: noop },
    }),
  ]);
  process.env.TEMPORAL_ADDRESS = env.address;
  client = await connectClient(); // the CLI's client: codec from the environment
  codecServer = await startCodecServer({ codec: codecFromEnv()!, listen: '127.0.0.1:0', corsOrigins: [UI_ORIGIN] });
});
after(async () => {
  await codecServer?.close();
  await client?.connection.close();
  await env?.teardown();
});

/** What must never be stored in clear: addresses, the gateway, the credential reference, MACs, the host key. */
function secretsOf(spec: ServerSpec): string[] {
  const creds = spec.management.credentials as { privateKeyFile?: string };
  const out = [spec.management.address, creds.privateKeyFile!, spec.management.hostKey];
  for (const v of spec.vlans) {
    if (v.address) out.push(v.address.split('/')[0]!);
    if (v.gateway) out.push(v.gateway);
  }
  for (const n of spec.nics) if (n.mac) out.push(n.mac);
  assert.ok(out.length >= 5 && out.every(Boolean), `secrets: ${out.join(' ')}`);
  return out;
}

/** Onboards over fake steps with a worker configured from the environment (or explicitly without a codec). */
async function onboard(host: FakeHost, opts: { plain?: boolean } = {}) {
  const spec: ServerSpec = { ...baseSpec, id: `codec-${process.pid}-${++seq}` };
  const taskQueue = `tq-${spec.id}`;
  const useClient = opts.plain ? new Client({ connection: env.connection, namespace: 'default' }) : client;
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: bundle,
    activities: createActivities(nullConnector, fakeSteps(host)),
    ...(opts.plain ? { dataConverter: undefined } : {}),
  });
  const { handle, outcome } = await worker.runUntil(async () => {
    const handle = await startOnboarding(useClient, spec, { taskQueue });
    const outcome = await handle.result().then(
      (result) => ({ ok: true as const, result }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return { handle, outcome };
  });
  // Raw: the gRPC service, no data converter, no codec — what the server stores.
  const raw = await env.client.workflowService.getWorkflowExecutionHistory({
    namespace: 'default',
    execution: { workflowId: handle.workflowId, runId: handle.firstExecutionRunId },
  });
  return { spec, outcome, history: raw.history! };
}

function historyBytes(history: History): Buffer {
  return Buffer.from(temporal.api.history.v1.History.encode(history).finish());
}

function inClear(history: History, needles: string[]): string[] {
  const bytes = historyBytes(history);
  const json = JSON.stringify(temporal.api.history.v1.History.toObject(temporal.api.history.v1.History.fromObject(history)));
  return needles.filter((s) => bytes.includes(s) || json.includes(s) || bytes.includes(Buffer.from(s).toString('base64')));
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
    headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Origin: UI_ORIGIN, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { res, json: (await res.json()) as { payloads?: Array<{ metadata?: Record<string, string>; data?: string }>; error?: string } };
}

describe('payload encryption on a real Temporal dev server', () => {
  test('control: without the codec the stored history shows the addresses and the key path', async () => {
    const { spec, outcome, history } = await onboard(new FakeHost(), { plain: true });
    assert.ok(outcome.ok);
    assert.deepEqual(inClear(history, secretsOf(spec)).sort(), secretsOf(spec).sort(), 'the check finds plaintext when there is plaintext');
  });

  test('an onboarding with the codec: nothing of the spec in clear in the stored history; the client still reads it', async () => {
    const { spec, outcome, history } = await onboard(new FakeHost());
    assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
    assert.equal(outcome.result.steps.attach.state, 'done', 'the client decrypted the result');
    assert.deepEqual(inClear(history, secretsOf(spec)), []);
    const payloads = payloadsOf(history);
    assert.ok(payloads.length >= 13, `${payloads.length} payloads (workflow input, 6 activity inputs and results, …)`);
    for (const { path, payload } of payloads) assert.equal(Buffer.from(payload.metadata!.encoding!).toString(), ENCRYPTED_ENCODING, path);
  });

  test('a failed onboarding: failure messages that name addresses are encrypted too', async () => {
    const host = new FakeHost();
    const message = `gateway ${baseSpec.vlans[0]!.gateway} unreachable from ${baseSpec.management.address} (key ${(baseSpec.management.credentials as { privateKeyFile: string }).privateKeyFile})`;
    host.faults = [{ step: 'vlan', phase: 'verify', error: () => new VerificationError(message, { step: 'vlan' }) }];
    const { spec, outcome, history } = await onboard(host);
    assert.ok(!outcome.ok);
    assert.ok(outcome.error instanceof WorkflowFailedError);
    assert.ok(outcome.error.cause?.message.includes(message), 'the client decrypts the failure message');
    assert.deepEqual(inClear(history, [...secretsOf(spec), 'unreachable from']), []);
    assert.ok(historyBytes(history).includes('Encoded failure'), 'failures carry the placeholder message');
  });

  test('the codec server decodes the stored payloads for the Web UI', async () => {
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
  });

  test('codec server: CORS preflight, unknown key, bad requests, size limit', async () => {
    const preflight = await fetch(`${codecServer.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: UI_ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), UI_ORIGIN);
    assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /X-Namespace/i);
    const foreign = await fetch(`${codecServer.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(foreign.headers.get('access-control-allow-origin'), null, 'other origins get no CORS grant');

    const [other] = await new AesGcmPayloadCodec([{ id: 'elsewhere', key: randomBytes(32) }]).encode([{ metadata: {}, data: Buffer.from('x') }]);
    const unknown = await post('/decode', { payloads: [toJson(other!)] });
    assert.equal(unknown.res.status, 400);
    assert.match(unknown.json.error!, /key id "elsewhere", which is not configured \(configured: test-2026\)/);

    assert.equal((await post('/decode', 'not json')).res.status, 400);
    assert.match((await post('/decode', { nope: 1 })).json.error!, /expected \{"payloads": \[...\]\}/);
    assert.match((await post('/decode', { payloads: [{ data: '***' }] })).json.error!, /payloads\[0\]\.data: expected a base64 string/);
    assert.equal((await fetch(`${codecServer.url}/decode`)).status, 405);
    assert.equal((await post('/other', { payloads: [] })).res.status, 404);
    const big = await post('/decode', JSON.stringify({ payloads: [{ data: 'A'.repeat(5 * 1024 * 1024) }] }));
    assert.equal(big.res.status, 413);
  });
});
