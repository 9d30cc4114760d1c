/**
 * `underlay plan <spec>` as an operator runs it (bin/underlay), for each non-Linux platform, against its
 * counterpart: an ESXi spec against a Redfish BMC (sushy-tools) and vCenter (vcsim) — no SSH at all; a Hyper-V
 * spec against the Windows stand-in behind a real sshd (ForceCommand). The plan must use the platform's steps
 * (the CLI once passed the Linux steps for every spec). The KVM plan runs on a lab host (test/lab/onboard.lab.test.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { startSshd, type Sshd } from '../helpers/sshd';
import { DEFAULT_SYSTEM, startSushy, type Sushy } from '../helpers/sushy';
import { esxiWorkerFixture, type EsxiWorkerFixture } from '../helpers/esxi';
import { createDvs, startVcsim, type Vcsim } from '../helpers/vcsim';

const root = resolve(__dirname, '../..');
const tmp = mkdtempSync(join(tmpdir(), 'underlay-plan-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function plan(specFile: string) {
  const r = spawnSync(join(root, 'bin/underlay'), ['plan', specFile], {
    cwd: root,
    encoding: 'utf8',
    timeout: 300_000, // the Windows stand-in starts tsx per command: slow on a loaded 2-core machine
    env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('underlay plan on ESXi: BMC and vCenter only', () => {
  let sushy: Sushy;
  let vc: Vcsim;
  let fx: EsxiWorkerFixture;
  before(async () => {
    [sushy, vc, fx] = await Promise.all([startSushy(), startVcsim(), esxiWorkerFixture()]);
    const c = await vc.client();
    try {
      // A fresh server: not in vCenter yet (the attach adds it).
      await createDvs(c, 'DSwitch-plan');
    } finally {
      await c.close();
    }
  });
  after(async () => {
    await Promise.all([sushy?.stop(), vc?.stop()]);
    await fx?.cleanup();
  });

  test('cable from the BMC inventory holds; the install and the vDS attach are pending; no Linux step, no SSH', () => {
    const file = join(tmp, 'esx-plan-01.yaml');
    writeFileSync(
      file,
      stringify({
        id: 'esx-plan-01',
        site: 'lab',
        rack: 'r07',
        // Port 1: nothing listens. A plan that opened SSH (the Linux steps) would fail to connect.
        management: { address: '127.0.0.1', port: 1, hostKey: `SHA256:${'A'.repeat(43)}`, credentials: { agent: true } },
        nics: DEFAULT_SYSTEM.nics.map((n, i) => ({ name: `vmnic${i}`, mac: n.mac })),
        hypervisor: {
          kind: 'esxi',
          bmc: {
            address: '127.0.0.1',
            port: sushy.port,
            credentials: { file: sushy.credentialFile },
            tls: { certFile: sushy.certFile, fingerprint: sushy.fingerprint },
          },
          ...fx.hypervisor(),
          // Nothing answers there: the host is not installed yet.
          apiPort: 1,
        },
        attach: {
          kind: 'vds',
          vcenter: { address: '127.0.0.1', port: vc.port, credentials: { usernameEnv: vc.usernameEnv, passwordEnv: vc.passwordEnv }, caFile: vc.caFile },
          datacenter: 'DC0',
          switch: 'DSwitch-plan',
          portgroup: 'pg-plan',
          vlan: 120,
          uplinks: ['vmnic0', 'vmnic1'],
          migrateVmk: 'vmk0',
        },
      }),
    );
    const r = plan(file);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^plan for esx-plan-01:$/m);
    assert.match(r.out, /^ {2}= cable: nothing to do$/m);
    for (const s of ['bond', 'vlan', 'sriov']) assert.match(r.out, new RegExp(`^  - ${s}: not in the spec$`, 'm'));
    assert.match(r.out, /^ {2}~ hypervisor: \d+ change\(s\)$/m);
    assert.match(r.out, /^ {2}~ attach: \d+ change\(s\)$/m);
  });
});

describe('underlay plan on Hyper-V: PowerShell over SSH to the Windows stand-in', () => {
  let sshd: Sshd;
  before(async () => {
    const shell = `${join(root, 'node_modules/.bin/tsx')} ${join(root, 'test/helpers/fake-windows-shell.ts')}`;
    sshd = await startSshd({ extraConfig: [`ForceCommand ${shell}`, `SetEnv PATH=${process.env.PATH}`] });
  });
  after(async () => {
    await sshd?.stop();
  });

  test('the cable check reads Get-NetAdapter; the Hyper-V role and the SET switch are pending', () => {
    const file = join(tmp, 'hv-plan-01.yaml');
    const t = sshd.target();
    writeFileSync(
      file,
      stringify({
        id: 'hv-plan-01',
        site: 'lon3',
        rack: 'r08',
        management: { address: t.host, port: t.port, user: t.user, hostKey: t.hostKey, credentials: { privateKeyFile: sshd.userKeyPath } },
        nics: [
          { name: 'NIC1', mac: '98:03:9b:4a:10:01', speedMbps: 25000 },
          { name: 'NIC2', mac: '98:03:9b:4a:10:02', speedMbps: 25000 },
        ],
        hypervisor: { kind: 'hyperv' },
        attach: { kind: 'set', switchName: 'SETswitch', nics: ['NIC1', 'NIC2'], loadBalancing: 'Dynamic', managementVlan: 20 },
      }),
    );
    const r = plan(file);
    assert.equal(r.code, 0, `${r.err}\n${sshd.log().slice(-2000)}`);
    assert.match(r.out, /^ {2}= cable: nothing to do$/m);
    for (const s of ['bond', 'vlan', 'sriov']) assert.match(r.out, new RegExp(`^  - ${s}: not in the spec$`, 'm'));
    assert.match(r.out, /^ {2}~ hypervisor: \d+ change\(s\)$/m);
    assert.match(r.out, /Hyper-V/);
    assert.match(r.out, /^ {2}~ attach: \d+ change\(s\)$/m);
  });
});
