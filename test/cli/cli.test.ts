/** The CLI as an operator runs it (bin/underlay), for the commands that need no Temporal server. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { assertOnboardable } from '../../src/cli/onboarding';
import { loadSpecFile } from '../../src/spec/load';

const root = resolve(__dirname, '../..');
const tmp = mkdtempSync(join(tmpdir(), 'underlay-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function underlay(...args: string[]) {
  return underlayWith({}, ...args);
}

function underlayWith(env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(join(root, 'bin/underlay'), args, {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1', ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('validate: every example is valid (exit 0)', () => {
  const files = readdirSync(join(root, 'examples')).map((f) => join('examples', f));
  const r = underlay('validate', ...files);
  assert.equal(r.code, 0, r.err);
  for (const f of files) assert.match(r.out, new RegExp(`${f}: ok`));
});

test('validate: a bad spec exits 1 and names every bad field', () => {
  const bad = join(tmp, 'bad.yaml');
  writeFileSync(
    bad,
    [
      'id: srv-1',
      'site: ams1',
      'rack: r1',
      'management: { address: 192.0.2.10, hostKey: "SHA256:nope", password: hunter2, credentials: { agent: true } }',
      'nics: [{ name: "eth1;reboot", speedMbps: 10000 }]',
      'bond: { members: [eth9] }',
      'vlans: [{ id: 4095, parent: bond0 }]',
      'hypervisor: { kind: kvm }',
    ].join('\n'),
  );
  const r = underlay('validate', bad);
  assert.equal(r.code, 1);
  for (const path of ['management.hostKey', 'management.password', 'nics[0].name', 'bond.members[0]', 'vlans[0].id'])
    assert.match(r.err, new RegExp(path.replace(/[[\].]/g, '\\$&')));
  assert.doesNotMatch(r.err + r.out, /hunter2/, 'the secret is never echoed');
});

test('validate goes on past hostile files: an alias bomb, /dev/zero, a forged output line; warns about the local secret scope', () => {
  const bomb = join(tmp, 'bomb.yaml');
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 10; i++)
    lines.push(
      `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(', ')}]`,
    );
  writeFileSync(bomb, `id: srv-1\n${lines.join('\n')}\n`);
  const forged = join(tmp, 'forged.json');
  // An unknown key whose newline would print "examples/kvm-minimal.json: ok" as a line of its own.
  writeFileSync(forged, JSON.stringify({ id: 'srv-2', 'x\nexamples/kvm-minimal.json: ok (forged)': 1 }));
  const r = underlayWith({ UNDERLAY_CREDENTIALS_DIR: tmp }, 'validate', bomb, '/dev/zero', forged, 'examples/esxi-vds.yaml', 'examples/kvm-minimal.json');
  assert.equal(r.code, 1);
  assert.match(r.err, new RegExp(`${bomb}: 1 problem\\(s\\)\\n  \\(file\\): too many alias expansions`));
  assert.match(r.err, /\/dev\/zero: 1 problem\(s\)\n {2}\(file\): is not a regular file/);
  assert.match(r.err, /\["x\\u000aexamples\/kvm-minimal\.json: ok \(forged\)"\]: unknown field/);
  assert.doesNotMatch(r.out + r.err, /^examples\/kvm-minimal\.json: ok \(forged\)/m, 'no forged line');
  assert.match(r.out, /^examples\/esxi-vds\.yaml: ok/m);
  assert.match(r.out, /^examples\/kvm-minimal\.json: ok/m, 'the files after the hostile ones were checked');
  // Valid, but its references are outside this machine's credentials directory: warned, not refused.
  assert.match(r.err, /examples\/esxi-vds\.yaml: warning: attach\.vcenter\.caFile: \S+ is outside the worker's credentials directory/);
});

test('schema prints a JSON Schema of the spec', () => {
  const r = underlay('schema');
  assert.equal(r.code, 0, r.err);
  const schema = JSON.parse(r.out) as { $schema?: string; properties?: Record<string, unknown> };
  assert.ok(schema.$schema);
  for (const k of ['id', 'management', 'nics', 'bond', 'vlans', 'sriov', 'hypervisor', 'attach']) assert.ok(schema.properties?.[k], k);
});

test('every example has a driver for each step it asks for (onboard would not refuse it)', async () => {
  for (const f of readdirSync(join(root, 'examples'))) {
    const spec = await loadSpecFile(join(root, 'examples', f));
    assert.doesNotThrow(() => assertOnboardable(spec), f);
  }
});

test('onboard of a valid spec reaches for Temporal (and says where it could not connect)', () => {
  const r = underlay('onboard', 'examples/esxi-vds.yaml');
  assert.equal(r.code, 1);
  assert.match(r.err, /127\.0\.0\.1:1/);
});

test('list refuses a filter value that is not what the search attribute holds, before connecting anywhere', () => {
  const r = underlay('list', '--site', "ams1' OR WorkflowType != '");
  assert.equal(r.code, 1);
  assert.match(r.err, /--site: "ams1' OR WorkflowType != '" is not a site label/);
  const o = underlay('list', '--outcome', 'done');
  assert.equal(o.code, 1);
  assert.match(o.err, /--outcome: "done" is not running, paused, awaiting-approval, compensating, onboarded/);
});

test('operator commands are there, and approve --step takes only step names', () => {
  const help = underlay('--help');
  for (const c of ['pause', 'resume', 'approve', 'cancel', 'list']) assert.match(help.out, new RegExp(`^  ${c} `, 'm'));
  assert.match(underlay('onboard', '--help').out, /--approve-before <steps>/);
  const r = underlay('approve', 'kvm-r12-07', '--step', 'reboot');
  assert.equal(r.code, 1);
  assert.match(r.err, /--step: one of cable, bond, vlan, sriov, dpdk, hypervisor, attach \(got reboot\)/);
});
