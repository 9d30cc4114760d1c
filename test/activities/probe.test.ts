/**
 * The health probe (src/activities/probe.ts, src/drivers/linux/probe.ts):
 *  - read against the spec on outputs captured on lab hosts (this kernel has no bonding, 8021q or netdevsim):
 *    /proc/net/bonding negotiated, negotiating, partner down and churned; lldpctl; ping answered and silent;
 *  - run for real over a real sshd (127.0.0.1) on this machine, against veth pairs into a network namespace the
 *    test creates (198.19.x.0/24): a gateway that answers (loss 0), one that drops every other echo request
 *    (nftables in its namespace: loss 0.5) and one that is gone (loss 1); the textfile it writes is what
 *    `promtool check metrics` accepts.
 * Cost: ≈ 10 s (three 10-request bursts at 0.2 s, sshd start).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { evaluateProbe, probeHost, probeTargets, renderHealthTextfile, validTextfileDir, TEXTFILE_NAME } from '../../src/activities/probe';
import { parseProcNetBonding } from '../../src/drivers/linux/parse/bonding';
import { parsePing, parseProbeOutput, probeScript } from '../../src/drivers/linux/probe';
import { RemoteHost } from '../../src/drivers/remote';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpec } from '../../src/spec/server';
import { SshSession } from '../../src/transports/ssh';
import { capturedOutput, fx, labSpec } from '../helpers/probe-captures';
import { startSshd, type Sshd } from '../helpers/sshd';

describe('health probe read against the spec (outputs captured on lab hosts)', () => {
  test('negotiated bond: 2 of 2 ports active with a partner; loss 0 and 1; LLDP as expected; 4 VFs', () => {
    const h = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.lacp-up.txt'))), 2.5);
    assert.deepEqual(h.bonds, [
      {
        name: 'bond0',
        configured: 2,
        active: 2,
        partner: true,
        present: true,
        members: [
          { nic: 'eth1', inService: true, churned: false },
          { nic: 'eth2', inService: true, churned: false },
        ],
      },
    ]);
    assert.deepEqual(
      h.gateways.map((g) => [g.vlan, g.transmitted, g.received, g.lossRatio]),
      [
        [100, 2, 2, 0],
        [200, 2, 0, 1],
      ],
    );
    assert.equal(h.gateways[0]!.rttSeconds, 0.011021);
    assert.equal(h.gateways[1]!.rttSeconds, null);
    assert.deepEqual(
      h.lldp.map((l) => [l.nic, l.match]),
      [
        ['eth1', true],
        ['eth2', true],
      ],
    );
    assert.deepEqual(h.sriov, { pf: 'eth3', expected: 4, observed: 4 });
    assert.deepEqual(
      h.nics.map((n) => [n.nic, n.present, n.carrier, n.speedBytesPerSecond]),
      [
        ['eth1', true, true, 1.25e9],
        ['eth2', true, true, 1.25e9],
        ['eth3', true, null, null],
      ],
    );
    assert.deepEqual(h.nics[0]!.counters, { rx_errors: 0, rx_crc_errors: 3 });
    assert.deepEqual(h.parts, { links: true, bond: true, nics: true, lldp: true, sriov: true, gateway: true });
  });

  test('partner gone: 0 active ports, no partner; churned members are flagged once LACP gives up', () => {
    const down = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.partner-down.txt'))), 1).bonds[0]!;
    assert.deepEqual([down.active, down.partner, down.members.map((m) => m.churned)], [0, false, [false, false]]);
    const churned = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.partner-down-churned.txt'))), 1).bonds[0]!;
    assert.deepEqual([churned.active, churned.partner, churned.members.map((m) => m.churned)], [0, false, [true, true]]);
    const negotiating = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.negotiating.txt'))), 1).bonds[0]!;
    assert.deepEqual([negotiating.active, negotiating.partner], [0, false]);
  });

  test('one leg: a member out of the active aggregator leaves 1 of 2 ports active', () => {
    // The negotiated capture with eth2 moved to another aggregator (what the kernel shows when one switch leg stops
    // answering LACP while the other keeps the partner): the rest of the file is as captured.
    const text = fx('proc-net-bonding-bond0.lacp-up.txt');
    const eth2 = text.indexOf('Slave Interface: eth2');
    const oneLeg = text.slice(0, eth2) + text.slice(eth2).replace(/Aggregator ID: 1/, 'Aggregator ID: 2');
    assert.equal(parseProcNetBonding(oneLeg).members[1]!.aggregatorId, 2);
    const b = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(oneLeg)), 1).bonds[0]!;
    assert.deepEqual([b.configured, b.active, b.partner], [2, 1, true]);
  });

  test('no LLDP neighbours heard: a mismatch per NIC; no lldpctl: the LLDP part failed, nothing claimed', () => {
    const h = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.lacp-up.txt'), fx('lldpctl-json0.no-neighbours.json'))), 1);
    assert.deepEqual(
      h.lldp.map((l) => [l.nic, l.match, l.observed]),
      [
        ['eth1', false, 'no neighbour'],
        ['eth2', false, 'no neighbour'],
      ],
    );
    const none = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.lacp-up.txt'), '@@ absent')), 1);
    assert.equal(none.parts.lldp, false);
    assert.deepEqual(none.lldp, []);
  });

  test('the textfile is valid exposition (promtool check metrics) with bounded labels', async () => {
    const h = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.lacp-up.txt'))), 2.5);
    const text = renderHealthTextfile(h);
    await promtoolCheckMetrics(text);
    assert.match(text, /^underlay_gateway_loss_ratio\{server="server1",site="lab",rack="r01",vlan="200"\} 1$/m);
    assert.match(text, /^underlay_bond_ports_active\{server="server1",site="lab",rack="r01",nic="bond0"\} 2$/m);
    assert.match(text, /^underlay_nic_receive_crc_errors_total\{server="server1",site="lab",rack="r01",nic="eth1"\} 3$/m);
    assert.match(text, /^underlay_probe_timestamp_seconds\{server="server1",site="lab",rack="r01"\} 1764500000$/m);
    const labelNames = new Set([...text.matchAll(/[{,]([a-z_]+)="/g)].map((m) => m[1]));
    assert.deepEqual([...labelNames].sort(), ['nic', 'probe', 'rack', 'server', 'site', 'vlan']);
  });

  test('parsers refuse what they do not understand', () => {
    assert.throws(() => parsePing('PING 192.0.2.1 (192.0.2.1)'), /no statistics line/);
    assert.throws(() => parseProcNetBonding('hello'), /Bonding Mode/);
    assert.throws(() => parseProbeOutput('@@ time 1\n'), /no links section/);
    assert.throws(() => validTextfileDir('var/lib'), /textfile directory/);
    assert.throws(() => validTextfileDir('/var/../etc'), /textfile directory/);
    assert.throws(() => validTextfileDir("/tmp/x'y"), /textfile directory/);
    assert.throws(() => probeScript({ ...probeTargets(labSpec), count: 0 }), /ping count/);
  });
});

async function promtoolCheckMetrics(text: string): Promise<void> {
  const child = execFile('promtool', ['check', 'metrics']);
  child.stdin!.end(text);
  const [code, out] = await new Promise<[number | null, string]>((resolve) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => (buf += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (buf += d.toString()));
    child.on('close', (c) => resolve([c, buf]));
  });
  assert.equal(code, 0, `promtool check metrics: ${out}`);
  assert.equal(out.trim(), '', `promtool lint: ${out}`);
}

describe('health probe over a real sshd, against network namespaces', () => {
  const tag = `ulp${process.pid % 10000}`;
  const ns = `${tag}gw`;
  const nic = `${tag}n`; // the "NIC": a veth whose peer sits in the namespace
  const vlanIf = `${tag}v`; // the "VLAN interface": a veth to the gateway's namespace
  const octet = 10 + (process.pid % 90); // 198.19.10–99 here, 198.19.150–249 in test/deploy/monitoring.test.ts (they may run at once)
  const gw = `198.19.${octet}.1`;
  let sshd: Sshd;
  let spec: ServerSpec;
  const dir = mkdtempSync(join(tmpdir(), 'underlay-probe-'));
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const inNs = (...args: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...args], { stdio: 'pipe' });

  before(async () => {
    sshd = await startSshd();
    ip('netns', 'add', ns);
    ip('link', 'add', nic, 'type', 'veth', 'peer', 'name', `${tag}np`);
    ip('link', 'set', `${tag}np`, 'netns', ns);
    ip('link', 'add', vlanIf, 'type', 'veth', 'peer', 'name', `${tag}g`);
    ip('link', 'set', `${tag}g`, 'netns', ns);
    ip('addr', 'add', `198.19.${octet}.2/24`, 'dev', vlanIf);
    for (const l of [nic, vlanIf]) ip('link', 'set', l, 'up');
    ip('-n', ns, 'addr', 'add', `${gw}/24`, 'dev', `${tag}g`);
    for (const l of ['lo', `${tag}np`, `${tag}g`]) ip('-n', ns, 'link', 'set', l, 'up');
    spec = parseServerSpec({
      id: 'probe-local',
      site: 'ci',
      rack: 'r00',
      management: { address: '127.0.0.1', port: sshd.port, hostKey: sshd.hostKeyFingerprint, credentials: { agent: true } },
      nics: [{ name: nic }],
      vlans: [{ id: 100, parent: nic, name: vlanIf, gateway: gw }],
      hypervisor: { kind: 'kvm' },
    });
  });
  after(async () => {
    await sshd?.stop();
    try {
      ip('link', 'del', nic);
    } catch {
      /* already gone */
    }
    try {
      ip('link', 'del', vlanIf);
    } catch {
      /* already gone */
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  });

  async function probe() {
    const s = await SshSession.connect(sshd.target());
    try {
      return await probeHost(new RemoteHost(s, spec.id, true), spec, { textfileDir: dir });
    } finally {
      s.close();
    }
  }

  test('gateway answering, then dropping every other request, then gone: loss 0, 0.5, 1 in the textfile', async () => {
    const ok = await probe();
    assert.deepEqual(
      ok.gateways.map((g) => [g.vlan, g.transmitted, g.received, g.lossRatio]),
      [[100, 10, 10, 0]],
    );
    assert.ok(ok.gateways[0]!.rttSeconds! > 0 && ok.gateways[0]!.rttSeconds! < 1, `rtt ${ok.gateways[0]!.rttSeconds}`);
    const n = ok.nics[0]!;
    assert.deepEqual([n.nic, n.present, n.carrier, n.speedBytesPerSecond], [nic, true, true, 1.25e9]);
    // The counters are the kernel's: read the same files directly.
    const rxDropped = Number(readFileSync(`/sys/class/net/${nic}/statistics/rx_dropped`, 'utf8'));
    assert.equal(n.counters.rx_dropped, rxDropped);
    assert.equal(ok.parts.gateway, true);
    const file = readFileSync(join(dir, TEXTFILE_NAME), 'utf8');
    assert.match(file, new RegExp(`^underlay_gateway_loss_ratio\\{server="probe-local",site="ci",rack="r00",vlan="100"\\} 0$`, 'm'));
    assert.match(file, new RegExp(`^underlay_probe_timestamp_seconds\\{[^}]*\\} ${ok.timestamp}$`, 'm'));
    await promtoolCheckMetrics(file);

    inNs('nft', 'add', 'table', 'inet', 'ulprobe');
    inNs('nft', 'add', 'chain', 'inet', 'ulprobe', 'in', '{ type filter hook input priority 0 ; }');
    inNs('nft', 'add', 'rule', 'inet', 'ulprobe', 'in', 'icmp', 'type', 'echo-request', 'numgen', 'inc', 'mod', '2', '==', '0', 'drop');
    const half = await probe();
    assert.deepEqual(
      half.gateways.map((g) => [g.transmitted, g.received, g.lossRatio]),
      [[10, 5, 0.5]],
    );
    assert.match(readFileSync(join(dir, TEXTFILE_NAME), 'utf8'), /^underlay_gateway_loss_ratio\{[^}]*vlan="100"\} 0\.5$/m);

    inNs('nft', 'delete', 'table', 'inet', 'ulprobe');
    inNs('ip', 'addr', 'flush', 'dev', `${tag}g`);
    const gone = await probe();
    assert.deepEqual(
      gone.gateways.map((g) => [g.transmitted, g.received, g.lossRatio, g.rttSeconds]),
      [[10, 0, 1, null]],
    );
    assert.match(readFileSync(join(dir, TEXTFILE_NAME), 'utf8'), /^underlay_gateway_loss_ratio\{[^}]*vlan="100"\} 1$/m);
    assert.doesNotMatch(readFileSync(join(dir, TEXTFILE_NAME), 'utf8'), /underlay_gateway_rtt_seconds/);
    assert.ok(gone.timestamp >= ok.timestamp);
  });

  test('a NIC set down has no carrier; a spec NIC that is not there: present 0, no other series for it', async () => {
    ip('link', 'set', nic, 'down');
    const down = await probe();
    // The kernel refuses to read carrier of an admin-down link (EINVAL): unknown, exposed as no carrier.
    assert.deepEqual([down.nics[0]!.present, down.nics[0]!.carrier], [true, null]);
    assert.match(readFileSync(join(dir, TEXTFILE_NAME), 'utf8'), new RegExp(`^underlay_nic_carrier\\{[^}]*nic="${nic}"\\} 0$`, 'm'));
    ip('link', 'set', nic, 'up');
    const saved = spec;
    spec = { ...spec, nics: [{ ...spec.nics[0]!, name: `${tag}x` }], vlans: [] };
    try {
      const h = await probe();
      assert.deepEqual([h.nics[0]!.present, h.nics[0]!.counters], [false, {}]);
      const file = readFileSync(join(dir, TEXTFILE_NAME), 'utf8');
      assert.match(file, new RegExp(`^underlay_nic_present\\{[^}]*nic="${tag}x"\\} 0$`, 'm'));
      assert.doesNotMatch(file, /underlay_nic_carrier/);
    } finally {
      spec = saved;
    }
  });

  test('underlay health <spec> (bin/underlay) probes over the spec’s own SSH settings and prints the result', () => {
    inNs('ip', 'addr', 'add', `${gw}/24`, 'dev', `${tag}g`); // the first test took the gateway away
    const file = join(dir, 'spec.json');
    writeFileSync(file, JSON.stringify({ ...spec, management: { ...spec.management, credentials: { privateKeyFile: sshd.userKeyPath } } }));
    const root = resolve(__dirname, '../..');
    const run = (...args: string[]) =>
      spawnSync(join(root, 'bin/underlay'), ['health', file, '--count', '3', ...args], {
        cwd: root,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' },
      });
    const text = run();
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`✓ VLAN 100 gateway ${gw.replaceAll('.', '\\.')} via ${vlanIf}: loss 0% \\(3/3\\)`));
    assert.match(text.stdout, new RegExp(`✓ ${nic}: carrier, 10 Gb/s`));
    const json = run('--json');
    assert.equal(json.status, 0, json.stderr);
    assert.deepEqual(
      (JSON.parse(json.stdout) as { gateways: Array<{ lossRatio: number }> }).gateways.map((g) => g.lossRatio),
      [0],
    );
  });
});
