/**
 * The dpdk step's and the OVS-DPDK attach's plans from observed states (pure), and how the spec's dpdk section
 * reaches the KVM install (openvswitch-switch-dpdk) and the attach (netdev bridge, dpdk and vhost-user ports).
 * The commands and read-backs themselves run on a real /bin/sh in test/drivers/linux/dpdk.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { attachStep, linuxAttachWant, type AttachState } from '../../src/activities/attach';
import { dpdkStep, type DpdkState } from '../../src/activities/dpdk';
import { kvmPackages, kvmWant } from '../../src/activities/hypervisor';
import { DPDK_DEVICE_RECORD, DPDK_GRUB_DROP_IN, kernelParams, renderDeviceRecord, renderDpdkDropIn } from '../../src/drivers/linux/dpdk';
import { VSWITCHD_DPDK } from '../../src/drivers/linux/ovs-dpdk';
import { parseSpecText } from '../../src/spec/load';
import { validateServerSpec } from '../../src/spec/validate';
import type { ServerSpec } from '../../src/spec/server';

function spec(mutate: (s: Record<string, unknown>) => void = () => {}): ServerSpec {
  const raw = parseSpecText(readFileSync(join(resolve(__dirname, '../../examples'), 'kvm-dpdk.yaml'), 'utf8'), 'kvm-dpdk.yaml') as Record<string, unknown>;
  mutate(raw);
  const r = validateServerSpec(raw);
  if (!r.ok) assert.fail(JSON.stringify(r.issues));
  return r.spec;
}

/** A 2M, 64-page spec on one device by name. */
const small = () =>
  spec((s) => {
    s.dpdk = {
      hugepages: { size: '2M', count: 64 },
      devices: ['enp129s0f0'],
      ovs: { pmdCpuMask: '0x2', socketMemoryMb: [128], vhostUserPorts: [{ name: 'vhu1' }] },
    };
  });

const fresh: DpdkState = {
  cpuVendor: 'GenuineIntel',
  params: [],
  iommuGroups: 0,
  vfioUsable: false,
  hugepages: { all: 0, nodes: { '0': 0 } },
  devices: [{ ref: 'enp129s0f0', address: '0000:00:05.0', driver: 'e1000e', override: null }],
  driverctl: false,
  userspace: { want: ['librte-mempool-ring23', 'librte-net-e1000-23'], installed: [], unsupported: [] },
  packages: ['openssh-server'],
  grub: true,
  dropIn: null,
  record: null,
};
const params = kernelParams({ hugepages: { size: '2M', count: 64 } }, 'GenuineIntel');
const prepared: DpdkState = {
  ...fresh,
  params,
  iommuGroups: 9,
  vfioUsable: true,
  hugepages: { all: 64, nodes: { '0': 64 } },
  devices: [{ ref: 'enp129s0f0', address: '0000:00:05.0', driver: 'vfio-pci', override: 'vfio-pci' }],
  driverctl: true,
  userspace: { want: ['librte-mempool-ring23', 'librte-net-e1000-23'], installed: ['librte-mempool-ring23', 'librte-net-e1000-23'], unsupported: [] },
  packages: ['driverctl', 'librte-eal23', 'librte-mempool-ring23', 'librte-net-e1000-23', 'openssh-server'],
  dropIn: renderDpdkDropIn(params),
  record: renderDeviceRecord({ enp129s0f0: '0000:00:05.0' }),
};

describe('dpdk step plan', () => {
  test('a fresh host: driverctl, the drop-in, the record, the command line (one reboot), the pages, the binding', () => {
    const want = dpdkStep.want(small());
    assert.deepEqual(
      dpdkStep.plan(want, fresh).map((c) => c.field),
      [
        'package driverctl',
        'package librte-mempool-ring23',
        'package librte-net-e1000-23',
        DPDK_GRUB_DROP_IN,
        DPDK_DEVICE_RECORD,
        'kernel command line',
        'hugepages 2M',
        'enp129s0f0.driver',
        'enp129s0f0.override',
      ],
    );
    assert.match(
      String(dpdkStep.plan(want, fresh).find((c) => c.field === 'kernel command line')?.to),
      /intel_iommu=on iommu=pt .*hugepages=64, after one reboot/,
    );
  });

  test('a prepared host plans nothing; AMD gets no intel_iommu', () => {
    assert.deepEqual(dpdkStep.plan(dpdkStep.want(small()), prepared), []);
    const amd = { ...prepared, cpuVendor: 'AuthenticAMD' };
    const changes = dpdkStep.plan(dpdkStep.want(small()), amd);
    assert.deepEqual(
      changes.map((c) => c.field),
      [DPDK_GRUB_DROP_IN],
    );
    assert.doesNotMatch(String(changes[0]!.to), /intel_iommu/);
  });

  test('per NUMA node: a node short of pages is named', () => {
    const want = dpdkStep.want(
      spec((s) => {
        (s.dpdk as Record<string, unknown>).hugepages = {
          size: '2M',
          perNode: [
            { node: 0, count: 32 },
            { node: 1, count: 32 },
          ],
        };
        delete (s.dpdk as Record<string, unknown>).ovs;
      }),
    );
    const p = kernelParams(want.dpdk, 'GenuineIntel');
    const o: DpdkState = { ...prepared, params: p, dropIn: renderDpdkDropIn(p), hugepages: { all: 40, nodes: { '0': 32, '1': 8 } }, devices: [], record: null };
    assert.deepEqual(dpdkStep.plan(want, o), [{ field: 'hugepages 2M node 1', from: 8, to: 32 }]);
  });

  test('the undo is verified against the parameters, IOMMU, pages, bindings, driverctl and files', () => {
    assert.deepEqual(
      dpdkStep
        .diff(fresh, prepared)
        .map((c) => c.field)
        .sort(),
      ['devices.0000:00:05.0.driver', 'devices.0000:00:05.0.override', 'driverctl', 'dropIn', 'hugepages', 'iommu', 'params', 'record', 'userspace'],
    );
    assert.deepEqual(dpdkStep.diff(prepared, { ...prepared, cpuVendor: 'other' }), []);
  });
});

describe('OVS-DPDK through the KVM install and the attach', () => {
  test('the KVM install adds openvswitch-switch-dpdk only with dpdk.ovs on an ovs attach (Debian)', () => {
    assert.deepEqual(kvmPackages(kvmWant(small()), 'debian').slice(-2), ['openvswitch-switch', 'openvswitch-switch-dpdk']);
    const noOvs = spec((s) => delete (s.dpdk as Record<string, unknown>).ovs);
    assert.equal(kvmPackages(kvmWant(noOvs), 'debian').at(-1), 'openvswitch-switch');
  });

  test('the attach plans the DPDK ovs-vswitchd, dpdk-init, the netdev datapath and the ports', () => {
    const want = linuxAttachWant(small());
    assert.deepEqual(want.dpdk?.devices, ['enp129s0f0']);
    const kernel: AttachState = {
      network: null,
      bridge: { exists: true, ports: { bond0: { tag: null, type: 'system' } } },
      ovsDpdk: { alternative: { status: 'auto', value: '/usr/lib/openvswitch-switch/ovs-vswitchd' }, config: {}, initialized: false },
      dpdkAddresses: ['0000:00:05.0'],
    };
    const fields = attachStep.plan(want, kernel).map((c) => c.field);
    for (const f of [
      'bridge.ports.dpdk0',
      'bridge.ports.vhu1',
      'bridge.datapath',
      'ovsDpdk.alternative.status',
      'ovsDpdk.alternative.value',
      'ovsDpdk.config',
      'ovsDpdk.initialized',
    ])
      assert.ok(
        fields.some((x) => x === f || x.startsWith(`${f}.`)),
        `${f} in ${fields.join(', ')}`,
      );
    const done: AttachState = {
      ...kernel,
      bridge: {
        exists: true,
        datapath: 'netdev',
        ports: {
          bond0: { tag: null, type: 'system' },
          dpdk0: { tag: null, type: 'dpdk', options: { 'dpdk-devargs': '0000:00:05.0' } },
          vhu1: { tag: null, type: 'dpdkvhostuserclient', options: { 'vhost-server-path': '/run/openvswitch/vhu1.sock' } },
        },
      },
      ovsDpdk: {
        alternative: { status: 'manual', value: VSWITCHD_DPDK },
        config: { 'dpdk-init': 'true', 'dpdk-socket-mem': '128', 'pmd-cpu-mask': '0x2' },
        initialized: true,
      },
    };
    assert.deepEqual(attachStep.plan(want, done), []);
    // Without dpdk.ovs the attach is what it was: no OVS-DPDK state is read or planned.
    const plain = linuxAttachWant(spec((s) => delete (s.dpdk as Record<string, unknown>).ovs));
    assert.equal(plain.dpdk, undefined);
    assert.deepEqual(attachStep.plan(plain, { network: null, bridge: { exists: true, ports: { bond0: { tag: null, type: 'system' } } } }), []);
  });
});

describe('a host that does not boot through GRUB', () => {
  test('with the parameters from its boot loader: no drop-in planned, only the bindings', () => {
    const o: DpdkState = { ...prepared, grub: false, dropIn: null, devices: fresh.devices };
    assert.deepEqual(
      dpdkStep.plan(dpdkStep.want(small()), o).map((c) => c.field),
      ['enp129s0f0.driver', 'enp129s0f0.override'],
    );
    assert.match(dpdkStep.note!(o)!, /no GRUB: kernel parameters from the boot loader/);
  });
});
