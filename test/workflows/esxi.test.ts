/**
 * An ESXi onboarding end to end on a real Temporal dev server, with the worker's own activities (no fakes): the
 * cable check and the install through a real Redfish BMC emulator (sushy-tools) — per-host ISO remastered with
 * xorriso, served by the worker's ISO server, downloaded by sushy over pinned TLS — the host joined to a real
 * vCenter simulator (vcsim) with its thumbprint, its uplinks and vmk0 moved onto the distributed switch; then a
 * drift check against the same vcsim. The "installed ESXi" is a vcsim in ESX mode serving the spec's pinned host
 * certificate, started once the BMC has seen the power cycle — the one thing neither emulator can do.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, PLATFORM_STEP_SET } from '../../src/activities';
import { stopIsoServer } from '../../src/activities/esxi/media';
import type { Connector } from '../../src/activities/run-step';
import { planOnboarding, renderPlan } from '../../src/activities/plan';
import { startOnboarding } from '../../src/cli/onboarding';
import { driftWorkflowId } from '../../src/common/config';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpec } from '../../src/spec/server';
import { findByName } from '../../src/drivers/vsphere/dvs';
import { createWorker } from '../../src/workers/worker';
import type { driftCheck } from '../../src/workflows/drift';
import type { OnboardingFailureReport } from '../../src/workflows/messages';
import { esxiWorkerFixture, type EsxiWorkerFixture } from '../helpers/esxi';
import { freePort } from '../helpers/sshd';
import { DEFAULT_SYSTEM, startSushy, type Sushy } from '../helpers/sushy';
import { startTemporal, workflowBundle, runInBackground, type BackgroundWorker } from '../helpers/temporal';
import { createDvs, driftByHand, dvsMembers, startVcsim, type Vcsim } from '../helpers/vcsim';

const SWITCH = 'DSwitch-fleet';
const PORTGROUP = 'pg-mgmt-120';
// vCenter names the host by the address it is added under; its own API answers there too.
const HOST = '127.0.0.1';

let env: TestWorkflowEnvironment;
let sushy: Sushy;
let vc: Vcsim;
let fx: EsxiWorkerFixture;
let apiPort: number;
let esxi: Vcsim | undefined;
let worker: BackgroundWorker | undefined;
let taskQueue: string;

const noSsh: Connector = () => Promise.reject(new Error('no ESXi step opens an SSH session'));

before(async () => {
  [env, sushy, vc, fx] = await Promise.all([startTemporal(), startSushy(), startVcsim(), esxiWorkerFixture()]);
  const c = await vc.client();
  try {
    await createDvs(c, SWITCH);
  } finally {
    await c.close();
  }
  apiPort = await freePort();
  taskQueue = `esxi-${Date.now()}`;
  worker = runInBackground(
    await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(noSsh),
    }),
  );
});

after(async () => {
  await worker?.stop().catch(() => undefined);
  await stopEsxi();
  await stopIsoServer();
  await Promise.all([env?.teardown(), sushy?.stop(), vc?.stop()]);
  await fx?.cleanup();
});

function spec(over: { lacp?: boolean } = {}): ServerSpec {
  return parseServerSpec({
    id: 'esx-r07-01',
    site: 'lab',
    rack: 'r07',
    management: { address: HOST, hostKey: `SHA256:${'A'.repeat(43)}`, credentials: { agent: true } },
    nics: DEFAULT_SYSTEM.nics.map((n, i) => ({ name: `vmnic${i}`, mac: n.mac })),
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
    },
    attach: {
      kind: 'vds',
      vcenter: {
        address: '127.0.0.1',
        port: vc.port,
        credentials: { usernameEnv: vc.usernameEnv, passwordEnv: vc.passwordEnv },
        caFile: vc.caFile,
      },
      datacenter: 'DC0',
      cluster: 'DC0_C0',
      switch: SWITCH,
      portgroup: PORTGROUP,
      vlan: 120,
      uplinks: ['vmnic0', 'vmnic1'],
      migrateVmk: 'vmk0',
      ...(over.lacp ? { lacp: true } : {}),
    },
  });
}

const resets = () => sushy.requests(/ComputerSystem\.Reset/).length;

/** Plays the server: once the BMC has seen a new power cycle, "ESXi" answers with its pinned certificate (bounded wait). */
async function bootEsxiAfterReset(before: number): Promise<void> {
  for (let i = 0; i < 600 && resets() === before; i++) await sleep(200);
  assert.ok(resets() > before, 'the BMC saw a power cycle within 2 min');
  esxi = await startVcsim({ esx: true, tls: { cert: fx.cert.certFile, key: fx.cert.keyFile }, port: apiPort });
}
async function stopEsxi(): Promise<void> {
  const h = esxi;
  esxi = undefined;
  await h?.stop();
}

async function onboard(s: ServerSpec) {
  const handle = await startOnboarding(env.client, s, { taskQueue });
  const booted = bootEsxiAfterReset(resets());
  const outcome = await handle.result().then(
    (result) => ({ ok: true as const, result }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  await booted;
  return outcome;
}

async function checkDrift(s: ServerSpec, mode: 'report' | 'remediate') {
  const h = await env.client.workflow.start<typeof driftCheck>('driftCheck', {
    taskQueue,
    workflowId: `${driftWorkflowId(s.id)}-${mode}`,
    args: [{ spec: s, mode, approvalTimeout: '1m' }],
  });
  return h.result();
}

describe('ESXi onboarding: Redfish BMC (sushy-tools) + vCenter (vcsim) on a real dev server', () => {
  test('a failed attach rolls the install back through the BMC; vCenter untouched', async () => {
    // LACP asked for, but the switch has no LAG: the attach refuses before it changes anything.
    const s = spec({ lacp: true });
    const resetsBefore = resets();
    const outcome = await onboard(s);
    await stopEsxi();
    assert.ok(!outcome.ok);
    assert.ok(outcome.error instanceof WorkflowFailedError);
    const report = (outcome.error.cause as { details?: unknown[] }).details?.[0] as OnboardingFailureReport;
    assert.equal(report.failedStep, 'attach');
    assert.match(report.error, /no link aggregation group/);
    assert.ok(!JSON.stringify(report).includes(fx.rootPassword), 'no secret in the failure');
    assert.deepEqual(
      report.compensations.map((c) => [c.step, c.outcome]),
      [['hypervisor', 'restored']],
    );
    // The install's one power cycle, and the undo's power-off (ForceOff is a ComputerSystem.Reset type too).
    assert.equal(resets(), resetsBefore + 2);
    // Independently of the undo's own verification: the plan sees a server to install again.
    const plan = await planOnboarding(spec(), noSsh, PLATFORM_STEP_SET);
    const pending = Object.fromEntries(plan.steps.map((p) => [p.step, p.changes.map((c) => c.field)]));
    assert.deepEqual(pending.hypervisor, ['virtualMedia', 'bootOverride', 'power', 'esxi'], renderPlan(plan));
    const c = await vc.client();
    try {
      assert.deepEqual(await findByName(c, 'HostSystem', HOST), [], 'the host never joined vCenter');
    } finally {
      await c.close();
    }
  });

  test('onboarded: cable from the BMC inventory, ESXi installed from its per-host ISO, host added to vCenter and on the vDS with vmk0; a plan then shows nothing to do', async () => {
    const s = spec();
    const outcome = await onboard(s);
    assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
    const st = outcome.result.steps;
    assert.deepEqual(Object.fromEntries(Object.entries(st).map(([k, v]) => [k, v.state])), {
      cable: 'unchanged',
      bond: 'skipped',
      vlan: 'skipped',
      sriov: 'skipped',
      dpdk: 'skipped',
      hypervisor: 'done',
      attach: 'done',
    });
    const plan = await planOnboarding(s, noSsh, PLATFORM_STEP_SET);
    assert.ok(
      plan.steps.every((p) => !p.changes.length && !p.error),
      renderPlan(plan),
    );
    const c = await vc.client();
    try {
      const [dvs] = await findByName(c, 'DistributedVirtualSwitch', SWITCH);
      const [host] = await findByName(c, 'HostSystem', HOST);
      assert.ok(host, 'the host was added to vCenter');
      assert.deepEqual(await dvsMembers(c, dvs!), [host.value], 'the host is a member of the switch');
      assert.equal((await findByName(c, 'DistributedVirtualPortgroup', PORTGROUP)).length, 1, `port group ${PORTGROUP}`);
    } finally {
      await c.close();
    }
  });

  test('drift against vcsim: a removed uplink and a changed VLAN are reported (nothing changed), then remediated', async () => {
    const s = spec();
    const c = await vc.client();
    try {
      await driftByHand(c, { host: HOST, switch: SWITCH, portgroup: PORTGROUP, vlan: 7, keep: ['vmnic0'] });
    } finally {
      await c.close();
    }
    const report = await checkDrift(s, 'report');
    assert.equal(report.status, 'drifted', JSON.stringify(report));
    assert.deepEqual(report.driftedSteps, ['attach']);
    assert.deepEqual(report.diffs.find((d) => d.step === 'attach')?.changes, [
      { field: 'uplinks', from: ['vmnic0'], to: ['vmnic0', 'vmnic1'] },
      { field: 'portgroup.vlan', from: 'VLAN 7', to: 'VLAN 120' },
    ]);
    // Report mode changed nothing.
    const still = await planOnboarding(s, noSsh, PLATFORM_STEP_SET);
    assert.deepEqual(
      still.steps.find((p) => p.step === 'attach')?.changes.map((ch) => ch.field),
      ['uplinks', 'portgroup.vlan'],
    );

    const fixed = await checkDrift(s, 'remediate');
    assert.equal(fixed.status, 'remediated', JSON.stringify(fixed));
    assert.deepEqual(fixed.remediation?.steps, ['attach']);
    const plan = await planOnboarding(s, noSsh, PLATFORM_STEP_SET);
    assert.ok(
      plan.steps.every((p) => !p.changes.length && !p.error),
      renderPlan(plan),
    );
  });

  test('a managed host whose API stops answering is not planned for a reinstall (vCenter has it)', async () => {
    await stopEsxi();
    const resetsBefore = resets();
    const plan = await planOnboarding(spec(), noSsh, PLATFORM_STEP_SET);
    const hv = plan.steps.find((p) => p.step === 'hypervisor')!;
    assert.deepEqual(hv.changes, []);
    assert.match(hv.error ?? '', /vCenter manages 127\.0\.0\.1, but its API does not answer: not reinstalling a managed host/);
    const report = await checkDrift(spec(), 'remediate');
    assert.ok(!report.remediation?.steps.includes('hypervisor'), JSON.stringify(report));
    assert.equal(resets(), resetsBefore, 'no power cycle');
  });
});
