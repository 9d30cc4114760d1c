/**
 * The ESXi steps through the real step runner (run-step.ts, in a MockActivityEnvironment) against sushy-tools'
 * emulator as the BMC. The install makes a per-host ISO from a vendor-layout ISO built with xorriso, serves it from
 * the worker's ISO server (HTTPS on 127.0.0.1, per-install token), has sushy pin the server's certificate
 * (VirtualMedia Certificates + VerifyCertificate) and download the ISO through InsertMedia. The installed host is a
 * vcsim in ESX mode serving the spec's pinned host certificate, started only after the power cycle. A worker
 * restart is an activity cancelled mid-wait whose heartbeat details (the runner's durable marks) are handed to
 * the next attempt, as Temporal does: that attempt must neither reset the server nor make a new ISO.
 */
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { redfishCableStep } from '../../src/activities/esxi/cable';
import { MARK_CYCLE, MARK_DOWN, MARK_ISO, esxiInstallStep, type EsxiInstallState } from '../../src/activities/esxi/install';
import { isoServer, stopIsoServer } from '../../src/activities/esxi/media';
import { platformStep } from '../../src/activities/registry';
import { RedfishBmc, type BmcSpec } from '../../src/drivers/redfish/bmc';
import { runStep, undoStep, type Connector } from '../../src/activities/run-step';
import type { StepResult, UndoResult } from '../../src/activities/step';
import { parseServerSpec } from '../../src/spec/validate';
import { HttpClient } from '../../src/transports/http';
import { parseIsoUrl } from '../../src/transports/iso-server';
import { esxiWorkerFixture, isoFile, VCSIM_ESX, type EsxiWorkerFixture } from '../helpers/esxi';
import { freePort } from '../helpers/sshd';
import { DEFAULT_SYSTEM, makeCertificate, startSushy, type Sushy } from '../helpers/sushy';
import { startVcsim, type Vcsim } from '../helpers/vcsim';

let sushy: Sushy;
let fx: EsxiWorkerFixture;
let apiPort: number;
let host: Vcsim | undefined;
const figures: Record<string, number> = {};

const noSsh: Connector = () => Promise.reject(new Error('the ESXi steps open no SSH session'));
const noop = () => undefined;
const quiet = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

/** A mock activity context (expected failures are not logged as warnings). */
function mockEnv(info: Partial<Info> = {}): MockActivityEnvironment {
  return new MockActivityEnvironment(info, { logger: quiet });
}
const run = (
  env: MockActivityEnvironment,
  step: 'cable' | 'hypervisor',
  impl: typeof redfishCableStep | typeof esxiInstallStep,
  raw: unknown,
): Promise<StepResult> => env.run(() => runStep(step, impl, raw, noSsh));
const undo = (env: MockActivityEnvironment, raw: unknown, pre: unknown): Promise<UndoResult> =>
  env.run(() => undoStep('hypervisor', esxiInstallStep, raw, pre, noSsh));

before(async () => {
  [sushy, fx] = await Promise.all([startSushy(), esxiWorkerFixture()]);
  figures.sushyStartMs = sushy.startMs;
  apiPort = await freePort();
});
after(async () => {
  await stopHost();
  await stopIsoServer();
  await sushy?.stop();
  await fx?.cleanup();
  console.log(`figures: ${JSON.stringify(figures)}`);
});

/** "ESXi is up": its API answers on the management address's API port, with the certificate the kickstart installed. */
async function startHost(tls = { cert: fx.cert.certFile, key: fx.cert.keyFile }): Promise<void> {
  host = await startVcsim({ esx: true, tls, port: apiPort });
  figures.esxStartMs = host.startMs;
}
async function stopHost(): Promise<void> {
  const h = host;
  host = undefined;
  await h?.stop();
}

function rawSpec(over: { mac?: string; speedMbps?: number; hypervisor?: Record<string, unknown> } = {}) {
  return {
    id: 'esx01',
    site: 'lab',
    rack: 'r1',
    management: { address: '127.0.0.1', hostKey: `SHA256:${'A'.repeat(43)}`, credentials: { agent: true } },
    nics: [
      { name: 'vmnic0', mac: over.mac ?? DEFAULT_SYSTEM.nics[0]!.mac, ...(over.speedMbps ? { speedMbps: over.speedMbps } : {}) },
      { name: 'vmnic1', mac: DEFAULT_SYSTEM.nics[1]!.mac },
    ],
    hypervisor: {
      kind: 'esxi',
      bmc: {
        address: '127.0.0.1',
        port: sushy.port,
        credentials: { file: sushy.credentialFile },
        tls: { certFile: sushy.certFile, fingerprint: sushy.fingerprint },
      },
      ...fx.hypervisor(),
      apiPort,
      installTimeoutSeconds: 120,
      ...over.hypervisor,
    },
  };
}

const resets = () => sushy.requests(/ComputerSystem\.Reset/);
const inserts = () => sushy.requests(/VirtualMedia\.InsertMedia/);
const hostIsos = async () => (await readdir(fx.isoWorkDir).catch(() => [] as string[])).filter((f) => f.startsWith('esx01-') && f.endsWith('.iso'));

/** The BMC's CD device as sushy holds it, raw (the test has the BMC's credentials). */
async function cd(): Promise<{ image: string; inserted: boolean; verify: boolean | undefined; certificates: string[] }> {
  const bmc = await RedfishBmc.connect(rawSpec().hypervisor.bmc as BmcSpec, 'esx01');
  const http = await HttpClient.open({
    host: '127.0.0.1',
    port: sushy.port,
    tls: { certFile: sushy.certFile, fingerprint: sushy.fingerprint },
    credentials: { file: sushy.credentialFile },
    label: 'test',
  });
  try {
    const m = await bmc.cdMedia();
    const certs: string[] = [];
    if (m.certificatesPath) {
      const coll = (await http.get<{ Members: Array<{ '@odata.id': string }> }>(m.certificatesPath)).body!;
      for (const member of coll.Members) certs.push((await http.get<{ CertificateString: string }>(member['@odata.id'])).body!.CertificateString);
    }
    return { image: m.image ?? '', inserted: m.inserted, verify: m.verifyCertificate, certificates: certs };
  } finally {
    await bmc.close();
    await http.close();
  }
}

/** Runs the install activity; resolves `cycled` once its power cycle is marked issued (from the heartbeats). */
function startInstall(info: Partial<Info> = {}, raw: unknown = rawSpec()) {
  const env = mockEnv(info);
  let details: { marks?: Record<string, unknown>; pre?: unknown } | undefined;
  const beats: string[] = [];
  let onCycled!: () => void;
  const cycled = new Promise<void>((r) => (onCycled = r));
  let onDown!: () => void;
  const down = new Promise<void>((r) => (onDown = r));
  env.on('heartbeat', (d: typeof details) => {
    details = d;
    beats.push(JSON.stringify(d));
    if ((d?.marks?.[MARK_CYCLE] as { state?: string } | undefined)?.state === 'issued') onCycled();
    if (d?.marks?.[MARK_DOWN]) onDown();
  });
  const result = run(env, 'hypervisor', esxiInstallStep, raw);
  result.catch(() => undefined);
  return { env, run: result, cycled, down, details: () => details, beats };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('ESXi cable check from the BMC inventory', () => {
  test('every spec MAC is among the EthernetInterfaces: holds, changes nothing', async () => {
    const r = await run(mockEnv(), 'cable', redfishCableStep, rawSpec());
    assert.equal(r.changed, false);
    assert.deepEqual(r.changes, []);
    assert.deepEqual(Object.keys((r.pre as { nics: object }).nics), ['vmnic0', 'vmnic1']);
  });

  test('a MAC the BMC does not have fails at once, non-retryable, naming NIC and MACs', async () => {
    const t0 = Date.now();
    await assert.rejects(run(mockEnv(), 'cable', redfishCableStep, rawSpec({ mac: '52:54:00:de:ad:01' })), (e: unknown) => {
      assert.ok(e instanceof ApplicationFailure, String(e));
      assert.equal(e.type, 'VerificationError');
      assert.equal(e.nonRetryable, true);
      assert.match(e.message, /vmnic0\.mac: expected 52:54:00:de:ad:01, observed not among the BMC's NICs \(52:54:00:e5:00:01, 52:54:00:e5:00:02\)/);
      return true;
    });
    assert.ok(Date.now() - t0 < 10_000);
  });

  test('an expected speed the BMC does not report is a final problem, not a silent pass', async () => {
    await assert.rejects(
      run(mockEnv(), 'cable', redfishCableStep, rawSpec({ speedMbps: 25000 })),
      /vmnic0\.speed: expected 25000 Mb\/s, observed not reported by the BMC/,
    );
  });

  test('registered for esxi', () => {
    const spec = parseServerSpec(rawSpec());
    assert.equal(platformStep('cable', spec), redfishCableStep);
    assert.equal(platformStep('hypervisor', spec), esxiInstallStep);
  });
});

describe('ESXi install through the BMC', () => {
  let first: StepResult;

  test('a wrong ISO hash is refused before the BMC is touched', async () => {
    const before = [inserts().length, resets().length];
    await assert.rejects(
      run(
        mockEnv(),
        'hypervisor',
        esxiInstallStep,
        rawSpec({ hypervisor: { installer: { ...(fx.hypervisor().installer as object), sha256: 'f'.repeat(64) } } }),
      ),
      (e: unknown) => {
        assert.ok(e instanceof ApplicationFailure);
        assert.equal(e.type, 'InvalidSpecError');
        assert.equal(e.nonRetryable, true);
        assert.match(e.message, /not the pinned one.*field hypervisor\.installer\.sha256/);
        return true;
      },
    );
    assert.deepEqual([inserts().length, resets().length], before);
  });

  test('per-host ISO served to the BMC, which pins the ISO server; Cd once; one power cycle; waits for the host API; cleans up', async () => {
    const t0 = Date.now();
    const inst = startInstall();
    await within(inst.cycled, 60_000, 'the power cycle');
    // While the install runs: the BMC holds this server's ISO URL, verifies the ISO server against its certificate,
    // and has fetched the ISO; the ISO is on the worker at mode 0600, carrying the kickstart.
    const during = await cd();
    const url = parseIsoUrl(during.image);
    assert.ok(url, `a per-host ISO URL: ${during.image.replace(/\/iso\/[^/]+\//, '/iso/***/')}`);
    assert.equal(url.serverId, 'esx01');
    assert.equal(url.base, (await isoServer()).url);
    assert.equal(during.inserted, true);
    assert.equal(during.verify, true, 'VerifyCertificate on');
    assert.deepEqual(
      during.certificates.map((c) => c.trim()),
      [(await isoServer()).certificatePem.trim()],
    );
    const served = (await isoServer()).log.filter((e) => e.serverId === 'esx01' && e.method === 'GET' && e.status === 200);
    const [file] = await hostIsos();
    assert.ok(file, 'the per-host ISO exists during the install');
    const st = await stat(join(fx.isoWorkDir, file));
    assert.equal(st.mode & 0o777, 0o600);
    assert.deepEqual(
      served.map((e) => e.bytes),
      [st.size],
      'sushy downloaded the whole ISO once (InsertMedia)',
    );
    const ks = await isoFile(join(fx.isoWorkDir, file), '/KS.CFG');
    assert.match(ks, /^rootpw --iscrypted \$6\$/m);
    assert.ok(!ks.includes(fx.rootPassword));
    assert.match(await isoFile(join(fx.isoWorkDir, file), '/EFI/BOOT/BOOT.CFG'), /^kernelopt=runweasel cdromBoot ks=cdrom:\/KS\.CFG$/m);

    await within(inst.down, 20_000, 'the host to be seen down');
    await startHost();
    first = await within(inst.run, 90_000, 'the install step');
    figures.installStepMs = Date.now() - t0;

    const pre = first.pre as EsxiInstallState;
    assert.deepEqual(
      { ...pre, api: pre.api.state },
      {
        power: 'Off',
        bootOverride: { target: 'Hdd', enabled: 'Continuous' },
        media: { image: null, inserted: false, ours: false, verifyCertificate: false },
        api: 'down',
        inVcenter: null,
      },
    );
    assert.equal(first.changed, true);
    assert.deepEqual(
      first.changes.map((c) => c.field),
      ['virtualMedia', 'bootOverride', 'power', 'esxi'],
    );
    assert.equal(resets().length, 1, 'one Reset');
    assert.equal(inserts().length, 1);
    assert.equal(sushy.requests(/VirtualMedia\.EjectMedia/).length, 1);
    // Cleaned up: ejected, the ISO server's certificate off the BMC, VerifyCertificate as before, the ISO deleted.
    const afterwards = await cd();
    assert.deepEqual(afterwards, { image: '', inserted: false, verify: false, certificates: [] });
    assert.deepEqual(await hostIsos(), []);
    // The token never left: not in the result, not in a heartbeat.
    assert.ok(!JSON.stringify(first).includes(url.token));
    assert.ok(!inst.beats.some((b) => b.includes(url.token)));
    assert.match(String((inst.details()?.marks?.[MARK_ISO] as { tokenHash?: string })?.tokenHash), /^[0-9a-f]{64}$/);
  });

  test('a re-run finds ESXi answering as expected: no change, no Reset', async () => {
    const r = await run(mockEnv(), 'hypervisor', esxiInstallStep, rawSpec());
    assert.equal(r.changed, false);
    const now = r.pre as EsxiInstallState;
    assert.equal(now.api.state, 'answers');
    assert.deepEqual([now.api.apiType, now.api.version, now.api.build], ['HostAgent', VCSIM_ESX.version, VCSIM_ESX.build]);
    assert.equal(now.media.inserted, false);
    assert.equal(resets().length, 1);
  });

  test('a host answering as another version is not reinstalled: refused before the BMC is touched', async () => {
    const other = rawSpec({ hypervisor: { installer: { ...(fx.hypervisor().installer as object), version: '8.0.3', build: undefined } } });
    await assert.rejects(run(mockEnv(), 'hypervisor', esxiInstallStep, other), (e: unknown) => {
      assert.ok(e instanceof ApplicationFailure);
      assert.equal(e.type, 'UnsupportedPlatformError');
      assert.match(e.message, /expected "HostAgent, ESXi 8\.0\.3"; observed "VMware ESXi 6\.5\.0 build-5969303/);
      return true;
    });
    assert.equal(inserts().length, 1);
  });

  test('undo returns the BMC to the pre-state: media out, override back, power off', async () => {
    const u = await undo(mockEnv(), rawSpec(), first.pre).finally(stopHost);
    assert.deepEqual(u.changes.map((c) => c.field).sort(), ['bootOverride.target', 'power']);
    const again = await undo(mockEnv(), rawSpec(), first.pre);
    assert.deepEqual(again.changes, [], 'already at the pre-state');
  });

  test('something answering with another certificate is never installed over', async () => {
    const other = await makeCertificate(fx.dir, 'not-the-host');
    await startHost({ cert: other.certFile, key: other.keyFile });
    try {
      const before = [inserts().length, resets().length];
      await assert.rejects(run(mockEnv(), 'hypervisor', esxiInstallStep, rawSpec()), (e: unknown) => {
        assert.ok(e instanceof ApplicationFailure);
        assert.equal(e.type, 'HostKeyMismatchError');
        assert.equal(e.nonRetryable, true);
        assert.match(e.message, /another certificate than hypervisor\.hostCertificate: not installing over a running system/);
        return true;
      });
      assert.deepEqual([inserts().length, resets().length], before);
    } finally {
      await stopHost();
    }
  });

  test('a worker restart during the wait neither resets the server again nor makes a new ISO (the first boot’s own certificate is waited through)', async () => {
    const before = { resets: resets().length, inserts: inserts().length };
    const t0 = Date.now();
    const run1 = startInstall();
    await within(run1.cycled, 60_000, 'the power cycle');
    await within(run1.down, 20_000, 'the host to be seen down');
    // The worker dies mid-wait: the activity is cancelled; Temporal keeps its last heartbeat details.
    run1.env.cancel();
    await assert.rejects(run1.run, (e: unknown) => e instanceof CancelledFailure);
    const kept = run1.details();
    const isosBefore = await hostIsos();
    assert.equal(isosBefore.length, 1);

    // The new attempt finds the host's first boot answering with its own certificate (before %firstboot replaced
    // it): with the install under way that is "not up yet", not a foreign system.
    const firstBoot = await makeCertificate(fx.dir, 'first-boot');
    await startHost({ cert: firstBoot.certFile, key: firstBoot.keyFile });
    const run2 = startInstall({ attempt: 2, heartbeatDetails: kept });
    // Let the new attempt observe, plan and start waiting before the host comes up.
    await new Promise((r) => setTimeout(r, 2_000));
    assert.deepEqual(await hostIsos(), isosBefore, 'the same ISO, still served');
    await stopHost();
    await startHost();
    const r = await within(run2.run, 90_000, 'the resumed install');
    figures.restartedInstallMs = Date.now() - t0;

    assert.equal(resets().length, before.resets + 1, 'the second attempt did not reset the server');
    assert.equal(inserts().length, before.inserts + 1, 'nor insert another ISO');
    assert.deepEqual(r.pre, first.pre, 'the pre-state of the first attempt is kept');
    assert.equal(r.changed, true);
    const u = await undo(mockEnv(), rawSpec(), r.pre).finally(stopHost);
    assert.deepEqual(u.changes.map((c) => c.field).sort(), ['bootOverride.target', 'power']);
  });

  test('a host that never answers fails verification, non-retryable, after the install timeout; undo deletes the ISO', async () => {
    const raw = rawSpec({ hypervisor: { installTimeoutSeconds: 10 } });
    const t0 = Date.now();
    await assert.rejects(run(mockEnv(), 'hypervisor', esxiInstallStep, raw), (e: unknown) => {
      assert.ok(e instanceof ApplicationFailure, String(e));
      assert.equal(e.type, 'VerificationError');
      assert.equal(e.nonRetryable, true);
      assert.match(
        e.message,
        /ESXi did not come up within 10 s.*expected "HostAgent, ESXi 6\.5\.0 build 5969303 answering on 127\.0\.0\.1:\d+ with the pinned certificate"; observed "down: /,
      );
      return true;
    });
    assert.ok(Date.now() - t0 < 40_000);
    assert.equal((await hostIsos()).length, 1, 'the ISO stays while the install may still be running');
    const pre = first.pre as EsxiInstallState;
    // sushy's fake driver lands a Reset 1–11 s after it was accepted and reports the old PowerState until then (a
    // real BMC says PoweringOn), so a 10 s timeout can end before the power-on is visible. Wait until it is, so the
    // undo below has a powered server to turn off, as after a real failed install.
    const bmc = await RedfishBmc.connect(raw.hypervisor.bmc as BmcSpec, 'esx01');
    await bmc.waitPowerState('On', { timeoutMs: 20_000, intervalMs: 500 }).finally(() => bmc.close());
    // The compensation after a failed install: everything the BMC holds goes back, and the ISO is deleted.
    const u = await undo(mockEnv(), raw, pre);
    assert.deepEqual(u.changes.map((c) => c.field).sort(), ['bootOverride.target', 'media.image', 'media.inserted', 'media.verifyCertificate', 'power']);
    assert.deepEqual(await cd(), { image: '', inserted: false, verify: false, certificates: [] });
    assert.deepEqual(await hostIsos(), []);
  });
});
