/**
 * The commit-confirmed management move (issue 12) through the two other network managers: server1 runs ifupdown
 * (image `fresh`), server2 NetworkManager (image `nm`); each is reached at first only through eth1 (198.18.10.2K,
 * the switch forwards 127.0.0.1:BASE+2K), and the bond takes eth1 while the management address moves onto bond0.100
 * (192.0.2.2K, forwarded at 127.0.0.1:BASE+4K). One lab boot; the two servers run side by side (their wall time is
 * one server's), and on each the host's state flows through three scenarios:
 *
 *   1. a wrong VLAN tag for the new path: the host becomes unreachable, rolls itself back inside the window (files
 *      back, then the manager's own reactivation: src/drivers/linux/persist moveReactivateScript), the step fails
 *      naming the window and the rollback, and the old path answers with the pre-state — links, IPv4 addresses, the
 *      manager's files byte for byte, and the manager's own view (ifupdown's ifstate, NetworkManager's active
 *      profiles);
 *   2. from that pre-state, cable and bond with `network.management`: the move confirmed over bond0.100 in one
 *      attempt, the old path silent, nothing of the transaction left; then the VLAN step over the new path;
 *   3. the undo of that host, in-process through the compensation's activity (undoStep, as the rollbackServer
 *      workflow runs it; the workflow itself is the networkd file's proof) given the steps' pre-states: the VLAN
 *      undo removes VLAN 200 and leaves bond0.100 to the bond undo, which moves management back as one
 *      commit-confirmed `bond-undo` transaction (src/drivers/linux/persist moveBackScript): the old path answers with
 *      the pre-state of scenario 1 (the same comparison), the new path is silent, the journal shows that transaction
 *      confirmed and nothing else, nothing of it left.
 *
 * The boot guard and persistence across a reboot are the networkd file's proof (test/lab/mgmt-move.lab.test.ts);
 * the guard is the same unit here (ordered before networking.service and NetworkManager.service), not rebooted.
 * Its own lab (dir .lab-move-mgr, ports 29200+). UNDERLAY_MOVE_LAB_REUSE=1 runs it against an already booted lab
 * (UNDERLAY_LAB_DIR / _PORT_BASE), for development: the hosts must be at their pre-onboarding state.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bondStep } from '../../src/activities/bond';
import { cableStep } from '../../src/activities/cable';
import { vlanStep } from '../../src/activities/vlan';
import type { ServerSpec } from '../../src/spec/server';
import { applicationFailureOf } from '../helpers/failures';
import { freshLab, labVm, onHost, stopLab } from '../helpers/lab';
import { journal, MANAGER_FILES, moveInputOf, netState, newPath, oldPath, runOn, secs, specOf, sshBanner, undoOn } from '../helpers/mgmt-move';

const root = resolve(__dirname, '../..');
// Read by lab/up.sh and lab/down.sh (through freshLab/stopLab) at call time.
process.env.UNDERLAY_LAB_DIR ??= resolve(root, '.lab-move-mgr');
process.env.UNDERLAY_LAB_PORT_BASE ??= '29200';
process.env.UNDERLAY_LAB_SERVERS = '2';
const LAB: string = process.env.UNDERLAY_LAB_DIR;
const REUSE = process.env.UNDERLAY_MOVE_LAB_REUSE === '1';

interface Server {
  name: 'server1' | 'server2';
  manager: 'ifupdown' | 'networkmanager';
  files: string;
  /** The manager's own view of what it has up (a rollback must leave it as before). */
  managerState: string;
}
const SERVERS: Server[] = [
  { name: 'server1', manager: 'ifupdown', files: MANAGER_FILES.ifupdown, managerState: 'ifquery --state | sort' },
  {
    name: 'server2',
    manager: 'networkmanager',
    files: MANAGER_FILES.nm,
    managerState: 'nmcli -t -f NAME,DEVICE,TYPE connection show --active | grep -v "^lo:" | sort',
  },
];

const figures: Record<string, string> = {};
/** What the move scenario hands the undo scenario: the pre-onboarding state and the pre-states its steps observed. */
const handed: Partial<Record<Server['name'], { pre: Record<string, string>; bondPre: unknown; vlanPre: unknown }>> = {};
let started = 0;

async function preState(s: Server, spec: ServerSpec): Promise<Record<string, string>> {
  const net = await netState(spec, s.files);
  const manager = await onHost(spec, (run) => run(s.managerState));
  return { ...net, manager: manager.trim() };
}

/** Nothing left armed: no timer, no boot guard, no transaction directory (the journal stays). */
async function leftovers(spec: ServerSpec): Promise<string> {
  const text = await onHost(spec, (run) =>
    run(
      `systemctl list-units --all --no-legend 'underlay-txn-*' | grep -v 'inactive\\|dead' || true; ls /etc/systemd/system | grep underlay-txn || true; ls /var/lib/underlay/txn`,
    ),
  );
  return text.trim();
}

before(() => {
  started = Date.now();
  if (!REUSE) freshLab(2, { images: ['fresh', 'nm'], dataMgmt: [1, 2] });
  else process.env.UNDERLAY_CREDENTIALS_DIR = LAB;
  figures['lab boot'] = secs(Date.now() - started);
});

after(() => {
  if (!REUSE) stopLab();
  figures['whole file (boot included)'] = secs(Date.now() - started);
  console.log(
    `figures:\n${Object.entries(figures)
      .map(([k, v]) => `  ${k}: ${v}`)
      .join('\n')}`,
  );
});

describe('commit-confirmed management move on ifupdown and NetworkManager lab hosts managed over their data NIC', { concurrency: 2 }, () => {
  for (const s of SERVERS) {
    test(`${s.manager} (${s.name}): a wrong VLAN tag rolled back by the host to its pre-state, then the move confirmed over bond0.100`, async () => {
      const k = Number(s.name.slice('server'.length));
      const label = `${s.manager}`;
      const dm = labVm(s.name, LAB).dataMgmt!;

      // 1. Wrong tag (101: the switch does not trunk it). The spec's shortest window: the rollback waits all of it out.
      const wrong = moveInputOf(LAB, s.name, { tag: 101, windowSec: 30 });
      const wrongSpec = specOf(wrong);
      const pre = await preState(s, oldPath(wrongSpec));
      assert.equal(pre.session, `198.18.10.${20 + k}`, 'managed over eth1 before');
      assert.equal(await sshBanner(dm.oldPort), true, 'the banner check sees the old path answer');
      const t0 = Date.now();
      const failure = await applicationFailureOf(runOn('bond', bondStep, wrong, `${label} bond`), 'the move not to be confirmed');
      figures[`${s.manager}: wrong tag, arm → step failed after the self-rollback`] = secs(Date.now() - t0);
      assert.equal(failure.type, 'ManagementMoveError', failure.message);
      assert.equal(failure.nonRetryable, true);
      assert.match(failure.message, /management onto bond0\.101 .* was not confirmed within its 30 s window/);
      assert.match(failure.message, /rolled itself back \(transaction bond-[0-9a-f]+\) and answers on the old path 127\.0\.0\.1:\d+ with its pre-state/);
      assert.equal(await sshBanner(dm.newPort), false, 'nothing answers on the new path');
      assert.deepEqual(await preState(s, oldPath(wrongSpec)), pre, `links, addresses, ${s.manager} files, its own state and the session as before`);
      const id = /transaction (bond-[0-9a-f]+)/.exec(failure.message)![1]!;
      const events = (await journal(oldPath(wrongSpec))).filter((l) => l.includes(id)).map((l) => l.split(' ').slice(2).join(' '));
      assert.equal(events.filter((e) => e === 'change-start').length, 1, `applied once: ${events.join(', ')}`);
      assert.equal(events.at(-1), 'rolled-back timer', `rolled back by the timer: ${events.join(', ')}`);
      assert.equal(await leftovers(oldPath(wrongSpec)), 'journal', 'no timer, no boot guard, the transaction removed once its rollback was verified');

      // 2. From that pre-state: the move onto bond0.100, confirmed over the new path in one attempt.
      const good = moveInputOf(LAB, s.name, { windowSec: 150 });
      const spec = specOf(good);
      const t1 = Date.now();
      await runOn('cable', cableStep, good, `${label} cable`);
      const bond = await runOn('bond', bondStep, good, `${label} bond`);
      figures[`${s.manager}: the move, cable + bond step (arm → confirm)`] = secs(Date.now() - t1);
      assert.equal(bond.changed, true);
      assert.equal(bond.attempt, 1);
      assert.match(
        bond.note ?? '',
        /management onto bond0\.100 .*: commit-confirmed \(window 150 s, confirmed \d+ s after arming, transaction bond-[0-9a-f]+\)/,
      );
      const moved = await netState(newPath(spec), s.files);
      assert.equal(moved.session, `192.0.2.${20 + k}`, 'managed over bond0.100');
      assert.match(moved.links, /^bond0\.100@bond0 UP/m);
      assert.match(moved.files, /underlay-vlan-bond0[.-]100/, `the management VLAN persisted through ${s.manager}`);
      assert.equal(await sshBanner(dm.newPort), true, 'the banner check sees the new path answer');
      assert.equal(await sshBanner(dm.oldPort), false, 'the old path is gone');
      assert.equal(await leftovers(newPath(spec)), 'journal', 'confirmed: the timer, the boot guard and the transaction are gone');
      // The onboarding goes on over the new path: the VLAN step adds VLAN 200 next to the management VLAN without
      // taking bond0.100 down (ifupdown / NetworkManager bring up only what they lack).
      const t2 = Date.now();
      const vlan = await runOn('vlan', vlanStep, good, `${label} vlan`);
      figures[`${s.manager}: the VLAN step over the new path`] = secs(Date.now() - t2);
      assert.equal(vlan.changed, true, 'VLAN 200 added');
      const withVlans = await netState(newPath(spec), s.files);
      assert.equal(withVlans.session, `192.0.2.${20 + k}`, 'still managed over bond0.100');
      assert.match(withVlans.links, /^bond0\.200@bond0 UP/m);
      handed[s.name] = { pre, bondPre: bond.pre, vlanPre: vlan.pre };
    });
  }
});

describe(
  'the reverse move on those hosts: the undo of the VLAN and bond steps brings the pre-onboarding state back on the old path',
  { concurrency: 2 },
  () => {
    for (const s of SERVERS) {
      test(`${s.manager} (${s.name}): the VLAN undo leaves bond0.100 to the bond undo, which moves management back as one confirmed bond-undo transaction`, async () => {
        const h = handed[s.name];
        assert.ok(h, 'the move scenario left a moved, onboarded host and the pre-states of its steps');
        const label = `${s.manager}`;
        const dm = labVm(s.name, LAB).dataMgmt!;
        const good = moveInputOf(LAB, s.name, { windowSec: 150 });
        const spec = specOf(good);
        const earlier = (await journal(newPath(spec))).length;
        // The compensations in reverse order, in-process through the activity the rollback workflow runs (undoStep).
        const t0 = Date.now();
        const vlan = await undoOn('vlan', vlanStep, good, h.vlanPre, `${label} vlan undo`);
        // In the usual order (the move made bond0.100 before the VLAN step ran) leaving it is the VLAN step's pre-state.
        assert.equal(vlan.note, undefined, "restored to the VLAN step's pre-state");
        const vlanUndone = await netState(newPath(spec), s.files);
        assert.equal(vlanUndone.session, `192.0.2.${20 + Number(s.name.slice('server'.length))}`, 'still managed over bond0.100');
        assert.doesNotMatch(vlanUndone.links, /^bond0\.200/m, 'VLAN 200 removed');
        const bond = await undoOn('bond', bondStep, good, h.bondPre, `${label} bond undo`);
        figures[`${s.manager}: undo, VLAN + bond step (reverse move armed → confirmed)`] = secs(Date.now() - t0);
        assert.ok(bond.changes.length > 0, 'the bond undo changed the host');
        assert.equal(bond.note, undefined, 'nothing left different from the pre-state');
        // The pre-onboarding state on the old path: links, addresses, the manager's files byte for byte, its own view.
        assert.deepEqual(await preState(s, oldPath(spec)), h.pre, `links, addresses, ${s.manager} files, its own state and the session as before onboarding`);
        assert.equal(await sshBanner(dm.newPort), false, 'nothing answers on the new path');
        const lines = (await journal(oldPath(spec))).slice(earlier);
        const ids = [...new Set(lines.map((l) => l.split(' ')[1]!))];
        assert.equal(ids.length, 1, `one transaction: ${lines.join(', ')}`);
        assert.match(ids[0]!, /^bond-undo-[0-9a-f]+$/);
        // The change's exit and the confirm may be journalled in either order (the change is detached).
        assert.deepEqual(
          lines.map((l) => l.split(' ').slice(2).join(' ')).sort(),
          ['change-exit 0', 'change-start', 'confirmed'],
          `one change, confirmed: ${lines.join(', ')}`,
        );
        assert.equal(await leftovers(oldPath(spec)), 'journal', 'no timer, no boot guard, no transaction directory');
      });
    }
  },
);
