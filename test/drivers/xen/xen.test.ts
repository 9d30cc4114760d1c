/**
 * Xen drivers: `xl info` and dom0_mem parsing on real outputs (test/fixtures/xen/SOURCES.md), the GRUB drop-in
 * and what grub-mkconfig makes of it (the evaluation script runs in the local `sh` against a fixture
 * /etc/default), grub.cfg/grubenv → the next boot, the bridge commands, and the reboot/boot-id helpers.
 */
import { stepSummary } from '../../../src/steps';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { xenBridgeAttachStep } from '../../../src/activities/xen/attach';
import { xenInstallStep } from '../../../src/activities/xen/install';
import { UnexpectedOutputError } from '../../../src/common/errors';
import { parseBootId, rebootScript } from '../../../src/drivers/linux/reboot';
import { convergeBridgeScript, parseBrportState } from '../../../src/drivers/xen/bridge';
import { renderBridgeFiles } from '../../../src/drivers/linux/persist';
import { sha256 } from '../../../src/drivers/linux/files';
import {
  effectiveGrubConfigScript,
  parseEffectiveGrubConfig,
  parseGrubCfg,
  parseGrubEnv,
  readFileOrAbsent,
  renderXenDropIn,
  resolveNextBoot,
  writeFileAtomically,
  XEN_DROP_IN,
} from '../../../src/drivers/xen/grub';
import { dom0MemOption, parseDom0Mem, parseXenRuntime, parseXlInfo } from '../../../src/drivers/xen/xl';
import { loadSpecFile } from '../../../src/spec/load';

const FIX = resolve(__dirname, '../../fixtures/xen');
const fixture = (name: string) => readFileSync(join(FIX, name), 'utf8');
const tmp = mkdtempSync(join(tmpdir(), 'underlay-xen-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs a script in the local POSIX shell (dash on Debian), as RemoteHost does on the host: `sh -c <script>`. */
const localSh = (script: { text: string }) => execFileSync('sh', ['-c', script.text], { encoding: 'utf8' });

describe('xl info', () => {
  test('Debian 12, Xen 4.17 (real output): version, capabilities, command line, memory', () => {
    const info = parseXlInfo(fixture('xl-info.debian12-xen4.17.txt'));
    assert.equal(info.xenVersion, '4.17.4-pre');
    assert.deepEqual(info.virtCaps, ['pv', 'hvm', 'hap', 'shadow', 'gnttab-v1', 'gnttab-v2']);
    assert.deepEqual(info.xenCaps, ['xen-3.0-x86_64', 'hvm-3.0-x86_32', 'hvm-3.0-x86_32p', 'hvm-3.0-x86_64']);
    assert.equal(info.commandLine, 'placeholder dom0_mem=512M,max:512M');
    assert.equal(info.totalMemoryMb, 4063);
    assert.equal(info.freeMemoryMb, 2995);
    assert.equal(info.fields.xen_changeset, '', 'an empty value');
    assert.equal(info.fields.hw_caps, '178bf3ff:00802001:ee500800:000037ff:00000000:00000000:00000000:00000180', 'colons inside a value');
    assert.deepEqual(parseDom0Mem(info.commandLine), { amountMb: 512, maxMb: 512, text: 'dom0_mem=512M,max:512M' });
  });

  test('Ubuntu 14.04, Xen 4.4 (real output, PV only): empty virt_caps, no dom0_mem', () => {
    const info = parseXlInfo(fixture('xl-info.ubuntu14.04-xen4.4.txt'));
    assert.equal(info.xenVersion, '4.4.2');
    assert.deepEqual(info.virtCaps, []);
    assert.equal(parseDom0Mem(info.commandLine), null);
  });

  test('older xl without xen_version: built from major.minor+extra', () => {
    const text = fixture('xl-info.debian12-xen4.17.txt').replace(/^xen_version.*\n/m, '');
    assert.equal(parseXlInfo(text).xenVersion, '4.17.4-pre');
  });

  test('what is not xl info is refused with a typed error', () => {
    assert.throws(() => parseXlInfo("ERROR:  Can't find hypervisor information in sysfs!\n"), UnexpectedOutputError);
    assert.throws(() => parseXlInfo('host : x\n'), /no xen_version/);
  });

  test('dom0_mem forms: sizes, units, min/max, negative, last one wins', () => {
    assert.deepEqual(parseDom0Mem('placeholder dom0_mem=2G'), { amountMb: 2048, maxMb: null, text: 'dom0_mem=2G' });
    assert.equal(parseDom0Mem('dom0_mem=1048576')?.amountMb, 1024, 'no unit = KiB');
    assert.equal(parseDom0Mem('dom0_mem=min:1024M')?.amountMb, 1024);
    assert.deepEqual(parseDom0Mem('dom0_mem=-54068M,max:-54068M'), { amountMb: null, maxMb: null, text: 'dom0_mem=-54068M,max:-54068M' });
    assert.equal(parseDom0Mem('dom0_mem=512M dom0_mem=8192M,max:8192M')?.text, 'dom0_mem=8192M,max:8192M');
    assert.equal(parseDom0Mem('xdom0_mem=512M'), null);
    assert.equal(dom0MemOption(8192), 'dom0_mem=8192M,max:8192M');
  });

  test('runtime: dom0 needs control_d, a domU only sees type xen', () => {
    assert.deepEqual(parseXenRuntime('type=xen\ncaps=control_d\n'), { hypervisorType: 'xen', dom0: true });
    assert.deepEqual(parseXenRuntime('type=xen\ncaps=\n'), { hypervisorType: 'xen', dom0: false });
    assert.deepEqual(parseXenRuntime('type=\ncaps=\n'), { hypervisorType: null, dom0: false });
    assert.deepEqual(parseXenRuntime('type=kvm\ncaps=\n'), { hypervisorType: 'kvm', dom0: false });
  });
});

describe('GRUB: the drop-in and what grub-mkconfig sees', () => {
  test('the drop-in text, with and without dom0 memory', () => {
    assert.equal(
      renderXenDropIn(dom0MemOption(8192)),
      [
        '# Written by underlay (hypervisor step, Xen). Boots the Xen entry by default: read by',
        '# /etc/default/grub.d/xen.cfg, which sorts after this file. To undo: delete this file, run update-grub.',
        'XEN_OVERRIDE_GRUB_DEFAULT=1',
        'GRUB_CMDLINE_XEN_DEFAULT="${GRUB_CMDLINE_XEN_DEFAULT:+$GRUB_CMDLINE_XEN_DEFAULT }dom0_mem=8192M,max:8192M"',
        '',
      ].join('\n'),
    );
    assert.ok(!renderXenDropIn(null).includes('GRUB_CMDLINE_XEN_DEFAULT'));
    assert.ok(XEN_DROP_IN.split('/').pop()! < 'xen.cfg', 'sorted before Debian’s xen.cfg');
  });

  test('writeFileAtomically writes the exact bytes (hostile content included) and reads back', () => {
    const path = join(tmp, 'drop-in.cfg');
    const hostile = `a'b "c" $(touch ${tmp}/pwned) \`id\` ; rm -rf / \\n\n${renderXenDropIn(dom0MemOption(1024))}`;
    localSh(writeFileAtomically(path, hostile));
    assert.equal(readFileSync(path, 'utf8'), hostile);
    assert.throws(() => readFileSync(join(tmp, 'pwned')), /ENOENT/, 'nothing in the content ran');
    assert.equal(localSh(readFileOrAbsent(path)), hostile);
    assert.throws(
      () => localSh(readFileOrAbsent(join(tmp, 'nope'))),
      (e: { status?: number }) => e.status === 3,
    );
  });

  function etc(dropIn?: string, grubExtra = ''): string {
    const root = mkdtempSync(join(tmp, 'root-'));
    cpSync(join(FIX, 'etc-default'), join(root, 'etc/default'), { recursive: true });
    if (grubExtra) writeFileSync(join(root, 'etc/default/grub'), readFileSync(join(FIX, 'etc-default/grub'), 'utf8') + grubExtra);
    if (dropIn !== undefined) writeFileSync(join(root, XEN_DROP_IN), dropIn);
    return root;
  }
  const evaluate = (root: string) => parseEffectiveGrubConfig(localSh(effectiveGrubConfigScript(root)));

  test('Debian’s xen.cfg alone makes Xen the default (with its warning) — the evaluation sees that', () => {
    const c = evaluate(etc());
    assert.equal(c.GRUB_DEFAULT, 'Debian GNU/Linux, with Xen hypervisor');
    assert.equal(c.XEN_OVERRIDE_GRUB_DEFAULT, '1');
    assert.equal(c.GRUB_CMDLINE_XEN_DEFAULT, '');
  });

  test('underlay’s drop-in: Xen default and dom0_mem, appended to an operator’s own Xen options', () => {
    const c = evaluate(etc(renderXenDropIn(dom0MemOption(8192))));
    assert.equal(c.GRUB_DEFAULT, 'Debian GNU/Linux, with Xen hypervisor');
    assert.equal(c.GRUB_CMDLINE_XEN_DEFAULT, 'dom0_mem=8192M,max:8192M');
    const withOwn = evaluate(etc(renderXenDropIn(dom0MemOption(8192)), 'GRUB_CMDLINE_XEN_DEFAULT="loglvl=all"\n'));
    assert.equal(withOwn.GRUB_CMDLINE_XEN_DEFAULT, 'loglvl=all dom0_mem=8192M,max:8192M');
  });

  test('the undo drop-in (override 0) leaves GRUB_DEFAULT as /etc/default/grub has it', () => {
    const c = evaluate(etc('XEN_OVERRIDE_GRUB_DEFAULT=0\n'));
    assert.equal(c.GRUB_DEFAULT, '0');
    assert.equal(c.XEN_OVERRIDE_GRUB_DEFAULT, '0');
  });
});

describe('grub.cfg + grubenv → the next boot', () => {
  test('Debian 12 after update-grub with Xen: the default is the Xen entry', () => {
    const cfg = parseGrubCfg(fixture('grub.cfg.debian12-xen'));
    assert.equal(cfg.default, 'Debian GNU/Linux, with Xen hypervisor', 'not the ${next_entry} branch');
    assert.deepEqual(
      cfg.entries.map((e) => [e.kind, e.title, e.xen]),
      [
        ['menuentry', 'Debian GNU/Linux', false],
        ['submenu', 'Advanced options for Debian GNU/Linux', false],
        ['menuentry', 'Debian GNU/Linux, with Xen hypervisor', true],
        ['submenu', 'Advanced options for Debian GNU/Linux (with Xen hypervisor)', false],
      ],
    );
    assert.equal(cfg.entries[3]!.children[0]!.children[0]!.xen, true, 'nested Xen entry');
    const next = resolveNextBoot(cfg, {});
    assert.deepEqual(next, {
      source: 'default',
      selector: 'Debian GNU/Linux, with Xen hypervisor',
      path: ['Debian GNU/Linux, with Xen hypervisor'],
      xen: true,
    });
  });

  test('the same host before Xen: default 0 is the plain kernel', () => {
    const next = resolveNextBoot(parseGrubCfg(fixture('grub.cfg.debian12-plain')), {});
    assert.deepEqual(next, { source: 'default', selector: '0', path: ['Debian GNU/Linux'], xen: false });
  });

  test('GRUB_DEFAULT=saved: the saved entry (a `>` path of ids) decides', () => {
    const cfg = parseGrubCfg(fixture('grub.cfg.debian12-xen').replace('set default="Debian GNU/Linux, with Xen hypervisor"', 'set default="${saved_entry}"'));
    const next = resolveNextBoot(cfg, parseGrubEnv(fixture('grub-editenv-list.saved-plain.txt')));
    assert.equal(next?.source, 'saved_entry');
    assert.deepEqual(next?.path, ['Advanced options for Debian GNU/Linux', 'Debian GNU/Linux, with Linux 6.1.0-23-amd64']);
    assert.equal(next?.xen, false);
    assert.equal(resolveNextBoot(cfg, { saved_entry: '2' })?.xen, true, 'by index');
    assert.equal(resolveNextBoot(cfg, {})?.selector, '0', 'no saved entry yet → 0');
  });

  test('a one-shot next_entry (grub-reboot) wins over the default', () => {
    const next = resolveNextBoot(parseGrubCfg(fixture('grub.cfg.debian12-xen')), parseGrubEnv(fixture('grub-editenv-list.next-entry.txt')));
    assert.deepEqual(next, { source: 'next_entry', selector: 'Debian GNU/Linux', path: ['Debian GNU/Linux'], xen: false });
  });

  test('a default naming no entry resolves to nothing (and is not Xen)', () => {
    const next = resolveNextBoot(parseGrubCfg(fixture('grub.cfg.debian12-xen')), { next_entry: 'No such entry' });
    assert.equal(next?.path, null);
    assert.equal(next?.xen, false);
  });

  test('a submenu chosen as a whole boots its first entry', () => {
    const next = resolveNextBoot(parseGrubCfg(fixture('grub.cfg.debian12-xen')), { next_entry: '3' });
    assert.equal(next?.xen, true);
    assert.equal(next?.path?.at(-1), 'Debian GNU/Linux, with Xen 4.17-amd64 and Linux 6.1.0-23-amd64');
  });
});

describe('Linux bridge for Xen guests', () => {
  const none = { bridge: null, uplinkMaster: null };
  const attached = { bridge: { kind: 'bridge', up: true }, uplinkMaster: 'xenbr0' };
  test('create and enslave, in one && chain', () => {
    assert.equal(
      convergeBridgeScript('xenbr0', 'bond0', none, attached)?.text,
      'ip link add name xenbr0 type bridge && ip link set dev bond0 master xenbr0 && ip link set dev xenbr0 up',
    );
  });
  test('undo: release the uplink first, then delete the bridge', () => {
    assert.equal(convergeBridgeScript('xenbr0', 'bond0', attached, none)?.text, 'ip link set dev bond0 nomaster && ip link del dev xenbr0');
  });
  test('nothing to do → null; a bridge that is down is raised', () => {
    assert.equal(convergeBridgeScript('xenbr0', 'bond0', attached, attached), null);
    assert.equal(
      convergeBridgeScript('xenbr0', 'bond0', { bridge: { kind: 'bridge', up: false }, uplinkMaster: 'xenbr0' }, attached)?.text,
      'ip link set dev xenbr0 up',
    );
  });
  test('hostile names are quoted', () => {
    assert.equal(
      convergeBridgeScript("br'; reboot", 'b 0', none, { bridge: { kind: 'bridge', up: true }, uplinkMaster: "br'; reboot" })?.text,
      `ip link add name 'br'\\''; reboot' type bridge && ip link set dev 'b 0' master 'br'\\''; reboot' && ip link set dev 'br'\\''; reboot' up`,
    );
  });
  test('brport state', () => {
    assert.equal(parseBrportState('3\n'), 'forwarding');
    assert.equal(parseBrportState('0'), 'disabled');
    assert.equal(parseBrportState(''), null);
  });
});

describe('reboot driver', () => {
  test('boot ids are UUIDs', () => {
    assert.equal(parseBootId('6C1D5D1E-1F2A-4B3C-8D4E-5F6A7B8C9D0E\n'), '6c1d5d1e-1f2a-4b3c-8d4e-5f6a7b8c9d0e');
    assert.equal(parseBootId('cat: /proc/sys/kernel/random/boot_id: No such file'), undefined);
  });
  test('the reboot is a transient systemd timer (returns at once), refused twice in one boot', () => {
    const s = rebootScript(2).text;
    assert.match(s, /systemctl is-active --quiet underlay-reboot\.timer; then echo already-scheduled; exit 0; fi/);
    assert.match(
      s,
      /systemd-run --quiet --unit=underlay-reboot --description='underlay: reboot requested by an onboarding step' --on-active=2s \/bin\/systemctl reboot && echo scheduled/,
    );
    assert.match(s, /nohup sh -c 'sleep 2; reboot' >\/dev\/null 2>&1 <\/dev\/null &/);
  });
});

describe('Xen steps: plan and diff (pure)', () => {
  const specP = loadSpecFile(resolve(__dirname, '../../../examples/xen-bridge.yaml'));
  const fresh = {
    family: 'debian' as const,
    packages: ['openssh-server'],
    dropIn: null,
    nextBoot: { path: ['Debian GNU/Linux'], xen: false },
    dom0: false,
    xen: null,
  };

  test('a fresh Debian host: package, drop-in, GRUB default, and the reboot into Xen', async () => {
    const spec = await specP;
    assert.deepEqual(
      xenInstallStep.plan(spec, fresh).map((c) => c.field),
      ['package xen-system-amd64', XEN_DROP_IN, 'GRUB default entry', 'running hypervisor'],
    );
  });

  test('running Xen with the spec’s dom0 memory: nothing to do; another dom0_mem plans one more reboot', async () => {
    const spec = await specP;
    const done = {
      ...fresh,
      packages: ['xen-system-amd64'],
      dropIn: renderXenDropIn(dom0MemOption(8192)),
      nextBoot: { path: ['Debian GNU/Linux, with Xen hypervisor'], xen: true },
      dom0: true,
      xen: { version: '4.17.4-pre', dom0Mem: 'dom0_mem=8192M,max:8192M' },
    };
    // The bond, VLANs and VFs are persisted by their own steps: after the reboot they are theirs to hold, not this step's.
    assert.deepEqual(xenInstallStep.plan(spec, done), []);
    assert.deepEqual(
      xenInstallStep.plan(spec, { ...done, xen: { version: '4.17.4-pre', dom0Mem: 'dom0_mem=512M,max:512M' } }).map((c) => c.field),
      ['dom0_mem'],
    );
  });

  test('diff (what an undo must restore): packages, drop-in, GRUB default, running dom0', async () => {
    const now = {
      ...fresh,
      packages: ['openssh-server', 'xen-system-amd64'],
      dropIn: 'x',
      nextBoot: { path: ['Xen'], xen: true },
      dom0: true,
      xen: { version: '4.17', dom0Mem: null },
    };
    assert.deepEqual(
      xenInstallStep.diff(now, fresh).map((c) => c.field),
      ['packages', XEN_DROP_IN, 'GRUB default is Xen', 'running Xen dom0'],
    );
    assert.deepEqual(xenInstallStep.diff(fresh, fresh), []);
  });

  test('bridge attach plan: create, enslave, raise, and the manager files (ifupdown, networkd)', async () => {
    const spec = await specP;
    const want = xenBridgeAttachStep.want(spec);
    const ifupdown = { manager: 'ifupdown' as const, files: { '/etc/network/interfaces.d/underlay-bridge-xenbr0': null }, uplinkFile: null, why: 'ifupdown' };
    assert.deepEqual(
      xenBridgeAttachStep.plan(want, { bridge: null, uplinkMaster: null, persisted: ifupdown }).map((c) => [c.field, c.to]),
      [
        ['bridge', { kind: 'bridge', up: true }],
        ['uplinkMaster', 'xenbr0'],
        ['ifupdown /etc/network/interfaces.d/underlay-bridge-xenbr0', 'written by underlay'],
      ],
    );
    // The stanza as written: hashed in the state, so an identical file is no change.
    const [stanza] = renderBridgeFiles('ifupdown', { name: 'xenbr0', uplink: 'bond0' }, spec.id, null);
    assert.match(stanza!.content!, /^auto xenbr0\niface xenbr0 inet manual\n {4}bridge_ports bond0\n {4}bridge_stp off\n/m);
    const held = { ...ifupdown, files: { [stanza!.path]: sha256(stanza!.content!) } };
    assert.deepEqual(xenBridgeAttachStep.plan(want, { bridge: { kind: 'bridge', up: true }, uplinkMaster: 'xenbr0', persisted: held }), []);
    // networkd: the bridge netdev and network, and Bridge= as a drop-in next to the bond step's .network for bond0.
    const bondNetwork = '/etc/systemd/network/10-underlay-bond0.network';
    assert.deepEqual(
      renderBridgeFiles('networkd', { name: 'xenbr0', uplink: 'bond0' }, spec.id, bondNetwork).map((f) => f.path),
      ['/etc/systemd/network/30-underlay-xenbr0.netdev', '/etc/systemd/network/30-underlay-xenbr0.network', `${bondNetwork}.d/underlay-bridge.conf`],
    );
    assert.match(renderBridgeFiles('networkd', { name: 'xenbr0', uplink: 'bond0' }, spec.id, bondNetwork)[2]!.content!, /\[Network\]\nBridge=xenbr0\n$/);
    assert.equal(stepSummary('attach', spec), 'Linux bridge xenbr0 ← bond0');
  });
});
