/**
 * `underlay list`: onboardings found through Temporal visibility, filtered by underlay's search attributes.
 *
 * Filter values become part of a visibility query, so each is checked against what the attribute can hold
 * (a site label, a step name, an outcome…) and only then quoted; anything else is refused before a query is
 * sent. `--drift` is matched against each server's newest drift check (`drift-<id>`), found with a second query
 * (a check still running counts with the status it has published so far).
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { SA_DRIFT_STATUS, SA_HYPERVISOR, SA_OUTCOME, SA_RACK, SA_SERVER_ID, SA_SITE, SA_STEP } from '../common/search-attributes';
import { driftWorkflowId } from '../common/config';
import { STEPS } from '../steps';
import { OUTCOMES as ALL_OUTCOMES } from '../workflows/messages';

export interface ListFilters {
  site?: string[];
  rack?: string[];
  hypervisor?: string[];
  step?: string[];
  outcome?: string[];
  drift?: string[];
  /** Also list runs superseded by a newer onboarding of the same server. */
  allRuns?: boolean;
  limit?: number;
}

export interface OnboardingRow {
  serverId: string;
  workflowId: string;
  runId: string;
  site?: string;
  rack?: string;
  hypervisor?: string;
  step?: string;
  outcome?: string;
  /** The execution's status: running, completed, failed, cancelled, terminated, timed_out… */
  status: string;
  startTime: string;
  closeTime?: string;
  /** The newest drift check's UnderlayDriftStatus, `none` if the server never had one. */
  drift: string;
  /** A newer onboarding of the server exists (only listed with allRuns). */
  superseded?: boolean;
}

export class InvalidFilterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidFilterError';
  }
}

const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** The onboarding phases: `UnderlayOutcome` holds the phase (one vocabulary). */
const OUTCOMES: readonly string[] = ALL_OUTCOMES;
const DRIFT = ['clean', 'drifted', 'remediated', 'failed', 'awaiting-approval', 'skipped', 'none'];

/** What each filter may hold; a value outside it is refused (it could not match anyway). */
const ALLOWED: Record<'site' | 'rack' | 'hypervisor' | 'step' | 'outcome' | 'drift', { test(v: string): boolean; says: string }> = {
  site: { test: (v) => LABEL.test(v), says: 'a site label (letters, digits, ".", "_", "-")' },
  rack: { test: (v) => LABEL.test(v), says: 'a rack label (letters, digits, ".", "_", "-")' },
  hypervisor: { test: (v) => ['kvm', 'xen', 'esxi', 'hyperv'].includes(v), says: 'kvm, xen, esxi or hyperv' },
  step: { test: (v) => [...STEPS, 'done', ...STEPS.map((s) => `rollback:${s}`)].includes(v), says: `a step (${STEPS.join(', ')}), done, or rollback:<step>` },
  outcome: { test: (v) => OUTCOMES.includes(v), says: OUTCOMES.join(', ') },
  drift: { test: (v) => DRIFT.includes(v), says: DRIFT.join(', ') },
};

function check(name: keyof typeof ALLOWED, values: string[] | undefined): string[] {
  for (const v of values ?? []) if (!ALLOWED[name].test(v)) throw new InvalidFilterError(`--${name}: ${JSON.stringify(v)} is not ${ALLOWED[name].says}`);
  return values ?? [];
}

/**
 * A visibility string literal. Values are checked by the filters first; this refuses, as a second line, anything
 * but a conservative character set, so no value can close the quote or smuggle an operator.
 */
export function quote(v: string): string {
  if (!/^[A-Za-z0-9._:@+/-]{1,200}$/.test(v)) throw new InvalidFilterError(`refusing to put ${JSON.stringify(v)} in a visibility query`);
  return `'${v}'`;
}

function clause(attr: string, values: string[]): string | undefined {
  if (!values.length) return undefined;
  return values.length === 1 ? `${attr} = ${quote(values[0]!)}` : `${attr} IN (${values.map(quote).join(', ')})`;
}

/** The visibility query of the onboardings matching the filters (all but --drift, which needs the drift checks). */
export function buildOnboardingQuery(f: ListFilters): string {
  const parts = [
    `WorkflowType = 'onboardServer'`,
    clause(SA_SITE.name, check('site', f.site)),
    clause(SA_RACK.name, check('rack', f.rack)),
    clause(SA_HYPERVISOR.name, check('hypervisor', f.hypervisor)),
    clause(SA_STEP.name, check('step', f.step)),
    clause(SA_OUTCOME.name, check('outcome', f.outcome)),
  ];
  check('drift', f.drift);
  return parts.filter(Boolean).join(' AND ');
}

/** The drift checks (`drift-<id>`) of the given servers; the newest per server decides. */
export function buildDriftQuery(serverIds: string[]): string {
  return `WorkflowType = 'driftCheck' AND ${clause('WorkflowId', serverIds.map(driftWorkflowId))}`;
}

const BATCH = 50;

async function* visible(client: Client, query: string): AsyncGenerator<WorkflowExecutionInfo> {
  for await (const wf of client.workflow.list({ query })) yield wf;
}

/** Newest first per key. */
function newestBy<T>(items: T[], key: (t: T) => string, time: (t: T) => number): Map<string, T> {
  const m = new Map<string, T>();
  for (const it of items) {
    const k = key(it);
    const cur = m.get(k);
    if (!cur || time(it) > time(cur)) m.set(k, it);
  }
  return m;
}

export async function listOnboardings(client: Client, f: ListFilters = {}): Promise<{ rows: OnboardingRow[]; queries: string[] }> {
  const limit = f.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidFilterError('--limit: 1 to 1000');
  const query = buildOnboardingQuery(f);
  const queries = [query];

  // The newest matching run of each onboarding workflow, up to `limit` workflows.
  const runs: WorkflowExecutionInfo[] = [];
  const ids = new Set<string>();
  for await (const wf of visible(client, query)) {
    if (!ids.has(wf.workflowId) && ids.size >= limit) break;
    ids.add(wf.workflowId);
    runs.push(wf);
  }
  const start = (w: WorkflowExecutionInfo) => w.startTime.getTime();
  let matching = [...newestBy(runs, (w) => w.workflowId, start).values()];

  // A run that matched may have been superseded by a newer onboarding of the same server (which did not match).
  const latestRun = new Map<string, string>();
  for (let i = 0; i < matching.length; i += BATCH) {
    const q = `WorkflowType = 'onboardServer' AND WorkflowId IN (${matching
      .slice(i, i + BATCH)
      .map((w) => quote(w.workflowId))
      .join(', ')})`;
    const all: WorkflowExecutionInfo[] = [];
    for await (const wf of visible(client, q)) all.push(wf);
    for (const [id, wf] of newestBy(all, (w) => w.workflowId, start)) latestRun.set(id, wf.runId);
  }
  const superseded = (w: WorkflowExecutionInfo) => latestRun.has(w.workflowId) && latestRun.get(w.workflowId) !== w.runId;
  if (!f.allRuns) matching = matching.filter((w) => !superseded(w));

  const serverOf = (w: WorkflowExecutionInfo) => w.typedSearchAttributes.get(SA_SERVER_ID) ?? w.workflowId.replace(/^onboard-/, '');
  const drift = new Map<string, string>();
  const servers = [...new Set(matching.map(serverOf))];
  for (let i = 0; i < servers.length; i += BATCH) {
    const q = buildDriftQuery(servers.slice(i, i + BATCH));
    if (i === 0) queries.push(q);
    const checks: WorkflowExecutionInfo[] = [];
    for await (const wf of visible(client, q)) checks.push(wf);
    for (const [id, wf] of newestBy(checks, (w) => w.workflowId.replace(/^drift-/, ''), start))
      drift.set(id, wf.typedSearchAttributes.get(SA_DRIFT_STATUS) ?? 'none');
  }

  let rows: OnboardingRow[] = matching.map((w) => ({
    serverId: serverOf(w),
    workflowId: w.workflowId,
    runId: w.runId,
    site: w.typedSearchAttributes.get(SA_SITE),
    rack: w.typedSearchAttributes.get(SA_RACK),
    hypervisor: w.typedSearchAttributes.get(SA_HYPERVISOR),
    step: w.typedSearchAttributes.get(SA_STEP),
    outcome: w.typedSearchAttributes.get(SA_OUTCOME),
    status: w.status.name.toLowerCase(),
    startTime: w.startTime.toISOString(),
    ...(w.closeTime ? { closeTime: w.closeTime.toISOString() } : {}),
    drift: drift.get(serverOf(w)) ?? 'none',
    ...(superseded(w) ? { superseded: true } : {}),
  }));
  if (f.drift?.length) rows = rows.filter((r) => f.drift!.includes(r.drift));
  rows.sort((a, b) => b.startTime.localeCompare(a.startTime));
  return { rows, queries };
}

export function renderList(rows: OnboardingRow[]): string {
  if (!rows.length) return 'no onboarding matches';
  const head = ['SERVER', 'SITE', 'RACK', 'HYPERVISOR', 'STEP', 'OUTCOME', 'DRIFT', 'STARTED', 'STATUS'];
  const cells = rows.map((r) => [
    r.serverId,
    r.site ?? '-',
    r.rack ?? '-',
    r.hypervisor ?? '-',
    r.step ?? '-',
    r.outcome ?? '-',
    r.drift,
    r.startTime.replace(/\.\d+Z$/, 'Z'),
    `${r.status}${r.superseded ? ' (superseded)' : ''}`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [head, ...cells]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(w[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
