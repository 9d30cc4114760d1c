/**
 * The network-manager facts script on a real /bin/sh, against a stand-in `systemctl` answering `systemctl show` as
 * systemd does (one block per unit, in argument order) — what decides which manager a host runs and whether the
 * NetworkManager and networkd sections are read at all. The lab runs it against real systemd on all three managers.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { factsScript, parseManagerFacts } from '../../../src/drivers/linux/netmgr';

const dir = mkdtempSync(join(tmpdir(), 'underlay-netmgr-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const block = (active: string, enabled: string) => `ActiveState=${active}\nUnitFileState=${enabled}\n`;

/** Runs the facts script with `systemctl show` answering `show`, and nmcli / networkctl saying they were asked. */
function facts(show: string) {
  const bin = mkdtempSync(join(dir, 'bin-'));
  const tool = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  writeFileSync(join(bin, 'show.txt'), show);
  tool('systemctl', `[ "$1" = show ] && cat ${join(bin, 'show.txt')}`);
  tool('nmcli', `echo 'eth1:connected:Wired connection 1'`);
  tool('networkctl', 'echo "       State: routable (configured)"; echo "Network File: /etc/systemd/network/20-$3.network"');
  tool('ls', 'case "$1" in /sys/class/net) echo eth1 ;; *) exit 2 ;; esac');
  const r = spawnSync('/bin/sh', ['-c', factsScript().text], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin` } });
  assert.equal(r.status, 0, r.stderr);
  return { text: r.stdout, facts: parseManagerFacts(r.stdout) };
}

describe('network manager facts (one systemctl call, one awk)', () => {
  test('ifupdown host: networking active and enabled, the other two not; nmcli and networkctl not run', () => {
    const { text, facts: f } = facts(`${block('inactive', 'disabled')}\n${block('inactive', '')}\n${block('active', 'enabled')}`);
    assert.deepEqual(f.active, { networkd: false, networkmanager: false, ifupdown: true });
    assert.deepEqual(f.enabled, { networkd: false, networkmanager: false, ifupdown: true });
    assert.deepEqual(f.nm, {});
    assert.deepEqual(f.networkd, {});
    assert.match(
      text,
      /^## active systemd-networkd\ninactive\n## enabled systemd-networkd\ndisabled\n## active NetworkManager\ninactive\n## enabled NetworkManager\n## active networking\nactive\n## enabled networking\nenabled\n/,
    );
  });

  test('networkd host: its links read through networkctl', () => {
    const { facts: f } = facts(`${block('active', 'enabled')}\n${block('inactive', 'disabled')}\n${block('inactive', '')}`);
    assert.deepEqual(f.active, { networkd: true, networkmanager: false, ifupdown: false });
    assert.deepEqual(f.networkd, { eth1: { setup: 'configured', networkFile: '/etc/systemd/network/20-eth1.network' } });
    assert.deepEqual(f.nm, {});
  });

  test('NetworkManager host: its devices read through nmcli', () => {
    const { facts: f } = facts(`${block('inactive', 'disabled')}\n${block('active', 'enabled')}\n${block('inactive', '')}`);
    assert.deepEqual(f.active, { networkd: false, networkmanager: true, ifupdown: false });
    assert.deepEqual(f.nm, { eth1: { state: 'connected', connection: 'Wired connection 1' } });
    assert.deepEqual(f.networkd, {});
  });

  test('no systemctl answer: every unit listed, none active, nothing else asked', () => {
    const { text, facts: f } = facts('');
    assert.deepEqual(f.active, { networkd: false, networkmanager: false, ifupdown: false });
    for (const u of ['systemd-networkd', 'NetworkManager', 'networking']) assert.match(text, new RegExp(`## active ${u}\\n## enabled ${u}\\n`));
  });
});
