/**
 * The undo of a host whose management moved onto a VLAN of the bond (network.management), in its pure parts:
 *   - the VLAN step's undo converges to a target (keepingManagement) that leaves the management VLAN — its link,
 *     its files, and its line in the bond's networkd drop-in — to the bond step's undo;
 *   - the bond step's undo is the reverse move (reverseMovePlan): one transaction back to the initial path, and a
 *     refusal (LockoutRiskError naming field, host, step, expected and observed) for what it cannot do that way.
 * The rendered files are the production renderers'; the change and rollback scripts are parsed by the real /bin/sh.
 * Per manager (networkd, ifupdown, NetworkManager): the change and the host's rollback of the reverse move.
 * The undo itself runs on the lab (test/lab/mgmt-move.lab.test.ts, the rollback scenario; ifupdown and NetworkManager:
 * test/lab/mgmt-move-managers.lab.test.ts, the last scenario).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { bondStep, reverseMovePlan, type BondState, type BondWant } from '../../src/activities/bond';
import type { StepIo } from '../../src/activities/step';
import { LockoutRiskError } from '../../src/common/errors';
import { restoreScript } from '../../src/drivers/linux/txn';
import { keepingManagement, type VlanState, type VlanWant } from '../../src/activities/vlan';
import { hashOf } from '../../src/drivers/linux/files';
import { sh } from '../../src/drivers/shell';
import { renderVlanFiles, undoVlansScript } from '../../src/drivers/linux/persist';
import { loadSpecFile } from '../../src/spec/load';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpecInput } from '../../src/spec/server';

const DROP_IN = '/etc/systemd/network/10-underlay-bond0.network.d/underlay-vlans.conf';
const BOND_NETWORK = '/etc/systemd/network/10-underlay-bond0.network';
const f = (name: string) => [`/etc/systemd/network/20-underlay-${name}.netdev`, `/etc/systemd/network/20-underlay-${name}.network`];

async function specWith(management: boolean) {
  const base = (await loadSpecFile('examples/kvm-macvtap.yaml')) as unknown as ServerSpecInput;
  return parseServerSpec(
    {
      ...base,
      vlans: [
        { id: 100, parent: 'bond0', address: '198.18.100.17/24', gateway: '198.18.100.1' },
        { id: 200, parent: 'bond0', address: '198.18.1.11/24' },
      ],
      network: { manager: 'networkd', ...(management ? { management: { interface: 'bond0.100' } } : {}) },
    },
    'test spec',
  );
}

async function want(): Promise<VlanWant> {
  const spec = await specWith(true);
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

// ---- the bond step's reverse move -------------------------------------------------------------------------------

const BOND_FILES = ['/etc/systemd/network/10-underlay-bond0.netdev', BOND_NETWORK, '/etc/systemd/network/10-underlay-bond0-ports.network'];
const MOVE_FILES = [...BOND_FILES, ...f('bond0.100'), DROP_IN];

function bondState(moved: boolean, manager: BondState['persisted']['manager'] = 'networkd'): BondState {
  return {
    bond: moved ? { mode: '802.3ad', miimon: 100, lacpRate: 'fast', xmitHashPolicy: 'layer3+4', up: true } : null,
    members: { ens1f0: { master: moved ? 'bond0' : null, up: true }, ens1f1: { master: moved ? 'bond0' : null, up: true } },
    persisted: {
      manager,
      files: Object.fromEntries(MOVE_FILES.map((p, i) => [p, moved ? String(i).repeat(64) : null])),
      foreignDefines: {},
      owners: {},
      why: 'test',
    },
  };
}

const bondIo = async (management = true) => ({ want: bondStep.want(await specWith(management)), host: { label: 'kvm-r12-07' } }) as unknown as StepIo<BondWant>;

test('the reverse move: one bond-undo transaction from the moved path to the initial one, over the bond and management VLAN files', async () => {
  const plan = reverseMovePlan(await bondIo(), bondState(false), bondState(true), 'bond0.100');
  assert.equal(plan.purpose, 'bond-undo');
  assert.deepEqual([plan.from, plan.to], ['moved', 'initial']);
  assert.deepEqual(plan.files, [...MOVE_FILES].sort());
  assert.equal(plan.resumeOnly, undefined);
  // The change removes our files (none existed before), then the VLAN and the bond, and gives the NICs back.
  for (const p of MOVE_FILES) assert.ok(plan.change.text.includes(`rm -f ${p}`), `removes ${p}`);
  assert.match(plan.change.text, /ip link del dev bond0\.100.*ip link del dev bond0;.*networkctl reconfigure ens1f0 ens1f1/s);
  // The host's rollback brings the moved state back through the manager; what it must find then is the moved files.
  assert.match(plan.reactivate.text, /networkctl reload ; networkctl reconfigure ens1f0 ens1f1 ; .*networkctl reconfigure bond0$/);
  assert.deepEqual((plan.pre as { files: unknown }).files, bondState(true).persisted.files);
  // Both scripts parse in the real shell, inside the host-side rollback script too.
  execFileSync('/bin/sh', ['-n', '-c', plan.change.text]);
  execFileSync('/bin/sh', [
    '-n',
    '-c',
    restoreScript({ id: 'bond-undo-0123456789', files: plan.files, reactivate: plan.reactivate, change: plan.change, windowSec: 120 }),
  ]);
  // A retry resumes and never arms (there is nothing to arm with).
  const resume = reverseMovePlan(await bondIo(), bondState(false), bondState(false));
  assert.equal(resume.resumeOnly, true);
  assert.equal(resume.change.text, 'false');
});

test('an undo that would cut the session and cannot be the reverse move is refused, naming field, host, step, expected and observed', async () => {
  const cases: Array<[string, StepIo<BondWant>, BondState, BondState, string, RegExp, string]> = [
    ['no management move in the spec', await bondIo(false), bondState(false), bondState(true), 'bond0.100', /moves no management/, 'bond0.100'],
    ['a session over the bond itself', await bondIo(), bondState(false), bondState(true), 'bond0', /only a session over bond0\.100/, 'bond0'],
    ['a bond before onboarding', await bondIo(), bondState(true), bondState(true), 'bond0.100', /existed before onboarding/, 'a bond in the pre-state'],
  ];
  for (const [name, io, pre, now, mgmt, message, observed] of cases) {
    assert.throws(
      () => reverseMovePlan(io, pre, now, mgmt),
      (err: unknown) => {
        assert.ok(err instanceof LockoutRiskError, name);
        assert.match(err.message, /would cut the management session/, name);
        assert.match(err.message, message, name);
        assert.deepEqual(
          { host: err.context.host, step: err.context.step, field: err.context.field, observed: err.context.observed },
          { host: 'kvm-r12-07', step: 'bond', field: 'network.management', observed },
          name,
        );
        assert.ok(err.context.expected, `${name}: names what was expected`);
        return true;
      },
      name,
    );
  }
});

// ---- per manager: ifupdown and NetworkManager ------------------------------------------------------------------

const IFUPDOWN_FILES = ['/etc/network/interfaces', '/etc/network/interfaces.d/underlay-bond0', '/etc/network/interfaces.d/underlay-vlan-bond0-100'];
const NM = '/etc/NetworkManager/system-connections';
const NM_FILES = [
  `${NM}/underlay-bond0.nmconnection`,
  `${NM}/underlay-bond0-port-ens1f0.nmconnection`,
  `${NM}/underlay-bond0-port-ens1f1.nmconnection`,
  `${NM}/underlay-vlan-bond0.100.nmconnection`,
];

/** A host of `manager` before onboarding (ens1f0 carrying the session on its own configuration) or moved. */
function managerState(manager: 'ifupdown' | 'networkmanager', moved: boolean): BondState {
  const s = bondState(moved, manager);
  const paths = manager === 'ifupdown' ? IFUPDOWN_FILES : NM_FILES;
  // ifupdown: Debian's interfaces file existed before (the bond takes its member stanza over); ours did not.
  s.persisted.files = Object.fromEntries(paths.map((p, i) => [p, moved ? String(i).repeat(64) : p === '/etc/network/interfaces' ? 'f'.repeat(64) : null]));
  s.persisted.owners = moved
    ? { bond0: `${manager}:underlay-bond0`, ens1f0: `${manager}:underlay-bond0-port-ens1f0`, ens1f1: `${manager}:underlay-bond0-port-ens1f1` }
    : manager === 'ifupdown'
      ? { bond0: null, ens1f0: 'ifupdown:up', ens1f1: null }
      : { bond0: null, ens1f0: 'networkmanager:Wired connection 1', ens1f1: 'networkmanager:-' };
  return s;
}

function parses(plan: ReturnType<typeof reverseMovePlan>): void {
  execFileSync('/bin/sh', ['-n', '-c', plan.change.text]);
  execFileSync('/bin/sh', ['-n', '-c', plan.reactivate.text]);
  execFileSync('/bin/sh', [
    '-n',
    '-c',
    restoreScript({ id: 'bond-undo-0123456789', files: plan.files, reactivate: plan.reactivate, change: plan.change, windowSec: 120 }),
  ]);
}

test('ifupdown: the reverse move restores the files, then deletes VLAN and bond, drops their ifstate records and brings back the NIC ifupdown had up; its rollback brings the bond and VLAN up again', async () => {
  const plan = reverseMovePlan(await bondIo(), managerState('ifupdown', false), managerState('ifupdown', true), 'bond0.100');
  assert.equal(plan.purpose, 'bond-undo');
  assert.deepEqual(plan.files, [...IFUPDOWN_FILES].sort());
  const c = plan.change.text;
  // Restored (the interfaces file byte for byte from the backup store), ours removed: before any runtime change.
  assert.match(c, /\/var\/lib\/underlay\/backup\/f{64}/);
  for (const p of IFUPDOWN_FILES.slice(1)) assert.ok(c.includes(`rm -f ${p}`), `removes ${p}`);
  // The runtime part is the forward move's rollback (moveReactivateScript), grouped so it runs only once the files are back.
  const at = c.indexOf('&& { { ! [ -e /sys/class/net/bond0.100 ]');
  assert.ok(at > c.lastIndexOf('rm -f '), `the runtime part after the files: ${c.slice(-400)}`);
  assert.match(
    c.slice(at),
    /ip link del dev bond0\.100.*ip link del dev bond0;.*ifdown --force bond0\.100.*ifdown --force bond0 .*ifdown --force ens1f0 .*ifup ens1f0; }; }$/s,
  );
  assert.doesNotMatch(c, /ifup ens1f1/, 'only the NIC ifupdown had up');
  // Back to moved: the member's own record dropped and its address flushed, then the bond and the VLAN up from their stanzas.
  const r = plan.reactivate.text;
  assert.match(r, /ifdown --force ens1f0 .*ip addr flush dev ens1f0.*ifup bond0; } ; .*ifup bond0\.100; }$/s);
  assert.deepEqual((plan.pre as { files: unknown }).files, managerState('ifupdown', true).persisted.files);
  parses(plan);
});

test("NetworkManager: the reverse move restores the keyfiles, reloads, deletes VLAN and bond and re-activates the NIC's own profile; its rollback reloads and brings the ports and the VLAN up", async () => {
  const plan = reverseMovePlan(await bondIo(), managerState('networkmanager', false), managerState('networkmanager', true), 'bond0.100');
  assert.deepEqual(plan.files, [...NM_FILES].sort());
  const c = plan.change.text;
  for (const p of NM_FILES) assert.ok(c.includes(`rm -f '${p}'`) || c.includes(`rm -f ${p}`), `removes ${p}`);
  assert.match(
    c,
    /&& \{ nmcli connection reload ; .*ip link del dev bond0\.100.*ip link del dev bond0; } ; nmcli --wait 30 connection up 'Wired connection 1'; }$/s,
  );
  assert.doesNotMatch(c, /connection up -/, 'a NIC with no profile of its own is not activated');
  const r = plan.reactivate.text;
  assert.match(
    r,
    /^nmcli connection reload && nmcli --wait 30 connection up underlay-bond0-port-ens1f0 && nmcli --wait 30 connection up underlay-bond0-port-ens1f1 ; nmcli --wait 30 connection up underlay-vlan-bond0\.100$/,
  );
  parses(plan);
});

test('the VLAN undo never takes the management VLAN down through ifupdown or NetworkManager (the bond undo moves it back)', () => {
  const cfgs = [
    { name: 'bond0.100', parent: 'bond0', id: 100, address: '198.18.100.17/24' },
    { name: 'bond0.200', parent: 'bond0', id: 200, address: '198.18.1.11/24' },
  ];
  const restore = sh`rm -f /etc/network/interfaces.d/underlay-vlan-bond0-200`;
  for (const m of ['ifupdown', 'networkmanager'] as const) {
    const kept = undoVlansScript(m, cfgs, restore, ['bond0.200'], 'bond0.100').text;
    assert.doesNotMatch(kept, /(ifdown|connection down) (underlay-vlan-)?bond0\.100/, m);
    assert.match(kept, /(ifdown|connection down) (underlay-vlan-)?bond0\.200/, m);
    assert.match(
      undoVlansScript(m, cfgs, restore, ['bond0.200']).text,
      /(ifdown|connection down) (underlay-vlan-)?bond0\.100/,
      `${m}: without keep, all go down`,
    );
    execFileSync('/bin/sh', ['-n', '-c', kept]);
  }
});
