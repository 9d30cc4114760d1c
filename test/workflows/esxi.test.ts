/**
 * An ESXi onboarding end to end on a real Temporal dev server, with the worker's own activities (no fakes):
 * the cable check and the install through a real Redfish BMC emulator (sushy-tools), the network attach
 * through a real vCenter simulator (vcsim). The "installed ESXi" is a TCP listener this test opens once the BMC
 * has seen the power cycle — the one thing neither emulator can do.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, PLATFORM_STEP_SET } from '../../src/activities';
import type { Connector } from '../../src/activities/run-step';
import { planOnboarding, renderPlan } from '../../src/activities/plan';
import { startOnboarding } from '../../src/cli/onboarding';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpec } from '../../src/spec/server';
import { findByName } from '../../src/drivers/vsphere/dvs';
import { createWorker } from '../../src/workers/worker';
import type { OnboardingFailureReport } from '../../src/workflows/messages';
import { freePort } from '../helpers/sshd';
import { DEFAULT_SYSTEM, startSushy, type Sushy } from '../helpers/sushy';
import { startTemporal, workflowBundle, runInBackground, type BackgroundWorker } from '../helpers/temporal';
import { addClusterHost, createDvs, dvsMembers, startVcsim, type Vcsim } from '../helpers/vcsim';

const SWITCH = 'DSwitch-fleet';
const PORTGROUP = 'pg-mgmt-120';
// vCenter knows the host by the address it was added under; the probe reaches it there too.
const HOST = '127.0.0.1';

let env: TestWorkflowEnvironment;
let sushy: Sushy;
let vc: Vcsim;
let files: HttpServer;
let filesPort: number;
let probePort: number;
let esxi: TcpServer | undefined;
let worker: BackgroundWorker | undefined;
let taskQueue: string;

const noSsh: Connector = () => Promise.reject(new Error('no ESXi step opens an SSH session'));

before(async () => {
  [env, sushy, vc] = await Promise.all([startTemporal(), startSushy(), startVcsim()]);
  const c = await vc.client();
  try {
    await createDvs(c, SWITCH);
    await addClusterHost(c, HOST);
  } finally {
    await c.close();
  }
  files = createHttpServer((req, res) => {
    const body =
      req.url === '/esxi.iso' ? Buffer.alloc(64 * 1024, 0x2a) : req.url === '/ks.cfg' ? Buffer.from('vmaccepteula\ninstall --firstdisk\n') : undefined;
    res.writeHead(body ? 200 : 404);
    res.end(body);
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  filesPort = (files.address() as { port: number }).port;
  probePort = await freePort();
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
  await Promise.all([env?.teardown(), sushy?.stop(), vc?.stop(), new Promise<void>((r) => (files ? files.close(() => r()) : r()))]);
});

function spec(over: { vcenterPasswordEnv?: string } = {}): ServerSpec {
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
      installerIso: `http://127.0.0.1:${filesPort}/esxi.iso`,
      kickstart: `http://127.0.0.1:${filesPort}/ks.cfg`,
      probePort,
      installTimeoutSeconds: 120,
    },
    attach: {
      kind: 'vds',
      vcenter: {
        address: '127.0.0.1',
        port: vc.port,
        credentials: { usernameEnv: vc.usernameEnv, passwordEnv: over.vcenterPasswordEnv ?? vc.passwordEnv },
        caFile: vc.caFile,
      },
      switch: SWITCH,
      portgroup: PORTGROUP,
      vlan: 120,
      uplinks: ['vmnic0', 'vmnic1'],
    },
  });
}

const resets = () => sushy.requests(/ComputerSystem\.Reset/).length;

/** Plays the server: once the BMC has seen a new power cycle, "ESXi" answers on the probe port (bounded wait). */
async function bootEsxiAfterReset(before: number): Promise<void> {
  for (let i = 0; i < 600 && resets() === before; i++) await sleep(200);
  assert.ok(resets() > before, 'the BMC saw a power cycle within 2 min');
  const srv = createTcpServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(probePort, '127.0.0.1', r));
  esxi = srv;
}
async function stopEsxi(): Promise<void> {
  const srv = esxi;
  esxi = undefined;
  if (srv) await new Promise<void>((r) => srv.close(() => r()));
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

describe('ESXi onboarding: Redfish BMC (sushy-tools) + vCenter (vcsim) on a real dev server', () => {
  test('a failed attach rolls the install back through the BMC; vCenter untouched', async () => {
    process.env.UNDERLAY_SECRET_TEST_WRONG_VC_PASSWORD = 'not-the-password';
    const s = spec({ vcenterPasswordEnv: 'UNDERLAY_SECRET_TEST_WRONG_VC_PASSWORD' });
    const resetsBefore = resets();
    const outcome = await onboard(s);
    await stopEsxi();
    assert.ok(!outcome.ok);
    assert.ok(outcome.error instanceof WorkflowFailedError);
    const report = (outcome.error.cause as { details?: unknown[] }).details?.[0] as OnboardingFailureReport;
    assert.equal(report.failedStep, 'attach');
    assert.match(report.error, /authentication|credentials|login/i);
    assert.doesNotMatch(JSON.stringify(report), /not-the-password/, 'no secret in the failure');
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
      const [dvs] = await findByName(c, 'DistributedVirtualSwitch', SWITCH);
      assert.deepEqual(await dvsMembers(c, dvs!), [], 'the host never joined the switch');
    } finally {
      await c.close();
    }
  });

  test('onboarded: cable from the BMC inventory, ESXi installed, host on the vDS with the VLAN port group; a plan then shows nothing to do', async () => {
    const s = spec();
    const outcome = await onboard(s);
    assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
    const st = outcome.result.steps;
    assert.deepEqual(Object.fromEntries(Object.entries(st).map(([k, v]) => [k, v.state])), {
      cable: 'unchanged',
      bond: 'skipped',
      vlan: 'skipped',
      sriov: 'skipped',
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
      assert.deepEqual(await dvsMembers(c, dvs!), [host!.value], 'the host is a member of the switch');
      assert.equal((await findByName(c, 'DistributedVirtualPortgroup', PORTGROUP)).length, 1, `port group ${PORTGROUP}`);
    } finally {
      await c.close();
      await stopEsxi();
    }
  });
});
