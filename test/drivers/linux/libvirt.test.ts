/**
 * The libvirt network read as one command: the script on a real /bin/sh against a stand-in `virsh` that answers as
 * libvirt's does (net-list names, net-info, net-dumpxml; a daemon that is down) — the lab (test/lab/onboard.lab.test.ts
 * and the lab benchmark) runs it against real libvirt.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { networkXml, parseNetworkXml, readNetworkScript, splitNetworkRead } from '../../../src/drivers/linux/libvirt';
import { parseVirshNetInfo } from '../../../src/drivers/linux/parse/text';

const dir = mkdtempSync(join(tmpdir(), 'underlay-virsh-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const XML = networkXml({ name: 'underlay-macvtap', forwardMode: 'bridge', interfaces: ['bond0'], bridge: null, virtualport: null });

/** A virsh that knows `networks` (net-list prints them with libvirt's leading space); `down`: every call fails. */
function fakeVirsh(networks: string[], down = false): string {
  const bin = mkdtempSync(join(dir, 'bin-'));
  const info =
    'Name:           underlay-macvtap\nUUID:           5f0d0b8e-1c39-4c55-9a0e-2b7c1c3f7a10\nActive:         yes\nPersistent:     yes\nAutostart:      no\nBridge:         \n';
  writeFileSync(
    join(bin, 'virsh'),
    [
      '#!/bin/sh',
      down ? 'echo "error: failed to connect to the hypervisor" >&2; exit 1' : '',
      'for a; do last=$a; done',
      'case " $* " in',
      `  *" net-list "*) printf '${networks.map((n) => ` ${n}\\n`).join('')}\\n' ;;`,
      `  *" net-info "*) [ "$last" = underlay-macvtap ] || { echo "error: Network not found" >&2; exit 1; }; printf '%s' '${info}' ;;`,
      `  *" net-dumpxml "*) printf '%s\\n' '${XML}' ;;`,
      '  *) exit 2 ;;',
      'esac',
    ].join('\n'),
  );
  chmodSync(join(bin, 'virsh'), 0o755);
  return bin;
}

function run(bin: string, name: string) {
  return spawnSync('/bin/sh', ['-c', readNetworkScript(name).text], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin` } });
}

describe('libvirt network read in one command', () => {
  test('present: net-info and the XML come back apart, and parse', () => {
    const r = run(fakeVirsh(['default', 'underlay-macvtap']), 'underlay-macvtap');
    assert.equal(r.status, 0, r.stderr);
    const parts = splitNetworkRead(r.stdout);
    assert.ok(parts);
    assert.deepEqual(parseVirshNetInfo(parts.info), { active: true, autostart: false, persistent: true });
    assert.deepEqual(parseNetworkXml(parts.xml), { name: 'underlay-macvtap', forwardMode: 'bridge', interfaces: ['bond0'], bridge: null, virtualport: null });
  });

  test('absent: only a name that is listed whole counts (a prefix or a longer name is not it)', () => {
    for (const listed of [[], ['default'], ['underlay-macvtap2'], ['underlay']]) {
      const r = run(fakeVirsh(listed), 'underlay-macvtap');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(splitNetworkRead(r.stdout), null, JSON.stringify(listed));
    }
  });

  test('libvirtd down: the read fails (never "absent"), naming what virsh said', () => {
    const r = run(fakeVirsh([], true), 'underlay-macvtap');
    assert.equal(r.status, 3);
    assert.match(r.stderr, /failed to connect/);
  });

  test('no virsh at all: exit 127 (the network is absent: nothing to read)', () => {
    const r = spawnSync('/bin/sh', ['-c', readNetworkScript('underlay-macvtap').text], { encoding: 'utf8', env: { PATH: join(dir, 'nowhere') } });
    assert.equal(r.status, 127);
  });

  test('output that is neither is refused', () => {
    assert.equal(splitNetworkRead('Name: x\nActive: yes\n'), undefined);
    assert.equal(splitNetworkRead(''), undefined);
  });
});
