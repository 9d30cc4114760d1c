/**
 * The host side of commit-confirmed changes (src/drivers/linux/txn.ts): ids are refused before they reach a path or
 * a unit name, every script parses on a real /bin/sh, and restore.sh's file restore and its decision against the
 * confirm run on a real /bin/sh in a scratch directory (`boot` mode: no systemctl, no network commands).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sh } from '../../../src/drivers/shell';
import { moveReactivateScript, moveUpScript, type MoveActivation } from '../../../src/drivers/linux/persist';
import type { NetManager } from '../../../src/drivers/linux/netmgr';
import {
  abandonScript,
  armScript,
  changeScript,
  cleanupScript,
  confirmScript,
  parseTxnStatus,
  restoreScript,
  statusScript,
  TXN_ROOT,
  txnDir,
  type TxnPlan,
} from '../../../src/drivers/linux/txn';

const scratch = mkdtempSync(join(tmpdir(), 'underlay-txn-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const plan = (files: string[], id = 'bond-0a1b2c3d4e'): TxnPlan => ({
  id,
  files,
  reactivate: sh`networkctl reload; networkctl reconfigure ${['eth1', 'eth2']}`,
  change: sh`networkctl reload && networkctl reconfigure ${['eth1', 'eth2']}`,
  windowSec: 90,
});

/** The script with the transaction root moved into the scratch directory (the paths are the only difference). */
const local = (text: string) => text.split(TXN_ROOT).join(join(scratch, 'txn'));

describe('commit-confirmed transactions: host scripts', () => {
  test('a transaction id is refused unless it is a plain name (it becomes a path and a unit name)', () => {
    assert.equal(txnDir('bond-0a1b2c3d4e'), `${TXN_ROOT}/bond-0a1b2c3d4e`);
    for (const bad of ['../etc', 'bond;reboot', 'Bond-1', 'b', 'bond 1', 'bond-1/..', `a${'x'.repeat(70)}`]) {
      assert.throws(() => txnDir(bad), /not a transaction id/, bad);
      assert.throws(() => confirmScript(bad), /not a transaction id/, bad);
    }
  });

  test('the window is bounded before anything is armed', () => {
    assert.throws(() => armScript({ ...plan(['/etc/x']), windowSec: 5 }), /window out of range/);
    assert.throws(() => armScript({ ...plan(['/etc/x']), windowSec: 7200 }), /window out of range/);
  });

  test('every script parses on a real /bin/sh, file names with spaces and quotes included', () => {
    const p = plan(['/etc/systemd/network/10-underlay-bond0.netdev', "/etc/odd name's.network"]);
    for (const [name, text] of [
      ['arm', armScript(p).text],
      ['restore.sh', restoreScript(p)],
      ['change.sh', changeScript(p)],
      ['confirm', confirmScript(p.id).text],
      ['status', statusScript(p.id).text],
      ['cleanup', cleanupScript(p.id).text],
    ] as const) {
      const r = spawnSync('/bin/sh', ['-n', '-c', text], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    }
    // The arm names the timer with the window and starts the change detached, after the files are saved.
    const arm = armScript(p).text;
    assert.match(arm, /systemd-run --quiet --collect --unit=underlay-txn-bond-0a1b2c3d4e-rollback --on-active=90s /);
    assert.ok(arm.indexOf('cp -p') < arm.indexOf('--unit=underlay-txn-bond-0a1b2c3d4e-apply'), 'files saved before the change starts');
    assert.match(arm, /'\/etc\/odd name'\\''s\.network'/, 'odd file names quoted through sh');
  });

  test('restore.sh puts saved files back byte for byte (mode kept), removes files that were absent, and runs once', () => {
    const etc = join(scratch, 'etc');
    mkdirSync(etc, { recursive: true });
    const kept = join(etc, '20-eth1.network');
    const added = join(etc, '10-underlay-bond0.netdev');
    writeFileSync(kept, '[Match]\nName=eth1\n\n[Network]\nAddress=198.18.10.21/24\n');
    chmodSync(kept, 0o640);
    const p = plan([kept, added], 'bond-feedc0ffee');
    const d = local(txnDir(p.id));
    // The arm's save part (what it does before any systemctl), against the scratch root.
    execFileSync('/bin/sh', ['-c', local(`mkdir -p ${TXN_ROOT} && mkdir ${txnDir(p.id)} ${txnDir(p.id)}/files`)]);
    const save = armScript(p)
      .text.split(' && ')
      .filter((part) => part.startsWith('if [ -f'));
    assert.equal(save.length, 2);
    for (const part of save) execFileSync('/bin/sh', ['-c', local(part)]);
    writeFileSync(join(d, 'restore.sh'), local(restoreScript(p)));
    // The change: the member's file rewritten, the bond's added.
    writeFileSync(kept, '[Match]\nName=eth1\n\n[Network]\nBond=bond0\n');
    writeFileSync(added, '[NetDev]\nName=bond0\nKind=bond\n');
    execFileSync('/bin/sh', [join(d, 'restore.sh'), 'boot']);
    assert.equal(readFileSync(kept, 'utf8'), '[Match]\nName=eth1\n\n[Network]\nAddress=198.18.10.21/24\n');
    assert.equal(statSync(kept).mode & 0o777, 0o640);
    assert.equal(existsSync(added), false, 'a file that did not exist before is removed');
    assert.equal(readFileSync(join(d, 'decided', 'which'), 'utf8').trim(), 'rolled-back');
    assert.ok(existsSync(join(d, 'rolled-back')));
    assert.deepEqual(parseTxnStatus(`rolled-back - ${readFileSync(join(d, 'rolled-back'), 'utf8').trim()} inactive`), {
      state: 'rolled-back',
      done: true,
      applied: null,
    });
    // A second run (the boot guard after the timer) changes nothing.
    writeFileSync(kept, 'changed again\n');
    execFileSync('/bin/sh', [join(d, 'restore.sh'), 'boot']);
    assert.equal(readFileSync(kept, 'utf8'), 'changed again\n');
    // The confirm after the rollback loses, and says so (exit 5).
    const r = spawnSync('/bin/sh', ['-c', local(confirmScript(p.id).text)], { encoding: 'utf8' });
    assert.equal(r.status, 5);
    assert.equal(r.stdout.trim(), 'rolled-back');
    // Cleanup removes a verified rollback.
    execFileSync('/bin/sh', ['-c', local(cleanupScript(p.id).text)]);
    assert.equal(existsSync(d), false);
  });

  test('restore.sh after the confirm won is a no-op', () => {
    const f = join(scratch, 'etc-confirmed.network');
    writeFileSync(f, 'before\n');
    const p = plan([f], 'bond-c0nf1rmed0');
    const d = local(txnDir(p.id));
    mkdirSync(join(d, 'files'), { recursive: true });
    writeFileSync(join(d, 'files', '0'), 'before\n');
    writeFileSync(join(d, 'restore.sh'), local(restoreScript(p)));
    writeFileSync(f, 'after the move\n');
    mkdirSync(join(d, 'decided'));
    writeFileSync(join(d, 'decided', 'which'), 'confirmed\n');
    execFileSync('/bin/sh', [join(d, 'restore.sh'), 'boot']);
    assert.equal(readFileSync(f, 'utf8'), 'after the move\n');
    assert.match(readFileSync(join(d, 'log'), 'utf8'), /already decided: confirmed/);
  });

  test('a half-armed transaction (no timer, the change never started) is abandoned; one whose change started, or that was decided, is kept', () => {
    const run = (id: string) =>
      spawnSync('/bin/sh', ['-c', local(abandonScript(id).text)], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n')
        .at(-1);
    const make = (id: string, log: string) => {
      const d = local(txnDir(id));
      mkdirSync(join(d, 'files'), { recursive: true });
      writeFileSync(join(d, 'log'), log);
      return d;
    };
    const journal = join(scratch, 'txn', 'journal');
    const cut = make('bond-ha1fa4med0', '');
    assert.equal(run('bond-ha1fa4med0'), 'abandoned');
    assert.equal(existsSync(cut), false, 'the directory is gone');
    assert.match(readFileSync(journal, 'utf8'), /^\d+ bond-ha1fa4med0 abandoned$/m);
    const started = make('bond-5ta4ted000', '1 change: start\n');
    assert.equal(run('bond-5ta4ted000'), 'kept');
    assert.equal(existsSync(started), true);
    const decided = make('bond-dec1ded000', '');
    mkdirSync(join(decided, 'decided'));
    assert.equal(run('bond-dec1ded000'), 'kept');
    assert.equal(run('bond-n0nex15ten'), 'none');
  });

  test('the status read on a real /bin/sh: a marker caught half-written (created, still empty) reads as not there yet', () => {
    const id = 'bond-ha1fwr1tten';
    const d = local(txnDir(id));
    mkdirSync(join(d, 'decided'), { recursive: true });
    writeFileSync(join(d, 'decided', 'which'), 'rolled-back\n');
    writeFileSync(join(d, 'apply.rc'), '0\n');
    // `date +%s > rolled-back` between its truncate and its write — what CI once caught ("rolled-back 0  active").
    writeFileSync(join(d, 'rolled-back'), '');
    const status = () => spawnSync('/bin/sh', ['-c', local(statusScript(id).text)], { encoding: 'utf8' }).stdout;
    assert.match(status(), /^rolled-back 0 - \S+\n$/);
    assert.deepEqual(parseTxnStatus(status()), { state: 'rolled-back', done: false, applied: 0 });
    writeFileSync(join(d, 'rolled-back'), '1764576000\n');
    assert.deepEqual(parseTxnStatus(status()), { state: 'rolled-back', done: true, applied: 0 });
    // And the writers no longer leave such a window: every marker goes through a temporary file and mv.
    const p = plan(['/etc/x'], id);
    for (const text of [restoreScript(p), changeScript(p), confirmScript(id).text, armScript(p).text, abandonScript(id).text])
      assert.doesNotMatch(text, /(?:echo|date \+%s)[^|;&]*> '?\/var\/lib\/underlay\/txn\/[^ ]*\/(?:rolled-back|apply\.rc|armed|decided\/which)'?(?:\s|$)/);
  });

  test('status lines parse; anything else is refused', () => {
    assert.deepEqual(parseTxnStatus('none\n'), { state: 'none' });
    assert.deepEqual(parseTxnStatus('- - - active'), { state: 'armed', applied: null, timerActive: true });
    assert.deepEqual(parseTxnStatus('- 0 - inactive'), { state: 'armed', applied: 0, timerActive: false });
    assert.deepEqual(parseTxnStatus('confirmed 0 - inactive'), { state: 'confirmed' });
    assert.deepEqual(parseTxnStatus('rolled-back - - active'), { state: 'rolled-back', done: false, applied: null });
    for (const bad of ['', 'armed', 'confirmed 0 -', 'x - - active']) assert.equal(parseTxnStatus(bad), undefined, bad);
  });
});

describe('management move: the per-manager bring-up and rollback', () => {
  const a: MoveActivation = {
    bond: { name: 'bond0', members: ['eth1', 'eth2'], mode: '802.3ad', miimon: 100, lacpRate: 'fast', xmitHashPolicy: 'layer3+4' },
    vlan: 'bond0.100',
    nmConnections: ['eth1', "Wired connection 'b'"],
    ifupdownUp: ['eth1', 'eth2'],
  };
  const managers: NetManager[] = ['networkd', 'networkmanager', 'ifupdown'];

  test("each manager's bring-up and reactivation parse on a real /bin/sh, inside restore.sh and change.sh too", () => {
    for (const m of managers) {
      const p = { ...plan(['/etc/network/interfaces']), reactivate: moveReactivateScript(m, a), change: moveUpScript(m, a) };
      for (const [name, text] of [
        ['up', p.change.text],
        ['reactivate', p.reactivate.text],
        ['restore.sh', restoreScript(p)],
        ['change.sh', changeScript(p)],
        ['arm', armScript(p).text],
      ] as const) {
        const r = spawnSync('/bin/sh', ['-n', '-c', text], { encoding: 'utf8' });
        assert.equal(r.status, 0, `${m} ${name}: ${r.stderr}`);
      }
    }
  });

  test('a rollback deletes the VLAN and the bond and brings the members back through their own configuration, every command run', () => {
    const ifupdown = moveReactivateScript('ifupdown', a).text;
    // Links first (a bond's members are released by deleting it), then ifupdown's stale records, then the members
    // from their restored stanzas, each cycled with --force (the state may still list one the change never took down).
    const order = [
      'ip link del dev bond0.100',
      'ip link del dev bond0',
      'ifdown --force bond0.100',
      'ifdown --force bond0',
      'ifdown --force eth1',
      'ifup eth1',
      'ifup eth2',
    ];
    const at = order.map((c) => ifupdown.indexOf(c));
    assert.ok(
      at.every((i) => i >= 0),
      `every command present: ${ifupdown}`,
    );
    assert.deepEqual(
      [...at].sort((x, y) => x - y),
      at,
      `in order: ${ifupdown}`,
    );
    assert.doesNotMatch(ifupdown, /&&/, 'joined by ; : a rollback does as much as it can');
    const nm = moveReactivateScript('networkmanager', a).text;
    assert.ok(nm.startsWith('nmcli connection reload'), 'the restored keyfiles are read first');
    assert.ok(nm.endsWith(`nmcli --wait 30 connection up eth1 ; ${sh`nmcli --wait 30 connection up ${"Wired connection 'b'"}`.text}`), nm);
    assert.equal(moveReactivateScript('networkd', a).text.split(';').at(-1)?.trim(), 'networkctl reconfigure eth1 eth2');
    assert.equal(moveUpScript('ifupdown', a).text.includes('ifup bond0.100'), true);
    assert.equal(moveUpScript('networkmanager', a).text, 'nmcli --wait 30 connection up underlay-vlan-bond0.100');
  });
});
