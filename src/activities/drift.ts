/**
 * Activities of drift sweeps: the inventory (desired state), whether a server is managed (a completed
 * onboarding), and the observation of a host's live state against its spec.
 *
 * The inventory is a directory of spec files, one per server, named `<id>.yaml` (or .yml / .json). It is the one
 * source of truth for what a server should look like; Temporal only says whether a server is managed (its
 * `onboard-<id>` workflow completed once). Files are read on the worker that runs the activity.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { driftWorkflowId, onboardingWorkflowId } from '../common/config';
import { InvalidSpecError } from '../common/errors';
import { ServerId } from '../spec/identifiers';
import { validateSpecFile } from '../spec/load';
import type { ServerSpec } from '../spec/server';
import type { SpecIssue } from '../spec/validate';
import type { StepSet } from './registry';
import { planOnboarding, type OnboardingPlan } from './plan';
import type { Connector } from './run-step';

const SPEC_FILE = /^([^.][^/]*)\.(ya?ml|json)$/;
export const MAX_PAGE_SIZE = 500;

export interface InventoryPageInput {
  dir: string;
  /** Continue after this file name (the previous page's nextPageToken); absent for the first page. */
  pageToken?: string;
  pageSize: number;
}

export interface InvalidSpecFile {
  file: string;
  issues: SpecIssue[];
}

export interface InventoryPage {
  servers: ServerSpec[];
  /** The file of each server (same order as `servers`): a cursor for a reader that stops mid-page. */
  serverFiles?: string[];
  invalid: InvalidSpecFile[];
  /** The last file name of this page, when more files follow (a cursor: files added meanwhile are not skipped). */
  nextPageToken?: string;
}

/** Spec file names of an inventory directory, sorted (the paging order). */
export async function inventoryFiles(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries
      .filter((e) => e.isFile() && SPEC_FILE.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES') {
      throw new InvalidSpecError('the inventory cannot be read', [{ path: 'inventoryDir', message: `${dir}: ${code}` }]);
    }
    throw err;
  }
}

function serverIdOfFile(name: string): string {
  return SPEC_FILE.exec(name)?.[1] ?? name;
}

/** One page of the inventory: valid specs, and every invalid file with its issues (never remediated). */
export async function loadInventoryPage(input: InventoryPageInput): Promise<InventoryPage> {
  const { dir, pageToken } = input;
  if (!Number.isInteger(input.pageSize) || input.pageSize < 1 || input.pageSize > MAX_PAGE_SIZE) {
    throw new InvalidSpecError('bad inventory page request', [{ path: 'pageSize', message: `must be an integer 1–${MAX_PAGE_SIZE}` }]);
  }
  const all = await inventoryFiles(dir);
  const rest = pageToken === undefined ? all : all.filter((f) => f > pageToken);
  const files = rest.slice(0, input.pageSize);
  const byId = new Map<string, string[]>();
  for (const f of all) byId.set(serverIdOfFile(f), [...(byId.get(serverIdOfFile(f)) ?? []), f]);

  const servers: ServerSpec[] = [];
  const serverFiles: string[] = [];
  const invalid: InvalidSpecFile[] = [];
  for (const file of files) {
    // Parsing is synchronous (≤ 256 KiB per file, about a second at worst): between files the event loop gets a
    // turn, so the heartbeat just recorded is sent and a cancellation is seen while a big page is read.
    heartbeatIfActivity();
    await yieldToEventLoop();
    const id = serverIdOfFile(file);
    const twins = (byId.get(id) ?? []).filter((f) => f !== file);
    if (twins.length) {
      invalid.push({ file, issues: [{ path: '(file)', message: `server ${id} is also described by ${twins.join(', ')}: keep one file per server` }] });
      continue;
    }
    const r = await validateSpecFile(join(dir, file)).catch((err: unknown) => ({
      ok: false as const,
      issues: [{ path: '(file)', message: `cannot be read: ${(err as Error).message}` }],
    }));
    if (!r.ok) invalid.push({ file, issues: r.issues });
    else if (r.spec.id !== id)
      invalid.push({ file, issues: [{ path: 'id', message: `is ${r.spec.id}, but the file name says ${id}: name the file <id>.yaml` }] });
    else {
      servers.push(r.spec);
      serverFiles.push(file);
    }
  }
  return { servers, serverFiles, invalid, ...(rest.length > files.length ? { nextPageToken: files[files.length - 1] } : {}) };
}

export type OnboardingState = { state: 'onboarded'; detail: string } | { state: 'running'; detail: string } | { state: 'not-onboarded'; detail: string };

/**
 * Whether a server is managed: its latest `onboard-<id>` run completed (or an earlier one did, unless the latest
 * run is a rollback), or an onboarding or rollback is running right now (read from the workflow's mutable state,
 * not from eventually consistent visibility).
 */
export async function onboardingState(client: Client, serverId: string): Promise<OnboardingState> {
  const id = ServerId.parse(serverId);
  const workflowId = onboardingWorkflowId(id);
  try {
    const d = await client.workflow.getHandle(workflowId).describe();
    if (d.type === 'rollbackServer') {
      // The latest run undid the onboarding (or is undoing it): the server is not managed until onboarded again.
      if (d.status.name === 'RUNNING') return { state: 'running', detail: `rollback running (${workflowId}, run ${d.runId})` };
      return { state: 'not-onboarded', detail: `not onboarded: rolled back (${workflowId} run ${d.runId} ${d.status.name.toLowerCase()})` };
    }
    if (d.status.name === 'RUNNING') return { state: 'running', detail: `onboarding running (${workflowId}, run ${d.runId})` };
    if (d.status.name === 'COMPLETED') return { state: 'onboarded', detail: `${workflowId} completed ${d.closeTime?.toISOString() ?? ''}`.trim() };
    // The latest run failed or was cancelled (and rolled back): an earlier completed run still makes it managed.
    const earlier = await client.workflow.count(`WorkflowId = '${workflowId}' AND WorkflowType = 'onboardServer' AND ExecutionStatus = 'Completed'`);
    if (earlier.count > 0) return { state: 'onboarded', detail: `${workflowId} completed before; latest run ${d.status.name.toLowerCase()}` };
    return { state: 'not-onboarded', detail: `not onboarded: ${workflowId} never completed (latest run ${d.status.name.toLowerCase()})` };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { state: 'not-onboarded', detail: `not onboarded: no ${workflowId} workflow` };
    throw err;
  }
}

/** The mode of a running `drift-<id>` that may change the host, or undefined (none, or report mode). */
export async function blockingDriftCheck(client: Client, serverId: string): Promise<string | undefined> {
  try {
    const d = await client.workflow.getHandle(driftWorkflowId(serverId)).describe();
    if (d.status.name !== 'RUNNING') return undefined;
    const mode = typeof d.memo?.mode === 'string' ? d.memo.mode : 'unknown';
    return mode === 'report' ? undefined : mode;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

export interface UnmanagedServers {
  count: number;
  /** The first few, sorted (the count says how many there are). */
  serverIds: string[];
}

/** Servers with a completed onboarding in Temporal but no spec file in the inventory. */
export async function findUnmanaged(client: Client, dir: string, limit = 100): Promise<UnmanagedServers> {
  const inInventory = new Set((await inventoryFiles(dir)).map(serverIdOfFile));
  const onboarded = new Set<string>();
  let seen = 0;
  for await (const wf of client.workflow.list({ query: `WorkflowType = 'onboardServer' AND ExecutionStatus = 'Completed'` })) {
    if (++seen % 200 === 0) heartbeatIfActivity();
    const id = wf.workflowId.replace(/^onboard-/, '');
    if (!inInventory.has(id)) onboarded.add(id);
  }
  const ids = [...onboarded].sort();
  return { count: ids.length, serverIds: ids.slice(0, limit) };
}

/** Observes every step of a host over one SSH session and diffs it against the spec (the dry-run plan). */
export async function observeDrift(rawSpec: unknown, connect: Connector, steps: StepSet): Promise<OnboardingPlan> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(), 5_000);
  try {
    // Observation is read-only: on cancellation stop waiting at once.
    return await Promise.race([planOnboarding(rawSpec, connect, steps, () => ctx.heartbeat()), ctx.cancelled]);
  } finally {
    clearInterval(timer);
  }
}

function heartbeatIfActivity(): void {
  try {
    Context.current().heartbeat();
  } catch {
    // Called outside an activity (CLI, tests).
  }
}
