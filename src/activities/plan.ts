/**
 * The dry run: observe every step's live state over one SSH session and diff it against the spec. Changes
 * nothing. On a fresh host it lists what onboarding would do; on an onboarded host, nothing (or the drift).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UnderlayError } from '../common/errors';
import { STEPS, stepApplies, type StepName } from '../steps';
import { parseServerSpec } from '../spec/validate';
import { assertSecretScope } from '../transports/secret-scope';
import type { StepSet } from './registry';
import type { RemoteHost } from '../drivers/remote';
import { noShell, type Connector } from './run-step';
import { chooseStep, type Change, type HealthProblem, type StepIo } from './step';

export interface StepPlan {
  step: StepName;
  /** False when the spec does not ask for this step. */
  applies: boolean;
  changes: Change[];
  /** Why the step could not be planned (e.g. unsupported hardware); the others are still planned. */
  error?: string;
  /** What the step found (e.g. the network manager it persists through). */
  note?: string;
  /** Health a re-apply cannot fix (Step.health): each needs a person. */
  health?: HealthProblem[];
}

export interface OnboardingPlan {
  serverId: string;
  steps: StepPlan[];
}

export async function planOnboarding(
  rawSpec: unknown,
  connect: Connector,
  steps: StepSet,
  onProgress: (note: string) => void = () => undefined,
): Promise<OnboardingPlan> {
  const spec = parseServerSpec(rawSpec, 'spec');
  assertSecretScope(spec); // the worker decides which credentials a spec may use: before any connection
  // One SSH session for every step that needs one, opened when the first does (an ESXi plan needs none).
  let conn: Promise<{ host: RemoteHost; close(failed?: boolean): void }> | undefined;
  let failed = true;
  const shell = async (name: StepName) => (await (conn ??= connect(spec, name, onProgress))).host.forStep(name);
  try {
    const out: StepPlan[] = [];
    for (const name of STEPS) {
      if (!stepApplies(name, spec)) {
        out.push({ step: name, applies: false, changes: [] });
        continue;
      }
      try {
        const step = chooseStep(steps[name], spec);
        const want = step.want(spec);
        const host = step.connection === 'none' ? noShell(spec, name) : await shell(name);
        const io: StepIo<unknown> = { host, spec, want, sleep: (ms) => sleep(ms), progress: onProgress, marks: {}, mark: () => undefined };
        const observed = await step.observe(io);
        const note = step.note?.(observed);
        const health = step.health ? await step.health(io) : [];
        out.push({ step: name, applies: true, changes: step.plan(want, observed), ...(note ? { note } : {}), ...(health.length ? { health } : {}) });
      } catch (err) {
        // Host-state problems belong in the plan; transport trouble (unreachable, wrong host key) aborts it.
        if (err instanceof UnderlayError && !err.retryable && err.name !== 'HostKeyMismatchError' && err.name !== 'AuthenticationError') {
          out.push({ step: name, applies: true, changes: [], error: err.message });
        } else throw err;
      }
    }
    failed = false;
    return { serverId: spec.id, steps: out };
  } finally {
    if (conn) (await conn.catch(() => undefined))?.close(failed);
  }
}

export function renderPlan(plan: OnboardingPlan): string {
  const lines = [`plan for ${plan.serverId}:`];
  for (const s of plan.steps) {
    if (!s.applies) lines.push(`  - ${s.step}: not in the spec`);
    else if (s.error) lines.push(`  ! ${s.step}: cannot plan: ${s.error}`);
    else if (!s.changes.length) lines.push(`  = ${s.step}: nothing to do${s.note ? ` (${s.note})` : ''}`);
    else {
      lines.push(`  ~ ${s.step}: ${s.changes.length} change(s)${s.note ? ` (${s.note})` : ''}`);
      for (const c of s.changes) lines.push(`      ${c.field}: ${JSON.stringify(c.from)} → ${JSON.stringify(c.to)}`);
    }
    for (const h of s.health ?? [])
      lines.push(`    ! ${s.step} health: ${h.field}: expected ${show(h.expected)}, observed ${show(h.observed)} — look at ${h.hint}`);
  }
  const n = plan.steps.filter((s) => s.changes.length).length;
  const sick = plan.steps.filter((s) => s.health?.length).length;
  lines.push(n ? `${n} step(s) would change the host.` : 'The host already matches the spec.');
  if (sick) lines.push(`${sick} step(s) report health a re-apply cannot fix: see the ! lines.`);
  return lines.join('\n');
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}
