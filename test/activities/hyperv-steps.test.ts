/**
 * The Hyper-V steps through the real step runner (run-step.ts in a MockActivityEnvironment), against the fake
 * Windows host of test/helpers/fake-windows.ts — no Windows peer can run here; the fake decodes exactly what the
 * steps send and answers from the fixtures. What this proves: the command sequence, idempotence, the
 * reboot-once logic (incl. a retry that finds the reboot pending), undo, the lockout guard and the typed errors.
 * What it does not prove: that Windows answers like the fixtures (see test/fixtures/hyperv/SOURCES.md).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { hypervSetAttachStep } from '../../src/activities/hyperv/attach';
import { hypervCableStep } from '../../src/activities/hyperv/cable';
import { makeHypervInstallStep } from '../../src/activities/hyperv/install';
import { platformStep } from '../../src/activities/registry';
import { runStep, undoStep, type Connector } from '../../src/activities/run-step';
import { REBOOT_MARK, type StepResult, type UndoResult, type StepChoice } from '../../src/activities/step';
import type { StepName } from '../../src/steps';
import { RemoteHost } from '../../src/drivers/remote';
import { parseServerSpec } from '../../src/spec/validate';
import { FakeWindows } from '../helpers/fake-windows';
import { applicationFailureOf } from '../helpers/failures';

const noop = () => undefined;
const quiet = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

const RAW = {
  id: 'hv-r08-01',
  site: 'lon3',
  rack: 'r08',
  management: {
    address: '192.0.2.88',
    user: 'underlay',
    hostKey: 'SHA256:bJy5BEOGIJPvn3Bc8TmIIyGr4aZPKrka6qVodpg1VtU',
    credentials: { privateKeyFile: 'keys/hyperv_ed25519' },
  },
  nics: [
    { name: 'NIC1', mac: '98:03:9b:4a:10:01', speedMbps: 25000 },
    { name: 'NIC2', mac: '98:03:9b:4a:10:02', speedMbps: 25000 },
  ],
  hypervisor: { kind: 'hyperv' },
  attach: { kind: 'set', switchName: 'SETswitch', nics: ['NIC1', 'NIC2'], loadBalancing: 'Dynamic', managementVlan: 20 },
};

/** Short waits for the fake host (the step's logic is unchanged). */
const installStep = makeHypervInstallStep({ reboot: { timeoutMs: 20_000, intervalMs: 20 }, verify: { timeoutMs: 5_000, intervalMs: 20 } });

function connector(win: FakeWindows): Connector {
  return async (spec, step) => {
    win.connect();
    return { host: new RemoteHost(win, spec.id, false, step), close: noop };
  };
}

function run(win: FakeWindows, name: StepName, step: StepChoice, info: Partial<Info> = {}, raw: unknown = RAW): Promise<StepResult> {
  return new MockActivityEnvironment(info, { logger: quiet }).run(runStep, name, step, raw, connector(win));
}

function undo(win: FakeWindows, name: StepName, step: StepChoice, pre: unknown): Promise<UndoResult> {
  return new MockActivityEnvironment({}, { logger: quiet }).run(undoStep, name, step, RAW, pre, connector(win));
}

describe('Hyper-V on the platform matrix', () => {
  test('platforms.ts chooses the Hyper-V steps for a hyperv spec, and has no bond/vlan/sriov for it', () => {
    const spec = parseServerSpec(RAW);
    assert.equal(platformStep('cable', spec), hypervCableStep);
    assert.equal(platformStep('attach', spec), hypervSetAttachStep);
    assert.equal(platformStep('hypervisor', spec).name, 'hypervisor');
    for (const s of ['bond', 'vlan', 'sriov'] as const) assert.throws(() => platformStep(s, spec), /no .* step for hyperv/);
  });
});

describe('Hyper-V install: feature, one reboot, verify', () => {
  test('fresh host: Install-WindowsFeature once, shutdown.exe once, waits through the restart, verifies', async () => {
    const win = new FakeWindows();
    const r = await run(win, 'hypervisor', installStep);
    assert.equal(r.changed, true);
    assert.deepEqual(
      r.changes.map((c) => c.field),
      ['feature Hyper-V', 'feature Hyper-V-PowerShell', 'hypervisor running'],
    );
    assert.equal(win.sent(/Install-WindowsFeature/).length, 1);
    assert.equal(win.sent(/shutdown\.exe/).length, 1);
    assert.equal(win.boots, 1);
    assert.equal(win.features, 'installed');
    assert.equal(win.sent(/Get-Service/).length >= 1, true, 'verified vmms');
  });

  test('re-run on the installed host: nothing to do, no reboot', async () => {
    const win = new FakeWindows();
    win.features = 'installed';
    win.boots = 1;
    const r = await run(win, 'hypervisor', installStep);
    assert.equal(r.changed, false);
    assert.deepEqual(win.sent(/Install-WindowsFeature|shutdown\.exe/), []);
  });

  test('a retry that finds the reboot pending (worker died mid-wait) only waits: no second shutdown.exe', async () => {
    const win = new FakeWindows();
    win.features = 'install-pending';
    win.rebooting = 2; // the host is down right now; the runner waits for it (bounded by the mark)
    const pending = { bootId: '2026-11-20T06:14:02.5000000Z', issuedAt: Date.now() - 30_000, waitUntil: Date.now() + 60_000 };
    const pre = { features: { 'Hyper-V': 'Available', 'Hyper-V-PowerShell': 'Available' }, hypervisorPresent: false };
    const started = Date.now();
    const r = await run(win, 'hypervisor', installStep, { attempt: 2, heartbeatDetails: { pre, touched: true, marks: { [REBOOT_MARK]: pending } } });
    assert.equal(r.attempt, 2);
    assert.deepEqual(r.pre, pre, 'the pre-state of the first attempt');
    assert.equal(r.changed, true);
    assert.deepEqual(win.sent(/shutdown\.exe|Install-WindowsFeature/), []);
    assert.equal(win.features, 'installed');
    assert.ok(Date.now() - started >= 5_000, 'the runner waited (5 s) for the host instead of failing the attempt');
  });

  test('undo: Uninstall-WindowsFeature and one reboot back to the pre-state', async () => {
    const win = new FakeWindows();
    const r = await run(win, 'hypervisor', installStep);
    const u = await undo(win, 'hypervisor', installStep, r.pre);
    assert.deepEqual(
      u.changes.map((c) => c.field),
      ['feature Hyper-V', 'feature Hyper-V-PowerShell', 'hypervisor running'],
    );
    assert.equal(win.sent(/Uninstall-WindowsFeature/).length, 1);
    assert.equal(win.sent(/shutdown\.exe/).length, 2, 'one for the install, one for the undo');
    assert.equal(win.features, 'available');
  });

  test('the host-side deadline (exit 124) is a retryable CommandTimeoutError', async () => {
    const win = new FakeWindows();
    win.forceExit = 124;
    const f = await applicationFailureOf(run(win, 'hypervisor', installStep));
    assert.equal(f.type, 'CommandTimeoutError');
    assert.equal(f.nonRetryable, false);
    assert.match(f.message, /Get-WindowsFeature Hyper-V timed out/);
  });
});

describe('Hyper-V attach: SET switch, load balancing, management VLAN', () => {
  test('creates the SET switch with one PowerShell run, verifies, and a re-run changes nothing', async () => {
    const win = new FakeWindows();
    const r = await run(win, 'attach', hypervSetAttachStep);
    assert.equal(r.changed, true);
    assert.deepEqual(win.sent(/^New-VMSwitch/), [
      [
        "New-VMSwitch -Name 'SETswitch' -NetAdapterName @('NIC1','NIC2') -EnableEmbeddedTeaming $true -AllowManagementOS $true | Out-Null",
        "Set-VMSwitchTeam -Name 'SETswitch' -LoadBalancingAlgorithm 'Dynamic'",
        "Set-VMNetworkAdapterVlan -ManagementOS -VMNetworkAdapterName 'SETswitch' -Access -VlanId 20",
      ].join('\n'),
    ]);
    assert.ok(win.switchExists && win.vlan === 20);
    const again = await run(win, 'attach', hypervSetAttachStep);
    assert.equal(again.changed, false);
    assert.equal(win.sent(/^New-VMSwitch|^Set-VM/).length, 1, 'no second change');
  });

  test('undo removes the switch it created', async () => {
    const win = new FakeWindows();
    const r = await run(win, 'attach', hypervSetAttachStep);
    const u = await undo(win, 'attach', hypervSetAttachStep, r.pre);
    assert.ok(u.changes.length > 0);
    assert.deepEqual(win.sent(/^Remove-VMSwitch/), ["Remove-VMSwitch -Name 'SETswitch' -Force"]);
    assert.equal(win.switchExists, false);
  });

  test('lockout guard: the SSH session runs over NIC1 → refused, non-retryable, nothing sent that changes the host', async () => {
    const win = new FakeWindows();
    win.session = 'nic1';
    const f = await applicationFailureOf(run(win, 'attach', hypervSetAttachStep));
    assert.equal(f.type, 'LockoutRiskError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /field attach\.nics; .*observed "NIC1"/);
    assert.deepEqual(win.sent(/^(New|Set|Remove)-VM/), []);
  });
});

describe('Hyper-V cable check (read-only)', () => {
  test('all NICs Up at 25 Gb/s with the spec MACs: holds, no change', async () => {
    const win = new FakeWindows();
    const r = await run(win, 'cable', hypervCableStep);
    assert.equal(r.changed, false);
    assert.deepEqual(win.sent(/^(New|Set|Remove|Install)/), []);
  });

  test('a NIC at the wrong speed and one disconnected: VerificationError naming both', async () => {
    const win = new FakeWindows();
    win.adapters = 'get-netadapter.degraded.json';
    const f = await applicationFailureOf(run(win, 'cable', hypervCableStep));
    assert.equal(f.type, 'VerificationError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /NIC1\.speed: expected 25000 Mb\/s, observed 10000 Mb\/s/);
    assert.match(f.message, /NIC2\.status: expected Up, observed Disconnected/);
  });
});
