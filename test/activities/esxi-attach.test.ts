/**
 * The ESXi attach step (vSphere Distributed Switch through vCenter) run as the worker runs it — runStep /
 * undoStep in an activity context (MockActivityEnvironment) — against a real vcsim on 127.0.0.1 as vCenter (with
 * its SOAP trace, to see what went over the wire), and a second vcsim in ESX mode as the installed host's own API,
 * serving the certificate the spec pins.
 *
 * What vcsim does with what the step sends (read in govmomi v0.46.3's simulator): AddHost_Task /
 * AddStandaloneHost_Task create the host from its ESX template (vmnic0 on vSwitch0 carrying vmk0 on "Management
 * Network", vmnic1 free) without connecting to it — so the thumbprint is carried but not checked; UpdateNetworkConfig
 * stores the config it is sent as HostNetworkSystem.networkConfig and applies nothing (the step reads the host's
 * network as config.network overlaid with it, which on a real host are the same).
 */
import { stepSummary } from '../../src/steps';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, beforeEach, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { platformStep } from '../../src/activities/registry';
import { runStep, undoStep, type Connector } from '../../src/activities/run-step';
import { vdsAttachStep, type VdsAttachState } from '../../src/activities/esxi/attach';
import type { StepIo, StepResult, UndoResult } from '../../src/activities/step';
import { addPortgroup, destroy, findByName, readDvs, readName, readPortgroup, reconfigureHostMember } from '../../src/drivers/vsphere/dvs';
import type { VsphereClient } from '../../src/drivers/vsphere/client';
import { morSchema, parseWith, type Mor } from '../../src/drivers/vsphere/schema';
import { xml } from '../../src/transports/soap';
import { sha1Thumbprint } from '../../src/transports/pinned-tls';
import { X509Certificate } from 'node:crypto';
import { parseServerSpec } from '../../src/spec/validate';
import { addClusterHost, createCluster, createDvs, driftByHand, makeCertificate, startVcsim, type Vcsim } from '../helpers/vcsim';
import { esxiWorkerFixture, type EsxiWorkerFixture } from '../helpers/esxi';
import { freePort } from '../helpers/sshd';
import { applicationFailureOf } from '../helpers/failures';

const execFileP = promisify(execFile);
/** The installed host: vCenter knows it by the address it is added under, and its API answers there. */
const HOST = '127.0.0.1';
const SWITCH = 'DSwitch-underlay';
const PORTGROUP = 'pg-mgmt-120';
const DC = 'DC0';

const wait = { sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)), timeoutMs: 10_000 };
const noSsh: Connector = () => Promise.reject(new Error('the ESXi attach step must not open SSH'));

let vc: Vcsim;
let esx: Vcsim;
let fx: EsxiWorkerFixture;
let apiPort: number;
/** This test's cluster (a fresh one each time: see createCluster). */
let CLUSTER = '';
let clusters = 0;

function specFor(attach: Record<string, unknown> = {}, rest: Record<string, unknown> = {}) {
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
      ...fx.hypervisor(),
      apiPort,
    },
    attach: {
      kind: 'vds',
      vcenter: { address: '127.0.0.1', port: vc.port, credentials: { usernameEnv: vc.usernameEnv, passwordEnv: vc.passwordEnv }, caFile: vc.caFile },
      datacenter: DC,
      cluster: CLUSTER,
      switch: SWITCH,
      portgroup: PORTGROUP,
      vlan: 120,
      uplinks: ['vmnic0', 'vmnic1'],
      migrateVmk: 'vmk0',
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

describe('ESXi attach step (vCenter join, vDS, vmk0) against vcsim', () => {
  let c: VsphereClient;
  let dvs: Mor;
  const timings: Record<string, number> = {};

  before(async () => {
    fx = await esxiWorkerFixture();
    apiPort = await freePort();
    [vc, esx] = await Promise.all([
      startVcsim({ trace: true }),
      startVcsim({ esx: true, tls: { cert: fx.cert.certFile, key: fx.cert.keyFile }, port: apiPort }),
    ]);
    timings.vcsimStartMs = vc.startMs;
    timings.esxStartMs = esx.startMs;
    c = await vc.client();
    dvs = await createDvs(c, SWITCH);
  });
  after(async () => {
    await c?.close();
    if (process.env.DEBUG_VCSIM) console.log(vc.log().slice(-4000));
    await Promise.all([vc?.stop(), esx?.stop()]);
    await fx?.cleanup();
    console.log(`# esxi attach timings: ${JSON.stringify(timings)}`);
  });

  async function hostRef(): Promise<Mor | undefined> {
    return (await findByName(c, 'HostSystem', HOST))[0];
  }
  async function isMember(): Promise<boolean> {
    const h = await hostRef();
    return !!h && (await readDvs(c, dvs)).members.some((m) => m.value === h.value);
  }
  async function portgroupVlan(name = PORTGROUP): Promise<unknown> {
    const [ref] = await findByName(c, 'DistributedVirtualPortgroup', name);
    return ref ? (await readPortgroup(c, ref)).vlan : null;
  }
  /** Where vcsim has the host: its parent's type and name. */
  async function hostParent(): Promise<string | null> {
    const h = await hostRef();
    if (!h) return null;
    const parent = parseWith(morSchema, (await c.properties(h, ['parent'])).props.parent, 'parent', 'test');
    return `${parent.type}:${await readName(c, parent)}`;
  }
  /** The HostNetworkConfig vcsim holds for the host (what the step last sent), raw. */
  async function sentNetworkConfig(): Promise<string> {
    const h = (await hostRef())!;
    const ns = parseWith(morSchema, (await c.properties(h, ['configManager.networkSystem'])).props['configManager.networkSystem'], 'ns', 'test');
    return JSON.stringify((await c.properties(ns, ['networkConfig'])).props.networkConfig ?? null);
  }
  async function setRollback(value: string | null): Promise<void> {
    const settings = c.content.setting!;
    await c.invoke('UpdateOptions', settings, [
      xml`<changedValue><key>config.vpxd.network.rollback</key><value xsi:type="xsd:string">${value ?? 'true'}</value></changedValue>`,
    ]);
  }

  beforeEach(async () => {
    // Every test starts from a vCenter without the host (vcsim drops its network state with it) and no port group.
    await setRollback(null);
    const h = await hostRef();
    if (h) {
      if (await isMember()) await reconfigureHostMember(c, await readDvs(c, dvs), 'remove', h, undefined, wait);
      // (A standalone host's ComputeResource cannot be destroyed in vcsim: its HostSystem can.)
      await c.runTask('Destroy_Task', h, [], wait);
    }
    for (const ref of await findByName(c, 'DistributedVirtualPortgroup', PORTGROUP)) await destroy(c, ref, wait);
    CLUSTER = `C${++clusters}`;
    await createCluster(c, CLUSTER);
  });

  test('the spec validates, and platforms.ts runs this step for esxi', () => {
    const spec = parseServerSpec(specFor(), 'test');
    assert.equal(platformStep('attach', spec), vdsAttachStep);
    assert.equal(vdsAttachStep.connection, 'none');
    assert.equal(
      stepSummary('attach', spec),
      `vDS ${SWITCH} ← vmnic0,vmnic1 · port group ${PORTGROUP} · VLAN 120 · vmk0 moved · vCenter 127.0.0.1 ${DC}/${CLUSTER}`,
    );
  });

  test('the SSL thumbprint is the certificate’s SHA-1, as openssl prints it', async () => {
    const { stdout } = await execFileP('openssl', ['x509', '-noout', '-fingerprint', '-sha1', '-in', fx.cert.certFile]);
    const x509 = new X509Certificate(await readFile(fx.cert.certFile));
    assert.equal(sha1Thumbprint(x509.raw), stdout.trim().replace(/^SHA1 Fingerprint=/i, ''));
  });

  test('a host vCenter lacks: added to the cluster with its thumbprint, joined with vmnic0+vmnic1, vmk0 moved, VLAN 120; no-op again; undo removes all of it', async () => {
    const spec = specFor();
    let t = Date.now();
    const first = await run(spec);
    timings.applyMs = Date.now() - t;
    assert.deepEqual(
      first.changes.map((ch) => ch.field),
      ['inventory', 'member', 'uplinks', 'portgroup', 'vmk.vmk0'],
      JSON.stringify(first.changes),
    );
    const pre = first.pre as VdsAttachState;
    assert.equal(pre.inventory, null);
    // vCenter: the host in the cluster, connected, a member of the switch; the port group with VLAN 120.
    assert.equal(await hostParent(), `ClusterComputeResource:${CLUSTER}`);
    assert.ok(await isMember());
    assert.deepEqual(await portgroupVlan(), { kind: 'id', id: 120 });
    // On the wire: AddHost_Task with the pinned thumbprint, the root user and no force.
    const trace = await vc.trace();
    const addHost = /<AddHost_Task[\s\S]*?<\/AddHost_Task>/.exec(trace)?.[0] ?? '';
    const thumbprint = sha1Thumbprint(new X509Certificate(await readFile(fx.cert.certFile)).raw);
    assert.match(
      addHost,
      new RegExp(`<hostName>${HOST}</hostName><port>${apiPort}</port><sslThumbprint>${thumbprint}</sslThumbprint><userName>root</userName>`),
    );
    assert.match(addHost, /<force>false<\/force>.*<asConnected>true<\/asConnected>/s);
    // The host's network, as vcsim keeps what it was sent: the proxy switch has both pnics, vSwitch0 gave up
    // vmnic0, vmk0 is on the switch's port group — one UpdateNetworkConfig.
    const [pgRef] = await findByName(c, 'DistributedVirtualPortgroup', PORTGROUP);
    const pgKey = (await readPortgroup(c, pgRef!)).key;
    const uuid = (await readDvs(c, dvs)).uuid;
    const net = JSON.parse(await sentNetworkConfig()) as Record<string, unknown>;
    assert.deepEqual(net.vnic, {
      changeOperation: 'edit',
      device: 'vmk0',
      portgroup: '',
      spec: { distributedVirtualPort: { switchUuid: uuid, portgroupKey: pgKey } },
    });
    assert.match(JSON.stringify(net.proxySwitch), new RegExp(`"uuid":"${uuid}".*"pnicDevice":"vmnic0".*"pnicDevice":"vmnic1"`));
    assert.match(JSON.stringify(net.vswitch), /"name":"vSwitch0".*"nicOrder":""|"name":"vSwitch0"/);
    assert.doesNotMatch(JSON.stringify(net.vswitch), /vmnic0/);
    assert.equal((trace.match(/<UpdateNetworkConfig /g) ?? []).length, 1);
    assert.doesNotMatch(JSON.stringify(first), new RegExp(fx.rootPassword.replace(/[!$]/g, '\\$&')), 'no root password in the result');

    t = Date.now();
    const second = await run(spec);
    timings.noopApplyMs = Date.now() - t;
    assert.equal(second.changed, false, JSON.stringify(second.changes));
    const now = second.pre as VdsAttachState;
    assert.deepEqual(now.uplinks, [{ device: 'vmnic0' }, { device: 'vmnic1' }]);
    assert.deepEqual(now.vmk, { kind: 'distributed', switchUuid: uuid, portgroupKey: pgKey, portgroup: PORTGROUP });
    assert.deepEqual(
      now.vswitches.map((v) => [v.name, v.nics]),
      [['vSwitch0', []]],
    );

    t = Date.now();
    const undone = await undo(spec, first.pre);
    timings.undoMs = Date.now() - t;
    assert.deepEqual(undone.changes.map((ch) => ch.field).sort(), ['inventory', 'member', 'portgroup', 'uplinks', 'vmk', 'vswitches.vSwitch0']);
    assert.equal(await hostRef(), undefined, 'the host left vCenter: underlay had added it');
    assert.equal(await portgroupVlan(), null);
    assert.deepEqual((await undo(spec, first.pre)).changes, [], 'undo of an undone step changes nothing');
  });

  test('a host already in vCenter (added by an administrator) stays there on undo; its vmk0 goes back to Management Network', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    const spec = specFor();
    const first = await run(spec);
    assert.deepEqual(
      first.changes.map((ch) => ch.field),
      ['member', 'uplinks', 'portgroup', 'vswitch.vSwitch0.uplinks', 'vmk.vmk0'],
    );
    const pre = first.pre as VdsAttachState;
    assert.deepEqual(pre.inventory, { datacenter: DC, cluster: CLUSTER, connection: 'connected' });
    assert.deepEqual(pre.vmk, { kind: 'standard', portgroup: 'Management Network' });
    const undone = await undo(spec, first.pre);
    assert.ok(!undone.changes.some((ch) => ch.field === 'inventory'));
    assert.equal(await hostParent(), `ClusterComputeResource:${CLUSTER}`);
    const net = JSON.parse(await sentNetworkConfig()) as Record<string, unknown>;
    assert.deepEqual(net.vnic, { changeOperation: 'edit', device: 'vmk0', portgroup: 'Management Network', spec: { portgroup: 'Management Network' } });
    assert.match(JSON.stringify(net.vswitch), /"nicDevice":"vmnic0"/);
    assert.equal(await isMember(), false);
  });

  test('standalone (no cluster in the spec): AddStandaloneHost_Task into the datacenter; undo destroys its ComputeResource (vcsim: not implemented)', async () => {
    const spec = specFor({ cluster: undefined });
    const first = await run(spec);
    assert.equal(await hostParent(), `ComputeResource:${HOST}`);
    assert.match((await vc.trace()).match(/<AddStandaloneHost_Task[\s\S]*?<\/AddStandaloneHost_Task>/)?.[0] ?? '', /<addConnected>true<\/addConnected>/);
    // vCenter removes a standalone host by destroying its ComputeResource (a HostSystem of a standalone host refuses
    // Destroy_Task with NotSupported). vcsim lacks ComputeResource.Destroy_Task: the call is made, vcsim refuses it.
    const f = await applicationFailureOf(undo(spec, first.pre));
    assert.match(f.message, /Destroy_Task failed: MethodNotFound \(ComputeResource:\S+ does not implement: Destroy_Task\)/);
  });

  test('a host vCenter has in another place is refused, not moved', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    const f = await applicationFailureOf(run(specFor({ cluster: undefined })));
    assert.equal(f.type, 'InvalidSpecError');
    assert.match(f.message, new RegExp(`in another place than the spec.*expected "DC0/\\(standalone\\)"; observed "DC0/${CLUSTER}"`));
    assert.equal(await isMember(), false);
  });

  test('vCenter’s network rollback switched off: the management network is not moved (LockoutRiskError), nothing changed', async () => {
    await setRollback('false');
    const f = await applicationFailureOf(run(specFor()));
    assert.equal(f.type, 'LockoutRiskError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /network rollback is switched off.*config\.vpxd\.network\.rollback = true/);
    assert.equal(await hostRef(), undefined, 'the host was not even added');
  });

  test('taking vSwitch0’s only uplink without moving vmk0 would strand it: LockoutRiskError before the host network changes', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    // The kickstart's management NIC is vmnic1 here, so the spec passes validation; vcsim's host has vmk0 on vmnic0.
    const spec = specFor(
      { uplinks: ['vmnic0'], migrateVmk: undefined },
      { hypervisor: { ...specFor().hypervisor, kickstart: { network: { device: 'vmnic1' } } } },
    );
    const f = await applicationFailureOf(run(spec));
    assert.equal(f.type, 'LockoutRiskError');
    assert.match(f.message, /would leave vmk0 on vSwitch0 without an uplink/);
    assert.equal(await isMember(), false);
  });

  test('an existing port group with another VLAN: apply retags it, undo puts the old VLAN back (and keeps the port group)', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    await addPortgroup(c, dvs, PORTGROUP, { kind: 'id', id: 7 }, wait);
    const spec = specFor();
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

  test('drift: a removed uplink and a changed VLAN are planned, and a second apply puts them back', async () => {
    const spec = specFor();
    await run(spec);
    // By hand: VLAN 7 on the port group, vmnic1 taken off the host's proxy switch.
    await driftByHand(c, { host: HOST, switch: SWITCH, portgroup: PORTGROUP, vlan: 7, keep: ['vmnic0'] });
    // What a drift check does: observe, then plan (read-only; no activity context needed).
    const io = { spec: parseServerSpec(spec), sleep: wait.sleep, progress: () => undefined, marks: {}, mark: () => undefined } as unknown as StepIo;
    const observed = await vdsAttachStep.observe(io);
    assert.deepEqual(vdsAttachStep.plan(parseServerSpec(spec), observed), [
      { field: 'uplinks', from: ['vmnic0'], to: ['vmnic0', 'vmnic1'] },
      { field: 'portgroup.vlan', from: 'VLAN 7', to: 'VLAN 120' },
    ]);
    const fixed = await run(spec);
    assert.deepEqual(
      fixed.changes.map((ch) => ch.field),
      ['uplinks', 'portgroup.vlan'],
    );
    assert.equal((await run(spec)).changed, false);
    assert.deepEqual(await portgroupVlan(), { kind: 'id', id: 120 });
  });

  test('no vlan in the spec: the port group is created untagged, an existing one keeps its VLAN', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    const spec = specFor({ vlan: undefined });
    const r = await run(spec);
    assert.deepEqual(await portgroupVlan(), { kind: 'id', id: 0 });
    await undo(spec, r.pre);
    assert.equal(await portgroupVlan(), null);
    await addPortgroup(c, dvs, PORTGROUP, { kind: 'trunk', ranges: [{ start: 100, end: 199 }] }, wait);
    const kept = await run(spec);
    assert.ok(!kept.changes.some((ch) => ch.field.startsWith('portgroup')));
    assert.deepEqual(await portgroupVlan(), { kind: 'trunk', ranges: [{ start: 100, end: 199 }] });
    await undo(spec, kept.pre);
    assert.deepEqual(await portgroupVlan(), { kind: 'trunk', ranges: [{ start: 100, end: 199 }] });
  });

  test('LACP without a LAG on the switch: refused before any change, not retryable', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    const f = await applicationFailureOf(run(specFor({ lacp: true })));
    assert.equal(f.type, 'UnsupportedPlatformError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /no link aggregation group/);
    assert.equal(await isMember(), false);
    assert.equal(await portgroupVlan(), null);
  });

  test('an uplink the host does not have: UnsupportedHardwareError naming the field, nothing changed', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    const spec = specFor({ uplinks: ['vmnic0', 'vmnic7'] }, { nics: [{ name: 'vmnic0' }, { name: 'vmnic7' }] });
    const f = await applicationFailureOf(run(spec));
    assert.equal(f.type, 'UnsupportedHardwareError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /field attach\.uplinks/);
    assert.match(f.message, /vmnic7/);
    assert.equal(await isMember(), false);
  });

  test('a switch, datacenter or cluster vCenter does not know: InvalidSpecError naming the field', async () => {
    const noSwitch = await applicationFailureOf(run(specFor({ switch: 'DSwitch-absent' })));
    assert.equal(noSwitch.type, 'InvalidSpecError');
    assert.match(noSwitch.message, /field attach\.switch/);
    const noDc = await applicationFailureOf(run(specFor({ datacenter: 'DC9', cluster: undefined })));
    assert.match(noDc.message, /no datacenter named DC9.*field attach\.datacenter/);
    const noCluster = await applicationFailureOf(run(specFor({ cluster: 'C-absent' })));
    assert.match(noCluster.message, /no cluster named C-absent.*field attach\.cluster/);
    assert.equal(await hostRef(), undefined);
  });

  test('bad vCenter credentials: AuthenticationError, not retryable, nothing changed', async () => {
    const wrong = 'UNDERLAY_SECRET_TEST_VC_WRONG';
    process.env[wrong] = 'wrong-password-xyz';
    try {
      const spec = specFor({
        vcenter: { address: '127.0.0.1', port: vc.port, credentials: { usernameEnv: vc.usernameEnv, passwordEnv: wrong }, caFile: vc.caFile },
      });
      const f = await applicationFailureOf(run(spec));
      assert.equal(f.type, 'AuthenticationError');
      assert.equal(f.nonRetryable, true);
      assert.doesNotMatch(f.message, /wrong-password-xyz/);
      assert.equal(await hostRef(), undefined);
    } finally {
      delete process.env[wrong];
    }
  });

  test('a TLS certificate other than the pinned one: HostKeyMismatchError, not retryable', async () => {
    const { cert } = await makeCertificate(vc.dir, 'other-ca');
    const spec = specFor({
      vcenter: { address: '127.0.0.1', port: vc.port, credentials: { usernameEnv: vc.usernameEnv, passwordEnv: vc.passwordEnv }, caFile: cert },
    });
    const f = await applicationFailureOf(run(spec));
    assert.equal(f.type, 'HostKeyMismatchError');
    assert.equal(f.nonRetryable, true);
  });

  test('a port group of that name on another switch: refused, the other switch untouched', async () => {
    await addClusterHost(c, HOST, CLUSTER);
    const other = await createDvs(c, 'DSwitch-other');
    await addPortgroup(c, other, PORTGROUP, { kind: 'id', id: 5 }, wait);
    try {
      const f = await applicationFailureOf(run(specFor()));
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
        nics: [{ name: 'vmnic0' }, { name: 'vmnic1' }, { name: 'vmnic2' }],
        hypervisor: {
          kind: 'esxi',
          bmc: { address: '127.0.0.1', credentials: { usernameEnv: 'UNDERLAY_SECRET_U', passwordEnv: 'UNDERLAY_SECRET_P' }, tls: { caFile: 'x.pem' } },
          installer: { iso: '/isos/esxi.iso', sha256: 'a'.repeat(64), version: '8.0.3' },
          kickstart: { network: { device: 'vmnic2' } },
          rootPassword: { file: '/etc/underlay/credentials/root' },
          hostCertificate: { certFile: '/etc/underlay/esxi.crt', keyFile: '/etc/underlay/credentials/esxi.key', fingerprint: `sha256/${'A'.repeat(43)}=` },
        },
        attach: {
          kind: 'vds',
          vcenter: { address: 'vc.lab.test', credentials: { usernameEnv: 'UNDERLAY_SECRET_U', passwordEnv: 'UNDERLAY_SECRET_P' }, caFile: 'vc-ca.pem' },
          datacenter: DC,
          cluster: 'DC0_C0',
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
    inventory: { datacenter: DC, cluster: 'DC0_C0', connection: 'connected' },
    member: false,
    uplinks: [],
    portgroup: { vlan: { kind: 'id', id: 120 } },
    vmk: null,
    vswitches: [{ name: 'vSwitch0', nics: ['vmnic2'], active: ['vmnic2'], standby: [], numPorts: 128 }],
    hostPnics: ['vmnic0', 'vmnic1', 'vmnic2'],
    lags: [],
    vmkOnVswitch: { vmk0: 'vSwitch0' },
    rollback: true,
  };

  test('a member whose reported pnics differ: one uplinks change (the apply sets the proxy switch backing)', () => {
    const observed = {
      ...base,
      member: true,
      vswitches: [],
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

  test('uplinks a standard vSwitch carrying a VMkernel adapter holds: the vSwitch gives them up only if it keeps one', () => {
    const carrying = { ...base, vswitches: [{ name: 'vSwitch0', nics: ['vmnic0', 'vmnic2'], active: ['vmnic0'], standby: ['vmnic2'], numPorts: 128 }] };
    assert.deepEqual(
      vdsAttachStep.plan(spec(), carrying).find((c) => c.field === 'vswitch.vSwitch0.uplinks'),
      { field: 'vswitch.vSwitch0.uplinks', from: ['vmnic0', 'vmnic2'], to: ['vmnic2'] },
    );
    const only = { ...base, vswitches: [{ name: 'vSwitch0', nics: ['vmnic0'], active: ['vmnic0'], standby: [], numPorts: 128 }] };
    assert.throws(
      () => vdsAttachStep.plan(spec(), only),
      (e: Error) => e.name === 'LockoutRiskError' && /vmk0 on vSwitch0 without an uplink/.test(e.message),
    );
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

  test('a host vCenter has disconnected is reconnected (with the same pin)', () => {
    const observed = {
      ...base,
      member: true,
      uplinks: [{ device: 'vmnic0' }, { device: 'vmnic1' }],
      inventory: { ...base.inventory!, connection: 'disconnected' },
    };
    assert.deepEqual(vdsAttachStep.plan(spec(), observed), [{ field: 'connection', from: 'disconnected', to: 'connected' }]);
  });

  test('diff (what undo must restore) compares inventory, membership, pnics, VLAN, vSwitch uplinks and the vmk — not facts', () => {
    const a = { ...base, hostPnics: ['vmnic0'], lags: [], rollback: false };
    const b = { ...base, hostPnics: ['vmnic0', 'vmnic1'], lags: [{ key: 'x', name: 'y', uplinkPortKeys: [] }] };
    assert.deepEqual(vdsAttachStep.diff(a, b), []);
    assert.deepEqual(
      vdsAttachStep.diff(a, { ...b, portgroup: { vlan: { kind: 'id', id: 7 } }, inventory: null }).map((c) => c.field),
      ['inventory', 'portgroup.vlan.id'],
    );
  });
});
