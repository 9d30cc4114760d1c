/** The one command builder: every interpolated value reaches the shell as exactly one literal word. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { glob, join as joinShell, quote, sh, writeTo, Shell } from '../../src/drivers/shell';

const NASTY = [
  '',
  'plain',
  'two words',
  "it's",
  '$(touch /tmp/underlay-pwned)',
  '`id`',
  '; rm -rf / #',
  'a\nb',
  '"double" and \\back\\slash',
  '*',
  '~root',
  '-n',
  '${HOME}',
  'tab\there',
  'ünïcødé',
];

test('quote: a real /bin/sh reads every value back byte for byte', () => {
  for (const v of NASTY) {
    const out = execFileSync('/bin/sh', ['-c', `printf '%s' ${quote(v)}`], { encoding: 'utf8' });
    assert.equal(out, v, `round trip of ${JSON.stringify(v)}`);
  }
});

test('sh`` quotes interpolations, keeps literal text, splices built fragments and arrays', () => {
  assert.equal(sh`ip link set dev ${'eth1'} master ${'bond0'}`.text, 'ip link set dev eth1 master bond0');
  assert.equal(sh`echo ${'a b'}`.text, "echo 'a b'");
  assert.equal(sh`apt-get install ${['qemu-system-x86', 'libvirt clients']}`.text, "apt-get install qemu-system-x86 'libvirt clients'");
  const inner = sh`ip link show ${'eth 1'}`;
  assert.equal(sh`timeout 5 ${inner}`.text, "timeout 5 ip link show 'eth 1'");
  assert.equal(joinShell('&&', [sh`a`, sh`b`]).text, 'a && b');
  assert.ok(sh`x` instanceof Shell);
});

test('an injected value stays one argument when the command runs', () => {
  const evil = '$(echo pwned); echo pwned';
  const out = execFileSync('/bin/sh', ['-c', sh`printf '[%s]' ${evil} ${'second'}`.text], { encoding: 'utf8' });
  assert.equal(out, `[${evil}][second]`);
});

test('writeTo writes the value and a newline, as sysfs expects', () => {
  const dir = mkdtempSync(join(tmpdir(), 'underlay-shell-'));
  try {
    const file = join(dir, 'sriov numvfs');
    execFileSync('/bin/sh', ['-c', writeTo(file, 4).text]);
    assert.equal(readFileSync(file, 'utf8'), '4\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('glob: a plain file-name pattern expands on a real /bin/sh; anything with shell syntax is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'underlay-glob-'));
  try {
    execFileSync('/bin/sh', ['-c', `touch ${quote(join(dir, 'a.network'))} ${quote(join(dir, 'b.network'))} ${quote(join(dir, 'c.netdev'))}`]);
    const out = execFileSync('/bin/sh', ['-c', sh`cd ${dir} && printf '%s\n' ${glob('*.network')}`.text], { encoding: 'utf8' });
    assert.deepEqual(out.trim().split('\n'), ['a.network', 'b.network']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const bad of ['*; rm -rf /', '$(id)*', 'a b*', '../*', '*/x', 'x', '', '`*`', 'a\n*']) assert.throws(() => glob(bad), /not a plain file-name glob/, bad);
});
