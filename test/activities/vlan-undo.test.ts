/**
 * The VLAN step's undo on a host whose management moved onto a VLAN of the bond (network.management): what it
 * converges to (keepingManagement) leaves the management VLAN — its link, its files, and its line in the bond's
 * networkd drop-in — to the bond step's undo, the reverse move under a dead-man. Pure: the rendered files are the
 * production renderers'. The undo itself runs on the lab (test/lab/mgmt-move.lab.test.ts, the rollback scenario).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keepingManagement, type VlanState, type VlanWant } from '../../src/activities/vlan';
import { hashOf } from '../../src/drivers/linux/files';
import { renderVlanFiles } from '../../src/drivers/linux/persist';
import { loadSpecFile } from '../../src/spec/load';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpecInput } from '../../src/spec/server';

const DROP_IN = '/etc/systemd/network/10-underlay-bond0.network.d/underlay-vlans.conf';
const BOND_NETWORK = '/etc/systemd/network/10-underlay-bond0.network';
const f = (name: string) => [`/etc/systemd/network/20-underlay-${name}.netdev`, `/etc/systemd/network/20-underlay-${name}.network`];

async function want(): Promise<VlanWant> {
  const base = (await loadSpecFile('examples/kvm-macvtap.yaml')) as unknown as ServerSpecInput;
  const spec = parseServerSpec(
    {
      ...base,
      vlans: [
        { id: 100, parent: 'bond0', address: '198.18.100.17/24', gateway: '198.18.100.1' },
        { id: 200, parent: 'bond0', address: '198.18.1.11/24' },
      ],
      network: { manager: 'networkd', management: { interface: 'bond0.100' } },
    },
    'test spec',
  );
  return { vlans: spec.vlans, serverId: spec.id, spec };
}

const link = (id: number, address: string) => ({ parent: 'bond0', id, up: true, addresses: [address] });
const dropInHash = async (w: VlanWant, ids: number[]) =>
  hashOf(
    renderVlanFiles(
      'networkd',
      w.vlans.filter((v) => ids.includes(v.id)).map((v) => ({ name: `bond0.${v.id}`, parent: 'bond0', id: v.id, address: v.address! })),
      w.serverId,
      {
        bond0: BOND_NETWORK,
      },
    ).find((x) => x.path === DROP_IN)!,
  );

function state(w: VlanWant, vlans: VlanState['vlans'], files: Record<string, string | null>): VlanState {
  return { vlans, persisted: { manager: 'networkd', files, parentFiles: { bond0: BOND_NETWORK }, why: 'test' } };
}

test('the usual order (the move made the management VLAN before the VLAN step): the target is the pre-state, nothing written', async () => {
  const w = await want();
  const pre = state(
    w,
    { 'bond0.100': link(100, '198.18.100.17/24'), 'bond0.200': null },
    {
      [f('bond0.100')[0]!]: 'a'.repeat(64),
      [f('bond0.100')[1]!]: 'b'.repeat(64),
      [f('bond0.200')[0]!]: null,
      [f('bond0.200')[1]!]: null,
      [DROP_IN]: await dropInHash(w, [100]),
    },
  );
  const now = state(
    w,
    { ...pre.vlans, 'bond0.200': link(200, '198.18.1.11/24') },
    {
      ...pre.persisted.files,
      [f('bond0.200')[0]!]: 'c'.repeat(64),
      [f('bond0.200')[1]!]: 'd'.repeat(64),
      [DROP_IN]: await dropInHash(w, [100, 200]),
    },
  );
  const { target, write } = keepingManagement({ want: w }, 'bond0.100', pre, now);
  assert.deepEqual(target, pre);
  assert.deepEqual(write, []);
});

test('a management VLAN the pre-state lacks: kept as it is now (link and files), the drop-in rewritten to list it alone', async () => {
  const w = await want();
  const pre = state(
    w,
    { 'bond0.100': null, 'bond0.200': null },
    {
      [f('bond0.100')[0]!]: null,
      [f('bond0.100')[1]!]: null,
      [f('bond0.200')[0]!]: null,
      [f('bond0.200')[1]!]: null,
      [DROP_IN]: null,
    },
  );
  const now = state(
    w,
    { 'bond0.100': link(100, '198.18.100.17/24'), 'bond0.200': link(200, '198.18.1.11/24') },
    {
      [f('bond0.100')[0]!]: 'a'.repeat(64),
      [f('bond0.100')[1]!]: 'b'.repeat(64),
      [f('bond0.200')[0]!]: 'c'.repeat(64),
      [f('bond0.200')[1]!]: 'd'.repeat(64),
      [DROP_IN]: await dropInHash(w, [100, 200]),
    },
  );
  const { target, write } = keepingManagement({ want: w }, 'bond0.100', pre, now);
  assert.deepEqual(target.vlans, { 'bond0.100': now.vlans['bond0.100'], 'bond0.200': null });
  const only100 = await dropInHash(w, [100]);
  assert.deepEqual(target.persisted.files, {
    [f('bond0.100')[0]!]: 'a'.repeat(64),
    [f('bond0.100')[1]!]: 'b'.repeat(64),
    [f('bond0.200')[0]!]: null,
    [f('bond0.200')[1]!]: null,
    [DROP_IN]: only100,
  });
  assert.deepEqual(
    write.map((x) => x.path),
    [DROP_IN],
  );
  assert.match(write[0]!.content!, /^VLAN=bond0\.100$/m);
  assert.doesNotMatch(write[0]!.content!, /bond0\.200/);
});
