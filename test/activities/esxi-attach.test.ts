/**
 * The ESXi attach step (vSphere Distributed Switch through vCenter) run as the worker runs it — runStep /
 * undoStep in an activity context (MockActivityEnvironment) — against a real vcsim on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { platformStep } from '../../src/activities/platforms';
import { runStep, undoStep, type Connector } from '../../src/activities/run-step';
import { vdsAttachStep, type VdsAttachState } from '../../src/activities/esxi/attach';
import type { StepResult, UndoResult } from '../../src/activities/step';
import { addPortgroup, destroy, findByName, readDvs, readPortgroup, reconfigureHostMember } from '../../src/drivers/vsphere/dvs';
import type { VsphereClient } from '../../src/drivers/vsphere/client';
import type { Mor } from '../../src/drivers/vsphere/schema';
import { parseServerSpec } from '../../src/spec/validate';
import { addClusterHost, createDvs, makeCertificate, startVcsim, type Vcsim } from '../helpers/vcsim';
import { applicationFailureOf } from '../helpers/failures';

const HOST = 'esxi-01.lab.test';
const SWITCH = 'DSwitch-underlay';
const PORTGROUP = 'pg-vm-120';

const wait = { sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)), timeoutMs: 10_000 };
const noSsh: Connector = () => Promise.reject(new Error('the ESXi attach step must not open SSH'));

function specFor(vc: Vcsim, attach: Record<string, unknown> = {}, rest: Record<string, unknown> = {}) {
  return {
    id: 'esxi-01',
    site: 'lab',
    rack: 'r1',
    management: { address: HOST, hostKey: 'SHA256:' + 'A'.repeat(43), credentials: { agent: true } },
    nics: [{ name: 'vmnic0' }, { name: 'vmnic1' }],
    hypervisor: {
      kind: 'esxi',
      bmc: {
        address: '127.0.0.1',
        credentials: { usernameEnv: 'UNDERLAY_SECRET_UNUSED_BMC_USER', passwordEnv: 'UNDERLAY_SECRET_UNUSED_BMC_PASS' },
        tls: { caFile: 'unused/bmc-ca.pem' },
      },
      installerIso: 'https://images.lab.test/esxi-8.0u3.iso',
    },
    attach: {
      kind: 'vds',
      vcenter: { address: '127.0.0.1', port: vc.port, credentials: { usernameEnv: vc.usernameEnv, passwordEnv: vc.passwordEnv }, caFile: vc.caFile },
      switch: SWITCH,
      portgroup: PORTGROUP,
      vlan: 120,
      uplinks: ['vmnic0', 'vmnic1'],
      ...attach,
    },
    ...rest,
  };
}

/** An activity context as the worker gives one; expected failures are not logged (they are asserted). */
function mockEnv(): MockActivityEnvironment {
  return new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
}
async function run(spec: unknown): Promise<StepResult> {
  return mockEnv().run(() => runStep('attach', vdsAttachStep, spec, noSsh));
}
async function undo(spec: unknown, pre: unknown): Promise<UndoResult> {
  return mockEnv().run(() => undoStep('attach', vdsAttachStep, spec, pre, noSsh));
}

describe('ESXi attach step (vDS via vCenter) against vcsim', () => {
  let vc: Vcsim;
  let c: VsphereClient;
  let dvs: Mor;
  let host: Mor;
  const timings: Record<string, number> = {};

  before(async () => {
    vc = await startVcsim();
    timings.vcsimStartMs = vc.startMs;
    c = await vc.client();
    dvs = await createDvs(c, SWITCH);
    host = await addClusterHost(c, HOST);
  });
  after(async () => {
    await c?.close();
    await vc?.stop();
    console.log(`# esxi attach timings: ${JSON.stringify(timings)}`);
  });

  async function isMember(): Promise<boolean> {
    return (await readDvs(c, dvs)).members.some((m) => m.value === host.value);
  }
  async function portgroupVlan(name = PORTGROUP): Promise<unknown> {
    const [ref] = await findByName(c, 'DistributedVirtualPortgroup', name);
    return ref ? (await readPortgroup(c, ref)).vlan : null;
  }

  beforeEach(async () => {
    // Every test starts from the pre-state: host not on the switch, no port group.
    if (await isMember()) await reconfigureHostMember(c, await readDvs(c, dvs), 'remove', host, undefined, wait);
    for (const ref of await findByName(c, 'DistributedVirtualPortgroup', PORTGROUP)) await destroy(c, ref, wait);
  });

  test('the spec validates, and platforms.ts runs this step for esxi', () => {
    const spec = parseServerSpec(specFor(vc), 'test');
    assert.equal(platformStep('attach', spec), vdsAttachStep);
    assert.equal(vdsAttachStep.connection, 'none');
    assert.equal(vdsAttachStep.summary(spec), `vDS ${SWITCH} ← vmnic0,vmnic1 · port group ${PORTGROUP} · VLAN 120 · vCenter 127.0.0.1`);
  });

  test('apply: host joins the switch with its uplinks, port group with VLAN 120; second apply is a no-op; undo restores the pre-state', async () => {
    const spec = specFor(vc);
    let t = Date.now();
    const first = await run(spec);
    timings.applyMs = Date.now() - t;
    assert.equal(first.changed, true);
    assert.deepEqual(
      first.changes.map((ch) => ch.field),
      ['member', 'uplinks', 'portgroup'],
    );
    assert.deepEqual(first.changes.find((ch) => ch.field === 'uplinks')!.to, ['vmnic0', 'vmnic1']);
    const pre = first.pre as VdsAttachState;
    assert.equal(pre.member, false);
    assert.equal(pre.portgroup, null);
    assert.ok(await isMember(), 'host is a member of the switch');
    assert.deepEqual(await portgroupVlan(), { kind: 'id', id: 120 });

    t = Date.now();
    const second = await run(spec);
    timings.noopApplyMs = Date.now() - t;
    assert.equal(second.changed, false);
    assert.deepEqual(second.changes, []);
    // vcsim keeps no pnic backing for members: the step reports it as unknown rather than inventing it.
    assert.equal((second.pre as VdsAttachState).uplinks, null);

    t = Date.now();
    const undone = await undo(spec, first.pre);
    timings.undoMs = Date.now() - t;
    assert.deepEqual(undone.changes.map((ch) => ch.field).sort(), ['member', 'portgroup', 'uplinks']);
    assert.equal(await isMember(), false);
    assert.equal(await portgroupVlan(), null);
    // Undo of an undone step changes nothing.
    assert.deepEqual((await undo(spec, first.pre)).changes, []);
  });

  test('an existing port group with another VLAN: apply retags it, undo puts the old VLAN back (and keeps the port group)', async () => {
    await addPortgroup(c, dvs, PORTGROUP, { kind: 'id', id: 7 }, wait);
    const spec = specFor(vc);
    const first = await run(spec);
    assert.deepEqual(
      first.changes.find((ch) => ch.field === 'portgroup.vlan'),
      { field: 'portgroup.vlan', from: 'VLAN 7', to: 'VLAN 120' },
    );
    assert.deepEqual(await portgroupVlan(), { kind: 'id', id: 120 });
    await undo(spec, first.pre);
    assert.deepEqual(await portgroupVlan(), { kind: 'id', id: 7 });
    assert.equal(await isMember(), false);
  });

  test('no vlan in the spec: the port group is created untagged, an existing one keeps its VLAN', async () => {
    const spec = specFor(vc, { vlan: undefined });
    const r = await run(spec);
    assert.deepEqual(await portgroupVlan(), { kind: 'id', id: 0 });
    await undo(spec, r.pre);
    assert.equal(await portgroupVlan(), null);
    await addPortgroup(c, dvs, PORTGROUP, { kind: 'trunk', ranges: [{ start: 100, end: 199 }] }, wait);
    const kept = await run(spec);
    assert.deepEqual(
      kept.changes.map((ch) => ch.field),
      ['member', 'uplinks'],
    );
    assert.deepEqual(await portgroupVlan(), { kind: 'trunk', ranges: [{ start: 100, end: 199 }] });
    await undo(spec, kept.pre);
    assert.deepEqual(await portgroupVlan(), { kind: 'trunk', ranges: [{ start: 100, end: 199 }] });
  });

  test('LACP without a LAG on the switch: refused before any change, not retryable', async () => {
    const f = await applicationFailureOf(run(specFor(vc, { lacp: true })));
    assert.equal(f.type, 'UnsupportedPlatformError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /no link aggregation group/);
    assert.equal(await isMember(), false);
    assert.equal(await portgroupVlan(), null);
  });

  test('an uplink the host does not have: UnsupportedHardwareError naming the field, nothing changed', async () => {
    const spec = specFor(vc, { uplinks: ['vmnic0', 'vmnic7'] }, { nics: [{ name: 'vmnic0' }, { name: 'vmnic7' }] });
    const f = await applicationFailureOf(run(spec));
    assert.equal(f.type, 'UnsupportedHardwareError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /field attach\.uplinks/);
    assert.match(f.message, /vmnic7/);
    assert.equal(await isMember(), false);
  });

  test('a switch or host vCenter does not know: InvalidSpecError naming the field', async () => {
    const noSwitch = await applicationFailureOf(run(specFor(vc, { switch: 'DSwitch-absent' })));
    assert.equal(noSwitch.type, 'InvalidSpecError');
    assert.match(noSwitch.message, /field attach\.switch/);
    const spec = specFor(vc);
    (spec.management as { address: string }).address = 'esxi-99.lab.test';
    const noHost = await applicationFailureOf(run(spec));
    assert.equal(noHost.type, 'InvalidSpecError');
    assert.match(noHost.message, /field management\.address/);
  });

  test('bad vCenter credentials: AuthenticationError, not retryable, nothing changed', async () => {
    const wrong = 'UNDERLAY_SECRET_TEST_VC_WRONG';
    process.env[wrong] = 'wrong-password-xyz';
    try {
      const spec = specFor(vc, {
        vcenter: { address: '127.0.0.1', port: vc.port, credentials: { usernameEnv: vc.usernameEnv, passwordEnv: wrong }, caFile: vc.caFile },
      });
      const f = await applicationFailureOf(run(spec));
      assert.equal(f.type, 'AuthenticationError');
      assert.equal(f.nonRetryable, true);
      assert.doesNotMatch(f.message, /wrong-password-xyz/);
      assert.equal(await isMember(), false);
    } finally {
      delete process.env[wrong];
    }
  });

  test('a TLS certificate other than the pinned one: HostKeyMismatchError, not retryable', async () => {
    const { cert } = await makeCertificate(vc.dir, 'other-ca');
    const spec = specFor(vc, {
      vcenter: { address: '127.0.0.1', port: vc.port, credentials: { usernameEnv: vc.usernameEnv, passwordEnv: vc.passwordEnv }, caFile: cert },
    });
    const f = await applicationFailureOf(run(spec));
    assert.equal(f.type, 'HostKeyMismatchError');
    assert.equal(f.nonRetryable, true);
  });

  test('a port group of that name on another switch: refused, the other switch untouched', async () => {
    const other = await createDvs(c, 'DSwitch-other');
    await addPortgroup(c, other, PORTGROUP, { kind: 'id', id: 5 }, wait);
    try {
      const f = await applicationFailureOf(run(specFor(vc)));
      assert.equal(f.type, 'InvalidSpecError');
      assert.match(f.message, /another switch \(DSwitch-other\)/);
      assert.equal(await isMember(), false);
    } finally {
      for (const ref of await findByName(c, 'DistributedVirtualPortgroup', PORTGROUP)) await destroy(c, ref, wait);
    }
  });
});

describe('ESXi attach planning (pure: states vCenter reports that vcsim cannot produce)', () => {
  const spec = (attach: Record<string, unknown> = {}) =>
    parseServerSpec(
      {
        id: 'esxi-01',
        site: 'lab',
        rack: 'r1',
        management: { address: HOST, hostKey: 'SHA256:' + 'A'.repeat(43), credentials: { agent: true } },
        nics: [{ name: 'vmnic0' }, { name: 'vmnic1' }],
        hypervisor: {
          kind: 'esxi',
          bmc: { address: '127.0.0.1', credentials: { usernameEnv: 'UNDERLAY_SECRET_U', passwordEnv: 'UNDERLAY_SECRET_P' }, tls: { caFile: 'x.pem' } },
          installerIso: 'https://images.lab.test/esxi.iso',
        },
        attach: {
          kind: 'vds',
          vcenter: { address: 'vc.lab.test', credentials: { usernameEnv: 'UNDERLAY_SECRET_U', passwordEnv: 'UNDERLAY_SECRET_P' }, caFile: 'vc-ca.pem' },
          switch: SWITCH,
          portgroup: PORTGROUP,
          vlan: 120,
          uplinks: ['vmnic0', 'vmnic1'],
          ...attach,
        },
      },
      'test',
    );
  const base: VdsAttachState = {
    switch: SWITCH,
    host: HOST,
    member: false,
    uplinks: [],
    portgroup: { vlan: { kind: 'id', id: 120 } },
    hostPnics: ['vmnic0', 'vmnic1', 'vmnic2'],
    lags: [],
  };

  test('a member whose reported pnics differ: one uplinks change (the apply edits the member)', () => {
    const observed = {
      ...base,
      member: true,
      uplinks: [
        { device: 'vmnic2', uplinkPortKey: '17' },
        { device: 'vmnic0', uplinkPortKey: '16' },
      ],
    };
    assert.deepEqual(vdsAttachStep.plan(spec(), observed), [{ field: 'uplinks', from: ['vmnic0', 'vmnic2'], to: ['vmnic0', 'vmnic1'] }]);
    const same = {
      ...observed,
      uplinks: [
        { device: 'vmnic1', uplinkPortKey: '17' },
        { device: 'vmnic0', uplinkPortKey: '16' },
      ],
    };
    assert.deepEqual(vdsAttachStep.plan(spec(), same), []);
  });

  test('LACP with one LAG: the uplinks are bound to its ports, in order', () => {
    const observed = { ...base, lags: [{ key: 'lag-key-1', name: 'lag1', mode: 'active', uplinkPortKeys: ['40', '41'] }] };
    assert.deepEqual(vdsAttachStep.plan(spec({ lacp: true }), observed), [
      { field: 'member', from: false, to: true },
      { field: 'uplinks', from: [], to: ['vmnic0@40', 'vmnic1@41'] },
    ]);
    const bound = {
      ...observed,
      member: true,
      uplinks: [
        { device: 'vmnic0', uplinkPortKey: '40' },
        { device: 'vmnic1', uplinkPortKey: '41' },
      ],
    };
    assert.deepEqual(vdsAttachStep.plan(spec({ lacp: true }), bound), []);
  });

  test('LACP with two LAGs, or a LAG with too few ports: refused (which LAG is not the step’s guess)', () => {
    const two = {
      ...base,
      lags: [
        { key: 'a', name: 'lag1', uplinkPortKeys: ['1', '2'] },
        { key: 'b', name: 'lag2', uplinkPortKeys: ['3', '4'] },
      ],
    };
    assert.throws(
      () => vdsAttachStep.plan(spec({ lacp: true }), two),
      (e: Error) => e.name === 'UnsupportedPlatformError' && /2 LAGs/.test(e.message),
    );
    const small = { ...base, lags: [{ key: 'a', name: 'lag1', uplinkPortKeys: ['1'] }] };
    assert.throws(
      () => vdsAttachStep.plan(spec({ lacp: true }), small),
      (e: Error) => e.name === 'UnsupportedPlatformError' && /1 ports for 2 uplinks/.test(e.message),
    );
  });

  test('diff (what undo must restore) compares membership, reported pnics and the VLAN only', () => {
    const a = { ...base, hostPnics: ['vmnic0'], lags: [] };
    const b = { ...base, hostPnics: ['vmnic0', 'vmnic1'], lags: [{ key: 'x', name: 'y', uplinkPortKeys: [] }] };
    assert.deepEqual(vdsAttachStep.diff(a, b), []);
    assert.deepEqual(
      vdsAttachStep.diff(a, { ...b, portgroup: { vlan: { kind: 'id', id: 7 } } }).map((c) => c.field),
      ['portgroup.vlan.id'],
    );
  });
});
