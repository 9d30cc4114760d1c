/** Parsers on outputs captured from real Debian 12 hosts in the lab (test/fixtures/linux/CAPTURED.md says how). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UnexpectedOutputError } from '../../../src/common/errors';
import { LACP_IN_SERVICE, NO_PARTNER_MAC, parseIpLink } from '../../../src/drivers/linux/parse/ip-link';
import { parseIpAddr } from '../../../src/drivers/linux/parse/ip-addr';
import { describeNeighbour, neighbourMatches, parseLldpJson0 } from '../../../src/drivers/linux/parse/lldp';
import { osFamily, parseChurnedMembers, parseInstalledPackages, parseNicSysfs, parseOsRelease, parseVirshNetInfo } from '../../../src/drivers/linux/parse/text';
import { parsePfState } from '../../../src/drivers/linux/sriov';

const fixture = (name: string) => readFileSync(join(__dirname, '../../fixtures/linux', name), 'utf8');

describe('ip -j -d link show', () => {
  test('fresh host: NICs, permanent MACs, no bond', () => {
    const links = new Map(parseIpLink(fixture('ip-j-d-link-show.fresh.json')).map((l) => [l.name, l]));
    assert.ok(links.has('eth1') && links.has('eth2'));
    assert.equal(links.get('eth1')!.up, true);
    assert.equal(links.get('eth1')!.master, undefined);
    assert.equal(links.has('bond0'), false);
  });

  test('bond negotiated: 802.3ad params, aggregator, partner MAC, members in service', () => {
    const links = new Map(parseIpLink(fixture('ip-j-d-link-show.bond-up.json')).map((l) => [l.name, l]));
    const bond = links.get('bond0')!;
    assert.equal(bond.kind, 'bond');
    assert.deepEqual(
      { mode: bond.bond!.mode, miimon: bond.bond!.miimon, rate: bond.bond!.lacpRate, hash: bond.bond!.xmitHashPolicy },
      { mode: '802.3ad', miimon: 100, rate: 'fast', hash: 'layer3+4' },
    );
    assert.equal(bond.bond!.adInfo!.numPorts, 2);
    assert.notEqual(bond.bond!.adInfo!.partnerMac, NO_PARTNER_MAC);
    for (const m of ['eth1', 'eth2']) {
      const l = links.get(m)!;
      assert.equal(l.master, 'bond0');
      assert.equal(l.bondMember!.aggregatorId, bond.bond!.adInfo!.aggregator);
      assert.equal(l.bondMember!.actorPortState! & LACP_IN_SERVICE, LACP_IN_SERVICE);
      assert.equal(l.bondMember!.partnerPortState! & LACP_IN_SERVICE, LACP_IN_SERVICE);
      assert.match(l.permMac!, /^52:54:00:00:01:0[12]$/, 'permanent MAC, not the bond MAC');
    }
    const vlan = links.get('bond0.100')!;
    assert.deepEqual({ kind: vlan.kind, id: vlan.vlan!.id, parent: vlan.parent }, { kind: 'vlan', id: 100, parent: 'bond0' });
  });

  test('bond still negotiating / partner gone: not in service', () => {
    for (const f of ['ip-j-d-link-show.bond-negotiating.json', 'ip-j-d-link-show.partner-down.json']) {
      const links = new Map(parseIpLink(fixture(f)).map((l) => [l.name, l]));
      const bond = links.get('bond0')!.bond!;
      const members = ['eth1', 'eth2'].map((m) => links.get(m)!.bondMember!);
      const allInService =
        bond.adInfo!.partnerMac !== NO_PARTNER_MAC &&
        members.every(
          (s) =>
            s.aggregatorId === bond.adInfo!.aggregator &&
            (s.actorPortState! & LACP_IN_SERVICE) === LACP_IN_SERVICE &&
            (s.partnerPortState! & LACP_IN_SERVICE) === LACP_IN_SERVICE,
        );
      assert.equal(allInService, false, f);
    }
  });

  test('netdevsim PF lists its VFs', () => {
    assert.equal(parseIpLink(fixture('ip-j-d-link-show-dev-netdevsim-pf.4vfs.json'))[0]!.vfCount, 4);
    assert.equal(parseIpLink(fixture('ip-j-d-link-show-dev-netdevsim-pf.0vfs.json'))[0]!.vfCount, 0);
    assert.equal(parseIpLink(fixture('ip-j-d-link-show-dev-eth1.fresh.json'))[0]!.vfCount, undefined, 'no SR-IOV');
  });

  test('garbage is a typed error', () => {
    assert.throws(() => parseIpLink('Device "bond0" does not exist.'), UnexpectedOutputError);
    assert.throws(() => parseIpLink('[{"ifname": 3}]'), UnexpectedOutputError);
  });
});

test('ip -j addr show: global addresses only', () => {
  const fresh = parseIpAddr(fixture('ip-j-addr-show.fresh.json'));
  assert.deepEqual(fresh.get('lo'), [], 'host-scope 127.0.0.1 is not global');
  const up = parseIpAddr(fixture('ip-j-addr-show.bond-up.json'));
  assert.ok(up.get('bond0.100')!.includes('192.0.2.10/24'));
});

describe('lldpctl -f json0', () => {
  test('neighbours on eth1 and eth2 match the expected switch ports', () => {
    const n = new Map(parseLldpJson0(fixture('lldpctl-json0.neighbours-eth1-eth2.json')).map((x) => [x.interface, x]));
    assert.equal(describeNeighbour(n.get('eth1')), 'leaf-01/swp1');
    assert.equal(describeNeighbour(n.get('eth2')), 'leaf-01/swp2');
    assert.ok(neighbourMatches(n.get('eth1')!, { switch: 'leaf-01', port: 'swp1' }));
    assert.ok(!neighbourMatches(n.get('eth1')!, { switch: 'leaf-01', port: 'swp2' }), 'swapped cable is detected');
    assert.ok(neighbourMatches(n.get('eth1')!, { switch: 'LEAF-01.dc1.example.net', port: 'swp1' }), 'domain and case are ignored');
  });
  test('bonded members still hear their neighbours', () => {
    const n = parseLldpJson0(fixture('lldpctl-json0.neighbours-bonded.json'));
    assert.deepEqual(n.map((x) => x.interface).sort(), ['eth1', 'eth2']);
  });
  test('no neighbours', () => {
    assert.deepEqual(parseLldpJson0(fixture('lldpctl-json0.no-neighbours.json')), []);
  });
  test('garbage is a typed error', () => {
    assert.throws(() => parseLldpJson0('lldpctl: unable to connect'), UnexpectedOutputError);
  });
});

test('sysfs NIC table: carrier, speed, unreadable values of admin-down links', () => {
  const t = new Map(parseNicSysfs(fixture('nic-sysfs-table.fresh.tsv')).map((n) => [n.name, n]));
  assert.deepEqual({ c: t.get('eth1')!.carrier, s: t.get('eth1')!.speedMbps }, { c: true, s: 10000 });
  assert.equal(t.get('eth0')!.speedMbps, null, 'speed -1 is unknown');
  assert.deepEqual({ c: t.get('eth3')!.carrier, s: t.get('eth3')!.speedMbps }, { c: null, s: null });
  assert.throws(() => parseNicSysfs('eth0 1 1000'), UnexpectedOutputError);
});

test('dpkg-query listing and os-release', () => {
  const pkgs = parseInstalledPackages(fixture('dpkg-query-status.tsv'));
  assert.ok(pkgs.includes('openssh-server') && pkgs.includes('lldpd'));
  assert.deepEqual(parseInstalledPackages('libvirt0\trc \nvim\tii \nfoo:amd64\thi \n'), ['foo', 'vim']);
  const rel = parseOsRelease(fixture('os-release.txt'));
  assert.equal(rel.VERSION_ID, '12');
  assert.equal(osFamily(rel), 'debian');
  assert.equal(osFamily({ ID: 'rocky', ID_LIKE: 'rhel centos fedora' }), 'rhel');
  assert.equal(osFamily({ ID: 'alpine' }), undefined);
});

test('SR-IOV state listing, netdevsim (no totalvfs, no virtfn links) and PCI forms', () => {
  assert.deepEqual(parsePfState('capable\t1\ntotal\t-\nnum\t4\n'), { capable: true, totalVfs: null, numVfs: 4, vfs: [] });
  assert.deepEqual(parsePfState('capable\t0\n').capable, false);
  const pci = parsePfState('capable\t1\ntotal\t64\nnum\t2\nvf\t0000:3b:02.1\tvfio-pci\tvfio-pci\nvf\t0000:3b:02.0\tiavf\t(null)\n');
  assert.deepEqual(pci.vfs, [
    { bdf: '0000:3b:02.0', driver: 'iavf', override: '' },
    { bdf: '0000:3b:02.1', driver: 'vfio-pci', override: 'vfio-pci' },
  ]);
  assert.throws(() => parsePfState('capable\t1\nnum\tfour\n'), UnexpectedOutputError);
  assert.throws(() => parsePfState('something else'), UnexpectedOutputError);
});

test('virsh net-info', () => {
  const text = 'Name:           underlay-macvtap\nUUID:           6f1c\nActive:         yes\nPersistent:     yes\nAutostart:      no\nBridge:         \n';
  assert.deepEqual(parseVirshNetInfo(text), { active: true, autostart: false, persistent: true });
  assert.throws(() => parseVirshNetInfo('error: failed to get network'), UnexpectedOutputError);
});

test('/proc/net/bonding churn: "monitoring" is healthy, "churned" is not', () => {
  assert.deepEqual(parseChurnedMembers(fixture('proc-net-bonding-bond0.lacp-up.txt')), []);
  assert.deepEqual(parseChurnedMembers(fixture('proc-net-bonding-bond0.negotiating.txt')), []);
  const churned = parseChurnedMembers(fixture('proc-net-bonding-bond0.partner-down-churned.txt'));
  assert.ok(churned.includes('eth1 partner churned') && churned.includes('eth2 partner churned'), churned.join(', '));
});
