/**
 * The pure parts of the lab benchmark (bench/lab-contenders.ts): the raw-SSH script and the Ansible playbook and
 * inventory generated from a spec. The benchmark itself boots VMs and never runs in CI; here the generated shell is
 * checked by bash and awk on this machine (the waits against /proc/net/bonding captured on the lab), the ifupdown
 * takeover against underlay's own, and the playbook by `ansible-playbook --syntax-check` when the pinned
 * ansible-core is installed (scripts/install-ansible.sh; skipped otherwise).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { BENCHMARKS_INTRO, benchmarksDoc } from '../../bench/doc';
import { labContenders } from '../../bench/lab-onboarding';
import { disableStanzasAwk, inventoryYaml, lacpHolds, networkPlan, playbookYaml, rawSshScript } from '../../bench/lab-contenders';
import { bondConfig } from '../../src/activities/bond';
import { renderBondFiles, renderVlanFiles } from '../../src/drivers/linux/persist';
import { disableInterfaces } from '../../src/drivers/linux/persist/ifupdown-parse';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpec, ServerSpecInput } from '../../src/spec/server';

const root = resolve(__dirname, '../..');
const fixture = (name: string) => readFileSync(join(root, 'test/fixtures/linux', name), 'utf8');
const HOST_KEY = 'SHA256:qKUzlCK0unWYUUF15xLbuCYrao6hK4QHJrJyYzamUjo';

/** A lab server's spec (as lab/spec.ts renders it), without a running lab. */
function input(over: Partial<ServerSpecInput> = {}): ServerSpecInput {
  return {
    id: 'bench-h1-server1',
    site: 'lab',
    rack: 'qemu',
    management: { address: '127.0.0.1', port: 27201, user: 'root', hostKey: HOST_KEY, credentials: { privateKeyFile: '/work/lab/id_ed25519' } },
    nics: [
      { name: 'eth1', mac: '52:54:00:00:01:01', speedMbps: 10000, lldp: { switch: 'leaf-01', port: 'swp1' } },
      { name: 'eth2', mac: '52:54:00:00:01:02', speedMbps: 10000, lldp: { switch: 'leaf-01', port: 'swp2' } },
      { name: 'eth3', cabled: false },
    ],
    bond: { name: 'bond0', members: ['eth1', 'eth2'], mode: '802.3ad', lacpRate: 'fast', xmitHashPolicy: 'layer3+4', miimon: 100 },
    vlans: [
      { id: 100, parent: 'bond0', address: '192.0.2.11/24', gateway: '192.0.2.1' },
      { id: 200, parent: 'bond0', address: '198.18.1.11/24', gateway: '198.18.1.1' },
    ],
    sriov: { pf: 'eth3', numVfs: 4, vfioPci: false },
    hypervisor: { kind: 'kvm' },
    attach: { kind: 'macvtap', network: 'underlay-macvtap', mode: 'bridge' },
    ...over,
  } as ServerSpecInput;
}
const spec = (over: Partial<ServerSpecInput> = {}): ServerSpec => parseServerSpec(input(over), 'test spec');

/** The lab's ifupdown image as its installer leaves /etc/network/interfaces (read on a lab VM). */
const LAB_INTERFACES = `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# Management (the underlay lab's QEMU user-mode network)
auto eth0
iface eth0 inet static
\taddress 198.18.0.15/24

# Data NICs, cabled to leaf-01
auto eth1
iface eth1 inet manual

auto eth2
iface eth2 inet manual
`;

function awk(program: { text: string }, stdinText: string): { status: number | null; stdout: string } {
  const r = spawnSync('bash', ['-c', program.text], { input: stdinText, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout };
}

test('the ifupdown takeover of the scripts writes the bytes underlay writes', () => {
  const members = ['eth1', 'eth2'];
  const withOptions = `${LAB_INTERFACES}\nauto eth9\niface eth9 inet static\n    address 192.0.2.9/24\n    mtu 9000\n\niface eth2 inet6 manual\n    # a comment line\n    mtu 1500\n`;
  for (const text of [LAB_INTERFACES, withOptions]) {
    const r = awk(disableStanzasAwk(members), text);
    assert.equal(r.status, 0);
    assert.equal(r.stdout, disableInterfaces(text, members));
  }
  assert.match(disableInterfaces(LAB_INTERFACES, members), /#underlay-disabled# iface eth1 inet manual/);
  // A line that names a member next to another interface is refused, not split differently from underlay.
  assert.equal(awk(disableStanzasAwk(members), 'auto eth0 eth1\n').status, 3);
});

test('the LACP wait holds on a converged bond and not while negotiating, with no partner or churned', () => {
  const p = networkPlan(spec());
  const check = (text: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'lacp-'));
    try {
      const file = join(dir, 'bond0');
      writeFileSync(file, text);
      return spawnSync('bash', ['-c', lacpHolds(p).text.replace('/proc/net/bonding/bond0', file)]).status;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  assert.equal(check(fixture('proc-net-bonding-bond0.lacp-up.txt')), 0);
  for (const f of ['negotiating', 'partner-down', 'partner-down-churned']) assert.equal(check(fixture(`proc-net-bonding-bond0.${f}.txt`)), 1, f);
});

test('the raw-SSH script: valid bash, the runbook in order, underlay’s files, bounded waits', () => {
  const s = spec();
  const script = rawSshScript(s);
  execFileSync('bash', ['-n'], { input: script });
  const order = ['cable', 'bond', 'vlan', 'sriov', 'hypervisor', 'attach'].map((n) => script.indexOf(`# --- ${n}\n`));
  assert.ok(
    order.every((i, k) => i > 0 && (k === 0 || i > order[k - 1]!)),
    `sections in order: ${order.join(',')}`,
  );
  // The files are the ones underlay renders for this spec (the same functions), as shell-quoted literals.
  for (const f of [
    ...renderBondFiles('ifupdown', bondConfig(s.bond!), s.id),
    ...renderVlanFiles(
      'ifupdown',
      [
        { name: 'bond0.100', parent: 'bond0', id: 100, address: '192.0.2.11/24' },
        { name: 'bond0.200', parent: 'bond0', id: 200, address: '198.18.1.11/24' },
      ],
      s.id,
      {},
    ),
  ]) {
    assert.ok(script.includes(`printf '%s' '${f.content!.replace(/'/g, `'\\''`)}' > ${f.path}.tmp`), f.path);
  }
  assert.match(script, /ifdown "\$m"[\s\S]*underlay-bond0\n[\s\S]*ifup bond0\n/);
  assert.match(script, /ping -c 2 -i 0\.3 -W 1 -I bond0\.200 198\.18\.1\.1/);
  assert.match(script, /KERNELS=="'; printf '%s' "\$dev"; printf '%s' '", ATTR\{device\/sriov_numvfs\}="4"/);
  // Every wait is bounded by its step's timeout.
  const waits = script.match(/-ge (\d+) \]; then echo 'timed out/g) ?? [];
  assert.deepEqual(
    waits.map((w) => Number(/\d+/.exec(w)![0])),
    [75, 30, 45, 30, 60, 20],
  );
});

test('specs the contenders do not cover are refused by field, not generated wrong', () => {
  const cases: Array<[Partial<ServerSpecInput>, RegExp]> = [
    [{ attach: { kind: 'ovs', bridge: 'br-underlay', vlanPorts: [] } } as Partial<ServerSpecInput>, /attach\.kind: expected macvtap/],
    [{ network: { manager: 'networkd' } } as Partial<ServerSpecInput>, /network\.manager: expected ifupdown/],
    [{ sriov: { pf: 'eth3', numVfs: 4, vfioPci: true } }, /sriov\.vfioPci/],
    [{ bond: { name: 'bond0', members: ['eth1', 'eth2'], mode: 'active-backup', miimon: 100 } } as Partial<ServerSpecInput>, /bond\.mode: expected 802\.3ad/],
  ];
  for (const [over, re] of cases) {
    assert.throws(() => rawSshScript(spec(over)), re);
    assert.throws(() => inventoryYaml([{ inventoryName: 'h', spec: spec(over), privateKeyFile: '/k', knownHostsFile: '/kh' }]), re);
  }
});

test('the playbook: ansible.builtin modules only, bounded retries; the inventory pins host keys', () => {
  const plays = parse(playbookYaml()) as Array<{ hosts: string; gather_facts: boolean; tasks: Array<Record<string, unknown>> }>;
  assert.equal(plays.length, 1);
  assert.equal(plays[0]!.hosts, 'all');
  const modules = plays[0]!.tasks.map((t) => Object.keys(t).find((k) => k.includes('.'))!);
  assert.ok(
    modules.every((m) => m.startsWith('ansible.builtin.')),
    modules.join(', '),
  );
  for (const t of plays[0]!.tasks.filter((x) => 'until' in x)) assert.ok((t.retries as number) * (t.delay as number) <= 75, String(t.name));
  const inv = parse(
    inventoryYaml([
      { inventoryName: 'server1', spec: spec(), privateKeyFile: '/lab/id_ed25519', knownHostsFile: '/lab/known_hosts' },
      {
        inventoryName: 'server2',
        spec: spec({
          id: 'bench-h1-server2',
          management: { address: '127.0.0.1', port: 27202, user: 'root', hostKey: HOST_KEY, credentials: { privateKeyFile: '/lab/id_ed25519' } },
        }),
        privateKeyFile: '/lab/id_ed25519',
        knownHostsFile: '/lab/known_hosts',
      },
    ]),
  ) as { all: { hosts: Record<string, Record<string, unknown> & { u: { bond_file: { content: string }; check: Record<string, string> } }> } };
  const h1 = inv.all.hosts.server1!;
  assert.equal(h1.ansible_port, 27201);
  assert.equal(inv.all.hosts.server2!.ansible_port, 27202);
  assert.match(String(h1.ansible_ssh_common_args), /UserKnownHostsFile=\/lab\/known_hosts .*StrictHostKeyChecking=yes/);
  assert.doesNotMatch(
    inventoryYaml([{ inventoryName: 'h', spec: spec(), privateKeyFile: '/k', knownHostsFile: '/kh' }]),
    /StrictHostKeyChecking=no|host_key_checking/i,
  );
  assert.match(h1.u.bond_file.content, /^# Written by underlay for bench-h1-server1 \(bond step\)/);
  // The host variables are templated by Jinja: nothing in them may look like a Jinja expression or comment.
  assert.doesNotMatch(JSON.stringify(h1.u), /\{\{|\{%|\{#/);
});

const ANSIBLE = join(root, '.tools/ansible/bin/ansible-playbook');

test(
  'the generated playbook passes ansible-playbook --syntax-check',
  { skip: existsSync(ANSIBLE) ? false : 'ansible-core is not installed (bash scripts/install-ansible.sh; the lab benchmark installs it)' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'playbook-'));
    try {
      writeFileSync(join(dir, 'playbook.yml'), playbookYaml());
      writeFileSync(
        join(dir, 'inventory.yml'),
        inventoryYaml([{ inventoryName: 'server1', spec: spec(), privateKeyFile: '/lab/id_ed25519', knownHostsFile: '/lab/known_hosts' }]),
      );
      const out = execFileSync(ANSIBLE, ['-i', 'inventory.yml', 'playbook.yml', '--syntax-check'], {
        cwd: dir,
        env: { ...process.env, ANSIBLE_HOME: join(dir, 'home'), ANSIBLE_LOCAL_TEMP: join(dir, 'tmp'), PYTHONDONTWRITEBYTECODE: '1', ANSIBLE_NOCOLOR: '1' },
        encoding: 'utf8',
      });
      assert.match(out, /playbook: playbook\.yml/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('--write with --only replaces that run’s own section of docs/benchmarks.md and keeps the others', () => {
  const whole = benchmarksDoc('', '## Measured: size `medium`\n\nengine table\n');
  assert.ok(whole.startsWith(BENCHMARKS_INTRO));
  const withLab = benchmarksDoc(whole, '## Measured: size `smoke`, `--only lab`\n\nlab table 1\n', ['lab']);
  assert.match(withLab, /engine table[\s\S]*<!-- bench --only lab -->\n## Measured: size `smoke`, `--only lab`\n\nlab table 1\n<!-- \/bench --only lab -->\n$/);
  const again = benchmarksDoc(withLab, '## Measured: size `full`, `--only lab`\n\nlab table 2\n', ['lab']);
  assert.doesNotMatch(again, /lab table 1/);
  assert.match(again, /engine table[\s\S]*lab table 2/);
  assert.equal(again.split('<!-- bench --only lab -->').length, 2);
  // A whole run (no --only) rewrites the file.
  assert.doesNotMatch(benchmarksDoc(again, '## Measured: size `smoke`\n\nnew\n'), /lab table|engine table/);
});

test('UNDERLAY_BENCH_LAB_CONTENDERS picks contenders; the raw-SSH baseline always runs, first', () => {
  assert.deepEqual(labContenders(undefined), ['raw SSH', 'underlay', 'ansible-playbook']);
  assert.deepEqual(labContenders('ansible,underlay'), ['raw SSH', 'underlay', 'ansible-playbook']);
  assert.deepEqual(labContenders('underlay'), ['raw SSH', 'underlay']);
  assert.throws(() => labContenders('raw,salt'), /unknown contender "salt"/);
});
