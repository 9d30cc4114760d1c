/**
 * The ESXi standard-vSwitch attach step (esxcli over SSH) through the real step runner — runStep / undoStep in a
 * MockActivityEnvironment — against FakeEsxi below: a small stateful stand-in for an ESXi host's command channel,
 * used ONLY because no ESXi host can run here. It is kept honest:
 *   - it receives exactly what the step sends (no `timeout … sh -c` wrapper: the step sends bare esxcli) and
 *     knows only the esxcli command lines of src/drivers/esxi/esxcli.ts and the step; anything else fails loudly;
 *   - it answers the list commands in the exact format of test/fixtures/esxi (SOURCES.md): a test renders the
 *     fixtures' state and compares it byte for byte with the fixture files;
 *   - it changes its state only on the commands that change a host, refusing what esxcli refuses (an unknown
 *     NIC, an uplink of another switch, a duplicate switch or port group).
 * What it does not prove: that ESXi prints what the fixtures say (they are written from documentation, not
 * captured), nor the XML of `nic list` and `policy failover get`, which have no fixture (assumed the same envelope).
 */
import { stepSummary } from '../../src/steps';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { vdsAttachStep } from '../../src/activities/esxi/attach';
import { esxiVswitchStep, type VswitchAttachState } from '../../src/activities/esxi/vswitch';
import { parseFailoverGet } from '../../src/drivers/esxi/esxcli';
import { missingSteps, platformStep } from '../../src/activities/registry';
import { runStep, undoStep, type Connector } from '../../src/activities/run-step';
import type { StepResult, UndoResult } from '../../src/activities/step';
import type { CommandChannel, ExecResult } from '../../src/drivers/remote';
import { RemoteHost } from '../../src/drivers/remote';
import { parseServerSpec } from '../../src/spec/validate';
import { applicationFailureOf } from '../helpers/failures';

const fixture = (name: string) => readFileSync(join(__dirname, '../fixtures/esxi', name), 'utf8');

// ---- the fake ESXi host -----------------------------------------------------------------------------------------

interface FakeSwitch {
  uplinks: string[];
  active: string[];
  /** As `policy failover get` prints it: srcport, iphash, srcmac, explicit. */
  lb: string;
  mtu: number;
  /** Newest first, as in the fixture (Management Network was created before VM Network). */
  portgroups: string[];
  usedPorts: number;
}

interface FakePortgroup {
  vswitch: string;
  vlan: number;
  activeClients: number;
}

const SET_LB: Record<string, string> = { portid: 'srcport', iphash: 'iphash', mac: 'srcmac', explicit: 'explicit' };
const NS = 'http://www.vmware.com/Products/ESX/5.0/esxcli';

class FakeEsxi implements CommandChannel {
  readonly commands: string[] = [];
  nics = ['vmnic0', 'vmnic1', 'vmnic2', 'vmnic3'];
  switches = new Map<string, FakeSwitch>();
  portgroups = new Map<string, FakePortgroup>();

  /** The state the fixture files show. */
  static fromFixtures(): FakeEsxi {
    const f = new FakeEsxi();
    f.switches.set('vSwitch0', {
      uplinks: ['vmnic3', 'vmnic0'],
      active: ['vmnic3', 'vmnic0'],
      lb: 'srcport',
      mtu: 1500,
      portgroups: ['VM Network', 'Management Network'],
      usedPorts: 6,
    });
    f.switches.set('vSwitch1', { uplinks: ['vmnic1'], active: ['vmnic1'], lb: 'srcport', mtu: 9000, portgroups: ['pg-vm-120'], usedPorts: 4 });
    f.portgroups.set('Management Network', { vswitch: 'vSwitch0', vlan: 0, activeClients: 1 });
    f.portgroups.set('VM Network', { vswitch: 'vSwitch0', vlan: 0, activeClients: 3 });
    f.portgroups.set('pg-vm-120', { vswitch: 'vSwitch1', vlan: 120, activeClients: 0 });
    return f;
  }

  /** A freshly installed host: vSwitch0 only. */
  static fresh(): FakeEsxi {
    const f = FakeEsxi.fromFixtures();
    f.switches.delete('vSwitch1');
    f.portgroups.delete('pg-vm-120');
    return f;
  }

  async exec(command: string): Promise<ExecResult> {
    this.commands.push(command);
    if (!command.startsWith('esxcli ')) throw new Error(`fake ESXi: not an esxcli command line (busybox wrapper?): ${command.slice(0, 120)}`);
    try {
      return { stdout: this.answer(command), stderr: '', exitCode: 0 };
    } catch (e) {
      if (e instanceof EsxcliError) return { stdout: '', stderr: e.message, exitCode: 1 };
      throw e;
    }
  }

  /** The commands that changed something (everything but the reads). */
  changes(): string[] {
    return this.commands.filter((c) => !/^esxcli --formatter=xml /.test(c));
  }

  // ---- rendering, in the fixtures' exact layout ----

  private envelope(body: string): string {
    return `<?xml version="1.0" encoding="utf-8"?>\n<output xmlns="${NS}">\n<root>\n${body}</root>\n</output>\n`;
  }

  private list(structures: string[]): string {
    return `   <list type="structure">\n${structures.join('')}   </list>\n`;
  }

  private structure(type: string, fields: Array<[string, string]>, indent = '      '): string {
    const inner = indent + '   ';
    return `${indent}<structure typeName="${type}">\n${fields.map(([n, v]) => `${inner}<field name="${n}">\n${v}${inner}</field>\n`).join('')}${indent}</structure>\n`;
  }

  private value(kind: 'string' | 'integer' | 'boolean', v: string | number | boolean, indent: string): string {
    return `${indent}<${kind}>${String(v).replace(/&/g, '&amp;').replace(/</g, '&lt;')}</${kind}>\n`;
  }

  private strings(items: string[], indent: string): string {
    return `${indent}<list type="string">\n${items.map((s) => this.value('string', s, indent + '   ')).join('')}${indent}</list>\n`;
  }

  renderVswitchList(): string {
    const d = '            ';
    return this.envelope(
      this.list(
        [...this.switches].map(([name, s]) =>
          this.structure('VirtualSwitch', [
            ['BeaconEnabled', this.value('boolean', false, d)],
            ['BeaconInterval', this.value('integer', 1, d)],
            ['BeaconRequiredBy', this.strings([], d)],
            ['BeaconThreshold', this.value('integer', 3, d)],
            ['CDPStatus', this.value('string', 'listen', d)],
            ['Class', this.value('string', 'cswitch', d)],
            ['ConfiguredPorts', this.value('integer', 128, d)],
            ['MTU', this.value('integer', s.mtu, d)],
            ['Name', this.value('string', name, d)],
            ['NumPorts', this.value('integer', 2290, d)],
            ['Portgroups', this.strings(s.portgroups, d)],
            ['Uplinks', this.strings(s.uplinks, d)],
            ['UsedPorts', this.value('integer', s.usedPorts, d)],
          ]),
        ),
      ),
    );
  }

  renderPortgroupList(): string {
    const d = '            ';
    const sorted = [...this.portgroups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return this.envelope(
      this.list(
        sorted.map(([name, p]) =>
          this.structure('PortGroup', [
            ['ActiveClients', this.value('integer', p.activeClients, d)],
            ['Name', this.value('string', name, d)],
            ['VLANID', this.value('integer', p.vlan, d)],
            ['VirtualSwitch', this.value('string', p.vswitch, d)],
          ]),
        ),
      ),
    );
  }

  private renderNicList(): string {
    const d = '            ';
    return this.envelope(
      this.list(
        this.nics.map((n, i) =>
          this.structure('NIC', [
            ['AdminStatus', this.value('string', 'Up', d)],
            ['Description', this.value('string', 'Intel(R) Ethernet Controller E810-XXV for SFP', d)],
            ['Driver', this.value('string', 'icen', d)],
            ['Duplex', this.value('string', 'Full', d)],
            ['Link', this.value('string', 'Up', d)],
            ['MACAddress', this.value('string', `b4:96:91:a0:10:0${i}`, d)],
            ['MTU', this.value('integer', 1500, d)],
            ['Name', this.value('string', n, d)],
            ['PCIDevice', this.value('string', `0000:3b:00.${i}`, d)],
            ['Speed', this.value('integer', 25000, d)],
          ]),
        ),
      ),
    );
  }

  private renderFailover(s: FakeSwitch): string {
    const d = '         ';
    const unused = s.uplinks.filter((u) => !s.active.includes(u));
    return this.envelope(
      this.structure(
        'NICTeamingPolicy',
        [
          ['ActiveAdapters', this.strings(s.active, d)],
          ['Failback', this.value('boolean', true, d)],
          ['LoadBalancing', this.value('string', s.lb, d)],
          ['NetworkFailureDetection', this.value('string', 'link', d)],
          ['NotifySwitches', this.value('boolean', true, d)],
          ['StandbyAdapters', this.strings([], d)],
          ['UnusedAdapters', this.strings(unused, d)],
        ],
        '   ',
      ),
    );
  }

  // ---- commands ----

  private sw(name: string): FakeSwitch {
    const s = this.switches.get(name);
    if (!s) throw new EsxcliError(`Invalid option --vswitch-name, the vSwitch ${name} does not exist.`);
    return s;
  }

  private answer(c: string): string {
    let m: RegExpExecArray | null;
    if (c === 'esxcli --formatter=xml network nic list') return this.renderNicList();
    if (c === 'esxcli --formatter=xml network vswitch standard list') return this.renderVswitchList();
    if (c === 'esxcli --formatter=xml network vswitch standard portgroup list') return this.renderPortgroupList();
    if ((m = /^esxcli --formatter=xml network vswitch standard policy failover get --vswitch-name=(\S+)$/.exec(c))) return this.renderFailover(this.sw(m[1]!));
    if ((m = /^esxcli network vswitch standard add --vswitch-name=(\S+)$/.exec(c))) {
      if (this.switches.has(m[1]!)) throw new EsxcliError(`A vSwitch named ${m[1]} already exists.`);
      this.switches.set(m[1]!, { uplinks: [], active: [], lb: 'srcport', mtu: 1500, portgroups: [], usedPorts: 1 });
      return '';
    }
    if ((m = /^esxcli network vswitch standard remove --vswitch-name=(\S+)$/.exec(c))) {
      const s = this.sw(m[1]!);
      if (s.portgroups.length) throw new EsxcliError(`the vSwitch ${m[1]} still has port groups`);
      this.switches.delete(m[1]!);
      return '';
    }
    if ((m = /^esxcli network vswitch standard uplink add --uplink-name=(\S+) --vswitch-name=(\S+)$/.exec(c))) {
      const [, nic, name] = m as unknown as [string, string, string];
      const s = this.sw(name);
      if (!this.nics.includes(nic)) throw new EsxcliError(`Invalid uplink ${nic}: no such physical NIC.`);
      for (const [other, o] of this.switches) if (o.uplinks.includes(nic)) throw new EsxcliError(`Uplink ${nic} is already in use by ${other}.`);
      s.uplinks.push(nic);
      s.active.push(nic);
      return '';
    }
    if ((m = /^esxcli network vswitch standard uplink remove --uplink-name=(\S+) --vswitch-name=(\S+)$/.exec(c))) {
      const [, nic, name] = m as unknown as [string, string, string];
      const s = this.sw(name);
      if (!s.uplinks.includes(nic)) throw new EsxcliError(`Uplink ${nic} is not on ${name}.`);
      s.uplinks = s.uplinks.filter((u) => u !== nic);
      s.active = s.active.filter((u) => u !== nic);
      return '';
    }
    if (
      (m =
        /^esxcli network vswitch standard policy failover set --vswitch-name=(\S+) --active-uplinks=(\S+)(?: --load-balancing=(portid|iphash|mac|explicit))?$/.exec(
          c,
        ))
    ) {
      const s = this.sw(m[1]!);
      const active = m[2]!.split(',');
      for (const u of active) if (!s.uplinks.includes(u)) throw new EsxcliError(`Uplink ${u} is not on ${m[1]}.`);
      s.active = active;
      if (m[3]) s.lb = SET_LB[m[3]]!;
      return '';
    }
    if ((m = /^esxcli network vswitch standard set --mtu=(\d+) --vswitch-name=(\S+)$/.exec(c))) {
      this.sw(m[2]!).mtu = Number(m[1]);
      return '';
    }
    if ((m = /^esxcli network vswitch standard portgroup add --portgroup-name=(\S+) --vswitch-name=(\S+)$/.exec(c))) {
      const [, pg, name] = m as unknown as [string, string, string];
      if (this.portgroups.has(pg)) throw new EsxcliError(`A portgroup with the name ${pg} already exists.`);
      this.sw(name).portgroups.unshift(pg);
      this.portgroups.set(pg, { vswitch: name, vlan: 0, activeClients: 0 });
      return '';
    }
    if ((m = /^esxcli network vswitch standard portgroup remove --portgroup-name=(\S+) --vswitch-name=(\S+)$/.exec(c))) {
      const [, pg, name] = m as unknown as [string, string, string];
      const s = this.sw(name);
      if (this.portgroups.get(pg)?.vswitch !== name) throw new EsxcliError(`No portgroup ${pg} on ${name}.`);
      this.portgroups.delete(pg);
      s.portgroups = s.portgroups.filter((p) => p !== pg);
      return '';
    }
    if ((m = /^esxcli network vswitch standard portgroup set --portgroup-name=(\S+) --vlan-id=(\d+)$/.exec(c))) {
      const p = this.portgroups.get(m[1]!);
      if (!p) throw new EsxcliError(`No portgroup ${m[1]}.`);
      p.vlan = Number(m[2]);
      return '';
    }
    throw new Error(`fake ESXi: no answer for: ${c}`);
  }
}

class EsxcliError extends Error {}

// ---- the step through the runner --------------------------------------------------------------------------------

const RAW = {
  id: 'esx-r21-05',
  site: 'fra1',
  rack: 'r21',
  management: {
    address: '192.0.2.105',
    hostKey: 'SHA256:e5PZVZfhvLAzSzWBZwk8Fd8H4+NUs+eYlxaK2GwTMh0',
    credentials: { privateKeyFile: 'keys/esxi_ed25519' },
  },
  nics: [{ name: 'vmnic0', cabled: false }, { name: 'vmnic1' }, { name: 'vmnic2' }],
  hypervisor: {
    kind: 'esxi',
    bmc: {
      address: '192.0.2.104',
      credentials: { usernameEnv: 'UNDERLAY_SECRET_UNUSED_BMC_USER', passwordEnv: 'UNDERLAY_SECRET_UNUSED_BMC_PASS' },
      tls: { caFile: 'unused/bmc-ca.pem' },
    },
    installer: { iso: '/var/lib/underlay/isos/esxi-8.0.3.iso', sha256: 'a'.repeat(64), version: '8.0.3' },
    rootPassword: { file: '/etc/underlay/credentials/esx-r21-05-root' },
    hostCertificate: {
      certFile: '/etc/underlay/credentials/esx-r21-05.crt',
      keyFile: '/etc/underlay/credentials/esx-r21-05.key',
      fingerprint: `sha256/${'A'.repeat(43)}=`,
    },
  },
  attach: { kind: 'vswitch', name: 'vSwitch1', uplinks: ['vmnic1', 'vmnic2'], teaming: 'iphash', portgroup: 'pg-vm-120', vlan: 120, mtu: 9000 },
};

/** The spec with another attach (and NICs: vmnic0, the kickstart's management NIC, is always one of them). */
const withAttach = (attach: Record<string, unknown>, nics: Array<{ name: string; cabled?: boolean }> = RAW.nics) => ({
  ...RAW,
  nics: nics.some((n) => n.name === 'vmnic0') ? nics : [{ name: 'vmnic0', cabled: false }, ...nics],
  attach: { ...RAW.attach, ...attach },
});

function connector(fake: FakeEsxi, opened: { n: number } = { n: 0 }): Connector {
  return async (spec, step) => {
    opened.n++;
    return { host: new RemoteHost(fake, spec.id, true, step), close: () => undefined };
  };
}
const mockEnv = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
const run = (fake: FakeEsxi, raw: unknown = RAW): Promise<StepResult> => mockEnv().run(() => runStep('attach', esxiVswitchStep, raw, connector(fake)));
const undo = (fake: FakeEsxi, pre: unknown, raw: unknown = RAW): Promise<UndoResult> =>
  mockEnv().run(() => undoStep('attach', esxiVswitchStep, raw, pre, connector(fake)));

const snapshot = (f: FakeEsxi) => ({ sw: f.renderVswitchList(), pg: f.renderPortgroupList() });

describe('the fake ESXi answers in the fixtures’ exact format', () => {
  test('rendering the fixtures’ state gives the fixture files byte for byte', () => {
    const f = FakeEsxi.fromFixtures();
    assert.equal(f.renderVswitchList(), fixture('esxcli-xml-network-vswitch-standard-list.xml'));
    assert.equal(f.renderPortgroupList(), fixture('esxcli-xml-network-vswitch-standard-portgroup-list.xml'));
    f.portgroups.clear();
    assert.equal(f.renderPortgroupList(), fixture('esxcli-xml-network-vswitch-standard-portgroup-list.empty.xml'));
  });

  test('policy failover get: the API words are mapped to esxcli set’s', () => {
    const f = FakeEsxi.fromFixtures();
    const cmd = 'esxcli --formatter=xml network vswitch standard policy failover get --vswitch-name=vSwitch0';
    return f.exec(cmd).then((r) => assert.deepEqual(parseFailoverGet(r.stdout, cmd), { teaming: 'portid', active: ['vmnic3', 'vmnic0'] }));
  });
});

describe('ESXi standard vSwitch attach (esxcli over SSH) through runStep / undoStep', () => {
  test('platforms.ts chooses by attach kind: vswitch → this step (over SSH), vds → the vCenter step', () => {
    const spec = parseServerSpec(RAW);
    assert.equal(platformStep('attach', spec), esxiVswitchStep);
    assert.equal(esxiVswitchStep.connection, 'ssh');
    assert.deepEqual(missingSteps(spec), []);
    const vds = parseServerSpec({
      ...RAW,
      attach: {
        kind: 'vds',
        vcenter: { address: 'vcenter.example.net', credentials: { file: 'vcenter.cred' }, caFile: 'vcenter-ca.pem' },
        datacenter: 'dc-1',
        switch: 'dvs-1',
        portgroup: 'pg-1',
        uplinks: ['vmnic1'],
      },
    });
    assert.equal(platformStep('attach', vds), vdsAttachStep);
    assert.equal(stepSummary('attach', spec), 'vSwitch vSwitch1 ← vmnic1,vmnic2 · iphash · port group pg-vm-120 · VLAN 120 · MTU 9000 · esxcli over SSH');
  });

  test('apply from nothing: switch, uplinks, MTU, failover/teaming, port group, VLAN — bare esxcli, no busybox timeout', async () => {
    const fake = FakeEsxi.fresh();
    const r = await run(fake);
    assert.equal(r.changed, true);
    assert.deepEqual(
      r.changes.map((c) => c.field),
      ['vswitch', 'vswitch.uplinks', 'vswitch.active', 'vswitch.teaming', 'vswitch.mtu', 'portgroup'],
    );
    assert.deepEqual(fake.changes(), [
      'esxcli network vswitch standard add --vswitch-name=vSwitch1',
      'esxcli network vswitch standard uplink add --uplink-name=vmnic1 --vswitch-name=vSwitch1',
      'esxcli network vswitch standard uplink add --uplink-name=vmnic2 --vswitch-name=vSwitch1',
      'esxcli network vswitch standard set --mtu=9000 --vswitch-name=vSwitch1',
      'esxcli network vswitch standard policy failover set --vswitch-name=vSwitch1 --active-uplinks=vmnic1,vmnic2 --load-balancing=iphash',
      'esxcli network vswitch standard portgroup add --portgroup-name=pg-vm-120 --vswitch-name=vSwitch1',
      'esxcli network vswitch standard portgroup set --portgroup-name=pg-vm-120 --vlan-id=120',
    ]);
    assert.ok(
      fake.commands.every((c) => c.startsWith('esxcli ')),
      'no timeout/sh wrapper reaches the ESXi shell',
    );
    const sw = fake.switches.get('vSwitch1')!;
    assert.deepEqual(
      { uplinks: sw.uplinks, active: sw.active, lb: sw.lb, mtu: sw.mtu },
      { uplinks: ['vmnic1', 'vmnic2'], active: ['vmnic1', 'vmnic2'], lb: 'iphash', mtu: 9000 },
    );
    assert.deepEqual(fake.portgroups.get('pg-vm-120'), { vswitch: 'vSwitch1', vlan: 120, activeClients: 0 });
    assert.deepEqual((r.pre as VswitchAttachState).vswitch, null);
  });

  test('a second apply is a no-op: plan is empty, only the list/get commands run', async () => {
    const fake = FakeEsxi.fresh();
    await run(fake);
    const before = fake.changes().length;
    const r = await run(fake);
    assert.equal(r.changed, false);
    assert.deepEqual(r.changes, []);
    assert.equal(fake.changes().length, before);
  });

  test('undo returns to the pre-state: port group, then the switch, are removed; vSwitch0 untouched', async () => {
    const fake = FakeEsxi.fresh();
    const pristine = snapshot(fake);
    const r = await run(fake);
    const n = fake.changes().length;
    const u = await undo(fake, r.pre);
    assert.ok(u.changes.length > 0);
    assert.deepEqual(fake.changes().slice(n), [
      'esxcli network vswitch standard portgroup remove --portgroup-name=pg-vm-120 --vswitch-name=vSwitch1',
      'esxcli network vswitch standard remove --vswitch-name=vSwitch1',
    ]);
    assert.deepEqual(snapshot(fake), pristine);
    // Undo again: already the pre-state, nothing to do.
    assert.deepEqual((await undo(fake, r.pre)).changes, []);
  });

  test('undo of a change to an existing switch restores its uplinks, teaming, MTU and VLAN', async () => {
    const fake = FakeEsxi.fromFixtures(); // vSwitch1: vmnic1 only, srcport, MTU 9000, pg-vm-120 on VLAN 120
    const pristine = snapshot(fake);
    const raw = withAttach({ teaming: 'mac', vlan: 130, mtu: 1500 });
    const r = await run(fake, raw);
    assert.deepEqual(
      r.changes.map((c) => c.field),
      ['vswitch.uplinks', 'vswitch.active', 'vswitch.teaming', 'vswitch.mtu', 'portgroup.vlan'],
    );
    assert.equal(fake.switches.get('vSwitch1')!.lb, 'srcmac');
    await undo(fake, r.pre, raw);
    assert.deepEqual(snapshot(fake), pristine);
    const sw = fake.switches.get('vSwitch1')!;
    assert.deepEqual({ active: sw.active, lb: sw.lb }, { active: ['vmnic1'], lb: 'srcport' });
  });

  test('a VLAN changed by hand is re-applied (only that command)', async () => {
    const fake = FakeEsxi.fresh();
    await run(fake);
    fake.portgroups.get('pg-vm-120')!.vlan = 7; // someone retagged it on the host
    const n = fake.changes().length;
    const r = await run(fake);
    assert.deepEqual(r.changes, [{ field: 'portgroup.vlan', from: 7, to: 120 }]);
    assert.deepEqual(fake.changes().slice(n), ['esxcli network vswitch standard portgroup set --portgroup-name=pg-vm-120 --vlan-id=120']);
    assert.equal(fake.portgroups.get('pg-vm-120')!.vlan, 120);
  });

  test('teaming changed by hand is re-applied', async () => {
    const fake = FakeEsxi.fresh();
    await run(fake);
    fake.switches.get('vSwitch1')!.lb = 'srcport';
    const r = await run(fake);
    assert.deepEqual(r.changes, [{ field: 'vswitch.teaming', from: 'portid', to: 'iphash' }]);
    assert.equal(fake.switches.get('vSwitch1')!.lb, 'iphash');
  });

  test('an uplink vmnic the host lacks: non-retryable, naming attach.uplinks, nothing changed', async () => {
    const fake = FakeEsxi.fresh();
    const raw = withAttach({ uplinks: ['vmnic1', 'vmnic7'] }, [{ name: 'vmnic1' }, { name: 'vmnic7' }]);
    const f = await applicationFailureOf(run(fake, raw));
    assert.equal(f.type, 'UnsupportedHardwareError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /vmnic7/);
    const ctx = f.details?.[1] as { field?: string; host?: string; step?: string };
    assert.deepEqual({ field: ctx.field, host: ctx.host, step: ctx.step }, { field: 'attach.uplinks', host: 'esx-r21-05', step: 'attach' });
    assert.deepEqual(fake.changes(), []);
  });

  test('an uplink of another vSwitch (vSwitch0, the management one) is refused before any change', async () => {
    const fake = FakeEsxi.fresh();
    const raw = withAttach({ uplinks: ['vmnic0', 'vmnic1'] }, [{ name: 'vmnic0' }, { name: 'vmnic1' }]);
    const f = await applicationFailureOf(run(fake, raw));
    assert.equal(f.type, 'LockoutRiskError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /vmnic0 is an uplink of vSwitch0/);
    assert.deepEqual(fake.changes(), []);
  });

  test('a port group of that name on another vSwitch is refused, naming attach.portgroup', async () => {
    const fake = FakeEsxi.fresh();
    fake.portgroups.set('pg-vm-120', { vswitch: 'vSwitch0', vlan: 0, activeClients: 0 });
    fake.switches.get('vSwitch0')!.portgroups.unshift('pg-vm-120');
    const f = await applicationFailureOf(run(fake));
    assert.equal(f.type, 'InvalidSpecError');
    assert.equal(f.nonRetryable, true);
    assert.equal((f.details?.[1] as { field?: string }).field, 'attach.portgroup');
    assert.deepEqual(fake.changes(), []);
  });
});
