/**
 * Activities of the fleet workflow: reading the fleet page by page (an inventory directory through the drift
 * sweep's inventory reader, a list of spec files, or the servers of earlier onboardings found by a visibility
 * search), and the Temporal-side work around the child onboardings (drift exclusion, `underlay cancel` on abort,
 * the outcome of onboardings a previous run started). Every input is bounded and validated here again.
 */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, WorkflowUpdateStage, type Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { onboardingWorkflowId } from '../common/config';
import { InvalidSpecError } from '../common/errors';
import { Label, ServerId } from '../spec/identifiers';
import { validateSpecFile } from '../spec/load';
import { parseServerSpec } from '../spec/validate';
import type { ServerSpec } from '../spec/server';
import { inventoryFiles, loadInventoryPage, MAX_PAGE_SIZE } from './drift';
import { missingSteps } from './registry';

export const FLEET_SOURCE_LIMITS = { files: 1_000, search: 1_000, pathChars: 4_096, filterValues: 20 };

/** Where the fleet's servers come from, as the page reader takes it (a search is resolved to `runs` first). */
export type FleetPageSource =
  { kind: 'inventory'; dir: string } | { kind: 'files'; files: string[] } | { kind: 'runs'; runs: Array<{ serverId: string; runId: string }> };

export interface FleetSearchFilter {
  site?: string[];
  rack?: string[];
  hypervisor?: string[];
  outcome?: string[];
  fleet?: string;
}

export interface FleetPageInput {
  source: FleetPageSource;
  /** Continue after this entry (the `cursor` of the last entry handled); absent: from the start. */
  cursor?: string;
  pageSize: number;
}

/** One entry of the source, in order: a server to onboard, or something that cannot be (with why). */
export type FleetEntry = { cursor: string; spec: ServerSpec } | { cursor: string; invalid: { name: string; reason: string } };

export interface FleetPage {
  entries: FleetEntry[];
  /** More entries follow this page. */
  more: boolean;
  /** Entries in the whole source (spec files, listed files, servers found). */
  total: number;
}

const clip = (s: string, n = 300) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function bad(message: string, path: string, detail: string): InvalidSpecError {
  return new InvalidSpecError(message, [{ path, message: detail }]);
}

/** A spec this build can run, or the reason it cannot. */
function runnable(spec: ServerSpec): string | undefined {
  const missing = missingSteps(spec);
  return missing.length ? `this build has no ${missing.join(', ')} step for ${spec.hypervisor.kind}` : undefined;
}

function entryOf(cursor: string, name: string, spec: ServerSpec): FleetEntry {
  const why = runnable(spec);
  return why ? { cursor, invalid: { name, reason: why } } : { cursor, spec };
}

export async function loadFleetPage(client: () => Client, input: FleetPageInput): Promise<FleetPage> {
  const { source, cursor } = input;
  if (!Number.isInteger(input.pageSize) || input.pageSize < 1 || input.pageSize > MAX_PAGE_SIZE) {
    throw bad('bad fleet page request', 'pageSize', `an integer 1–${MAX_PAGE_SIZE}`);
  }
  switch (source?.kind) {
    case 'inventory': {
      if (typeof source.dir !== 'string' || !source.dir.startsWith('/') || source.dir.length > FLEET_SOURCE_LIMITS.pathChars) {
        throw bad('bad fleet source', 'source.dir', 'an absolute directory path as the workers see it');
      }
      const page = await loadInventoryPage({ dir: source.dir, pageSize: input.pageSize, ...(cursor !== undefined ? { pageToken: cursor } : {}) });
      const files = page.serverFiles ?? [];
      const entries: FleetEntry[] = [
        ...page.servers.map((spec, i) => entryOf(files[i]!, files[i]!, spec)),
        ...page.invalid.map((f) => ({ cursor: f.file, invalid: { name: f.file, reason: clip(f.issues.map((x) => `${x.path}: ${x.message}`).join('; ')) } })),
      ].sort((a, b) => (a.cursor < b.cursor ? -1 : a.cursor > b.cursor ? 1 : 0));
      const total = (await inventoryFiles(source.dir)).length;
      return { entries, more: page.nextPageToken !== undefined, total };
    }
    case 'files':
    case 'runs': {
      const list: unknown[] = source.kind === 'files' ? source.files : source.runs;
      const limit = source.kind === 'files' ? FLEET_SOURCE_LIMITS.files : FLEET_SOURCE_LIMITS.search;
      if (!Array.isArray(list) || list.length > limit) throw bad('bad fleet source', `source.${source.kind}`, `a list of at most ${limit}`);
      const from = cursor === undefined ? 0 : Number(cursor) + 1;
      if (!Number.isInteger(from) || from < 0) throw bad('bad fleet page request', 'cursor', 'an index into the list');
      const entries: FleetEntry[] = [];
      for (let i = from; i < Math.min(list.length, from + input.pageSize); i++) {
        heartbeat();
        entries.push(source.kind === 'files' ? await fileEntry(String(i), list[i]) : await runEntry(client(), String(i), list[i]));
      }
      return { entries, more: from + input.pageSize < list.length, total: list.length };
    }
    default:
      throw bad('bad fleet source', 'source.kind', 'inventory, files or runs');
  }
}

async function fileEntry(cursor: string, file: unknown): Promise<FleetEntry> {
  if (typeof file !== 'string' || !file.startsWith('/') || file.length > FLEET_SOURCE_LIMITS.pathChars) {
    return { cursor, invalid: { name: String(file).slice(0, 80), reason: 'not an absolute file path' } };
  }
  const r = await validateSpecFile(file).catch((err: unknown) => ({
    ok: false as const,
    issues: [{ path: '(file)', message: `cannot be read: ${(err as Error).message}` }],
  }));
  if (!r.ok) return { cursor, invalid: { name: file, reason: clip(r.issues.map((x) => `${x.path}: ${x.message}`).join('; ')) } };
  return entryOf(cursor, file, r.spec);
}

/** The spec an earlier onboarding run started with (its input), validated again. */
async function runEntry(client: Client, cursor: string, run: unknown): Promise<FleetEntry> {
  const r = run as { serverId?: unknown; runId?: unknown } | null;
  const id = ServerId.safeParse(r?.serverId);
  if (!id.success || typeof r?.runId !== 'string' || !/^[0-9a-f-]{36}$/.test(r.runId)) {
    return { cursor, invalid: { name: String(r?.serverId).slice(0, 80), reason: 'not a server id and run id' } };
  }
  const workflowId = onboardingWorkflowId(id.data);
  try {
    const h = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId, runId: r.runId },
      maximumPageSize: 1,
    });
    const started = h.history?.events?.[0]?.workflowExecutionStartedEventAttributes;
    const input = await decodeFromPayloadsAtIndex<{ spec?: unknown }>(client.options.loadedDataConverter, 0, started?.input?.payloads);
    const spec = parseServerSpec(input?.spec, `the spec of ${workflowId} run ${r.runId}`);
    if (spec.id !== id.data) return { cursor, invalid: { name: id.data, reason: `the run's spec is for ${spec.id}` } };
    return entryOf(cursor, id.data, spec);
  } catch (err) {
    return { cursor, invalid: { name: id.data, reason: clip(`cannot read the spec of ${workflowId} run ${r.runId}: ${(err as Error).message}`) } };
  }
}

const FILTER_FIELDS = { site: 'UnderlaySite', rack: 'UnderlayRack', hypervisor: 'UnderlayHypervisor', outcome: 'UnderlayOutcome' } as const;
const VALUE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** The visibility query of a search filter; every value checked against a conservative pattern before it is quoted. */
export function fleetSearchQuery(filter: FleetSearchFilter): string {
  if (typeof filter !== 'object' || filter === null) throw bad('bad fleet search', 'filter', 'an object');
  const known = [...Object.keys(FILTER_FIELDS), 'fleet'];
  for (const k of Object.keys(filter)) if (!known.includes(k)) throw bad('bad fleet search', `filter.${k}`, `not a filter (${known.join(', ')})`);
  const parts = ["WorkflowType = 'onboardServer'"];
  for (const [field, attr] of Object.entries(FILTER_FIELDS) as Array<[keyof typeof FILTER_FIELDS, string]>) {
    const values = filter[field];
    if (values === undefined) continue;
    if (!Array.isArray(values) || !values.length || values.length > FLEET_SOURCE_LIMITS.filterValues) {
      throw bad('bad fleet search', `filter.${field}`, `a list of 1–${FLEET_SOURCE_LIMITS.filterValues} values`);
    }
    for (const v of values)
      if (typeof v !== 'string' || !VALUE.test(v)) throw bad('bad fleet search', `filter.${field}`, `${JSON.stringify(String(v).slice(0, 40))} is not a label`);
    parts.push(values.length === 1 ? `${attr} = '${values[0]}'` : `${attr} IN (${values.map((v) => `'${v}'`).join(', ')})`);
  }
  if (filter.fleet !== undefined) {
    if (!Label.safeParse(filter.fleet).success) throw bad('bad fleet search', 'filter.fleet', 'a fleet name (a label)');
    parts.push(`ParentWorkflowId = 'fleet-${filter.fleet}'`);
  }
  if (parts.length === 1) throw bad('bad fleet search', 'filter', 'at least one of site, rack, hypervisor, outcome, fleet');
  return parts.join(' AND ');
}

/**
 * The servers whose latest onboarding run matches the filter (a newer run that does not match — an onboarding
 * again, a rollback — supersedes it), sorted by server id, with the matching run (whose input holds the spec).
 */
export async function resolveFleetSearch(
  client: Client,
  filter: FleetSearchFilter,
): Promise<{ runs: Array<{ serverId: string; runId: string }>; query: string }> {
  const query = fleetSearchQuery(filter);
  const newest = new Map<string, { runId: string; start: number }>();
  let listed = 0;
  for await (const wf of client.workflow.list({ query })) {
    if (++listed % 100 === 0) heartbeat();
    if (listed > FLEET_SOURCE_LIMITS.search * 10) break;
    const serverId = wf.workflowId.replace(/^onboard-/, '');
    const start = wf.startTime.getTime();
    const prev = newest.get(serverId);
    if (!prev || start > prev.start) newest.set(serverId, { runId: wf.runId, start });
  }
  if (newest.size > FLEET_SOURCE_LIMITS.search) {
    throw bad(
      'the fleet search matches too many servers',
      'filter',
      `${newest.size} match; at most ${FLEET_SOURCE_LIMITS.search}: narrow it, or use an inventory`,
    );
  }
  const runs: Array<{ serverId: string; runId: string }> = [];
  for (const [serverId, m] of [...newest.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    heartbeat();
    try {
      const latest = await client.workflow.getHandle(onboardingWorkflowId(serverId)).describe();
      if (latest.runId === m.runId) runs.push({ serverId, runId: m.runId });
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
  return { runs, query };
}

export interface CancelOutcome {
  serverId: string;
  result: 'accepted' | 'not-running' | 'refused';
  detail?: string;
}

/**
 * `underlay cancel` for each server (the onboarding's own cancel update: the running step stops, everything rolls
 * back, the onboarding fails as OnboardingCancelled with the report); returns once each accepted or refused.
 */
export async function cancelOnboardings(client: Client, input: { serverIds: string[]; by: string; reason?: string }): Promise<CancelOutcome[]> {
  if (!Array.isArray(input.serverIds) || input.serverIds.length > 1_000) throw bad('bad cancel request', 'serverIds', 'at most 1,000');
  const by = String(input.by ?? 'fleet').slice(0, 100);
  const out: CancelOutcome[] = [];
  for (const raw of input.serverIds) {
    heartbeat();
    const serverId = ServerId.parse(raw);
    try {
      await client.workflow.getHandle(onboardingWorkflowId(serverId)).startUpdate('cancel', {
        args: [{ by, ...(input.reason ? { reason: String(input.reason).slice(0, 300) } : {}) }],
        waitForStage: WorkflowUpdateStage.ACCEPTED,
      });
      out.push({ serverId, result: 'accepted' });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) out.push({ serverId, result: 'not-running' });
      else if (err instanceof WorkflowUpdateFailedError) out.push({ serverId, result: 'refused', detail: clip(err.cause?.message ?? err.message) });
      else throw err;
    }
  }
  return out;
}

export interface RunOutcome {
  serverId: string;
  runId: string;
  closed: boolean;
  /** Closed runs: completed → onboarded; failed (OnboardingCancelled) or cancelled → cancelled; else failed. */
  outcome?: 'onboarded' | 'failed' | 'cancelled';
  reason?: string;
}

/** Whether each onboarding run has ended, and how (for onboardings an earlier run of the fleet started). */
export async function onboardingOutcomes(client: Client, runs: Array<{ serverId: string; runId: string }>): Promise<RunOutcome[]> {
  if (!Array.isArray(runs) || runs.length > 1_000) throw bad('bad outcome request', 'runs', 'at most 1,000');
  const out: RunOutcome[] = [];
  for (const r of runs) {
    heartbeat();
    const serverId = ServerId.parse(r.serverId);
    const h = client.workflow.getHandle(onboardingWorkflowId(serverId), r.runId);
    const d = await h.describe();
    if (d.status.name === 'RUNNING') {
      out.push({ serverId, runId: r.runId, closed: false });
      continue;
    }
    if (d.status.name === 'COMPLETED') {
      out.push({ serverId, runId: r.runId, closed: true, outcome: 'onboarded' });
      continue;
    }
    const reason = await h.result().then(
      () => d.status.name.toLowerCase(),
      (err: unknown) => innermost(err),
    );
    const cancelled = d.status.name === 'CANCELLED' || /OnboardingCancelled/.test(reason) || reason.includes(' cancelled by ');
    out.push({ serverId, runId: r.runId, closed: true, outcome: cancelled ? 'cancelled' : 'failed', reason: clip(reason) });
  }
  return out;
}

function innermost(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && (e as { cause?: unknown }).cause instanceof Error) e = (e as { cause: unknown }).cause;
  return e instanceof Error ? e.message : String(e);
}

function heartbeat(): void {
  try {
    Context.current().heartbeat();
  } catch {
    // Called outside an activity (tests, the CLI).
  }
}
