/**
 * Operator control of a running onboarding, and what the Web UI shows about it:
 *
 *   underlay pause <serverId>                 pause before the next step (the running step finishes)
 *   underlay resume <serverId>                continue a paused onboarding
 *   underlay approve <serverId> [--step s]    let a gated step run (`onboard --approve-before s`)
 *   underlay cancel <serverId> [--detach]     cancel the running step and roll back every change
 *   underlay list [--site …] [--outcome …]    onboardings, filtered by search attributes (list.ts)
 *
 * Each is an update of `onboard-<id>` with a validator: a request that does not fit the workflow's state (resume
 * when not paused, approve when nothing waits, anything once it ended) is refused by the workflow and leaves no
 * trace in its history. The functions take a Client, so tests and other services use them without the CLI.
 */
import { userInfo } from 'node:os';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, WorkflowUpdateStage, type Client } from '@temporalio/client';
import type { Command } from 'commander';
import { onboardingWorkflowId } from '../common/config';
import { STEPS, type StepName } from '../steps';
import {
  approveStepUpdate,
  cancelUpdate,
  OUTCOMES,
  pauseUpdate,
  resumeUpdate,
  type CancelAnswer,
  type ControlAnswer,
  type ControlRequest,
} from '../workflows/messages';
import { withClient } from '../workers/connection';
import { buildOnboardingQuery, listOnboardings, renderList, type ListFilters } from './list';

/** The workflow refused the request (its validator), or there is no running onboarding to ask. */
export class OnboardingControlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnboardingControlError';
  }
}

export interface ControlOptions {
  /** Who asks, for the record (default: the local user name). */
  by?: string;
  reason?: string;
}

function request(o: ControlOptions): ControlRequest {
  return { by: o.by ?? userInfo().username, ...(o.reason ? { reason: o.reason } : {}) };
}

/** Runs an update against `onboard-<id>`, turning refusals and missing workflows into one readable error. */
async function control<T>(client: Client, serverId: string, what: string, fn: (h: ReturnType<Client['workflow']['getHandle']>) => Promise<T>): Promise<T> {
  const workflowId = onboardingWorkflowId(serverId);
  const handle = client.workflow.getHandle(workflowId);
  try {
    return await fn(handle);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) throw new OnboardingControlError(`${what} refused: ${err.cause?.message ?? err.message}`);
    if (err instanceof WorkflowNotFoundError) {
      const ended = await handle.describe().then(
        (d) => d.status.name.toLowerCase(),
        () => undefined,
      );
      throw new OnboardingControlError(
        ended
          ? `${what} refused: the onboarding of ${serverId} is not running (${workflowId} ${ended})`
          : `no onboarding found for ${serverId} (workflow ${workflowId})`,
      );
    }
    throw err;
  }
}

export function pauseOnboarding(client: Client, serverId: string, o: ControlOptions = {}): Promise<ControlAnswer> {
  return control(client, serverId, 'pause', (h) => h.executeUpdate(pauseUpdate, { args: [request(o)] }));
}

export function resumeOnboarding(client: Client, serverId: string, o: ControlOptions = {}): Promise<ControlAnswer> {
  return control(client, serverId, 'resume', (h) => h.executeUpdate(resumeUpdate, { args: [request(o)] }));
}

export function approveOnboardingStep(client: Client, serverId: string, o: ControlOptions & { step?: StepName } = {}): Promise<ControlAnswer> {
  return control(client, serverId, 'approval', (h) => h.executeUpdate(approveStepUpdate, { args: [{ ...request(o), ...(o.step ? { step: o.step } : {}) }] }));
}

/**
 * Cancels the running step and rolls back every change. Resolves with the rollback's outcome once it is done
 * (rollbacks can take long: a KVM purge takes minutes), or, with `detach`, as soon as the workflow accepted.
 */
export function cancelOnboarding(client: Client, serverId: string, o: ControlOptions & { detach?: boolean } = {}): Promise<CancelAnswer | { accepted: true }> {
  return control(client, serverId, 'cancel', async (h) => {
    if (!o.detach) return h.executeUpdate(cancelUpdate, { args: [request(o)] });
    await h.startUpdate(cancelUpdate, { args: [request(o)], waitForStage: WorkflowUpdateStage.ACCEPTED });
    return { accepted: true as const };
  });
}

// ---- starting: approval gates and the Web UI's static details ----------------------------------------------------

/** `--approve-before hypervisor,attach` → the steps, refused unless each is a step this spec runs. */
export function parseApprovalGates(value: string | readonly string[] | undefined, planned: readonly StepName[]): StepName[] {
  if (value === undefined) return [];
  const names = (typeof value === 'string' ? [value] : value)
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!(STEPS as readonly string[]).includes(n)) throw new Error(`--approve-before: ${JSON.stringify(n)} is not a step (steps: ${STEPS.join(', ')})`);
    if (!planned.includes(n as StepName)) throw new Error(`--approve-before: this spec has no ${n} step (its steps: ${planned.join(', ')})`);
  }
  return [...new Set(names)] as StepName[];
}

/** The markdown the Web UI shows as the onboarding's details (shared with the fleet's children). */
export { onboardingDetails } from '../workflows/onboard-status';

// ---- the command line ----------------------------------------------------------------------------------------------

function stepOption(v: string): StepName {
  if (!(STEPS as readonly string[]).includes(v)) throw new Error(`--step: one of ${STEPS.join(', ')} (got ${v})`);
  return v as StepName;
}

const list = (v: string, prev: string[] = []): string[] => [
  ...prev,
  ...v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
];

export function registerControlCommands(program: Command): void {
  program
    .command('pause <serverId>')
    .description('pause an onboarding before its next step (the running step finishes first)')
    .option('--reason <text>', 'why, for the record')
    .option('--by <name>', 'who asks (default: your user name)')
    .action(async (serverId: string, f: ControlOptions) =>
      withClient(async (client) => console.log(`${serverId}: ${(await pauseOnboarding(client, serverId, f)).message}`)),
    );

  program
    .command('resume <serverId>')
    .description('resume a paused onboarding')
    .option('--by <name>', 'who asks (default: your user name)')
    .action(async (serverId: string, f: ControlOptions) =>
      withClient(async (client) => console.log(`${serverId}: ${(await resumeOnboarding(client, serverId, f)).message}`)),
    );

  program
    .command('approve <serverId>')
    .description('approve the gated step an onboarding waits before (see `onboard --approve-before`)')
    .option('--step <step>', 'the step you approve; refused if another one waits', stepOption)
    .option('--by <name>', 'who approves (default: your user name)')
    .action(async (serverId: string, f: ControlOptions & { step?: StepName }) =>
      withClient(async (client) => console.log(`${serverId}: ${(await approveOnboardingStep(client, serverId, f)).message}`)),
    );

  program
    .command('cancel <serverId>')
    .description('cancel an onboarding: stop the running step and roll back every change it made')
    .option('--reason <text>', 'why, for the record')
    .option('--by <name>', 'who asks (default: your user name)')
    .option('--detach', 'return once the workflow accepted; do not wait for the rollback')
    .action(async (serverId: string, f: ControlOptions & { detach?: boolean }) =>
      withClient(async (client) => {
        const a = await cancelOnboarding(client, serverId, f);
        console.log(
          'accepted' in a ? `${serverId}: cancel accepted; rolling back — follow with \`underlay status ${serverId} --watch\`` : `${serverId}: ${a.message}`,
        );
      }),
    );

  program
    .command('list')
    .description('onboardings, newest first, filtered by their search attributes (values: comma-separated lists)')
    .option('--site <site>', 'UnderlaySite', list)
    .option('--rack <rack>', 'UnderlayRack', list)
    .option('--hypervisor <kind>', 'UnderlayHypervisor: kvm, xen, esxi, hyperv', list)
    .option('--step <step>', 'UnderlayStep: the step it is at (or ended at): a step, done, or rollback:<step>', list)
    .option('--outcome <outcome>', `UnderlayOutcome (the phase): ${OUTCOMES.join(', ')}`, list)
    .option('--drift <status>', "the server's latest drift check: clean, drifted, remediated, failed, awaiting-approval, skipped, none", list)
    .option('--all-runs', 'also runs superseded by a newer onboarding of the same server')
    .option('--limit <n>', 'at most this many rows', (v) => Number(v), 100)
    .option('--query', 'print the visibility queries (for the Web UI or `temporal workflow list -q`)')
    .option('--json', 'print JSON')
    .action(async (f: ListFilters & { query?: boolean; json?: boolean }) => {
      buildOnboardingQuery(f); // refuses a bad filter value before connecting anywhere
      await withClient(async (client) => {
        const r = await listOnboardings(client, f);
        if (f.query) console.log(r.queries.map((q) => `query: ${q}`).join('\n') + '\n');
        console.log(f.json ? JSON.stringify(r.rows, null, 2) : renderList(r.rows));
      });
    });
}
