/**
 * The spec's dpdk section: its shape and bounds, the platforms that refuse it (and say why), and the checks against
 * the rest of the spec (bond, SR-IOV, VLANs, the attach, hugepage memory against OVS's socket memory).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { parseSpecText } from '../../src/spec/load';
import { PLATFORM_MATRIX } from '../../src/spec/server';
import { validateServerSpec, type SpecIssue } from '../../src/spec/validate';
import { plannedSteps, stepSummary } from '../../src/steps';

const EXAMPLES = resolve(__dirname, '../../examples');
type Obj = Record<string, unknown>;

function example(file: string): Obj {
  return structuredClone(parseSpecText(readFileSync(join(EXAMPLES, file), 'utf8'), file)) as Obj;
}
const dpdkSpec = () => example('kvm-dpdk.yaml');
const dpdkOf = (s: Obj) => s.dpdk as Obj;

function issues(raw: unknown): SpecIssue[] {
  const r = validateServerSpec(raw);
  if (r.ok) assert.fail('expected the spec to be rejected, but it validated');
  return r.issues;
}
function assertIssue(raw: unknown, path: string, message: RegExp): void {
  const all = issues(raw);
  assert.ok(
    all.some((i) => i.path === path && message.test(i.message)),
    `expected ${path} ~ ${message}; got:\n${all.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`,
  );
}
function valid(raw: unknown) {
  const r = validateServerSpec(raw);
  if (!r.ok) assert.fail(r.issues.map((i) => `${i.path}: ${i.message}`).join('\n'));
  return r.spec;
}

describe('dpdk section', () => {
  test('the example validates, with defaults, and puts the dpdk step between SR-IOV and the hypervisor', () => {
    const spec = valid(dpdkSpec());
    assert.equal(spec.dpdk?.driver, 'vfio-pci');
    assert.deepEqual(spec.dpdk?.ovs?.vhostUserPorts, [{ name: 'vhu-guest1' }]);
    assert.deepEqual(plannedSteps(spec), ['cable', 'bond', 'dpdk', 'hypervisor', 'attach']);
    assert.equal(stepSummary('dpdk', spec), 'IOMMU on · hugepages 0:4,1:4 × 1G · enp129s0f0,0000:82:00.1 → vfio-pci · OVS-DPDK pmd 0x30');
    // Without the section, no dpdk step.
    const plain = dpdkSpec();
    delete plain.dpdk;
    assert.ok(!plannedSteps(valid(plain)).includes('dpdk'));
  });

  test('PCI addresses and masks are normalised to lower case; a bad one is refused with its path', () => {
    const s = dpdkSpec();
    dpdkOf(s).devices = ['0000:AF:00.0'];
    (dpdkOf(s).ovs as Obj).pmdCpuMask = '0xF0';
    const spec = valid(s);
    assert.deepEqual(spec.dpdk?.devices, ['0000:af:00.0']);
    assert.equal(spec.dpdk?.ovs?.pmdCpuMask, '0xf0');
    for (const bad of ['0000:03:00.8', '03:00.0', '0000:03:20.0', "eth1'; reboot", '0000:03:00.0 ']) {
      dpdkOf(s).devices = [bad];
      assertIssue(s, 'dpdk.devices[0]', /PCI address|NIC name/);
    }
    (dpdkOf(s).ovs as Obj).pmdCpuMask = '0x0';
    dpdkOf(s).devices = ['0000:03:00.0'];
    assertIssue(s, 'dpdk.ovs.pmdCpuMask', /at least one CPU/);
    (dpdkOf(s).ovs as Obj).pmdCpuMask = '6';
    assertIssue(s, 'dpdk.ovs.pmdCpuMask', /CPU mask in hex/);
  });

  test('bounded: devices, nodes, vhost-user ports, page counts; count and perNode exclude each other', () => {
    const s = dpdkSpec();
    dpdkOf(s).devices = Array.from({ length: 17 }, (_, i) => `0000:03:${String(i).padStart(2, '0')}.0`);
    assertIssue(s, 'dpdk.devices', /at most 16|<=16|16/);
    const t = dpdkSpec();
    (dpdkOf(t).hugepages as Obj).perNode = Array.from({ length: 9 }, (_, node) => ({ node, count: 1 }));
    assertIssue(t, 'dpdk.hugepages.perNode', /8/);
    const u = dpdkSpec();
    (dpdkOf(u).ovs as Obj).vhostUserPorts = Array.from({ length: 65 }, (_, i) => ({ name: `vhu${i}` }));
    assertIssue(u, 'dpdk.ovs.vhostUserPorts', /64/);
    const v = dpdkSpec();
    (dpdkOf(v).hugepages as Obj).count = 8;
    assertIssue(v, 'dpdk.hugepages.count', /either count or perNode/);
    delete (dpdkOf(v).hugepages as Obj).perNode;
    delete (dpdkOf(v).hugepages as Obj).count;
    assertIssue(v, 'dpdk.hugepages.count', /either count or perNode/);
    (dpdkOf(v).hugepages as Obj).count = 1_048_576;
    assertIssue(v, 'dpdk.hugepages', /at most 4194304 MiB/);
    const w = dpdkSpec();
    dpdkOf(w).driver = 'uio_pci_generic';
    assertIssue(w, 'dpdk.driver', /vfio-pci/);
    dpdkOf(w).driver = 'vfio-pci';
    dpdkOf(w).extra = true;
    assertIssue(w, 'dpdk.extra', /unknown field/);
  });

  test('refused on every platform whose runbook has no DPDK, saying why', () => {
    assert.deepEqual(
      Object.entries(PLATFORM_MATRIX)
        .filter(([, r]) => r.dpdk)
        .map(([k]) => k),
      ['kvm'],
    );
    const xen = example('xen-bridge.yaml');
    xen.dpdk = dpdkSpec().dpdk;
    delete (xen.dpdk as Obj).ovs;
    assertIssue(xen, 'dpdk', /not in the Xen runbook: .*dom0.*use hypervisor.kind kvm/);
    const esxi = example('esxi-vds.yaml');
    esxi.dpdk = { hugepages: { count: 4 }, devices: ['0000:03:00.0'] };
    assertIssue(esxi, 'dpdk', /not in the ESXi runbook/);
    const hyperv = example('hyperv-set.yaml');
    hyperv.dpdk = { hugepages: { count: 4 }, devices: ['0000:03:00.0'] };
    assertIssue(hyperv, 'dpdk', /not in the Hyper-V runbook/);
  });

  test('devices against the rest of the spec: a NIC of the spec, used by no other step, not cabled, not twice', () => {
    const s = dpdkSpec();
    dpdkOf(s).devices = ['eth9'];
    assertIssue(s, 'dpdk.devices[0]', /not one of the spec's NICs/);
    dpdkOf(s).devices = ['enp65s0f0'];
    assertIssue(s, 'dpdk.devices[0]', /member of the bond/);
    const sr = dpdkSpec();
    sr.sriov = { pf: 'enp129s0f0', numVfs: 4 };
    assertIssue(sr, 'dpdk.devices[0]', /SR-IOV PF/);
    const vl = dpdkSpec();
    vl.vlans = [{ id: 5, parent: 'enp129s0f0' }];
    assertIssue(vl, 'dpdk.devices[0]', /carries VLANs/);
    const up = dpdkSpec();
    (up.attach as Obj).uplink = 'enp129s0f0';
    assertIssue(up, 'dpdk.devices[0]', /attach's lower device/);
    const cab = dpdkSpec();
    delete ((cab.nics as Obj[])[2] as Obj).cabled;
    assertIssue(cab, 'nics[2].cabled', /goes to DPDK.*cabled: false/);
    const twice = dpdkSpec();
    dpdkOf(twice).devices = ['0000:82:00.1', '0000:82:00.1'];
    assertIssue(twice, 'dpdk.devices[1]', /listed twice/);
    dpdkOf(twice).devices = ['0000:82:00.1', '0000:82:00.1'.toUpperCase()];
    assertIssue(twice, 'dpdk.devices[1]', /listed twice/);
  });

  test('OVS-DPDK needs an ovs attach, socket memory within the hugepages, and port names that clash with nothing', () => {
    const mac = dpdkSpec();
    mac.attach = { kind: 'macvtap' };
    assertIssue(mac, 'dpdk.ovs', /attach.kind ovs \(attach is "macvtap"\)/);
    const none = dpdkSpec();
    delete none.attach;
    assertIssue(none, 'dpdk.ovs', /attach is absent/);
    // Per node: 4 × 1G on node 0 is 4096 MiB.
    const mem = dpdkSpec();
    (dpdkOf(mem).ovs as Obj).socketMemoryMb = [4096, 5000];
    assertIssue(mem, 'dpdk.ovs.socketMemoryMb[1]', /5000 MiB on node 1 but the hugepages reserve 4096 MiB there/);
    (dpdkOf(mem).ovs as Obj).socketMemoryMb = [0, 0, 1];
    assertIssue(mem, 'dpdk.ovs.socketMemoryMb[2]', /reserve 0 MiB there/);
    // A total: 64 × 2M = 128 MiB.
    const total = dpdkSpec();
    dpdkOf(total).hugepages = { size: '2M', count: 64 };
    (dpdkOf(total).ovs as Obj).socketMemoryMb = [128];
    valid(total);
    (dpdkOf(total).ovs as Obj).socketMemoryMb = [100, 100];
    assertIssue(total, 'dpdk.ovs.socketMemoryMb', /200 MiB in all but the hugepages reserve 128 MiB \(64 × 2M\)/);
    const clash = dpdkSpec();
    (dpdkOf(clash).ovs as Obj).vhostUserPorts = [{ name: 'dpdk1' }, { name: 'br-dpdk' }, { name: 'vhu0' }, { name: 'vhu0' }];
    const all = issues(clash);
    for (const i of [0, 1, 3])
      assert.ok(
        all.some((x) => x.path === `dpdk.ovs.vhostUserPorts[${i}].name`),
        `vhostUserPorts[${i}]`,
      );
    assert.ok(!all.some((x) => x.path === 'dpdk.ovs.vhostUserPorts[2].name'));
  });

  test('without ovs, the section stands alone (no attach needed)', () => {
    const s = dpdkSpec();
    delete dpdkOf(s).ovs;
    delete s.attach;
    const spec = valid(s);
    assert.deepEqual(plannedSteps(spec), ['cable', 'bond', 'dpdk', 'hypervisor']);
  });
});
