/**
 * Queries, updates and shared types of the onboarding workflow (imported by clients too), and the one-line
 * step summaries the workflow attaches to its activity calls (pure functions of the spec: deterministic).
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import { STEP_TITLES, type StepName } from '../common/steps';
import type { ServerSpec } from '../spec/server';

export type StepState =
  'pending' | 'skipped' | 'running' | 'done' | 'unchanged' | 'failed' | 'compensating' | 'compensated' | 'compensation-failed' | 'not-run';

export interface StepStatus {
  state: StepState;
  /** What the step does to this server, one line (from the spec before it runs, from the step once done). */
  summary?: string;
  attempts?: number;
  /** Fields the step changed (done), or restored (compensated). */
  changes?: number;
  error?: string;
  startedAt?: string;
  endedAt?: string;
}

/**
 * running → (paused | awaiting-approval → running)* → succeeded, or → compensating → failed | cancelled.
 * `paused` and `awaiting-approval` are waits between two steps: nothing runs on the host.
 */
export type Phase = 'running' | 'paused' | 'awaiting-approval' | 'compensating' | 'succeeded' | 'failed' | 'cancelled';

/** Who asked for an operator action, and when (workflow time). */
export interface OperatorAction {
  by: string;
  at: string;
  reason?: string;
}

/** Operator control of one onboarding: pause/resume, approval gates, cancellation with rollback. */
export interface ControlState {
  /** A pause was asked for: the workflow stops before the next step (the running one finishes). */
  pause: OperatorAction | null;
  /** The step the workflow waits before (paused or awaiting approval), else null. */
  waitingBefore: StepName | null;
  /** Steps that wait for `underlay approve` before they run (OnboardInput.approvalBefore). */
  approvalBefore: StepName[];
  approvals: Array<OperatorAction & { step: StepName }>;
  /** `underlay cancel`: the running step was cancelled and everything changed is being (or was) rolled back. */
  cancel: OperatorAction | null;
}

/** One line of the timeline: a step's apply and, if it was rolled back, its compensation. */
export interface TimelineEntry {
  step: StepName;
  result: 'done' | 'unchanged' | 'failed' | 'cancelled';
  /** Attempts of the step activity (null when unknown, e.g. a timeout without heartbeat). */
  attempts: number | null;
  error?: string;
  startedAt: string;
  durationMs: number;
  compensation?: { outcome: CompensationOutcome['outcome']; durationMs: number; error?: string };
}

export interface OnboardingStatus {
  serverId: string;
  phase: Phase;
  currentStep: StepName | null;
  steps: Record<StepName, StepStatus>;
  /** Absent in histories from before operator control existed. */
  control?: ControlState;
  timeline?: TimelineEntry[];
}

export interface CompensationOutcome {
  step: StepName;
  outcome: 'restored' | 'already-restored' | 'failed';
  changes?: number;
  error?: string;
}

export interface OnboardingFailureReport {
  serverId: string;
  failedStep: StepName | null;
  attempts: number | null;
  error: string;
  compensations: CompensationOutcome[];
  /** Every step that ran: attempts, error, duration and its compensation's outcome. */
  timeline?: TimelineEntry[];
  /** Set when an operator cancelled with `underlay cancel`. */
  cancelledBy?: OperatorAction;
}

/** One character per step state, shared by the Web UI's details table and the CLI's frames. */
export const STEP_MARK: Record<StepState, string> = {
  pending: '·',
  skipped: '–',
  running: '▶',
  done: '✓',
  unchanged: '=',
  failed: '✗',
  compensating: '↺',
  compensated: '↩',
  'compensation-failed': '!',
  'not-run': '·',
};

export const statusQuery = defineQuery<OnboardingStatus>('status');

// ---- operator control (updates with validators: a refused request leaves no trace in the history) -------------

export interface ControlRequest {
  /** Who asks, for the record (the CLI sends the user name). */
  by?: string;
  reason?: string;
}

export interface ApproveRequest extends ControlRequest {
  /** The step being approved; default: the one waiting. Refused if another step waits. */
  step?: StepName;
}

export interface ControlAnswer {
  serverId: string;
  phase: Phase;
  currentStep: StepName | null;
  /** The step the workflow waits before (or will pause before), if any. */
  waitingBefore: StepName | null;
  message: string;
}

export interface CancelAnswer {
  serverId: string;
  /** The step that was running (cancelled) or waited for, null before the first step. */
  cancelledAt: StepName | null;
  compensations: CompensationOutcome[];
  message: string;
}

/** Pause before the next step (the running step finishes). Refused when paused already or finished. */
export const pauseUpdate = defineUpdate<ControlAnswer, [ControlRequest]>('pause');
/** Resume a paused onboarding. Refused unless paused (or a pause is pending). */
export const resumeUpdate = defineUpdate<ControlAnswer, [ControlRequest]>('resume');
/** Approve the gated step the onboarding waits before. Refused when nothing waits for approval. */
export const approveStepUpdate = defineUpdate<ControlAnswer, [ApproveRequest]>('approveStep');
/** Cancel the running step and roll back every change; completes once the rollback is done. */
export const cancelUpdate = defineUpdate<CancelAnswer, [ControlRequest]>('cancel');

// ---- summaries -------------------------------------------------------------------------------------------------

/** The names of the step activities, as the Web UI shows them. */
export const STEP_ACTIVITY: Record<StepName, { apply: string; undo: string }> = {
  cable: { apply: 'checkCabling', undo: 'rollbackCabling' },
  bond: { apply: 'configureBond', undo: 'rollbackBond' },
  vlan: { apply: 'configureVlans', undo: 'rollbackVlans' },
  sriov: { apply: 'enableSriov', undo: 'rollbackSriov' },
  hypervisor: { apply: 'installHypervisor', undo: 'rollbackHypervisor' },
  attach: { apply: 'attachNetwork', undo: 'rollbackNetworkAttach' },
};

const speed = (mbps?: number): string => (!mbps ? '' : mbps >= 1000 ? ` @${mbps / 1000}G` : ` @${mbps}M`);

/**
 * What a step does to this server, in one line: `bond0 ← eth1,eth2 · 802.3ad · fast`. Computed from the spec
 * alone (workflows cannot import the steps' own summaries), so it is the same on every replay.
 */
export function stepSummary(step: StepName, spec: ServerSpec): string {
  switch (step) {
    case 'cable': {
      const nics = spec.nics.filter((n) => n.cabled);
      return nics.map((n) => `${n.name}→${n.lldp ? `${n.lldp.switch}/${n.lldp.port}` : '?'}${speed(n.speedMbps)}`).join(', ') || 'no cabled NIC';
    }
    case 'bond': {
      const b = spec.bond;
      return b ? `${b.name} ← ${b.members.join(',')} · ${b.mode}${b.mode === '802.3ad' ? ` · ${b.lacpRate}` : ''}` : 'no bond';
    }
    case 'vlan':
      return (
        spec.vlans.map((v) => `${v.name ?? `${v.parent}.${v.id}`}${v.address ? ` ${v.address}` : ''}${v.gateway ? ` → ${v.gateway}` : ''}`).join(', ') ||
        'no VLAN'
      );
    case 'sriov': {
      const s = spec.sriov;
      return s ? `${s.pf} · ${s.numVfs} VFs${s.vfioPci ? ' · vfio-pci' : ''}` : 'no SR-IOV';
    }
    case 'hypervisor': {
      const h = spec.hypervisor;
      if (h.kind === 'kvm') return `KVM · ${h.packages ? h.packages.join(' ') : 'qemu + libvirt'}${spec.attach?.kind === 'ovs' ? ' + Open vSwitch' : ''}`;
      return { xen: 'Xen', esxi: 'ESXi', hyperv: 'Hyper-V' }[h.kind as string] ?? String(h.kind);
    }
    case 'attach': {
      const a = spec.attach;
      if (!a) return 'no attach';
      if (a.kind === 'macvtap') return `macvtap ${a.mode} · network ${a.network} on ${a.device ?? spec.bond?.name ?? '?'}`;
      if (a.kind === 'ovs') return `OVS ${a.bridge} ← ${a.uplink ?? spec.bond?.name ?? '?'}${a.vlanPorts.map((p) => ` · ${p.name}:${p.vlan}`).join('')}`;
      return String(a.kind);
    }
  }
}

/**
 * The summary of a step activity call in the Web UI's event history: the step's one line for the apply
 * (`bond0 ← eth1,eth2 · 802.3ad · fast`), `undo bond: restore the pre-state of bond0 ← …` for its rollback.
 */
export function activitySummary(step: StepName, spec: ServerSpec, kind: 'apply' | 'undo'): string {
  const line = kind === 'undo' ? `undo ${STEP_TITLES[step]}: restore the pre-state of ${stepSummary(step, spec)}` : stepSummary(step, spec);
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}
