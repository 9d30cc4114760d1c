/**
 * Tests of the server spec: the examples, every rejection rule (by exact field path), file loading and the
 * JSON Schema. Run: node --import tsx --test test/spec/*.test.ts
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { InvalidSpecError } from '../../src/common/errors';
import { loadSpecFile, MAX_SPEC_BYTES, parseSpecText, validateSpecFile } from '../../src/spec/load';
import { ATTACH_MATRIX, PLATFORM_MATRIX, ServerSpecShape, vlanIfName } from '../../src/spec/server';
import { formatPath, MAX_ISSUES, parseServerSpec, serverSpecJsonSchema, validateServerSpec, type SpecIssue } from '../../src/spec/validate';
import { movedPath } from '../../src/spec/management';

// ---- helpers ---------------------------------------------------------------------------------------------------

const EXAMPLES_DIR = resolve(__dirname, '../../examples');
const SPEC_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);
const exampleFiles = readdirSync(EXAMPLES_DIR)
  .filter((f) => SPEC_EXTENSIONS.has(extname(f)))
  .sort();

type Key = string | number;
type Obj = Record<Key, unknown>;

/** A fresh, mutable copy of an example's raw (pre-validation) content. */
function example(file: string): Obj {
  const raw = parseSpecText(readFileSync(join(EXAMPLES_DIR, file), 'utf8'), file);
  assert.ok(raw && typeof raw === 'object', `${file} is not a mapping`);
  return structuredClone(raw) as Obj;
}

function container(root: unknown, path: readonly Key[]): Obj {
  let cur = root;
  for (const k of path.slice(0, -1)) {
    const next = (cur as Obj)[k];
    assert.ok(next && typeof next === 'object', `no object at ${String(k)} of ${path.join('.')}`);
    cur = next;
  }
  return cur as Obj;
}
function setAt(root: unknown, path: readonly Key[], value: unknown): void {
  container(root, path)[path[path.length - 1] as Key] = value;
}
function deleteAt(root: unknown, path: readonly Key[]): void {
  delete container(root, path)[path[path.length - 1] as Key];
}
function getAt(root: unknown, path: readonly Key[]): unknown {
  return path.reduce<unknown>((cur, k) => (cur as Obj | undefined)?.[k], root);
}

/** Validates and returns the issues, failing the test if the spec was accepted. */
function issuesOf(raw: unknown): SpecIssue[] {
  const r = validateServerSpec(raw);
  if (r.ok) assert.fail('expected the spec to be rejected, but it validated');
  assert.ok(r.issues.length > 0);
  return r.issues;
}
const show = (issues: SpecIssue[]) => issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');

/** Asserts an issue at exactly `path` (optionally whose message matches) and returns the issues. */
function assertIssueAt(raw: unknown, path: string, message?: RegExp): SpecIssue[] {
  const issues = issuesOf(raw);
  const hit = issues.some((i) => i.path === path && (!message || message.test(i.message)));
  assert.ok(hit, `expected an issue at ${path}${message ? ` matching ${message}` : ''}; got:\n${show(issues)}`);
  return issues;
}

function assertValid(raw: unknown) {
  const r = validateServerSpec(raw);
  if (!r.ok) assert.fail(`expected the spec to validate; got:\n${show(r.issues)}`);
  return r.spec;
}

const tmp = mkdtempSync(join(tmpdir(), 'underlay-spec-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let tmpCount = 0;
function tmpFile(name: string, text: string): string {
  const p = join(tmp, `${tmpCount++}-${name}`);
  writeFileSync(p, text);
  return p;
}

const PEM = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  '-----END OPENSSH PRIVATE KEY-----',
  '',
].join('\n');

// ---- examples ----------------------------------------------------------------------------------------------------

describe('examples/', () => {
  test('holds the documented examples', () => {
    for (const f of ['kvm-macvtap.yaml', 'kvm-ovs.yaml', 'xen-bridge.yaml', 'esxi-vds.yaml', 'hyperv-set.yaml', 'kvm-minimal.json']) {
      assert.ok(exampleFiles.includes(f), `examples/${f} is missing`);
    }
  });

  for (const file of exampleFiles) {
    describe(file, () => {
      test('validates via validateSpecFile', async () => {
        const r = await validateSpecFile(join(EXAMPLES_DIR, file));
        if (!r.ok) assert.fail(`examples/${file} is invalid:\n${show(r.issues)}`);
      });

      test('loads via loadSpecFile and parses with the zod schema alone', async () => {
        const spec = await loadSpecFile(join(EXAMPLES_DIR, file));
        assert.equal(spec.apiVersion, 'underlay/v1');
        const parsed = ServerSpecShape.safeParse(example(file));
        assert.ok(parsed.success, parsed.success ? '' : parsed.error.message);
        assert.deepEqual(parsed.data, spec);
      });

      test('attach kind fits the hypervisor', () => {
        const spec = assertValid(example(file));
        if (spec.attach) {
          const allowed: readonly string[] = ATTACH_MATRIX[spec.hypervisor.kind];
          assert.ok(allowed.includes(spec.attach.kind));
        }
      });

      test('uses only documentation addresses and example.net host names', () => {
        const strings: Array<[string, string]> = [];
        const walk = (v: unknown, path: Key[]) => {
          if (typeof v === 'string') strings.push([formatPath(path), v]);
          else if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, [...path, Array.isArray(v) ? Number(k) : k]);
        };
        walk(example(file), []);
        const inDocRange = (ip: string) => {
          const o = ip.split('.').map(Number);
          return (o[0] === 192 && o[1] === 0 && o[2] === 2) || (o[0] === 198 && (o[1] === 18 || o[1] === 19));
        };
        for (const [path, s] of strings) {
          for (const ip of s.match(/\b\d{1,3}(?:\.\d{1,3}){3}\b/g) ?? []) {
            assert.ok(inDocRange(ip), `${path}: ${ip} is not in 192.0.2.0/24 or 198.18.0.0/15`);
          }
          const host = /^https?:\/\/([^/:?#]+)/.exec(s)?.[1] ?? (/(address)$/.test(path) && /[a-z]/i.test(s) && !s.includes(':') ? s : undefined);
          if (host) assert.match(host, /(^|\.)example\.net$/, `${path}: host ${host} is not under example.net`);
        }
      });

      test('pins a canonical SHA256 host key fingerprint', () => {
        const spec = assertValid(example(file));
        const b64 = spec.management.hostKey.slice('SHA256:'.length);
        const bytes = Buffer.from(b64, 'base64');
        assert.equal(bytes.length, 32, 'a SHA-256 digest is 32 bytes');
        assert.equal(bytes.toString('base64').replace(/=+$/, ''), b64, 'not canonical base64');
      });
    });
  }

  test('defaults are applied (kvm-minimal.json)', () => {
    const spec = assertValid(example('kvm-minimal.json'));
    assert.equal(spec.apiVersion, 'underlay/v1');
    assert.equal(spec.management.port, 22);
    assert.equal(spec.management.user, 'root');
    assert.deepEqual(spec.vlans, []);
    assert.ok(spec.bond);
    assert.equal(spec.bond.name, 'bond0');
    assert.equal(spec.bond.mode, '802.3ad');
    assert.equal(spec.bond.lacpRate, 'fast');
    assert.equal(spec.bond.xmitHashPolicy, 'layer3+4');
    assert.equal(spec.bond.miimon, 100);
    assert.deepEqual(spec.attach, { kind: 'macvtap', network: 'underlay-macvtap', mode: 'bridge' });
  });

  test('defaults are applied (other examples)', () => {
    const ovs = assertValid(example('kvm-ovs.yaml'));
    assert.equal(ovs.management.port, 22);
    assert.equal(ovs.bond?.mode, '802.3ad');
    assert.equal(ovs.bond?.name, 'bond0');

    const macvtap = assertValid(example('kvm-macvtap.yaml'));
    assert.equal(macvtap.nics[0]?.mac, '0c:42:a1:3b:7e:10', 'MACs are normalised to lowercase');
    assert.equal(macvtap.sriov?.vfioPci, true);
    assert.equal(vlanIfName(macvtap.vlans[0] ?? assert.fail('no VLAN')), 'bond0.100');

    const esxi = assertValid(example('esxi-vds.yaml'));
    assert.equal(esxi.management.port, 22);
    assert.equal(esxi.attach?.kind === 'vds' && esxi.attach.vcenter.port, 443);
    assert.deepEqual(esxi.vlans, []);

    const hv = assertValid(example('hyperv-set.yaml'));
    assert.equal(hv.hypervisor.kind === 'hyperv' && hv.hypervisor.transport, 'ssh');

    const raw = example('kvm-minimal.json');
    setAt(raw, ['hypervisor'], { kind: 'hyperv' });
    // Hyper-V takes no bond (the SET switch is the team): the NICs are listed in the attach.
    const members = getAt(raw, ['bond', 'members']);
    deleteAt(raw, ['bond']);
    setAt(raw, ['attach'], { kind: 'set', nics: members });
    const set = assertValid(raw);
    assert.deepEqual(set.attach, { kind: 'set', switchName: 'SETswitch', loadBalancing: 'Dynamic', nics: members });

    const xen = example('xen-bridge.yaml');
    deleteAt(xen, ['attach', 'name']);
    deleteAt(xen, ['hypervisor', 'dom0MemoryMb']);
    const xs = assertValid(xen);
    assert.equal(xs.attach?.kind === 'bridge' ? xs.attach.name : undefined, 'xenbr0');

    const ovsRaw = example('kvm-ovs.yaml');
    deleteAt(ovsRaw, ['attach', 'vlanPorts']);
    deleteAt(ovsRaw, ['attach', 'bridge']);
    const o = assertValid(ovsRaw);
    assert.deepEqual(o.attach?.kind === 'ovs' ? [o.attach.bridge, o.attach.vlanPorts] : undefined, ['br-underlay', []]);

    const esxiRaw = example('esxi-vds.yaml');
    deleteAt(esxiRaw, ['hypervisor', 'bmc', 'port']);
    deleteAt(esxiRaw, ['attach', 'lacp']);
    const e = assertValid(esxiRaw);
    assert.equal(e.hypervisor.kind === 'esxi' && e.hypervisor.bmc.port, 443);
    assert.equal(e.attach?.kind === 'vds' && e.attach.lacp, false);
  });
});

// ---- rejections ----------------------------------------------------------------------------------------------------

describe('rejections', () => {
  test('VLAN id 0 and 4095 (and a non-integer)', () => {
    for (const id of [0, 4095, -1, 100.5]) {
      const raw = example('kvm-macvtap.yaml');
      setAt(raw, ['vlans', 0, 'id'], id);
      assertIssueAt(raw, 'vlans[0].id');
    }
    for (const id of [1, 4094]) {
      const raw = example('kvm-macvtap.yaml');
      setAt(raw, ['vlans', 0, 'id'], id);
      setAt(raw, ['attach', 'device'], `bond0.${id}`);
      assertValid(raw);
    }
    const ovs = example('kvm-ovs.yaml');
    setAt(ovs, ['attach', 'vlanPorts', 1, 'vlan'], 4095);
    assertIssueAt(ovs, 'attach.vlanPorts[1].vlan');
  });

  describe('interface names with ";" or a space', () => {
    const places: Array<[string, Key[]]> = [
      ['nics[].name', ['nics', 1, 'name']],
      ['bond.members', ['bond', 'members', 1]],
      ['vlans[].parent', ['vlans', 0, 'parent']],
    ];
    for (const [label, path] of places) {
      for (const bad of ['ens1f1;reboot', 'ens1f1 x', 'ens1f1;', ' ens1f1']) {
        test(`${label} = ${JSON.stringify(bad)}`, () => {
          const raw = example('kvm-macvtap.yaml');
          setAt(raw, path, bad);
          assertIssueAt(raw, formatPath(path), /^must be an interface name/);
        });
      }
    }
  });

  test('a bond member that is not a NIC', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['bond', 'members', 1], 'ens9f9');
    assertIssueAt(raw, 'bond.members[1]', /not one of the spec's NICs/);
  });

  test('a bond member listed twice, and a bond named like a NIC', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['bond', 'members'], ['ens1f0', 'ens1f0']);
    assertIssueAt(raw, 'bond.members[1]', /listed twice/);
    const named = example('kvm-macvtap.yaml');
    setAt(named, ['bond', 'name'], 'ens2f0');
    assertIssueAt(named, 'bond.name', /already a NIC/);
  });

  test('a VLAN parent that does not exist, or is a bond member', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['vlans', 0, 'parent'], 'bond1');
    assertIssueAt(raw, 'vlans[0].parent', /neither the bond nor a NIC/);
    const member = example('kvm-macvtap.yaml');
    setAt(member, ['vlans', 0, 'parent'], 'ens1f0');
    assertIssueAt(member, 'vlans[0].parent', /bond member/);
  });

  test('a VLAN defined twice on one parent; a VLAN interface name too long or clashing', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['vlans', 1], { id: 100, parent: 'bond0' });
    assertIssueAt(raw, 'vlans[1].id', /defined twice/);

    const long = example('kvm-macvtap.yaml');
    setAt(long, ['bond', 'name'], 'bond-uplink0');
    setAt(long, ['bond', 'members'], ['ens1f0', 'ens1f1']);
    setAt(long, ['vlans', 0, 'parent'], 'bond-uplink0');
    setAt(long, ['attach', 'device'], 'bond-uplink0');
    assertIssueAt(long, 'vlans[0].name', /longer than 15/);

    for (const name of ['ens2f0', 'bond0']) {
      const clash = example('kvm-macvtap.yaml');
      setAt(clash, ['vlans', 0, 'name'], name);
      setAt(clash, ['attach', 'device'], 'bond0');
      assertIssueAt(clash, 'vlans[0].name', /already a NIC, the bond or another VLAN/);
    }
    const twoVlans = example('kvm-macvtap.yaml');
    setAt(twoVlans, ['vlans', 1], { id: 101, parent: 'bond0', name: 'bond0.100' });
    assertIssueAt(twoVlans, 'vlans[1].name', /already/);
  });

  test('SR-IOV on something that is not a NIC', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['sriov', 'pf'], 'bond0');
    assertIssueAt(raw, 'sriov.pf', /not one of the spec's NICs/);
    const zero = example('kvm-macvtap.yaml');
    setAt(zero, ['sriov', 'numVfs'], 0);
    assertIssueAt(zero, 'sriov.numVfs');
  });

  describe('inline secrets', () => {
    const cases: Array<[string, string, Key[], unknown]> = [
      ['management.password', 'kvm-macvtap.yaml', ['management', 'password'], 'hunter2'],
      ['management.credentials.password', 'kvm-macvtap.yaml', ['management', 'credentials', 'password'], 'hunter2'],
      ['management.credentials.passphrase', 'kvm-macvtap.yaml', ['management', 'credentials', 'passphrase'], 'correct horse'],
      ['management.credentials as a string', 'kvm-minimal.json', ['management', 'credentials'], 'hunter2'],
      ['a numeric password', 'kvm-minimal.json', ['management', 'password'], 123456],
      ['hypervisor.bmc.credentials.password', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'credentials', 'password'], 'calvin'],
      ['hypervisor.bmc.password', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'password'], 'calvin'],
      ['attach.vcenter.credentials.password', 'esxi-vds.yaml', ['attach', 'vcenter', 'credentials', 'password'], 'VMware1!'],
      ['attach.vcenter.token', 'esxi-vds.yaml', ['attach', 'vcenter', 'token'], 'abc123'],
      ['hypervisor.rootPassword as a string', 'esxi-vds.yaml', ['hypervisor', 'rootPassword'], 'VMware1!'],
      ['hypervisor.rootPassword.password', 'esxi-vds.yaml', ['hypervisor', 'rootPassword', 'password'], 'VMware1!'],
      ['management.apiKey', 'kvm-minimal.json', ['management', 'apiKey'], 'abc'],
      ['management.secret', 'kvm-minimal.json', ['management', 'secret'], 'abc'],
    ];
    for (const [label, file, path, value] of cases) {
      test(label, () => {
        const raw = example(file);
        setAt(raw, path, value);
        const issues = assertIssueAt(raw, formatPath(path), /inline secrets are refused/);
        // Said once, not again as a bare "unknown field".
        assert.equal(issues.filter((i) => i.path === formatPath(path) && i.message === 'unknown field').length, 0);
        assert.ok(!JSON.stringify(issues).includes(String(value)), 'an issue echoes the secret');
      });
    }

    test('credential references are not mistaken for secrets', () => {
      assertValid(example('esxi-vds.yaml')); // passwordEnv, usernameEnv, file, caFile
      assertValid(example('kvm-macvtap.yaml')); // privateKeyFile, passphraseEnv
      assertValid(example('xen-bridge.yaml')); // privateKeyEnv
    });

    test('the ESXi installer is a file on the worker pinned by its hash, never a URL (which could carry a token)', () => {
      for (const url of ['https://admin:hunter2@repo.example.net/esxi.iso', 'https://repo.example.net/esxi.iso']) {
        const raw = example('esxi-vds.yaml');
        setAt(raw, ['hypervisor', 'installer', 'iso'], url);
        assertIssueAt(raw, 'hypervisor.installer.iso', /^must be a file path/);
      }
      const noHash = example('esxi-vds.yaml');
      deleteAt(noHash, ['hypervisor', 'installer', 'sha256']);
      assertIssueAt(noHash, 'hypervisor.installer.sha256');
      const badHash = example('esxi-vds.yaml');
      setAt(badHash, ['hypervisor', 'installer', 'sha256'], 'ABC');
      assertIssueAt(badHash, 'hypervisor.installer.sha256', /64 lowercase hex/);
      const version = example('esxi-vds.yaml');
      setAt(version, ['hypervisor', 'installer', 'version'], '8.0U3');
      assertIssueAt(version, 'hypervisor.installer.version', /like 8\.0\.3/);
    });
  });

  describe('a PEM private key pasted anywhere', () => {
    const places: Array<[string, Key[]]> = [
      ['kvm-macvtap.yaml', ['management', 'credentials', 'privateKeyEnv']],
      ['kvm-minimal.json', ['management', 'credentials']],
      ['kvm-minimal.json', ['management', 'hostKey']],
      ['kvm-minimal.json', ['site']],
      ['kvm-minimal.json', ['notes']],
      ['kvm-minimal.json', ['nics', 0, 'name']],
      ['kvm-ovs.yaml', ['hypervisor', 'packages', 1]],
      ['esxi-vds.yaml', ['hypervisor', 'bmc', 'credentials', 'file']],
      ['esxi-vds.yaml', ['attach', 'vcenter', 'credentials']],
      ['esxi-vds.yaml', ['hypervisor', 'hostCertificate', 'keyFile']],
    ];
    for (const [file, path] of places) {
      test(`${file}: ${formatPath(path)}`, () => {
        const raw = example(file);
        setAt(raw, path, PEM);
        const issues = assertIssueAt(raw, formatPath(path), /private key|inline secrets/);
        assert.ok(!JSON.stringify(issues).includes('b3BlbnNzaC1rZXkt'), 'an issue echoes the key');
      });
    }
    test('every PEM private key flavour', () => {
      for (const kind of ['RSA ', 'EC ', 'DSA ', 'ENCRYPTED ', '', 'OPENSSH ']) {
        const raw = example('kvm-minimal.json');
        setAt(raw, ['rack'], `-----BEGIN ${kind}PRIVATE KEY-----\nAAAA\n-----END ${kind}PRIVATE KEY-----`);
        assertIssueAt(raw, 'rack', /private key/);
      }
    });
    test('in a YAML block scalar of a spec file', async () => {
      const text = readFileSync(join(EXAMPLES_DIR, 'kvm-macvtap.yaml'), 'utf8').replace(
        /credentials:\n {4}privateKeyFile: .*\n {4}passphraseEnv: .*\n/,
        `credentials:\n    privateKey: |\n${PEM.split('\n')
          .map((l) => `      ${l}`)
          .join('\n')}\n`,
      );
      assert.ok(text.includes('BEGIN OPENSSH'), 'the fixture edit did not apply');
      const r = await validateSpecFile(tmpFile('pem.yaml', text));
      assert.equal(r.ok, false);
      assert.ok(!r.ok && r.issues.some((i) => i.path === 'management.credentials.privateKey'), JSON.stringify(r));
    });
  });

  test('a missing credential reference', () => {
    const raw = example('kvm-minimal.json');
    deleteAt(raw, ['management', 'credentials']);
    assertIssueAt(raw, 'management.credentials', /reference/);

    const empty = example('kvm-minimal.json');
    setAt(empty, ['management', 'credentials'], {});
    assertIssueAt(empty, 'management.credentials', /reference/);

    const notAgent = example('kvm-minimal.json');
    setAt(notAgent, ['management', 'credentials'], { agent: false });
    assertIssueAt(notAgent, 'management.credentials');

    const bmc = example('esxi-vds.yaml');
    deleteAt(bmc, ['hypervisor', 'bmc', 'credentials']);
    assertIssueAt(bmc, 'hypervisor.bmc.credentials', /reference/);

    const half = example('esxi-vds.yaml');
    deleteAt(half, ['hypervisor', 'bmc', 'credentials', 'passwordEnv']);
    assertIssueAt(half, 'hypervisor.bmc.credentials');

    const vc = example('esxi-vds.yaml');
    deleteAt(vc, ['attach', 'vcenter', 'credentials']);
    assertIssueAt(vc, 'attach.vcenter.credentials');
  });

  test('a missing or malformed host key', () => {
    const raw = example('kvm-minimal.json');
    deleteAt(raw, ['management', 'hostKey']);
    assertIssueAt(raw, 'management.hostKey');
    for (const bad of [
      'SHA256:tooShort',
      'MD5:aa:bb:cc',
      'sha256:R4iZu63XzWCEoDDkDbdqbJhFYZC4Gg2wlyEV4xTQYoQ',
      'SHA256:R4iZu63XzWCEoDDkDbdqbJhFYZC4Gg2wlyEV4xTQYoQ=',
    ]) {
      const r = example('kvm-minimal.json');
      setAt(r, ['management', 'hostKey'], bad);
      assertIssueAt(r, 'management.hostKey', /SHA256 fingerprint/);
    }
  });

  test('SET attach over an 802.3ad bond (explicit or by default) → bond.mode', () => {
    const raw = example('hyperv-set.yaml');
    setAt(raw, ['bond'], { name: 'team0', members: ['NIC1', 'NIC2'], mode: '802.3ad' });
    assertIssueAt(raw, 'bond.mode', /switch-independent/);
    const byDefault = example('hyperv-set.yaml');
    setAt(byDefault, ['bond'], { name: 'team0', members: ['NIC1', 'NIC2'] });
    assertIssueAt(byDefault, 'bond.mode', /switch-independent/);
  });

  test('SET attach: NICs that are not in nics[], and no NICs at all', () => {
    const raw = example('hyperv-set.yaml');
    setAt(raw, ['attach', 'nics', 1], 'NIC3');
    assertIssueAt(raw, 'attach.nics[1]', /not one of the spec's NICs/);

    const noBond = example('hyperv-set.yaml');
    deleteAt(noBond, ['bond']);
    deleteAt(noBond, ['attach', 'nics']);
    assertIssueAt(noBond, 'attach.nics', /no bond/);

    const listed = example('hyperv-set.yaml');
    deleteAt(listed, ['bond']);
    assertValid(listed);
  });

  test('vds uplinks that are not NICs, or listed twice', () => {
    const raw = example('esxi-vds.yaml');
    setAt(raw, ['attach', 'uplinks', 1], 'vmnic7');
    assertIssueAt(raw, 'attach.uplinks[1]', /not one of the spec's NICs/);
    const twice = example('esxi-vds.yaml');
    setAt(twice, ['attach', 'uplinks', 1], 'vmnic0');
    assertIssueAt(twice, 'attach.uplinks[1]', /listed twice/);
  });

  test('ESXi: the kickstart’s management NIC is a NIC of the spec, and goes to the vDS only with vmk0 along', () => {
    const notNic = example('esxi-vds.yaml');
    setAt(notNic, ['hypervisor', 'kickstart', 'network', 'device'], 'vmnic9');
    assertIssueAt(notNic, 'hypervisor.kickstart.network.device', /not one of the spec's NICs/);
    const stranded = example('esxi-vds.yaml');
    deleteAt(stranded, ['attach', 'migrateVmk']);
    assertIssueAt(stranded, 'attach.uplinks[0]', /carries the management vmk0.*set attach\.migrateVmk: vmk0/);
    const apart = example('esxi-vds.yaml');
    deleteAt(apart, ['attach', 'migrateVmk']);
    setAt(apart, ['attach', 'uplinks'], ['vmnic1']);
    setAt(apart, ['attach', 'lacp'], false);
    assertValid(apart);
    const gatewayWithoutAddress = example('esxi-vds.yaml');
    deleteAt(gatewayWithoutAddress, ['hypervisor', 'kickstart', 'network', 'address']);
    assertIssueAt(gatewayWithoutAddress, 'hypervisor.kickstart.network.address', /need a static address/);
    const noDatacenter = example('esxi-vds.yaml');
    deleteAt(noDatacenter, ['attach', 'datacenter']);
    assertIssueAt(noDatacenter, 'attach.datacenter');
    const dhcp = example('esxi-vds.yaml');
    setAt(dhcp, ['hypervisor', 'kickstart'], {});
    const parsed = assertValid(dhcp);
    assert.deepEqual(parsed.hypervisor.kind === 'esxi' && parsed.hypervisor.kickstart, { network: { device: 'vmnic0', nameservers: [] } });
  });

  test('an attach kind that does not fit the hypervisor: kvm + vds → attach.kind', () => {
    const raw = example('kvm-minimal.json');
    const esxi = example('esxi-vds.yaml');
    setAt(raw, ['attach'], esxi.attach);
    setAt(raw, ['attach', 'uplinks'], ['eth0', 'eth1']);
    const issues = assertIssueAt(raw, 'attach.kind', /does not fit hypervisor kvm/);
    assert.deepEqual(
      issues.map((i) => i.path),
      ['attach.kind'],
      'the vds attach itself is well formed',
    );
  });

  describe('the full hypervisor × attach matrix', () => {
    const attaches: Record<string, Obj> = {
      // Lower devices named explicitly: ESXi and Hyper-V take no bond for them to default to.
      macvtap: { kind: 'macvtap', device: 'vmnic0' },
      ovs: { kind: 'ovs', uplink: 'vmnic0' },
      bridge: { kind: 'bridge', uplink: 'vmnic0' },
      vds: (example('esxi-vds.yaml').attach ?? {}) as Obj,
      set: { kind: 'set', nics: ['vmnic0', 'vmnic1'] },
    };
    const base = example('esxi-vds.yaml');
    const hypervisors: Record<string, unknown> = {
      kvm: { kind: 'kvm' },
      xen: { kind: 'xen' },
      esxi: base.hypervisor,
      hyperv: { kind: 'hyperv' },
    };
    for (const [hv, hvSpec] of Object.entries(hypervisors)) {
      for (const [kind, attach] of Object.entries(attaches)) {
        const fits = (ATTACH_MATRIX[hv as keyof typeof ATTACH_MATRIX] as readonly string[]).includes(kind);
        test(`${hv} + ${kind} ${fits ? 'is accepted' : 'is refused at attach.kind'}`, () => {
          const raw = structuredClone(base);
          setAt(raw, ['hypervisor'], hvSpec);
          setAt(raw, ['attach'], attach);
          // The Hyper-V cable check has no LLDP view: the example's expected neighbours are not for it.
          if (hv === 'hyperv') for (const n of raw.nics as Obj[]) delete n.lldp;
          if (fits) assertValid(raw);
          else
            assert.deepEqual(
              issuesOf(raw).map((i) => i.path),
              ['attach.kind'],
            );
        });
      }
    }
  });

  test('an unknown hypervisor or attach kind', () => {
    const raw = example('kvm-minimal.json');
    setAt(raw, ['hypervisor', 'kind'], 'vmware');
    assertIssueAt(raw, 'hypervisor.kind');
    const att = example('kvm-minimal.json');
    setAt(att, ['attach', 'kind'], 'sriov');
    assertIssueAt(att, 'attach.kind');
  });

  test('a hypervisor kind named like an Object.prototype member is reported, not thrown', () => {
    for (const kind of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      const raw = example('kvm-minimal.json');
      setAt(raw, ['hypervisor', 'kind'], kind);
      assertIssueAt(raw, 'hypervisor.kind');
    }
  });

  test('cross-field messages never echo a value that is not a plain name', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['nics', 0, 'name'], 'hunter2 correct horse battery staple');
    setAt(raw, ['vlans', 0, 'parent'], 'x'.repeat(200));
    const text = JSON.stringify(issuesOf(raw));
    assert.ok(!text.includes('correct horse'), text);
    assert.ok(!text.includes('x'.repeat(65)), text);
    assert.match(text, /<value not shown>/);
  });

  describe('gateway outside the VLAN subnet', () => {
    const cases: Array<[string, string, string, boolean]> = [
      ['IPv4 other subnet', '198.18.100.17/24', '198.18.101.1', false],
      ['IPv4 /30 edge', '198.18.100.5/30', '198.18.100.8', false],
      ['IPv4 /31 peer', '198.18.100.0/31', '198.18.100.1', true],
      ['IPv4 its own address', '198.18.100.17/24', '198.18.100.17', false],
      ['IPv4 inside', '198.18.100.17/23', '198.18.101.254', true],
      ['IPv6 other subnet', '2001:db8:100::17/64', '2001:db8:101::1', false],
      ['IPv6 inside', '2001:db8:100::17/64', '2001:db8:100::1', true],
      ['IPv6 inside, v4 tail', '::ffff:198.18.100.17/120', '::ffff:198.18.100.1', true],
      ['IPv6 link-local gateway', '2001:db8:100::17/64', 'fe80::1', true],
      ['IPv6 gateway for an IPv4 address', '198.18.100.17/24', '2001:db8:100::1', false],
      ['IPv4 gateway for an IPv6 address', '2001:db8:100::17/64', '198.18.100.1', false],
    ];
    for (const [label, address, gateway, ok] of cases) {
      test(`${label}: ${address} via ${gateway}`, () => {
        const raw = example('kvm-macvtap.yaml');
        setAt(raw, ['vlans', 0, 'address'], address);
        setAt(raw, ['vlans', 0, 'gateway'], gateway);
        if (ok) assertValid(raw);
        else
          assert.deepEqual(
            issuesOf(raw).map((i) => i.path),
            ['vlans[0].gateway'],
          );
      });
    }
  });

  test('duplicate NIC names and MACs', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['nics', 2, 'name'], 'ens1f0');
    setAt(raw, ['sriov', 'pf'], 'ens1f0');
    assertIssueAt(raw, 'nics[2].name', /duplicate NIC name/);
    const mac = example('kvm-macvtap.yaml');
    setAt(mac, ['nics', 1, 'mac'], '0C:42:A1:3B:7E:10');
    assertIssueAt(mac, 'nics[1].mac', /duplicate MAC/);
  });

  test('an attach lower device / uplink / bridge that clashes or does not exist', () => {
    const dev = example('kvm-macvtap.yaml');
    setAt(dev, ['attach', 'device'], 'bond0.200');
    assertIssueAt(dev, 'attach.device', /not a NIC, the bond or a VLAN/);

    const up = example('kvm-ovs.yaml');
    setAt(up, ['attach', 'uplink'], 'bond1');
    assertIssueAt(up, 'attach.uplink');

    const noBond = example('kvm-minimal.json');
    deleteAt(noBond, ['bond']);
    assertIssueAt(noBond, 'attach.device', /no bond/);

    const port = example('kvm-ovs.yaml');
    setAt(port, ['attach', 'vlanPorts', 0, 'name'], 'bond0.210');
    assertIssueAt(port, 'attach.vlanPorts[0].name', /clashes/);

    const twin = example('kvm-ovs.yaml');
    setAt(twin, ['attach', 'vlanPorts', 1, 'name'], 'vlan300');
    assertIssueAt(twin, 'attach.vlanPorts[1].name', /clashes/);

    const bridge = example('kvm-ovs.yaml');
    setAt(bridge, ['attach', 'bridge'], 'bond0');
    assertIssueAt(bridge, 'attach.bridge', /clashes/);

    const xen = example('xen-bridge.yaml');
    setAt(xen, ['attach', 'name'], 'eno1');
    assertIssueAt(xen, 'attach.name', /clashes/);
  });

  test('unknown keys are errors, not ignored', () => {
    const raw = example('kvm-minimal.json');
    setAt(raw, ['nics', 0, 'speed'], 10000);
    setAt(raw, ['hostname'], 'kvm-lab-01');
    const issues = issuesOf(raw);
    assert.ok(
      issues.some((i) => i.path === 'nics[0].speed' && i.message === 'unknown field'),
      show(issues),
    );
    assert.ok(
      issues.some((i) => i.path === 'hostname' && i.message === 'unknown field'),
      show(issues),
    );
  });

  test('not an object at all', () => {
    for (const raw of [null, [], 'id: x', 42]) assertIssueAt(raw, '(root)');
  });

  // Every identifier field of the schema, with a shell metacharacter injected into an otherwise good value.
  describe('shell metacharacters in every kind of identifier field', () => {
    const META = [';', '|', '&', '$(id)', '`id`', ' ', '\t', '\n', "'", '"', '<', '>', '\\', '*', '!', '{a,b}', '[x]', '\0'];
    const plain = (good: string) => (m: string) => `${good}${m}x`;
    type Row = [string, string, Key[], (m: string) => string];
    const rows: Row[] = [
      ['server id', 'kvm-minimal.json', ['id'], plain('kvm')],
      ['site', 'kvm-minimal.json', ['site'], plain('fra1')],
      ['rack', 'kvm-minimal.json', ['rack'], plain('r1')],
      ['management address', 'kvm-minimal.json', ['management', 'address'], (m) => `kvm${m}.example.net`],
      ['management user', 'kvm-minimal.json', ['management', 'user'], plain('root')],
      ['host key', 'kvm-minimal.json', ['management', 'hostKey'], (m) => `SHA256:${'A'.repeat(43 - m.length)}${m}`],
      ['ssh key file path', 'kvm-macvtap.yaml', ['management', 'credentials', 'privateKeyFile'], (m) => `/etc/underlay/k${m}`],
      ['ssh passphrase env var', 'kvm-macvtap.yaml', ['management', 'credentials', 'passphraseEnv'], plain('KEY')],
      ['ssh key env var', 'xen-bridge.yaml', ['management', 'credentials', 'privateKeyEnv'], plain('KEY')],
      ['agent socket env var', 'kvm-minimal.json', ['management', 'credentials', 'agentSocketEnv'], plain('SOCK')],
      ['NIC name', 'kvm-macvtap.yaml', ['nics', 0, 'name'], plain('eth')],
      ['MAC', 'kvm-macvtap.yaml', ['nics', 0, 'mac'], (m) => `52:54:00:12:34${m}`],
      ['LLDP switch name', 'kvm-macvtap.yaml', ['nics', 0, 'lldp', 'switch'], plain('leaf-01')],
      ['LLDP port id', 'kvm-macvtap.yaml', ['nics', 0, 'lldp', 'port'], plain('swp1')],
      ['bond name', 'kvm-macvtap.yaml', ['bond', 'name'], plain('bond')],
      ['bond member', 'kvm-macvtap.yaml', ['bond', 'members', 0], plain('ens1f')],
      ['VLAN parent', 'kvm-macvtap.yaml', ['vlans', 0, 'parent'], plain('bond')],
      ['VLAN name', 'xen-bridge.yaml', ['vlans', 0, 'name'], plain('vlan')],
      ['VLAN address', 'kvm-macvtap.yaml', ['vlans', 0, 'address'], (m) => `198.18.100.17/24${m}`],
      ['VLAN gateway', 'kvm-macvtap.yaml', ['vlans', 0, 'gateway'], (m) => `198.18.100.1${m}`],
      ['SR-IOV PF', 'kvm-macvtap.yaml', ['sriov', 'pf'], plain('ens2f')],
      ['package name', 'kvm-ovs.yaml', ['hypervisor', 'packages', 0], plain('qemu-kvm')],
      ['BMC address', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'address'], (m) => `bmc${m}.example.net`],
      ['Redfish system id', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'systemId'], plain('System.Embedded.1')],
      ['BMC user env var', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'credentials', 'usernameEnv'], plain('BMC_USER')],
      ['BMC password env var', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'credentials', 'passwordEnv'], plain('BMC_PASS')],
      ['BMC TLS fingerprint', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'tls', 'fingerprint'], (m) => `sha256/${'A'.repeat(43 - m.length)}${m}=`],
      ['BMC certificate file', 'esxi-vds.yaml', ['hypervisor', 'bmc', 'tls', 'certFile'], (m) => `/etc/underlay/bmc/esx${m}.pem`],
      ['installer ISO path', 'esxi-vds.yaml', ['hypervisor', 'installer', 'iso'], (m) => `/var/lib/underlay/isos/esxi${m}.iso`],
      ['installer version', 'esxi-vds.yaml', ['hypervisor', 'installer', 'version'], (m) => `8.0.3${m}`],
      ['installer build', 'esxi-vds.yaml', ['hypervisor', 'installer', 'build'], plain('24022510')],
      ['kickstart disk', 'esxi-vds.yaml', ['hypervisor', 'kickstart', 'disk'], plain('mpx.vmhba0')],
      ['kickstart network device', 'esxi-vds.yaml', ['hypervisor', 'kickstart', 'network', 'device'], plain('vmnic')],
      ['kickstart address', 'esxi-vds.yaml', ['hypervisor', 'kickstart', 'network', 'address'], (m) => `198.18.21.4/24${m}`],
      ['root password file', 'esxi-vds.yaml', ['hypervisor', 'rootPassword', 'file'], (m) => `/etc/underlay/credentials/root${m}`],
      ['host certificate file', 'esxi-vds.yaml', ['hypervisor', 'hostCertificate', 'certFile'], (m) => `/etc/underlay/esxi/h${m}.crt`],
      ['host key file', 'esxi-vds.yaml', ['hypervisor', 'hostCertificate', 'keyFile'], (m) => `/etc/underlay/credentials/h${m}.key`],
      ['host certificate fingerprint', 'esxi-vds.yaml', ['hypervisor', 'hostCertificate', 'fingerprint'], (m) => `sha256/${'A'.repeat(43 - m.length)}${m}=`],
      ['vCenter datacenter', 'esxi-vds.yaml', ['attach', 'datacenter'], plain('fra1')],
      ['vCenter cluster', 'esxi-vds.yaml', ['attach', 'cluster'], plain('prod')],
      ['VMkernel adapter', 'esxi-vds.yaml', ['attach', 'migrateVmk'], plain('vmk0')],
      ['vCenter address', 'esxi-vds.yaml', ['attach', 'vcenter', 'address'], (m) => `vcenter.example.net${m}`],
      ['vCenter credentials file', 'esxi-vds.yaml', ['attach', 'vcenter', 'credentials', 'file'], (m) => `/etc/underlay/vc${m}.cred`],
      ['vCenter CA file', 'esxi-vds.yaml', ['attach', 'vcenter', 'caFile'], (m) => `/etc/underlay/ca${m}.pem`],
      ['distributed switch', 'esxi-vds.yaml', ['attach', 'switch'], plain('dvs')],
      ['portgroup', 'esxi-vds.yaml', ['attach', 'portgroup'], plain('pg')],
      ['vds uplink', 'esxi-vds.yaml', ['attach', 'uplinks', 0], plain('vmnic')],
      ['libvirt network (macvtap)', 'kvm-macvtap.yaml', ['attach', 'network'], plain('net')],
      ['macvtap device', 'kvm-macvtap.yaml', ['attach', 'device'], plain('bond0')],
      ['OVS bridge', 'kvm-ovs.yaml', ['attach', 'bridge'], plain('br')],
      ['OVS uplink', 'kvm-ovs.yaml', ['attach', 'uplink'], plain('bond0')],
      ['OVS vlan port', 'kvm-ovs.yaml', ['attach', 'vlanPorts', 0, 'name'], plain('vlan')],
      ['libvirt network (ovs)', 'kvm-ovs.yaml', ['attach', 'network'], plain('net')],
      ['Linux bridge', 'xen-bridge.yaml', ['attach', 'name'], plain('xenbr')],
      ['bridge uplink', 'xen-bridge.yaml', ['attach', 'uplink'], plain('bond')],
      ['SET switch name', 'hyperv-set.yaml', ['attach', 'switchName'], plain('SET')],
      ['SET NIC', 'hyperv-set.yaml', ['attach', 'nics', 0], plain('NIC')],
    ];
    for (const [label, file, path, inject] of rows) {
      test(`${label} (${formatPath(path)})`, () => {
        // The good value is good: the row tests the pattern, not some other rule.
        assert.ok(getAt(example(file), path.slice(0, -1)) !== undefined, `${file} has no ${formatPath(path.slice(0, -1))}`);
        for (const m of META) {
          const raw = example(file);
          setAt(raw, path, inject(m));
          // Messages of the shape checks start with "must"; cross-field messages ("… is not a NIC") do not, so a
          // rule elsewhere cannot stand in for the pattern.
          assertIssueAt(raw, formatPath(path), /^must /);
        }
      });
    }
    test('a hostile value is refused by the pattern even where a cross-field rule also fires', () => {
      const raw = example('kvm-macvtap.yaml');
      setAt(raw, ['bond', 'members', 0], 'ens1f0;reboot');
      const issues = issuesOf(raw).filter((i) => i.path === 'bond.members[0]');
      assert.ok(
        issues.some((i) => /^must be an interface name/.test(i.message)),
        show(issues),
      );
    });
  });

  test('several bad fields at once are all reported in one result', () => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['site'], 'fra1;rm');
    setAt(raw, ['management', 'password'], 'hunter2');
    setAt(raw, ['management', 'port'], 70000);
    setAt(raw, ['nics', 1, 'name'], 'ens1f0');
    setAt(raw, ['nics', 0, 'speedMbps'], -1);
    setAt(raw, ['bond', 'members', 1], 'ens7');
    setAt(raw, ['vlans', 0, 'id'], 4095);
    setAt(raw, ['vlans', 0, 'gateway'], '198.18.200.1');
    setAt(raw, ['sriov', 'pf'], 'ens9');
    setAt(raw, ['attach'], { kind: 'set' });
    const expected = [
      'site',
      'management.password',
      'management.port',
      'nics[1].name',
      'nics[0].speedMbps',
      'bond.members[1]',
      'vlans[0].id',
      'vlans[0].gateway',
      'sriov.pf',
      'attach.kind',
      'bond.mode',
    ];
    const issues = issuesOf(raw);
    const paths = new Set(issues.map((i) => i.path));
    for (const p of expected) assert.ok(paths.has(p), `missing ${p}; got:\n${show(issues)}`);
  });

  test('parseServerSpec throws a non-retryable InvalidSpecError naming every path', () => {
    const raw = example('kvm-minimal.json');
    setAt(raw, ['site'], 'a b');
    setAt(raw, ['rack'], 'r;1');
    assert.throws(
      () => parseServerSpec(raw, 'kvm-lab-01.json'),
      (err: unknown) => {
        assert.ok(err instanceof InvalidSpecError);
        assert.equal(err.retryable, false);
        assert.deepEqual(err.issues.map((i) => i.path).sort(), ['rack', 'site']);
        assert.match(err.message, /^kvm-lab-01\.json is invalid: /);
        assert.match(err.message, /site: must be/);
        return true;
      },
    );
    assert.equal(parseServerSpec(example('kvm-minimal.json')).id, 'kvm-lab-01');
  });

  test('formatPath', () => {
    assert.equal(formatPath([]), '(root)');
    assert.equal(formatPath(['nics', 0, 'lldp', 'port']), 'nics[0].lldp.port');
    assert.equal(formatPath(['attach', 'vlanPorts', 2, 'name']), 'attach.vlanPorts[2].name');
  });
});

// ---- loading ---------------------------------------------------------------------------------------------------

describe('bounded input', () => {
  test('a file over 256 KiB, a FIFO, /dev/zero: an issue on (file), nothing read beyond the cap', async () => {
    const big = tmpFile('big.yaml', `id: x\npad: "${'p'.repeat(MAX_SPEC_BYTES)}"\n`);
    const r = await validateSpecFile(big);
    assert.ok(!r.ok && r.issues[0]!.path === '(file)' && /over the 262144-byte limit/.test(r.issues[0]!.message), JSON.stringify(r));
    const zero = await validateSpecFile('/dev/zero');
    assert.ok(!zero.ok && /is not a regular file/.test(zero.issues[0]!.message));
    const fifo = join(tmp, 'spec.fifo');
    execFileSync('mkfifo', [fifo]);
    const f = await validateSpecFile(fifo); // returns at once: opened O_NONBLOCK, then refused by fstat
    assert.ok(!f.ok && /is not a regular file/.test(f.issues[0]!.message));
  });

  test('an alias bomb is the typed error with the file name, not a bare ReferenceError', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      lines.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    assert.throws(
      () => parseSpecText(lines.join('\n'), 'bomb.yaml'),
      (e: unknown) => e instanceof InvalidSpecError && /^bomb\.yaml cannot be parsed/.test(e.message) && e.issues[0]!.path === '(file)',
    );
  });

  test('nesting: 10,000 brackets, or a deep object, is refused without recursion', () => {
    assert.throws(
      () => parseSpecText(`id: ${'['.repeat(10_000)}${']'.repeat(10_000)}`, 'deep.yaml'),
      /deep\.yaml is invalid: \(file\): nested deeper than 16 levels/,
    );
    let v: unknown = 'x';
    for (let i = 0; i < 100_000; i++) v = { a: v };
    const issues = issuesOf({ ...example('kvm-minimal.json'), extra: v });
    assert.match(issues[0]!.message, /must not nest deeper than 16 levels/);
  });

  test('lists have maxima: 65 NICs, 129 VLANs', () => {
    const raw = example('kvm-macvtap.yaml');
    raw.nics = Array.from({ length: 65 }, (_, i) => ({ name: `eth${i}` }));
    assertIssueAt(raw, 'nics', /<=64/);
    const raw2 = example('kvm-macvtap.yaml');
    raw2.vlans = Array.from({ length: 129 }, (_, i) => ({ id: i + 1, parent: 'bond0' }));
    assertIssueAt(raw2, 'vlans', /<=128/);
  });

  test('messages list at most 8 names, and at most 100 problems are listed, then a count', () => {
    const raw = example('kvm-macvtap.yaml');
    raw.nics = Array.from({ length: 40 }, (_, i) => ({ name: `eth${i}` }));
    raw.bond = { members: ['nope'] };
    const issues = assertIssueAt(raw, 'bond.members[0]', /\(eth0, eth1, eth2, eth3, eth4, eth5, eth6, eth7, … 32 more\)/);
    assert.ok(issues.every((i) => i.message.length < 300));
    const many = example('kvm-minimal.json');
    for (let i = 0; i < 5000; i++) many[`unknown${i}`] = i;
    const capped = issuesOf(many);
    assert.equal(capped.length, MAX_ISSUES + 1);
    assert.deepEqual(capped.at(-1), { path: '(more)', message: '4900 more problems not listed' });
  });

  test('an unknown key is shown quoted and escaped: no newline, terminal escape or bidi override gets through', () => {
    const raw = example('kvm-minimal.json');
    raw['evil\nid: ok\u001b[2J\u202e'] = 1;
    const issues = issuesOf(raw);
    assert.ok(
      issues.some((i) => i.path === '["evil\\u000aid: ok\\u001b[2J\\u202e"]' && i.message === 'unknown field'),
      show(issues),
    );
    for (const i of issues) assert.doesNotMatch(i.path + i.message, /[\n\r\u001b\u202e]/); // eslint-disable-line no-control-regex
    assert.equal(formatPath(['management', 'a"b']), 'management["a\\u0022b"]');
  });

  test('credential paths: no "." or ".." segment, no ~, nothing under /proc, /dev or /sys — whatever the worker allows', () => {
    for (const [path, why] of [
      ['../../etc/shadow', /must not have "\." or "\.\." segments/],
      ['/etc/underlay/credentials/../../shadow', /"\.\." segments/],
      ['./key', /segments/],
      ['~/.ssh/id_ed25519', /no ~/],
      ['/proc/self/environ', /must not be under \/proc, \/dev or \/sys/],
      ['//dev/zero', /must not be under/],
      ['/sys/kernel/notes', /must not be under/],
    ] as const) {
      const raw = example('kvm-macvtap.yaml');
      setAt(raw, ['management', 'credentials', 'privateKeyFile'], path);
      assertIssueAt(raw, 'management.credentials.privateKeyFile', why);
    }
    const vds = example('esxi-vds.yaml');
    deleteAt(vds, ['attach', 'vcenter', 'caFile']);
    assertIssueAt(vds, 'attach.vcenter.caFile'); // required: no publicly trusted CA fallback for vCenter
  });

  test('40,000 duplicate-free keys: linear (the size cap aside), all reported in one capped list', () => {
    const text = Array.from({ length: 40_000 }, (_, i) => `k${i}: ${i}`).join('\n');
    const raw = parseSpecText(text, 'keys.yaml', { maxBytes: Infinity });
    const r = validateServerSpec(raw);
    assert.ok(!r.ok && r.issues.length === MAX_ISSUES + 1);
    assert.throws(() => parseSpecText(text, 'keys.yaml'), /keys\.yaml is too large/);
  });
});

describe('loading spec files', () => {
  const minimal = () => example('kvm-minimal.json');

  test('a JSON file', async () => {
    const p = tmpFile('spec.json', JSON.stringify(minimal(), null, 2));
    const r = await validateSpecFile(p);
    assert.ok(r.ok, JSON.stringify(r));
    const spec = await loadSpecFile(p);
    assert.equal(spec.id, 'kvm-lab-01');
    assert.equal(spec.bond?.mode, '802.3ad');
  });

  test('a YAML file', async () => {
    const yaml = [
      'id: kvm-lab-02',
      'site: lab',
      'rack: r01',
      'management:',
      '  address: 198.18.0.11',
      '  hostKey: SHA256:R4iZu63XzWCEoDDkDbdqbJhFYZC4Gg2wlyEV4xTQYoQ',
      '  credentials: { agent: true }',
      'nics:',
      '  - { name: eth0, speedMbps: 10000 }',
      'hypervisor: { kind: kvm }',
      '',
    ].join('\n');
    const spec = await loadSpecFile(tmpFile('spec.yaml', yaml));
    assert.equal(spec.id, 'kvm-lab-02');
    assert.equal(spec.management.port, 22);
  });

  test('an invalid spec file: validateSpecFile reports, loadSpecFile throws', async () => {
    const raw = minimal();
    setAt(raw, ['bond', 'members', 1], 'eth7');
    const p = tmpFile('bad.json', JSON.stringify(raw));
    const r = await validateSpecFile(p);
    assert.ok(!r.ok && r.issues.some((i) => i.path === 'bond.members[1]'), JSON.stringify(r));
    await assert.rejects(loadSpecFile(p), (err: unknown) => {
      assert.ok(err instanceof InvalidSpecError);
      assert.ok(err.message.startsWith(`${p} is invalid`));
      assert.ok(err.issues.some((i) => i.path === 'bond.members[1]'));
      return true;
    });
  });

  test('invalid YAML reports the line', async () => {
    const yaml = ['id: kvm-lab-03', 'site: lab', 'rack: r01', 'management:', '  address: 198.18.0.12', ' hostKey: [unclosed', 'nics: []', ''].join('\n');
    const p = tmpFile('broken.yaml', yaml);
    const r = await validateSpecFile(p);
    assert.equal(r.ok, false);
    assert.ok(!r.ok);
    assert.ok(r.issues.length > 0);
    for (const i of r.issues) assert.match(i.path, /^line \d+$/, `not a line: ${JSON.stringify(i)}`);
    assert.ok(
      r.issues.some((i) => i.path === 'line 6'),
      JSON.stringify(r.issues),
    );
    await assert.rejects(loadSpecFile(p), (err: unknown) => err instanceof InvalidSpecError && /line \d+/.test(err.message));
  });

  test('invalid JSON reports the line', async () => {
    const json = '{\n  "id": "kvm-lab-04",\n  "site": "lab",,\n  "rack": "r01"\n}\n';
    const r = await validateSpecFile(tmpFile('broken.json', json));
    assert.ok(!r.ok && r.issues.some((i) => i.path === 'line 3'), JSON.stringify(r));
  });

  test('a duplicate key is an error with its line, not a silent override', async () => {
    const text = readFileSync(join(EXAMPLES_DIR, 'kvm-ovs.yaml'), 'utf8') + 'site: ams2\n';
    const lines = text.split('\n').length - 1;
    const r = await validateSpecFile(tmpFile('dup.yaml', text));
    assert.ok(!r.ok && r.issues.some((i) => i.path === 'site' && i.message.includes(`duplicate key at line ${lines}`)), JSON.stringify(r));
  });

  test('parseSpecText throws InvalidSpecError on syntax errors', () => {
    assert.throws(() => parseSpecText('a: [1, 2\nb: 3\n', 'inline'), InvalidSpecError);
    assert.deepEqual(parseSpecText('a: 1\n', 'inline'), { a: 1 });
  });

  test('an empty file is an invalid spec, not a crash', async () => {
    const r = await validateSpecFile(tmpFile('empty.yaml', ''));
    assert.ok(!r.ok && r.issues.some((i) => i.path === '(root)'), JSON.stringify(r));
  });

  test('a missing file is an issue naming the errno (a caller checking many files goes on)', async () => {
    const r = await validateSpecFile(join(tmp, 'does-not-exist.yaml'));
    assert.ok(!r.ok && r.issues.some((i) => i.path === '(file)' && /ENOENT/.test(i.message)), JSON.stringify(r));
    await assert.rejects(loadSpecFile(join(tmp, 'does-not-exist.yaml')), /ENOENT/);
  });
});

// ---- JSON schema -------------------------------------------------------------------------------------------------

describe('serverSpecJsonSchema()', () => {
  const schema = serverSpecJsonSchema() as {
    $schema?: string;
    type?: string;
    properties?: Record<string, unknown>;
    required?: string[];
    additionalProperties?: unknown;
  };

  test('is an object schema with the spec properties', () => {
    assert.equal(schema.type, 'object');
    assert.ok(schema.properties);
    for (const p of ['apiVersion', 'id', 'site', 'rack', 'management', 'nics', 'bond', 'vlans', 'sriov', 'hypervisor', 'attach']) {
      assert.ok(p in schema.properties, `no property ${p}`);
    }
    assert.equal(schema.additionalProperties, false, 'unknown keys are errors, editors should say so');
    assert.match(schema.$schema ?? '', /2020-12/);
  });

  test('marks the required fields, and not the defaulted ones', () => {
    const required = new Set(schema.required);
    for (const p of ['id', 'site', 'rack', 'management', 'nics', 'hypervisor']) assert.ok(required.has(p), `${p} should be required`);
    for (const p of ['apiVersion', 'vlans', 'bond', 'sriov', 'attach']) assert.ok(!required.has(p), `${p} should be optional`);
    const mgmt = schema.properties?.management as { required?: string[] } | undefined;
    assert.deepEqual(new Set(mgmt?.required), new Set(['address', 'hostKey', 'credentials']));
  });

  test('is JSON-serialisable without loss', () => {
    const text = JSON.stringify(schema);
    assert.deepEqual(JSON.parse(text), schema);
    assert.ok(text.includes('"pattern"'), 'identifier patterns reach the editor');
  });

  test('every example uses only properties the schema declares, and validates against the zod schema', () => {
    for (const file of exampleFiles) {
      const raw = example(file);
      for (const k of Object.keys(raw)) assert.ok(schema.properties && k in schema.properties, `${file}: ${k} not in the JSON schema`);
      const r = ServerSpecShape.safeParse(raw);
      assert.ok(r.success, `${file}: ${r.success ? '' : r.error.message}`);
    }
  });
});

// ---- the platform matrix (hypervisor × attach × transport × host-network steps) --------------------------------

describe('the platform matrix', () => {
  const only = (raw: unknown, path: string, message: RegExp) => {
    const issues = assertIssueAt(raw, path, message);
    assert.deepEqual(
      issues.map((i) => i.path),
      [path],
      `only ${path} is refused:\n${show(issues)}`,
    );
  };

  describe('ESXi: the distributed switch carries the team, LACP and the VLAN', () => {
    test('a bond → bond, pointing at attach.uplinks and attach.lacp', () => {
      for (const mode of ['802.3ad', 'active-backup']) {
        const raw = example('esxi-vds.yaml');
        setAt(raw, ['bond'], { members: ['vmnic0', 'vmnic1'], mode });
        only(raw, 'bond', /not in the ESXi runbook.*attach\.uplinks.*attach\.lacp/);
      }
    });
    test('vlans → vlans, pointing at attach.vlan', () => {
      const raw = example('esxi-vds.yaml');
      setAt(raw, ['vlans'], [{ id: 100, parent: 'vmnic0' }]);
      only(raw, 'vlans', /not in the ESXi runbook.*attach\.vlan/);
      const none = example('esxi-vds.yaml');
      setAt(none, ['vlans'], []);
      assertValid(none);
    });
    test('sriov → sriov', () => {
      const raw = example('esxi-vds.yaml');
      setAt(raw, ['sriov'], { pf: 'vmnic1', numVfs: 4 });
      only(raw, 'sriov', /not in the ESXi runbook/);
    });
    test('LACP on the vds needs at least two uplinks → attach.lacp', () => {
      const raw = example('esxi-vds.yaml');
      setAt(raw, ['attach', 'uplinks'], ['vmnic0']);
      only(raw, 'attach.lacp', /at least two uplinks/);
      setAt(raw, ['attach', 'lacp'], false);
      assertValid(raw);
    });
    test('LACP exists only on the distributed switch: lacp is unknown on every other attach', () => {
      for (const [file, attach] of [
        ['kvm-macvtap.yaml', 'macvtap'],
        ['kvm-ovs.yaml', 'ovs'],
        ['xen-bridge.yaml', 'bridge'],
        ['hyperv-set.yaml', 'set'],
      ] as const) {
        const raw = example(file);
        setAt(raw, ['attach', 'lacp'], true);
        assertIssueAt(raw, 'attach.lacp', /unknown field/);
        assert.equal(getAt(raw, ['attach', 'kind']) as string, attach);
      }
    });
  });

  describe('Hyper-V: SET is the team, attach.managementVlan the host VLAN, PowerShell over SSH', () => {
    test('a bond of any mode → bond, pointing at attach.nics', () => {
      for (const mode of ['active-backup', 'balance-tlb']) {
        const raw = example('hyperv-set.yaml');
        setAt(raw, ['bond'], { name: 'team0', members: ['NIC1', 'NIC2'], mode });
        only(raw, 'bond', /not in the Hyper-V runbook.*attach\.nics/);
      }
    });
    test('an 802.3ad bond → bond and bond.mode (SET is switch-independent)', () => {
      const raw = example('hyperv-set.yaml');
      setAt(raw, ['bond'], { name: 'team0', members: ['NIC1', 'NIC2'], mode: '802.3ad' });
      assertIssueAt(raw, 'bond', /Hyper-V runbook/);
      assertIssueAt(raw, 'bond.mode', /switch-independent/);
    });
    test('a bond instead of attach.nics → attach.nics is asked for too', () => {
      const raw = example('hyperv-set.yaml');
      setAt(raw, ['bond'], { name: 'team0', members: ['NIC1', 'NIC2'], mode: 'active-backup' });
      deleteAt(raw, ['attach', 'nics']);
      assertIssueAt(raw, 'bond', /attach\.nics/);
      assertIssueAt(raw, 'attach.nics', /list the NICs/);
    });
    test('vlans → vlans, pointing at attach.managementVlan', () => {
      const raw = example('hyperv-set.yaml');
      setAt(raw, ['vlans'], [{ id: 20, parent: 'NIC1' }]);
      only(raw, 'vlans', /attach\.managementVlan/);
    });
    test('sriov → sriov', () => {
      const raw = example('hyperv-set.yaml');
      setAt(raw, ['sriov'], { pf: 'NIC1', numVfs: 8 });
      only(raw, 'sriov', /not in the Hyper-V runbook/);
    });
    test('transport winrm → hypervisor.transport "not in this build"; ssh and the default are accepted', () => {
      const raw = example('hyperv-set.yaml');
      setAt(raw, ['hypervisor', 'transport'], 'winrm');
      only(raw, 'hypervisor.transport', /not in this build/);
      setAt(raw, ['hypervisor', 'transport'], 'ssh');
      assertValid(raw);
      deleteAt(raw, ['hypervisor', 'transport']);
      const spec = assertValid(raw);
      assert.equal(spec.hypervisor.kind === 'hyperv' && spec.hypervisor.transport, 'ssh');
    });
    test('an expected LLDP neighbour → nics[i].lldp (Windows has no LLDP view)', () => {
      const raw = example('hyperv-set.yaml');
      setAt(raw, ['nics', 1, 'lldp'], { switch: 'leaf-lon3-06', port: 'Ethernet1/8' });
      only(raw, 'nics[1].lldp', /no LLDP neighbour view/);
    });
  });

  describe('KVM and Xen: Linux hosts, every host-network step', () => {
    test('xen with bond, vlans and sriov is accepted', () => {
      const raw = example('xen-bridge.yaml');
      setAt(raw, ['sriov'], { pf: 'eno2', numVfs: 8 });
      const spec = assertValid(raw);
      assert.ok(spec.bond && spec.vlans.length && spec.sriov);
    });
    test('kvm with bond, vlans and sriov is accepted', () => {
      const spec = assertValid(example('kvm-macvtap.yaml'));
      assert.ok(spec.bond && spec.vlans.length && spec.sriov);
    });
    test('a transport field on kvm/xen is an unknown field', () => {
      for (const file of ['kvm-minimal.json', 'xen-bridge.yaml']) {
        const raw = example(file);
        setAt(raw, ['hypervisor', 'transport'], 'ssh');
        assertIssueAt(raw, 'hypervisor.transport', /unknown field/);
      }
    });
  });

  test('PLATFORM_MATRIX: the attach column is ATTACH_MATRIX, and the sections match what the validator accepts', () => {
    for (const [hv, row] of Object.entries(PLATFORM_MATRIX)) {
      assert.deepEqual(row.attach, ATTACH_MATRIX[hv as keyof typeof ATTACH_MATRIX]);
    }
    assert.deepEqual(PLATFORM_MATRIX.esxi.sections, []);
    assert.deepEqual(PLATFORM_MATRIX.hyperv.sections, []);
    assert.deepEqual([...PLATFORM_MATRIX.kvm.sections], ['bond', 'vlans', 'sriov']);
    assert.deepEqual([...PLATFORM_MATRIX.xen.sections], ['bond', 'vlans', 'sriov']);
  });

  test('docs/platforms.md shows the matrix exactly as PLATFORM_MATRIX has it', () => {
    const doc = readFileSync(resolve(__dirname, '../../docs/platforms.md'), 'utf8');
    const start = doc.indexOf('<!-- matrix:start -->');
    const end = doc.indexOf('<!-- matrix:end -->');
    assert.ok(start >= 0 && end > start, 'docs/platforms.md has the matrix markers');
    const rows = doc
      .slice(start, end)
      .split('\n')
      .filter((l) => /^\| `(kvm|xen|esxi|hyperv)`/.test(l))
      .map((l) =>
        l
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim()),
      );
    assert.deepEqual(
      rows.map((r) => r[0]),
      ['`kvm`', '`xen`', '`esxi`', '`hyperv`'],
    );
    const codes = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    for (const r of rows) {
      const row = PLATFORM_MATRIX[codes(r[0]!)[0] as keyof typeof PLATFORM_MATRIX];
      assert.deepEqual(codes(r[1]!), [...row.attach], `${r[0]} attach`);
      assert.deepEqual(codes(r[2]!), [row.transport.install], `${r[0]} install transport`);
      // One transport, or one per attach kind (ESXi: `vcenter` (vds), `ssh` (vswitch)) in the attach column's order.
      const attachOver: Record<string, string> | string = row.transport.attach;
      const perKind = typeof attachOver === 'string' ? [attachOver] : row.attach.map((k) => attachOver[k]);
      assert.deepEqual(codes(r[3]!), perKind, `${r[0]} attach transport`);
      assert.deepEqual(codes(r[4]!), [...row.sections], `${r[0]} host-network steps`);
      assert.deepEqual(codes(r[5]!), [...row.refusedTransports], `${r[0]} refused transports`);
      assert.deepEqual(codes(r[6] ?? '').slice(0, 1), row.dpdk ? ['dpdk'] : [], `${r[0]} DPDK`);
    }
  });
});

// ---- ESXi standard vSwitch (attach.kind vswitch: esxcli over SSH) ---------------------------------------------

describe('attach.kind vswitch (ESXi standard vSwitch)', () => {
  const vswitch = (attach: Record<string, unknown> = {}) => {
    const raw = example('esxi-vds.yaml');
    setAt(raw, ['attach'], { kind: 'vswitch', uplinks: ['vmnic0', 'vmnic1'], portgroup: 'pg-vlan100', vlan: 100, ...attach });
    return raw;
  };

  test('accepted on esxi, with defaults: name vSwitch1, teaming portid; vlan and mtu optional', () => {
    const spec = assertValid(vswitch());
    assert.deepEqual(spec.attach, { kind: 'vswitch', name: 'vSwitch1', uplinks: ['vmnic0', 'vmnic1'], teaming: 'portid', portgroup: 'pg-vlan100', vlan: 100 });
    const full = assertValid(vswitch({ name: 'vSwitch2', teaming: 'iphash', vlan: 4095, mtu: 9000 }));
    assert.equal(full.attach?.kind === 'vswitch' && full.attach.teaming, 'iphash');
    const bare = vswitch();
    deleteAt(bare, ['attach', 'vlan']);
    assertValid(bare);
  });

  test('refused on every other hypervisor at attach.kind', () => {
    for (const file of ['kvm-macvtap.yaml', 'xen-bridge.yaml', 'hyperv-set.yaml']) {
      const raw = example(file);
      setAt(raw, ['attach'], { kind: 'vswitch', uplinks: [getAt(raw, ['nics', 0, 'name'])], portgroup: 'pg-1' });
      assertIssueAt(raw, 'attach.kind', /does not fit hypervisor/);
    }
  });

  test('uplinks must be NICs of the spec, each once (validated like the vds uplinks)', () => {
    assertIssueAt(vswitch({ uplinks: ['vmnic0', 'vmnic9'] }), 'attach.uplinks[1]', /"vmnic9" is not one of the spec's NICs/);
    assertIssueAt(vswitch({ uplinks: ['vmnic0', 'vmnic0'] }), 'attach.uplinks[1]', /listed twice/);
    assertIssueAt(vswitch({ uplinks: [] }), 'attach.uplinks');
    assertIssueAt(vswitch({ uplinks: ['vmnic0; reboot'] }), 'attach.uplinks[0]');
  });

  test('teaming, VLAN, MTU, names: closed sets and ranges; no LACP on a standard vSwitch', () => {
    assertIssueAt(vswitch({ teaming: 'lacp' }), 'attach.teaming');
    assertIssueAt(vswitch({ vlan: 4096 }), 'attach.vlan');
    assertIssueAt(vswitch({ vlan: -1 }), 'attach.vlan');
    assertIssueAt(vswitch({ mtu: 9216 }), 'attach.mtu');
    assertIssueAt(vswitch({ portgroup: 'VM Network' }), 'attach.portgroup');
    assertIssueAt(vswitch({ name: "vSwitch1'" }), 'attach.name');
    assertIssueAt(vswitch({ lacp: true }), 'attach.lacp', /unknown field/);
    assertIssueAt(vswitch({ vcenter: { address: 'vc.example.net', credentials: { file: '/x' } } }), 'attach.vcenter', /unknown field/);
  });

  test('the ESXi runbook still refuses bond / vlans / sriov with a vswitch attach', () => {
    const raw = vswitch();
    setAt(raw, ['vlans'], [{ id: 100, parent: 'vmnic0' }]);
    assertIssueAt(raw, 'vlans', /not in the ESXi runbook/);
  });
});

describe('network.management (management moving onto the bond)', () => {
  const withMove = (move: Record<string, unknown>) => {
    const raw = example('kvm-macvtap.yaml');
    setAt(raw, ['network'], { management: move });
    return raw;
  };
  test('an interface that is neither the bond nor one of its VLANs is refused, naming the field', () => {
    assertIssueAt(withMove({ interface: 'eth7' }), 'network.management.interface', /neither the bond nor a VLAN of the spec/);
  });
  test('the bond itself is refused: it has no address of its own to carry management', () => {
    assertIssueAt(withMove({ interface: 'bond0' }), 'network.management.interface', /no address of its own/);
    assertIssueAt(withMove({ interface: 'bond0', reachAt: { address: '192.0.2.9' } }), 'network.management.interface', /no address of its own/);
  });
  test('a consistent section is accepted, with the 120 s confirm window by default', () => {
    const spec = parseServerSpec(withMove({ interface: 'bond0.100' }), 'test');
    assert.equal(spec.network.management?.interface, 'bond0.100');
    assert.equal(spec.network.management?.confirmWindowSeconds, 120);
    const short = parseServerSpec(withMove({ interface: 'bond0.100', confirmWindowSeconds: 30, reachAt: { address: '127.0.0.1', port: 2222 } }), 'test');
    assert.equal(short.network.management?.confirmWindowSeconds, 30);
    assert.deepEqual(movedPath(short), { which: 'moved', address: '127.0.0.1', port: 2222 });
  });
  test('the confirm window is bounded (30 s to 30 min)', () => {
    assertIssueAt(withMove({ interface: 'bond0.100', confirmWindowSeconds: 5 }), 'network.management.confirmWindowSeconds');
    assertIssueAt(withMove({ interface: 'bond0.100', confirmWindowSeconds: 7200 }), 'network.management.confirmWindowSeconds');
  });
  test('not on a platform without a Linux network manager', () => {
    const raw = example('esxi-vds.yaml');
    setAt(raw, ['network'], { management: { interface: 'bond0' } });
    assertIssueAt(raw, 'network.management');
  });
});
