/**
 * DPDK host preparation drivers on a real /bin/sh: the read-back script over a directory laid out like /proc, /sys
 * and /etc (symlinks as the kernel makes them) and over this machine's own /proc and /sys; the GRUB drop-in as
 * grub-mkconfig sources it; the ovs-vswitchd alternative switched and restored by the real update-alternatives
 * (in a scratch admin directory); and the OVSDB JSON readers.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  DPDK_DEVICE_RECORD,
  dpdkUserspacePackages,
  kernelParams,
  missingParams,
  offeredDpdkPackagesScript,
  parseDpdkHost,
  readDpdkHostScript,
  renderDeviceRecord,
  renderDpdkDropIn,
  setOverride,
  unsetOverride,
} from '../../../src/drivers/linux/dpdk';
import {
  convergeOvsDpdkScript,
  parseAlternative,
  parseOvsDpdk,
  parsePortStatus,
  VSWITCHD_DPDK,
  wantedDpdkConfig,
  type OvsDpdkState,
} from '../../../src/drivers/linux/ovs-dpdk';
import { convergeBridge, type OvsBridge } from '../../../src/drivers/linux/ovs';
import { dpdkParams } from '../../../src/activities/dpdk';

const scratch = mkdtempSync(join(tmpdir(), 'underlay-dpdk-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const fail = (what: string, observed: string) => new Error(`${what}: ${observed}`);
const run = (script: string, env: Record<string, string> = {}) =>
  execFileSync('/bin/sh', ['-c', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });

function put(root: string, path: string, content: string): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), content);
}
function link(root: string, path: string, target: string): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  symlinkSync(target, join(root, path));
}

/** A PCI function as sysfs shows it: the device under /sys/devices, its bus link, its driver link, its NIC. */
function pciDevice(root: string, address: string, o: { driver?: string; vendor: string; device: string; net?: string; virtio?: boolean }): void {
  const dev = `/sys/devices/pci0000:00/${address}`;
  put(root, `${dev}/vendor`, `0x${o.vendor}\n`);
  put(root, `${dev}/device`, `0x${o.device}\n`);
  link(root, `/sys/bus/pci/devices/${address}`, `../../../devices/pci0000:00/${address}`);
  if (o.driver) link(root, `${dev}/driver`, `../../../bus/pci/drivers/${o.driver}`);
  if (o.net) {
    const netDir = o.virtio ? `${dev}/virtio0/net/${o.net}` : `${dev}/net/${o.net}`;
    mkdirSync(join(root, netDir), { recursive: true });
    link(root, `${netDir}/device`, o.virtio ? '../../../virtio0' : '../../../' + address);
    link(root, `/sys/class/net/${o.net}`, `../../devices/pci0000:00/${address}/${o.virtio ? 'virtio0/' : ''}net/${o.net}`);
  }
}

describe('the DPDK read-back script', () => {
  test('over a sysfs-shaped tree: CPU, command line, IOMMU groups, hugepages, devices by address, name and record, overrides', () => {
    const root = join(scratch, 'host');
    put(root, '/proc/cpuinfo', 'processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme pse pdpe1gb lm\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n');
    put(root, '/proc/cmdline', 'BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=1 ro quiet intel_iommu=on iommu=pt hugepages=64\n');
    for (const g of ['0', '1', '7']) mkdirSync(join(root, `/sys/kernel/iommu_groups/${g}`), { recursive: true });
    put(root, '/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages', '64\n');
    put(root, '/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages', '0\n');
    put(root, '/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages', '40\n');
    put(root, '/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages', '24\n');
    mkdirSync(join(root, '/sys/module/vfio_pci'), { recursive: true });
    // Interrupt remapping on: the IOMMU's IR- chips (as in the lab guest with intel-iommu,intremap=on).
    put(
      root,
      '/proc/interrupts',
      '           CPU0       CPU1\n  0:         41          0   IO-APIC   2-edge      timer\n 24:          0         12  IR-PCI-MSI 4194304-edge      eth0\n',
    );
    put(root, '/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts', 'N\n');
    // e1000e NIC by name; a NIC already on vfio-pci known by the record only; a virtio NIC by address.
    pciDevice(root, '0000:00:03.0', { driver: 'e1000e', vendor: '8086', device: '10d3', net: 'eth1' });
    pciDevice(root, '0000:00:04.0', { driver: 'vfio-pci', vendor: '8086', device: '10d3' });
    // On vfio-pci the kernel module comes from the device's modalias, resolved by this machine's real modprobe.
    const alias = 'pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00';
    put(root, '/sys/devices/pci0000:00/0000:00:04.0/modalias', `${alias}\n`);
    const resolved = spawnSync('/bin/sh', ['-c', `modprobe -R '${alias}' 2>/dev/null | head -n 1`], { encoding: 'utf8' }).stdout.trim() || null;
    pciDevice(root, '0000:00:05.0', { driver: 'virtio-pci', vendor: '1af4', device: '1041', net: 'ens5', virtio: true });
    put(root, DPDK_DEVICE_RECORD, renderDeviceRecord({ eth2: '0000:00:04.0' })!);
    put(root, '/etc/driverctl.d/pci-0000:00:04.0', 'vfio-pci\n');
    const refs = ['eth1', 'eth2', '0000:00:05.0', '0000:00:09.0', 'eth7'];
    const text = run(readDpdkHostScript(refs, root).text);
    const h = parseDpdkHost(text, fail);
    assert.equal(h.cpuVendor, 'GenuineIntel');
    assert.equal(h.pdpe1gb, true);
    assert.equal(h.cmdline, 'BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=1 ro quiet intel_iommu=on iommu=pt hugepages=64');
    assert.equal(h.iommuGroups, 3);
    assert.equal(h.vfioModule, true);
    assert.equal(h.irqRemap, true);
    assert.equal(h.unsafeInterrupts, false);
    assert.equal(h.driverctl, spawnSync('/bin/sh', ['-c', 'command -v driverctl']).status === 0);
    assert.deepEqual(h.hugepages, { all: { '2048': 64, '1048576': 0 }, nodes: { '0': { '2048': 40 }, '1': { '2048': 24 } } });
    assert.deepEqual(h.devices, [
      { ref: 'eth1', address: '0000:00:03.0', missing: false, driver: 'e1000e', id: '8086:10d3', ifname: 'eth1', kernelModule: 'e1000e' },
      { ref: 'eth2', address: '0000:00:04.0', missing: false, driver: 'vfio-pci', id: '8086:10d3', ifname: null, kernelModule: resolved },
      { ref: '0000:00:05.0', address: '0000:00:05.0', missing: false, driver: 'virtio-pci', id: '1af4:1041', ifname: 'ens5', kernelModule: 'virtio-pci' },
      { ref: '0000:00:09.0', address: '0000:00:09.0', missing: true, driver: null, id: null, ifname: null, kernelModule: null },
      { ref: 'eth7', address: null, missing: false, driver: null, id: null, ifname: null, kernelModule: null },
    ]);
    assert.deepEqual(h.overrides, { '0000:00:04.0': 'vfio-pci' });
  });

  test('over this machine’s own /proc and /sys', () => {
    const h = parseDpdkHost(run(readDpdkHostScript([]).text), fail);
    assert.equal(h.cmdline, readFileSync('/proc/cmdline', 'utf8').trim());
    assert.match(h.cpuVendor, /^\S+$/);
    // Every hugepage size the kernel offers is listed (2 MiB on any x86-64 kernel with hugetlbfs).
    assert.ok('2048' in h.hugepages.all, JSON.stringify(h.hugepages));
    assert.deepEqual(h.devices, []);
  });

  test('an unknown line is refused, not skipped', () => {
    assert.throws(() => parseDpdkHost('vendor x\nsurprise 1\n', fail), /surprise/);
    assert.throws(() => parseDpdkHost('dev eth1 0000:zz:00.0 - - - -\n', fail), /address/);
    assert.throws(() => parseDpdkHost('hp all 2048 many\n', fail), /many/);
  });
});

describe('kernel parameters and the GRUB drop-in', () => {
  test('Intel gets intel_iommu=on; a total or a per-node count', () => {
    assert.deepEqual(kernelParams({ hugepages: { size: '2M', count: 64 } }, 'GenuineIntel'), [
      'intel_iommu=on',
      'iommu=pt',
      'default_hugepagesz=2M',
      'hugepagesz=2M',
      'hugepages=64',
    ]);
    assert.deepEqual(
      kernelParams(
        {
          hugepages: {
            size: '1G',
            perNode: [
              { node: 0, count: 4 },
              { node: 1, count: 2 },
            ],
          },
        },
        'AuthenticAMD',
      ),
      ['iommu=pt', 'default_hugepagesz=1G', 'hugepagesz=1G', 'hugepages=0:4,1:2'],
    );
  });

  test('sourced as grub-mkconfig sources it, the drop-in appends to what /etc/default/grub passes', () => {
    const params = kernelParams({ hugepages: { size: '2M', count: 64 } }, 'GenuineIntel');
    const dropIn = join(scratch, 'underlay-dpdk.cfg');
    writeFileSync(dropIn, renderDpdkDropIn(params));
    const grub = join(scratch, 'grub');
    for (const [before, expected] of [
      ['GRUB_CMDLINE_LINUX="console=ttyS0"', 'console=ttyS0 intel_iommu=on iommu=pt default_hugepagesz=2M hugepagesz=2M hugepages=64'],
      ['GRUB_CMDLINE_LINUX=""', 'intel_iommu=on iommu=pt default_hugepagesz=2M hugepagesz=2M hugepages=64'],
    ] as const) {
      writeFileSync(grub, `${before}\n`);
      assert.equal(run(`. '${grub}'; . '${dropIn}'; printf '%s' "$GRUB_CMDLINE_LINUX"`), expected);
    }
  });

  test('which parameters the running kernel lacks, and which words of a command line are ours', () => {
    const want = ['intel_iommu=on', 'iommu=pt', 'hugepages=64'];
    assert.deepEqual(missingParams('ro quiet intel_iommu=on hugepages=32', want), ['iommu=pt', 'hugepages=64']);
    assert.deepEqual(missingParams('ro intel_iommu=on iommu=pt hugepages=64', want), []);
    assert.deepEqual(dpdkParams('BOOT_IMAGE=/vmlinuz ro iommu=pt hugepagesz=2M hugepages=8 console=ttyS0'), ['iommu=pt', 'hugepagesz=2M', 'hugepages=8']);
  });

  test('driverctl commands quote what they splice and parse on /bin/sh', () => {
    assert.equal(setOverride('0000:00:04.0', 'vfio-pci').text, 'modprobe vfio-pci && driverctl set-override 0000:00:04.0 vfio-pci');
    assert.equal(unsetOverride('0000:00:04.0').text, 'driverctl unset-override 0000:00:04.0');
    assert.equal(unsetOverride("x'; reboot").text, "driverctl unset-override 'x'\\''; reboot'");
    for (const s of [setOverride('0000:00:04.0', 'vfio-pci'), readDpdkHostScript(['eth1', "a'b"])]) {
      assert.equal(spawnSync('/bin/sh', ['-n', '-c', s.text]).status, 0, s.text);
    }
  });
});

describe('Open vSwitch on the DPDK datapath', () => {
  const altdir = join(scratch, 'alternatives');
  const admindir = join(scratch, 'admin');
  const plain = join(scratch, 'ovs-vswitchd-plain');
  const dpdkBin = join(scratch, 'ovs-vswitchd-dpdk');
  const link = join(scratch, 'ovs-vswitchd');
  /** The real update-alternatives over a scratch admin directory, first in PATH under its own name (as the scripts call it). */
  const bin = join(scratch, 'bin');
  const wrap = `PATH='${bin}':"$PATH"; `;

  test('the alternative is switched to the DPDK build and back to auto by the real update-alternatives', () => {
    for (const d of [altdir, admindir, bin]) mkdirSync(d, { recursive: true });
    const real = execFileSync('/bin/sh', ['-c', 'command -v update-alternatives'], { encoding: 'utf8' }).trim();
    writeFileSync(join(bin, 'update-alternatives'), `#!/bin/sh\nexec '${real}' --altdir '${altdir}' --admindir '${admindir}' "$@"\n`, { mode: 0o755 });
    for (const f of [plain, dpdkBin]) writeFileSync(f, '#!/bin/sh\n', { mode: 0o755 });
    // As Debian's packages register them: the plain build with the higher priority.
    run(`${wrap}update-alternatives --install '${link}' ovs-vswitchd '${plain}' 100 && update-alternatives --install '${link}' ovs-vswitchd '${dpdkBin}' 50`);
    const query = () => parseAlternative(run(`${wrap}update-alternatives --query ovs-vswitchd`));
    const before = query();
    assert.deepEqual(before, { status: 'auto', value: plain });
    const now: OvsDpdkState = { alternative: before, config: {}, initialized: false };
    const script = convergeOvsDpdkScript(now, { alternative: { status: 'manual', value: dpdkBin }, config: {} });
    assert.ok(script);
    // Only the alternative differs: the script switches it and restarts Open vSwitch (not run here).
    const [alt, restart] = script.text.split(' && ');
    assert.equal(restart, 'systemctl restart openvswitch-switch');
    run(`${wrap}${alt}`);
    assert.deepEqual(query(), { status: 'manual', value: dpdkBin });
    const back = convergeOvsDpdkScript({ ...now, alternative: query() }, { alternative: before, config: {} })!.text.split(' && ')[0]!;
    assert.equal(back, 'update-alternatives --auto ovs-vswitchd');
    run(`${wrap}${back}`);
    assert.deepEqual(query(), before);
  });

  test('other_config: the spec’s keys set in one ovs-vsctl transaction, and only those restored', () => {
    const want = wantedDpdkConfig({ pmdCpuMask: '0x6', socketMemoryMb: [1024, 0] });
    assert.deepEqual(want, { 'dpdk-init': 'true', 'dpdk-socket-mem': '1024,0', 'pmd-cpu-mask': '0x6' });
    const manual = { status: 'manual' as const, value: VSWITCHD_DPDK };
    const now: OvsDpdkState = { alternative: manual, config: { 'dpdk-lcore-mask': '0x1' }, initialized: false };
    assert.equal(
      convergeOvsDpdkScript(now, { alternative: manual, config: want })!.text,
      'ovs-vsctl set Open_vSwitch . other_config:dpdk-init=true other_config:dpdk-socket-mem=1024,0 other_config:pmd-cpu-mask=0x6 -- remove Open_vSwitch . other_config dpdk-lcore-mask && systemctl restart openvswitch-switch',
    );
    assert.equal(convergeOvsDpdkScript({ ...now, config: want }, { alternative: manual, config: want }), null);
  });

  test('OVSDB JSON: other_config map, dpdk_initialized, interface states', () => {
    const text = [
      'Value: /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk\nStatus: manual\nBest: /usr/lib/openvswitch-switch/ovs-vswitchd\n',
      JSON.stringify({
        data: [
          [
            [
              'map',
              [
                ['dpdk-init', 'true'],
                ['dpdk-socket-mem', '64'],
                ['hw-offload', 'false'],
              ],
            ],
          ],
        ],
        headings: ['other_config'],
      }),
      'true\n',
    ].join('\n--\n');
    assert.deepEqual(parseOvsDpdk(text), {
      alternative: { status: 'manual', value: VSWITCHD_DPDK },
      config: { 'dpdk-init': 'true', 'dpdk-socket-mem': '64' },
      initialized: true,
    });
    const ifaces = JSON.stringify({
      data: [
        ['dpdk0', 'dpdk', 'up', ['set', []]],
        ['dpdk1', 'dpdk', ['set', []], 'Error attaching device 0000:00:05.0 to DPDK'],
        ['bond0', '', 'up', ['set', []]],
      ],
      headings: ['name', 'type', 'link_state', 'error'],
    });
    assert.deepEqual(parsePortStatus(ifaces, ['dpdk0', 'dpdk1', 'dpdk2']), [
      { name: 'dpdk0', type: 'dpdk', linkState: 'up', error: null },
      { name: 'dpdk1', type: 'dpdk', linkState: null, error: 'Error attaching device 0000:00:05.0 to DPDK' },
      { name: 'dpdk2', type: 'absent', linkState: null, error: null },
    ]);
  });

  test('the bridge onto the netdev datapath with DPDK and vhost-user ports in one transaction, and back', () => {
    const kernel: OvsBridge = { exists: true, ports: { bond0: { tag: null, type: 'system' } } };
    const dpdk: OvsBridge = {
      exists: true,
      datapath: 'netdev',
      ports: {
        bond0: { tag: null, type: 'system' },
        dpdk0: { tag: null, type: 'dpdk', options: { 'dpdk-devargs': '0000:00:04.0' } },
        vhu1: { tag: null, type: 'dpdkvhostuserclient', options: { 'vhost-server-path': '/run/openvswitch/vhu1.sock' } },
      },
    };
    assert.equal(
      convergeBridge('br-dpdk', kernel, dpdk)!.text,
      'ovs-vsctl set Bridge br-dpdk datapath_type=netdev -- --may-exist add-port br-dpdk dpdk0 -- set Interface dpdk0 type=dpdk -- set Interface dpdk0 options:dpdk-devargs=0000:00:04.0 -- --may-exist add-port br-dpdk vhu1 -- set Interface vhu1 type=dpdkvhostuserclient -- set Interface vhu1 options:vhost-server-path=/run/openvswitch/vhu1.sock',
    );
    assert.equal(
      convergeBridge('br-dpdk', dpdk, kernel)!.text,
      'ovs-vsctl set Bridge br-dpdk datapath_type=system -- --if-exists del-port br-dpdk dpdk0 -- --if-exists del-port br-dpdk vhu1',
    );
    assert.equal(convergeBridge('br-dpdk', dpdk, dpdk), null);
    // A kernel bridge is built exactly as before (no datapath_type, no options).
    assert.equal(convergeBridge('br0', { exists: false, ports: {} }, kernel)!.text, 'ovs-vsctl --may-exist add-br br0 -- --may-exist add-port br0 bond0');
  });
});

describe('DPDK user-space drivers (Debian plugin packages)', () => {
  test('from this machine’s real package index: the ring mempool and the e1000 PMD of the newest ABI', () => {
    const offered = run(offeredDpdkPackagesScript().text).split('\n').filter(Boolean);
    assert.ok(offered.includes('librte-eal23'), 'bookworm’s DPDK 22.11 (ABI 23) is offered here');
    const u = dpdkUserspacePackages([{ ref: 'eth4', kernelModule: 'e1000e' }], offered);
    assert.deepEqual(u, { packages: ['librte-mempool-ring23', 'librte-net-e1000-23'], unsupported: [] });
    // Names ending in a digit take a hyphen before the ABI (Debian's shared-library naming).
    assert.deepEqual(dpdkUserspacePackages([{ ref: 'x', kernelModule: 'i40e' }], offered).packages, ['librte-mempool-ring23', 'librte-net-i40e23']);
    assert.deepEqual(dpdkUserspacePackages([{ ref: 'x', kernelModule: 'virtio-pci' }], offered).packages, ['librte-mempool-ring23', 'librte-net-virtio23']);
  });

  test('refusals: unknown module, bifurcated ConnectX, nothing offered, a newer ABI preferred', () => {
    const offered = ['librte-eal22', 'librte-eal23', 'librte-mempool-ring23', 'librte-net-e1000-23', 'librte-net-ixgbe22'];
    const u = dpdkUserspacePackages(
      [
        { ref: 'a', kernelModule: 'e1000e' },
        { ref: 'b', kernelModule: 'mlx5_core' },
        { ref: 'c', kernelModule: null },
        { ref: 'd', kernelModule: 'ixgbe' },
        { ref: 'e', kernelModule: 'r8169' },
      ],
      offered,
    );
    assert.deepEqual(u.packages, ['librte-mempool-ring23', 'librte-net-e1000-23']);
    assert.deepEqual(
      u.unsupported.map((x) => x.ref),
      ['b', 'c', 'd', 'e'],
    );
    assert.match(u.unsupported[0]!.why, /bifurcated/);
    assert.match(u.unsupported[2]!.why, /librte-net-ixgbe23 is not offered/);
    assert.deepEqual(dpdkUserspacePackages([{ ref: 'a', kernelModule: 'e1000e' }], []).unsupported, [
      { ref: 'a', why: 'the host’s repositories offer no DPDK (librte-eal)' },
    ]);
  });
});
