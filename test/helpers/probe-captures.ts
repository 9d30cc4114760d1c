/**
 * Outputs captured on the lab's server1 (test/fixtures/linux, CAPTURED.md), assembled section by section into
 * what the health probe script prints there, and that server's spec: bond0 over eth1+eth2 to leaf-01, VLAN 100
 * and 200, netdevsim PF eth3 with 4 VFs. This machine's kernel has no bonding, 8021q or netdevsim.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpec } from '../../src/spec/server';

export const fx = (name: string) => readFileSync(join(__dirname, '../fixtures/linux', name), 'utf8');

/** The lab's server1 as onboarded: bond0 over eth1+eth2 to leaf-01, VLAN 100 and 200, netdevsim PF eth3 with 4 VFs. */
export const labSpec: ServerSpec = parseServerSpec({
  id: 'server1',
  site: 'lab',
  rack: 'r01',
  management: { address: '127.0.0.1', hostKey: 'SHA256:R4iZu63XzWCEoDDkDbdqbJhFYZC4Gg2wlyEV4xTQYoQ', credentials: { agent: true } },
  nics: [
    { name: 'eth1', speedMbps: 10000, lldp: { switch: 'leaf-01', port: 'swp1' } },
    { name: 'eth2', speedMbps: 10000, lldp: { switch: 'leaf-01', port: 'swp2' } },
    { name: 'eth3', cabled: false },
  ],
  bond: { members: ['eth1', 'eth2'] },
  vlans: [
    { id: 100, parent: 'bond0', address: '192.0.2.10/24', gateway: '192.0.2.1' },
    { id: 200, parent: 'bond0', gateway: '192.0.2.99' },
  ],
  sriov: { pf: 'eth3', numVfs: 4 },
  hypervisor: { kind: 'kvm' },
});

/** A probe output assembled from captured outputs, section by section, in the order probeScript prints them. */
export function capturedOutput(bonding: string, lldp = fx('lldpctl-json0.neighbours-bonded.json')): string {
  const nics = fx('nic-sysfs-table.fresh.tsv')
    .split('\n')
    .filter((l) => /^eth[123]\t/.test(l))
    .join('\n');
  return [
    '@@ time 1764500000',
    '@@ links',
    fx('ip-j-d-link-show.bond-up.json'),
    '@@ bonding bond0',
    bonding,
    '@@ nics',
    nics,
    '@@ stats',
    'eth1\trx_errors\t0\neth1\trx_crc_errors\t3\neth2\trx_errors\t7\neth2\ttx_dropped\t1',
    '@@ lldp',
    lldp,
    '@@ sriov eth3',
    fx('sriov-numvfs.4vfs.txt'),
    '@@ ping bond0.100 192.0.2.1',
    fx('ping-bond0.100-192.0.2.1.ok.txt'),
    '@@ exit 0',
    '@@ ping bond0.200 192.0.2.99',
    fx('ping-bond0.100-192.0.2.99.fail.txt'),
    '@@ exit 1',
  ].join('\n');
}
