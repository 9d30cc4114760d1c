/**
 * underlay against a Temporal that looks like production: the dev server behind a TLS-terminating gRPC proxy on
 * 127.0.0.1 (test/helpers/grpc-tls-proxy.ts) that requires a client certificate from the test's CA and an API
 * key, with the work in namespace `underlay-prod`, configured the way an operator does — a TOML profile
 * (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE) naming the CA, certificate and key files, the API key in a file.
 * Proven through it: an encrypted onboarding with the CLI's client (grpc-js) and the worker's NativeConnection
 * (Rust core), a drift remediation, the codec server's start-up check and its decoding of the history fetched
 * through the proxy, the CLI itself; and each misconfiguration refused with one message that names it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import { startOnboarding } from '../../src/cli/onboarding';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING } from '../../src/common/codec';
import { driftWorkflowId } from '../../src/common/config';
import { TemporalConnectionError, type TemporalProblem } from '../../src/common/errors';
import { STEPS } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import type { driftCheck } from '../../src/workflows/drift';
import { startCodecServer } from '../../src/workers/codec-server';
import { checkTemporal, connectClient, connectWorker } from '../../src/workers/connection';
import { createWorker } from '../../src/workers/worker';
import { FakeHost, fakeSteps, nullConnector } from '../helpers/fake-steps';
import { freePort } from '../helpers/sshd';
import { startGrpcTlsProxy, type GrpcTlsProxy } from '../helpers/grpc-tls-proxy';
import { makePki, type Ca, type CertFiles, type Pki } from '../helpers/pki';
import { runInBackground, startTemporal, workflowBundle, type BackgroundWorker } from '../helpers/temporal';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

const NS = 'underlay-prod';
const API_KEY = randomBytes(24).toString('base64url');
const CODEC_KEY_ID = 'tls-test';
const CODEC_KEY = randomBytes(32);
const root = resolve(__dirname, '../..');
const tmp = mkdtempSync(join(tmpdir(), 'underlay-tls-'));

let env: TestWorkflowEnvironment;
let pki: Pki;
let ca: Ca;
let rogue: Ca;
let cliCert: CertFiles;
let intruder: CertFiles;
let proxy: GrpcTlsProxy;
let baseSpec: ServerSpec;
/** The operator's environment: a config file, a profile, the API key by file. */
let opEnv: Record<string, string>;
let client: Client;
let worker: BackgroundWorker | undefined;
let dataConverter: DataConverter;
let codec: AesGcmPayloadCodec;
const host = new FakeHost();
const taskQueue = `tls-${process.pid}`;
const announced: string[] = [];
const announce = (l: string) => void announced.push(l);

before(async () => {
  [env, pki, baseSpec] = await Promise.all([startTemporal({ namespace: NS }), makePki(), loadSpecFile('examples/kvm-macvtap.yaml')]);
  [ca, rogue] = await Promise.all([pki.ca('fleet-ca'), pki.ca('rogue-ca')]);
  const [serverCert, workerCert] = await Promise.all([ca.issue('server', 'temporal-frontend'), ca.issue('client', 'underlay-worker')]);
  [cliCert, intruder] = await Promise.all([ca.issue('client', 'underlay-cli'), rogue.issue('client', 'intruder')]);
  proxy = await startGrpcTlsProxy({ upstream: env.address, cert: serverCert.cert, key: serverCert.key, clientCa: ca.cert, apiKey: API_KEY });

  const keyFile = join(tmp, 'temporal-api-key');
  writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 });
  const profile = (name: string, cert?: CertFiles) =>
    [
      `[profile.${name}]`,
      `address = "${proxy.address}"`,
      `namespace = "${NS}"`,
      `[profile.${name}.tls]`,
      `server_ca_cert_path = "${ca.cert}"`,
      ...(cert ? [`client_cert_path = "${cert.cert}"`, `client_key_path = "${cert.key}"`] : []),
      'server_name = "localhost"',
      '',
    ].join('\n');
  const configFile = join(tmp, 'temporal.toml');
  writeFileSync(configFile, [profile('worker', workerCert), profile('cli', cliCert), profile('nocert')].join('\n'));
  opEnv = { HOME: tmp, TEMPORAL_CONFIG_FILE: configFile, TEMPORAL_PROFILE: 'worker', UNDERLAY_TEMPORAL_API_KEY_FILE: keyFile };

  codec = new AesGcmPayloadCodec([{ id: CODEC_KEY_ID, key: CODEC_KEY }]);
  dataConverter = { payloadCodecs: [codec] };
});

after(async () => {
  await worker?.stop();
  await client?.connection.close();
  await proxy?.stop();
  await env?.teardown();
  await pki?.remove();
  rmSync(tmp, { recursive: true, force: true });
});

const cliEnv = () => ({ ...opEnv, TEMPORAL_PROFILE: 'cli' });
const calls = (who: string, method: string) => proxy.calls.get(`${who} ${method}`) ?? 0;

describe('through the TLS proxy', { concurrency: false, timeout: 300_000 }, () => {
  let spec: ServerSpec;

  test('an encrypted onboarding: the CLI client (grpc-js) and the worker (Rust core), mTLS + API key, namespace underlay-prod', async () => {
    const w = await connectWorker({ env: opEnv, announce });
    worker = runInBackground(
      await createWorker({
        connection: w.connection,
        namespace: w.namespace,
        taskQueue,
        workflowBundle: await workflowBundle(),
        activities: createActivities(nullConnector, fakeSteps(host)),
        dataConverter,
      }),
    );
    client = await connectClient(dataConverter, { env: cliEnv(), announce });
    spec = { ...baseSpec, id: `tls-${process.pid}` };
    const result = await (await startOnboarding(client, spec, { taskQueue })).result();
    assert.deepEqual(
      RUNBOOK.map((s) => result.steps[s].state),
      RUNBOOK.map(() => 'done'),
    );
    assert.deepEqual(host.applyCalls(), [...RUNBOOK]);

    assert.equal(w.namespace, NS);
    assert.match(
      announced[0]!,
      /^Temporal profile "worker" \(from .*temporal\.toml\): 127\.0\.0\.1:\d+, namespace underlay-prod, TLS \(CA .*fleet-ca\.pem, client certificate .*underlay-worker.*\.pem \(CN=underlay-worker\), server name localhost\), API key from UNDERLAY_TEMPORAL_API_KEY_FILE=.*temporal-api-key$/,
    );
    assert.match(announced[1]!, /^Temporal profile "cli" .*\(CN=underlay-cli\)/);
    for (const line of announced) assert.ok(!line.includes(API_KEY), 'no API key in the announcement');
    // Both connections really went through the proxy, each with its own certificate.
    assert.ok(calls('underlay-cli', 'StartWorkflowExecution') >= 1, JSON.stringify([...proxy.calls]));
    for (const m of ['PollWorkflowTaskQueue', 'PollActivityTaskQueue', 'RespondActivityTaskCompleted', 'RespondWorkflowTaskCompleted']) {
      assert.ok(calls('underlay-worker', m) >= 1, `${m}: ${JSON.stringify([...proxy.calls])}`);
    }
    // And the work landed in underlay-prod on the server behind it.
    const desc = await env.client.workflow.getHandle(`onboard-${spec.id}`).describe();
    assert.equal(desc.status.name, 'COMPLETED');
  });

  test('a drift check through the proxy: the drifted step found and remediated', async () => {
    host.drift('vlan');
    host.calls = [];
    const h = await client.workflow.start<typeof driftCheck>('driftCheck', {
      taskQueue,
      workflowId: driftWorkflowId(spec.id),
      memo: { mode: 'remediate' },
      args: [{ spec, mode: 'remediate', approvalTimeout: '1m' }],
    });
    const r = await h.result();
    assert.equal(r.status, 'remediated', JSON.stringify(r));
    assert.deepEqual(r.driftedSteps, ['vlan']);
    assert.deepEqual(host.applyCalls(), ['vlan']);
    // The worker's own client (the onboarding lookup) went through the proxy too.
    assert.ok(calls('underlay-worker', 'DescribeWorkflowExecution') >= 1, JSON.stringify([...proxy.calls]));
  });

  test('the codec server: its start-up check of the profile, and decoding the history fetched through the proxy', async () => {
    const before = calls('underlay-cli', 'DescribeNamespace');
    const s = await checkTemporal({ env: cliEnv(), announce });
    assert.equal(s.namespace, NS);
    assert.equal(calls('underlay-cli', 'DescribeNamespace'), before + 1);

    const history = await client.workflowService.getWorkflowExecutionHistory({ namespace: NS, execution: { workflowId: `onboard-${spec.id}` } });
    const input = history.history!.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    assert.equal(Buffer.from(input.metadata!.encoding!).toString(), ENCRYPTED_ENCODING);
    assert.ok(!Buffer.from(input.data!).toString('latin1').includes(spec.id), 'stored encrypted');
    const token = randomBytes(32).toString('base64');
    const srv = await startCodecServer({ codec, listen: '127.0.0.1:0', tokens: [token] });
    try {
      const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64');
      const res = await fetch(`${srv.url}/decode`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Namespace': NS, Authorization: `Bearer ${token}` },
        body: JSON.stringify({
          payloads: [{ metadata: Object.fromEntries(Object.entries(input.metadata!).map(([k, v]) => [k, b64(v)])), data: b64(input.data!) }],
        }),
      });
      assert.equal(res.status, 200);
      const decoded = (await res.json()) as { payloads: Array<{ data: string }> };
      assert.match(Buffer.from(decoded.payloads[0]!.data, 'base64').toString('utf8'), new RegExp(`"id":"${spec.id}"`));
    } finally {
      await srv.close();
    }
  });

  test('the CLI (bin/underlay) through the proxy: announces its profile on stderr, no secret; status of the onboarding', async () => {
    const r = await underlay(
      { ...cliEnv(), UNDERLAY_CODEC_KEY_ID: CODEC_KEY_ID, UNDERLAY_CODEC_KEY: CODEC_KEY.toString('base64') },
      'status',
      spec.id,
      '--json',
    );
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).phase, 'onboarded');
    assert.match(
      r.err,
      /^underlay: Temporal profile "cli" \(from .*\): 127\.0\.0\.1:\d+, namespace underlay-prod, TLS \(CA .*\), API key from UNDERLAY_TEMPORAL_API_KEY_FILE=.*\n$/,
    );
    assert.ok(!(r.out + r.err).includes(API_KEY));
  });

  test('the CLI refused: one line naming the cause, exit 1', async () => {
    const r = await underlay({ ...cliEnv(), TEMPORAL_TLS_SERVER_CA_CERT_PATH: rogue.cert }, 'status', spec.id);
    assert.equal(r.code, 1);
    const lines = r.err.trim().split('\n');
    assert.equal(lines.length, 2, r.err);
    assert.match(lines[1]!, /^underlay: TLS: the certificate of Temporal at 127\.0\.0\.1:\d+ \(profile "cli"\) is not trusted by the CA in .*rogue-ca\.pem \(/);
  });
});

/** bin/underlay, asynchronously: the proxy lives in this process and must keep answering meanwhile. */
function underlay(e: Record<string, string>, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolveRun) => {
    execFile(join(root, 'bin/underlay'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH, ...e } }, (error, out, err) =>
      resolveRun({ code: error ? ((error as { code?: unknown }).code as number | null) : 0, out, err }),
    );
  });
}

describe('refused, with one clear message — by the client and the worker alike', { timeout: 120_000 }, () => {
  const wrongKeyFile = join(tmp, 'wrong-api-key');
  const cases: Array<{ name: string; env: () => Record<string, string | undefined>; problem: TemporalProblem; message: RegExp; seen?: () => number }> = [
    {
      name: 'a client certificate from another CA',
      env: () => ({ ...opEnv, TEMPORAL_TLS_CLIENT_CERT_PATH: intruder.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: intruder.key }),
      problem: 'client-certificate',
      message: /^TLS: Temporal at 127\.0\.0\.1:\d+ \(profile "worker"\) refused the client certificate .*intruder.*\.pem \(CN=intruder\)/,
      seen: () => proxy.refusedHandshakes.length,
    },
    {
      name: 'no client certificate',
      env: () => ({ ...opEnv, TEMPORAL_PROFILE: 'nocert' }),
      problem: 'client-certificate',
      message: /^TLS: Temporal at .* requires a client certificate \(.*certificate required\) — set TEMPORAL_TLS_CLIENT_CERT_PATH/,
      seen: () => proxy.refusedHandshakes.length,
    },
    {
      name: 'a CA that did not sign the server certificate',
      env: () => ({ ...opEnv, TEMPORAL_TLS_SERVER_CA_CERT_PATH: rogue.cert }),
      problem: 'tls-trust',
      message: /^TLS: the certificate of Temporal at .* is not trusted by the CA in .*rogue-ca\.pem \(SELF_SIGNED_CERT_IN_CHAIN/,
      seen: () => proxy.refusedHandshakes.length,
    },
    {
      name: 'no API key',
      env: () => ({ ...opEnv, UNDERLAY_TEMPORAL_API_KEY_FILE: undefined }),
      problem: 'api-key',
      message: /^Temporal at .* requires authentication \(UNAUTHENTICATED: Request unauthorized\.\) — set an API key/,
      seen: () => proxy.refusedStreams,
    },
    {
      name: 'a wrong API key',
      env: () => ({ ...opEnv, UNDERLAY_TEMPORAL_API_KEY_FILE: wrongKeyFile }),
      problem: 'api-key',
      message: /^Temporal at .* refused the API key from UNDERLAY_TEMPORAL_API_KEY_FILE=.*wrong-api-key \(UNAUTHENTICATED: Request unauthorized\.\)/,
      seen: () => proxy.refusedStreams,
    },
    {
      name: 'nothing listening at the address',
      env: () => ({ ...opEnv, TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}` }),
      problem: 'unreachable',
      message: /^cannot reach Temporal at 127\.0\.0\.1:\d+ \(profile "worker"\): connect ECONNREFUSED/,
    },
    {
      name: 'TLS to the plain-text dev server',
      env: () => ({ ...opEnv, TEMPORAL_ADDRESS: env.address }),
      problem: 'not-tls',
      message: /^TLS: Temporal at 127\.0\.0\.1:\d+ \(profile "worker"\) does not speak TLS/,
    },
    {
      name: 'plain text to the TLS proxy',
      env: () => ({ HOME: tmp, TEMPORAL_ADDRESS: proxy.address }),
      problem: 'tls-required',
      message: /^Temporal at 127\.0\.0\.1:\d+ \(profile "default"\) did not answer plain-text gRPC .* it probably requires TLS — set TEMPORAL_TLS=true/,
    },
    {
      name: 'a namespace that does not exist',
      env: () => ({ ...opEnv, TEMPORAL_NAMESPACE: 'underlay-nosuch' }),
      problem: 'namespace',
      message: /^namespace "underlay-nosuch" does not exist on Temporal at 127\.0\.0\.1:\d+ \(profile "worker"\) — create it/,
    },
  ];

  let closedPort = 0;
  before(async () => {
    writeFileSync(wrongKeyFile, 'not-the-key\n', { mode: 0o600 });
    closedPort = await freePort();
  });

  for (const c of cases) {
    test(c.name, async () => {
      for (const who of ['client', 'worker'] as const) {
        const seenBefore = c.seen?.() ?? 0;
        const t0 = Date.now();
        const err = await (
          who === 'client'
            ? connectClient(undefined, { env: c.env(), announce: () => undefined }).then((cl) => cl.connection.close())
            : connectWorker({ env: c.env(), announce: () => undefined }).then((w) => w.connection.close())
        ).then(
          () => assert.fail(`${who}: connected`),
          (e: unknown) => e,
        );
        assert.ok(err instanceof TemporalConnectionError, `${who}: ${String(err)}`);
        assert.equal(err.problem, c.problem, `${who}: ${err.message}`);
        assert.match(err.message, c.message, who);
        assert.equal(err.message.split('\n').length, 1);
        assert.ok(!err.message.includes(API_KEY));
        assert.ok(Date.now() - t0 < 8_000, `${who} answered in ${Date.now() - t0} ms (not after the SDK's connect timeout)`);
        // The proxy's side of a refused handshake may be logged a moment after the client gave up (bounded: 2 s).
        for (let i = 0; c.seen && c.seen() <= seenBefore && i < 20; i++) await sleep(100);
        if (c.seen) assert.ok(c.seen() > seenBefore, `${who}: the proxy saw the refusal`);
      }
    });
  }
});
