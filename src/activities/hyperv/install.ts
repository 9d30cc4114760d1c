/**
 * Step 5 on Hyper-V (Windows Server, PowerShell over OpenSSH): Install-WindowsFeature Hyper-V with its management
 * tools, reboot once (the feature completes at boot), wait for a new LastBootUpTime, and verify the feature is
 * Installed, the hypervisor is running (Win32_ComputerSystem.HypervisorPresent) and the vmms service is up.
 * Undo: Uninstall-WindowsFeature Hyper-V -IncludeManagementTools and one reboot.
 */
import { CommandFailedError, UnderlayError, UnsupportedPlatformError, VerificationError } from '../../common/errors';
import {
  FeatureOperationResult,
  getService,
  getWindowsFeatures,
  HYPERV_FEATURES,
  installHyperV,
  issueRestart,
  readBootInfo,
  ServiceStatus,
  uninstallHyperV,
  WindowsFeature,
} from '../../drivers/hyperv/cmdlets';
import { readPs } from '../../drivers/hyperv/run';
import type { ServerSpec } from '../../spec/server';
import { pollUntilHolds, type Problem } from '../poll';
import { rebootAndWait, type RebootOps } from '../reboot';
import type { Change, Step, StepIo } from '../step';
import { hypervisorOfKind } from '../want';

export const WINDOWS_REBOOT: RebootOps = {
  bootId: async (host) => (await readBootInfo(host)).LastBootUpTime,
  issue: (host) => issueRestart(host, 'underlay: Hyper-V feature change'),
};

/** Windows Server: POST, then feature configuration at boot (Hyper-V may restart the machine a second time). */
export const WINDOWS_REBOOT_BOUNDS = { timeoutMs: 30 * 60_000, intervalMs: 15_000 };

export interface HypervInstallState {
  /** InstallState of Hyper-V and Hyper-V-PowerShell. */
  features: Record<string, string>;
  /** Win32_ComputerSystem.HypervisorPresent. */
  hypervisorPresent: boolean;
}

type HypervSpec = Extract<ServerSpec['hypervisor'], { kind: 'hyperv' }>;
type Io = StepIo<HypervSpec>;

async function readFeatures(io: Io): Promise<Record<string, string>> {
  const list = await readPs(io.host, getWindowsFeatures(HYPERV_FEATURES), WindowsFeature, { description: 'Get-WindowsFeature Hyper-V', timeoutMs: 5 * 60_000 });
  const out: Record<string, string> = {};
  for (const name of HYPERV_FEATURES) {
    const f = list.find((x) => x.Name === name);
    if (!f) {
      throw new UnsupportedPlatformError('Get-WindowsFeature does not know the Hyper-V feature (not Windows Server?)', {
        host: io.host.label,
        step: 'hypervisor',
        field: 'hypervisor.kind',
        expected: name,
        observed: list.map((x) => x.Name).join(', ') || 'nothing',
      });
    }
    out[name] = f.InstallState;
  }
  return out;
}

async function observe(io: Io): Promise<HypervInstallState> {
  const features = await readFeatures(io);
  const boot = await readBootInfo(io.host);
  return { features, hypervisorPresent: boot.HypervisorPresent };
}

function plan(_want: HypervSpec, o: HypervInstallState): Change[] {
  const changes: Change[] = HYPERV_FEATURES.filter((f) => o.features[f] !== 'Installed').map((f) => ({
    field: `feature ${f}`,
    from: o.features[f] ?? 'unknown',
    to: 'Installed',
  }));
  if (!o.hypervisorPresent) changes.push({ field: 'hypervisor running', from: false, to: 'true, after one reboot' });
  return changes;
}

export interface HypervInstallTiming {
  reboot: { timeoutMs: number; intervalMs: number };
  verify: { timeoutMs: number; intervalMs: number };
}

export const HYPERV_INSTALL_TIMING: HypervInstallTiming = { reboot: WINDOWS_REBOOT_BOUNDS, verify: { timeoutMs: 15 * 60_000, intervalMs: 15_000 } };

async function apply(io: Io, o: HypervInstallState, timing: HypervInstallTiming): Promise<void> {
  if (Object.values(o.features).includes('Removed')) {
    throw new UnsupportedPlatformError('the Hyper-V feature payload was removed from this Windows image (Install-WindowsFeature needs -Source)', {
      host: io.host.label,
      step: 'hypervisor',
      field: 'hypervisor.kind',
      expected: 'Available',
      observed: 'Removed',
    });
  }
  if (HYPERV_FEATURES.some((f) => o.features[f] === 'Available')) {
    const [r] = await readPs(io.host, installHyperV(), FeatureOperationResult, {
      description: 'Install-WindowsFeature Hyper-V -IncludeManagementTools',
      timeoutMs: 30 * 60_000,
    });
    if (!r?.Success) {
      throw new CommandFailedError(
        'Install-WindowsFeature Hyper-V did not succeed',
        { host: io.host.label, step: 'hypervisor', command: 'Install-WindowsFeature Hyper-V', stderr: r ? `ExitCode ${r.ExitCode}` : 'no result' },
        false,
      );
    }
  }
  const features = await readFeatures(io);
  const boot = await readBootInfo(io.host);
  if (!boot.HypervisorPresent || Object.values(features).includes('InstallPending')) {
    await rebootAndWait(io, WINDOWS_REBOOT, { reason: 'finish the Hyper-V install', ...timing.reboot });
  }
}

/** A check that survives the host restarting under it (Hyper-V's second, automatic restart): reconnect and retry. */
async function tolerant(io: Io, fn: () => Promise<Problem[]>): Promise<Problem[]> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof UnderlayError && err.retryable && io.reconnect)) throw err;
    await io.reconnect().catch(() => undefined);
    return [{ field: 'host', expected: 'answering', observed: `${err.name} (restarting?)` }];
  }
}

async function check(io: Io): Promise<Problem[]> {
  const problems: Problem[] = [];
  const features = await readFeatures(io);
  for (const f of HYPERV_FEATURES) {
    const s = features[f];
    if (s !== 'Installed')
      problems.push({ field: `feature ${f}`, expected: 'Installed', observed: s ?? 'unknown', final: s === 'Available' || s === 'Removed' });
  }
  const boot = await readBootInfo(io.host);
  if (!boot.HypervisorPresent) problems.push({ field: 'HypervisorPresent', expected: true, observed: false });
  const [vmms] = await readPs(io.host, getService('vmms'), ServiceStatus, { description: 'Get-Service vmms', timeoutMs: 60_000 });
  if (vmms?.Status !== 'Running') problems.push({ field: 'service vmms', expected: 'Running', observed: vmms?.Status ?? 'absent' });
  return problems;
}

async function undo(io: Io, pre: HypervInstallState, now: HypervInstallState, timing: HypervInstallTiming): Promise<void> {
  const installedNow = Object.values(now.features).some((s) => s === 'Installed' || s === 'InstallPending');
  const installedBefore = Object.values(pre.features).some((s) => s === 'Installed' || s === 'InstallPending');
  if (installedNow && !installedBefore) {
    const [r] = await readPs(io.host, uninstallHyperV(), FeatureOperationResult, {
      description: 'Uninstall-WindowsFeature Hyper-V -IncludeManagementTools',
      timeoutMs: 30 * 60_000,
    });
    if (!r?.Success)
      throw new CommandFailedError(
        'Uninstall-WindowsFeature Hyper-V did not succeed',
        { host: io.host.label, step: 'hypervisor', command: 'Uninstall-WindowsFeature Hyper-V', stderr: r ? `ExitCode ${r.ExitCode}` : 'no result' },
        false,
      );
  }
  const features = await readFeatures(io);
  const boot = await readBootInfo(io.host);
  if (Object.values(features).includes('UninstallPending') || (boot.HypervisorPresent && !pre.hypervisorPresent)) {
    await rebootAndWait(io, WINDOWS_REBOOT, { reason: 'finish removing Hyper-V', ...timing.reboot });
  }
  const after = await readFeatures(io);
  const left = HYPERV_FEATURES.filter((f) => after[f] !== pre.features[f]);
  if (left.length && installedBefore) {
    throw new VerificationError('Hyper-V was installed before onboarding; not changing it', {
      host: io.host.label,
      step: 'hypervisor',
      field: left.join(', '),
      expected: left.map((f) => pre.features[f]),
      observed: left.map((f) => after[f]),
    });
  }
}

function diff(a: HypervInstallState, b: HypervInstallState): Change[] {
  const changes: Change[] = HYPERV_FEATURES.filter((f) => a.features[f] !== b.features[f]).map((f) => ({
    field: `feature ${f}`,
    from: a.features[f] ?? null,
    to: b.features[f] ?? null,
  }));
  if (a.hypervisorPresent !== b.hypervisorPresent) changes.push({ field: 'hypervisor running', from: a.hypervisorPresent, to: b.hypervisorPresent });
  return changes;
}

/** The step with its waits (tests shorten them; the host's behaviour is the same). */
export function makeHypervInstallStep(timing: HypervInstallTiming = HYPERV_INSTALL_TIMING): Step<HypervInstallState, HypervSpec> {
  return {
    name: 'hypervisor',
    want: (spec) => hypervisorOfKind(spec, 'hyperv'),
    observe,
    plan,
    apply: (io, o) => apply(io, o, timing),
    verify: (io) => pollUntilHolds(io, 'Hyper-V', () => tolerant(io, () => check(io)), timing.verify),
    undo: (io, pre, now) => undo(io, pre, now, timing),
    diff,
  };
}

export const hypervInstallStep = makeHypervInstallStep();
