/**
 * The lab itself (lab/up.sh, lab/image/build.sh, lab/snapshot.sh): one lab of the switch and four servers, one
 * per image variant — server1 fresh (ifupdown, no hypervisor packages), server2 ifupdown, server3 networkd,
 * server4 nm (NetworkManager) — with server4 managed over its data NIC only (UNDERLAY_LAB_DATA_MGMT).
 *  - each variant boots with its manager running and owning eth0..eth2 (the manager's own view of eth1);
 *  - LACP negotiates with the switch when eth1+eth2 are bonded by hand;
 *  - server4 answers only through the switch: on eth1's pre-onboarding address (native VLAN, the switch's
 *    bond po4 without an LACP partner), then — bonded by hand, address moved to bond0.100 — on the VLAN 100
 *    path with the same pinned host key while the old path is gone;
 *  - a VM snapshot (savevm) and restore (loadvm) round-trip brings server4 back to the pre-bond state, clock
 *    set, reachable on the old path again (the switch's LACP fallback picks swp7 once the partner is gone).
 * Its own lab (dir .lab-variants, ports 25200+), so it runs next to another lab.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SshSession } from '../../src/transports/ssh';
import { sshTarget } from '../../src/activities/connect';
import type { ServerSpec } from '../../src/spec/server';
import { freshLab, labSpec, labVm, onHost, restoreVm, snapshotVm, stopLab, type LabImage } from '../helpers/lab';

const root = resolve(__dirname, '../..');
// Read by lab/up.sh, lab/down.sh and lab/snapshot.sh (through the helpers) at call time.
process.env.UNDERLAY_LAB_DIR = resolve(root, '.lab-variants');
process.env.UNDERLAY_LAB_PORT_BASE = '25200';
process.env.UNDERLAY_LAB_BOOT_TIMEOUT ??= '900'; // five TCG guests booting on two cores
const LAB = process.env.UNDERLAY_LAB_DIR;
const BASE = 25200;

const SERVERS = { server1: 'fresh', server2: 'ifupdown', server3: 'networkd', server4: 'nm' } as const;
const MANAGER: Record<Exclude<LabImage, 'base'>, string> = {
  fresh: 'networking',
  ifupdown: 'networking',
  networkd: 'systemd-networkd',
  nm: 'NetworkManager',
};
const figures: Record<string, string> = {};
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

before(() => {
  const t0 = Date.now();
  freshLab(4, { images: Object.values(SERVERS), dataMgmt: [4] });
  figures['lab up (switch + 4 servers)'] = secs(Date.now() - t0);
});

after(() => {
  stopLab();
  console.log(
    `figures:\n${Object.entries(figures)
      .map(([k, v]) => `  ${k}: ${v}`)
      .join('\n')}`,
  );
});

const spec = (name: string) => labSpec(name, { dir: LAB });
const at = (s: ServerSpec, port: number): ServerSpec => ({ ...s, management: { ...s.management, port } });

/** The first line the peer sends on 127.0.0.1:port within 5 s ('' if none: QEMU's forward accepts anyway). */
function banner(port: number): Promise<string> {
  return new Promise((res) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      sock.destroy();
      res(got.split('\n')[0]!.trim());
    };
    sock.setTimeout(5000, done);
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('\n')) done();
    });
    sock.on('error', done);
    sock.on('close', done);
  });
}

/** Connects to `s` (pinned host key) within `ms`, retrying; the session or the last error. */
async function reach(s: ServerSpec, ms: number): Promise<SshSession> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await SshSession.connect(sshTarget(s), { connectTimeoutMs: 15_000 });
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(2000);
    }
  }
}

/** The switch, reached like a lab VM. */
function switchSpec(): ServerSpec {
  const sw = labVm('switch', LAB);
  return { ...spec('server1'), id: 'lab-switch', management: { ...spec('server1').management, port: sw.port, hostKey: sw.hostKey } };
}

/** /proc/net/bonding/poK: active aggregator, its partner, and each member's aggregator. */
function bondState(text: string): { active: string; partner: string; members: Record<string, string> } {
  const active = /Active Aggregator Info:\n\s*Aggregator ID: (\d+)/.exec(text)?.[1] ?? '';
  const partner = /Active Aggregator Info:[\s\S]*?Partner Mac Address: ([0-9a-f:]+)/.exec(text)?.[1] ?? '';
  const members = Object.fromEntries([...text.matchAll(/Slave Interface: (\S+)[\s\S]*?\nAggregator ID: (\d+)/g)].map((m) => [m[1]!, m[2]!]));
  return { active, partner, members };
}

describe('lab image variants', () => {
  test('each variant boots with its network manager owning eth0..eth2', async () => {
    await Promise.all(
      Object.entries(SERVERS).map(async ([name, image]) => {
        assert.equal(labVm(name, LAB).image, image);
        await onHost(spec(name), async (run) => {
          assert.equal((await run('cat /etc/underlay-image')).trim(), image, `${name}: image`);
          const active = await run('for u in NetworkManager systemd-networkd networking; do echo "$u $(systemctl is-active $u)"; done');
          for (const unit of ['NetworkManager', 'systemd-networkd', 'networking'])
            assert.match(active, new RegExp(`^${unit} ${unit === MANAGER[image] ? 'active' : 'inactive'}$`, 'm'), `${name} (${image}): ${unit}`);
          // The manager's own view: eth0 (static), eth1 and eth2 are its interfaces.
          if (image === 'nm') {
            const dev = await run('nmcli -t -f DEVICE,STATE,CONNECTION device');
            for (const n of ['eth0', 'eth1', 'eth2']) assert.match(dev, new RegExp(`^${n}:connected:${n}$`, 'm'), `${name}: nmcli device`);
            assert.doesNotMatch(await run('nmcli -t -f NAME connection show'), /Wired connection/, `${name}: no-auto-default`);
          } else if (image === 'networkd') {
            const list = await run('networkctl list --no-legend');
            for (const n of ['eth0', 'eth1', 'eth2']) assert.match(list, new RegExp(`\\b${n}\\s+ether\\s+\\S+\\s+configured\\b`), `${name}: networkctl list`);
          } else {
            const state = await run('ifquery --state');
            for (const n of ['eth0', 'eth1', 'eth2']) assert.match(state, new RegExp(`^${n}=${n}$`, 'm'), `${name}: ifquery --state`);
          }
          const v4 = (await run('ip -4 -br addr show')).trim();
          assert.match(v4, /^eth0\s+UP\s+198\.18\.0\.15\/24\s*$/m, `${name}: eth0`);
          if (name === 'server4') assert.match(v4, /^eth1\s+UP\s+198\.18\.10\.24\/24\s*$/m, `${name}: eth1 pre-onboarding address`);
          else assert.doesNotMatch(v4, /^eth1/m, `${name}: eth1 without an address`);
          assert.match(await run('ip -br link show eth2'), /^eth2\s+UP\b/, `${name}: eth2 up`);
          // Hypervisor packages: none on fresh; installed (libvirtd enabled, no autostarting network) elsewhere.
          const pkgs = await run(
            "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' qemu-system-x86 libvirt-daemon-system openvswitch-switch 2>/dev/null || true",
          );
          if (image === 'fresh') assert.doesNotMatch(pkgs, / ii/, `${name}: no hypervisor packages`);
          else {
            assert.equal(pkgs.match(/ ii /g)?.length, 3, `${name}: KVM set + OVS installed: ${pkgs}`);
            assert.equal((await run('systemctl is-enabled libvirtd')).trim(), 'enabled');
            assert.equal((await run('ls /etc/libvirt/qemu/networks/autostart 2>/dev/null | wc -l')).trim(), '0', `${name}: no autostarting libvirt network`);
          }
        });
      }),
    );
  });

  test('LACP negotiates with the switch when eth1+eth2 are bonded by hand', async () => {
    const swMac = (await onHost(switchSpec(), (run) => run('cat /sys/class/net/po1/address'))).trim();
    await onHost(spec('server1'), async (run) => {
      await run(`set -e; ip link add bond0 type bond mode 802.3ad miimon 100 lacp_rate fast xmit_hash_policy layer3+4
for d in eth1 eth2; do ip link set $d down; ip link set $d master bond0; done
ip link set bond0 up; ip link add link bond0 name bond0.100 type vlan id 100
ip addr add 192.0.2.11/24 dev bond0.100; ip link set bond0.100 up`);
      const t0 = Date.now();
      let bond = '';
      for (let i = 0; i < 30; i++) {
        bond = await run('cat /proc/net/bonding/bond0');
        const s = bondState(bond);
        if (s.partner === swMac && s.members.eth1 === s.active && s.members.eth2 === s.active) break;
        await sleep(1000);
      }
      const s = bondState(bond);
      assert.equal(s.partner, swMac, `partner = the switch's po1\n${bond}`);
      assert.deepEqual(s.members, { eth1: s.active, eth2: s.active }, 'both members in the active aggregator');
      figures['LACP negotiated after'] = secs(Date.now() - t0);
      await run('ping -c 2 -W 2 -I bond0.100 192.0.2.1');
      await run('ip link del bond0.100; ip link del bond0; ip link set eth1 up; ip link set eth2 up');
    });
  });

  test('server4 is managed over its data NIC: old path, bond by hand, VLAN 100 path, snapshot restore', async () => {
    const vm = labVm('server4', LAB);
    const dm = vm.dataMgmt;
    assert.ok(dm, 'server4 has the data-NIC management paths');
    assert.deepEqual(
      { port: vm.port, oldPort: dm.oldPort, newPort: dm.newPort, old: dm.oldAddress, new: dm.newAddress },
      { port: BASE + 24, oldPort: BASE + 24, newPort: BASE + 44, old: '198.18.10.24/24', new: '192.0.2.24/24' },
    );
    assert.equal(await banner(BASE + 4), '', 'no SSH forward on its own management NIC');
    const s = spec('server4');
    assert.equal(s.vlans[0]!.address, '192.0.2.24/24', 'the spec puts VLAN 100 on the forwarded address');

    // Old path: the switch DNATs to eth1's address and masquerades (the server sees the switch as client).
    await onHost(s, async (run) => {
      assert.match(await run('echo $SSH_CONNECTION'), /^198\.18\.10\.1 \d+ 198\.18\.10\.24 22$/m);
    });
    assert.equal(await banner(dm.newPort), '', 'nothing on the VLAN 100 path before onboarding');

    let t0 = Date.now();
    await snapshotVm('server4', 'pre-bond');
    figures['savevm (256 MiB guest)'] = secs(Date.now() - t0);

    // Move the management address onto bond0.100 as onboarding will: detached, the session drops with eth1.
    await onHost(s, (run) =>
      run(`touch /root/after-snapshot; systemd-run --quiet --collect --unit=lab-bond sh -c '
sleep 2; nmcli device set eth1 managed no; nmcli device set eth2 managed no; ip addr flush dev eth1
ip link add bond0 type bond mode 802.3ad miimon 100 lacp_rate fast xmit_hash_policy layer3+4
for d in eth1 eth2; do ip link set $d down; ip link set $d master bond0; done
ip link set bond0 up; ip link add link bond0 name bond0.100 type vlan id 100
ip addr add 192.0.2.24/24 dev bond0.100; ip link set bond0.100 up'`),
    );
    t0 = Date.now();
    const fresh = await reach(at(s, dm.newPort), 180_000); // the same pinned host key on the new path
    try {
      figures['VLAN 100 path answers after the bond'] = secs(Date.now() - t0);
      assert.match((await fresh.exec('echo $SSH_CONNECTION')).stdout, /^192\.0\.2\.1 \d+ 192\.0\.2\.24 22$/m);
      assert.match((await fresh.exec('cat /proc/net/bonding/bond0')).stdout, /Number of ports: 2/);
    } finally {
      fresh.close();
    }
    assert.equal(await banner(dm.oldPort), '', 'the old path is gone once its address moved');

    t0 = Date.now();
    await restoreVm('server4', 'pre-bond');
    figures['restore (loadvm + SSH + clock)'] = secs(Date.now() - t0);
    await onHost(s, async (run) => {
      assert.equal((await run('test -e /root/after-snapshot && echo yes || echo no')).trim(), 'no', 'disk state from the snapshot');
      assert.match(await run('ip -4 -br addr show eth1'), /198\.18\.10\.24\/24/);
      assert.equal((await run('ip link show bond0 2>/dev/null | wc -l')).trim(), '0');
      const skew = Math.abs(Number((await run('date +%s')).trim()) - Date.now() / 1000);
      assert.ok(skew < 15, `guest clock set from the host after loadvm (off by ${skew.toFixed(1)} s)`);
    });
    // The switch's po4 lost its partner: its first member (cabled to eth1) is the one that forwards.
    await onHost(switchSpec(), async (run) => {
      let po4 = bondState(await run('cat /proc/net/bonding/po4'));
      for (let i = 0; i < 20 && po4.partner !== '00:00:00:00:00:00'; i++) {
        await sleep(1000);
        po4 = bondState(await run('cat /proc/net/bonding/po4'));
      }
      assert.equal(po4.partner, '00:00:00:00:00:00', 'LACP partner gone');
      assert.equal(po4.members.swp7, po4.active, 'swp7 (server4 eth1) in the active aggregator');
    });
  });
});
