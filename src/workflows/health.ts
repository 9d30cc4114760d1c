/**
 * The fleet's health probes (issue 17), started by the `underlay-health` Schedule or `underlay health run`:
 *
 *   healthSweep: page 1 of the inventory ─▶ per server (≤ concurrency at once): managed? ─▶ probeHealth ─▶ row
 *                ─▶ continue-as-new ─▶ page 2 … ─▶ summary
 *
 * A separate sweep, not a part of the drift sweep: the alert rules assume a probe every few minutes, drift
 * sweeps run hourly or daily, and a drift check may wait an hour for an approval (its Schedule skips while a sweep
 * runs — the probes would go stale and UnderlayProbeStale fire). The probe is one read-only activity per host (one
 * SSH session, two attempts at most), not a child workflow: a run of 100 hosts costs a few hundred events.
 *
 * The result of each host goes to the host (node_exporter textfile, written by the activity); the sweep keeps a
 * compact row per host for its summary and for the Web UI (current details: a table, unhealthy hosts first).
 */
import {
  ApplicationFailure,
  continueAsNew,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  defineQuery,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities, HealthRow, ProbeRequest } from '../activities';
import { siteTaskQueue } from '../common/config';
import type { ServerSpec } from '../spec/server';
import { DRIFT_POLICY, HEALTH_POLICY } from './policy';
import { rootMessage } from './saga';

const { loadInventoryPage } = proxyActivities<Activities>(DRIFT_POLICY.inventory);
const { onboardingState } = proxyLocalActivities<Activities>(DRIFT_POLICY.lookup);
const { probeHealth } = proxyActivities<Activities>(HEALTH_POLICY.probe);

export const HEALTH_DEFAULTS = { concurrency: 10, pageSize: 100 } as const;
export const HEALTH_LIMITS = { concurrency: 50, pageSize: 500, rows: 200, listed: 100 } as const;

export interface HealthSweepInput {
  /** Inventory directory, as the workers see it (absolute path). */
  inventoryDir: string;
  /** Hosts probed at once (SSH sessions). Default 10, at most 50. */
  concurrency?: number;
  /** Inventory files per page, i.e. per workflow run. Default 100, at most 500. */
  pageSize?: number;
  /** Echo requests per gateway and textfile directory on the hosts. */
  probe?: ProbeRequest;
  /** Site queues: each probe runs on its server's site queue (`<this queue>-<site>`). */
  siteQueues?: boolean;
  /** Carried across continue-as-new; leave unset. */
  pageToken?: string;
  summary?: HealthSweepSummary;
}

export interface HealthSweepSummary {
  inventoryDir: string;
  startedAt: string;
  finishedAt?: string;
  pages: number;
  counts: { servers: number; healthy: number; degraded: number; failed: number; skipped: number; invalid: number };
  /** One row per probed (or failed, or skipped) host, unhealthy ones kept first when more than HEALTH_LIMITS.rows. */
  rows: HealthRow[];
  /** Rows left out when the table was full (healthy ones first). */
  omitted: number;
  invalid: string[];
}

export const healthProgressQuery = defineQuery<HealthSweepSummary>('healthProgress');

export async function healthSweep(input: HealthSweepInput): Promise<HealthSweepSummary> {
  const concurrency = input.concurrency ?? HEALTH_DEFAULTS.concurrency;
  const pageSize = input.pageSize ?? HEALTH_DEFAULTS.pageSize;
  checkInput(input, concurrency, pageSize);
  const summary: HealthSweepSummary = input.summary ?? {
    inventoryDir: input.inventoryDir,
    startedAt: new Date().toISOString(),
    pages: 0,
    counts: { servers: 0, healthy: 0, degraded: 0, failed: 0, skipped: 0, invalid: 0 },
    rows: [],
    omitted: 0,
    invalid: [],
  };
  setHandler(healthProgressQuery, () => summary);
  setCurrentDetails(renderHealthDetails(summary));

  const page = await loadInventoryPage({ dir: input.inventoryDir, pageToken: input.pageToken, pageSize });
  summary.pages++;
  summary.counts.invalid += page.invalid.length;
  for (const f of page.invalid) if (summary.invalid.length < HEALTH_LIMITS.listed) summary.invalid.push(f.file);

  const queue = [...page.servers];
  const lane = async (): Promise<void> => {
    for (let spec = queue.shift(); spec; spec = queue.shift()) {
      record(summary, await probeOne(spec, input));
      setCurrentDetails(renderHealthDetails(summary));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, lane));

  if (page.nextPageToken !== undefined) {
    await continueAsNew<typeof healthSweep>({ ...input, pageToken: page.nextPageToken, summary });
  }
  summary.finishedAt = new Date().toISOString();
  setCurrentDetails(renderHealthDetails(summary));
  return summary;
}

function checkInput(input: HealthSweepInput, concurrency: number, pageSize: number): void {
  const bad: string[] = [];
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > HEALTH_LIMITS.concurrency)
    bad.push(`concurrency: must be 1–${HEALTH_LIMITS.concurrency}`);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > HEALTH_LIMITS.pageSize) bad.push(`pageSize: must be 1–${HEALTH_LIMITS.pageSize}`);
  if (typeof input.inventoryDir !== 'string' || !input.inventoryDir) bad.push('inventoryDir: required');
  if (bad.length) throw ApplicationFailure.create({ type: 'InvalidSpecError', nonRetryable: true, message: `bad health sweep input: ${bad.join('; ')}` });
}

async function probeOne(spec: ServerSpec, input: HealthSweepInput): Promise<HealthRow> {
  const row = (status: HealthRow['status'], problem: string): HealthRow => ({ serverId: spec.id, status, gateways: [], problems: [problem.slice(0, 300)] });
  if (spec.hypervisor.kind !== 'kvm' && spec.hypervisor.kind !== 'xen') return row('skipped', `not probed: a ${spec.hypervisor.kind} host (Linux hosts only)`);
  try {
    // A host being onboarded (or never onboarded) would show a missing bond: only managed hosts are probed.
    const managed = await onboardingState(spec.id);
    if (managed.state !== 'onboarded') return row('skipped', `not probed: ${managed.detail}`);
    const probe = input.siteQueues
      ? proxyActivities<Activities>({ ...HEALTH_POLICY.probe, taskQueue: siteTaskQueue(spec.site, workflowInfo().taskQueue) }).probeHealth
      : probeHealth;
    return await probe.executeWithOptions({ summary: `health probe ${spec.id} (${spec.site}/${spec.rack})` }, [spec, input.probe ?? {}]);
  } catch (err) {
    if (isCancellation(err)) throw err;
    return row('failed', `probe failed: ${rootMessage(err)}`);
  }
}

function record(summary: HealthSweepSummary, r: HealthRow): void {
  summary.counts.servers++;
  summary.counts[r.status]++;
  if (summary.rows.length < HEALTH_LIMITS.rows) {
    summary.rows.push(r);
    return;
  }
  // Full: an unhealthy row takes the place of a healthy one; otherwise it is only counted.
  const healthy = r.status === 'healthy' ? -1 : summary.rows.findIndex((x) => x.status === 'healthy');
  if (healthy >= 0) summary.rows.splice(healthy, 1, r);
  summary.omitted++;
}

const ORDER: Record<HealthRow['status'], number> = { degraded: 0, failed: 1, skipped: 2, healthy: 3 };

function cell(s: string): string {
  return s.replace(/[|\n\r]/g, ' ').replace(/[`*_[\]<>]/g, '\\$&');
}

/** The Web UI's current details: counts, then one row per host (unhealthy first). */
export function renderHealthDetails(s: HealthSweepSummary): string {
  const c = s.counts;
  const lines = [
    `**Health sweep** of \`${cell(s.inventoryDir)}\` · page ${s.pages} · ${s.finishedAt ? `finished ${s.finishedAt}` : 'running'}`,
    '',
    `${c.servers} host(s): ${c.healthy} healthy · ${c.degraded} degraded · ${c.failed} probe failed · ${c.skipped} skipped · ${c.invalid} invalid spec(s)`,
  ];
  if (s.rows.length) {
    lines.push('', '| server | health | gateway loss | bond ports | probed at | problems |', '|---|---|---|---|---|---|');
    for (const r of [...s.rows].sort((a, b) => ORDER[a.status] - ORDER[b.status] || a.serverId.localeCompare(b.serverId))) {
      const loss = r.gateways.map((g) => `VLAN ${g.vlan}: ${Math.round(g.loss * 100)}%`).join(', ') || '-';
      const bond = r.bond ? `${r.bond.active}/${r.bond.configured}${r.bond.partner ? '' : ' (no partner)'}` : '-';
      lines.push(`| ${cell(r.serverId)} | ${r.status} | ${loss} | ${bond} | ${r.probedAt ?? '-'} | ${cell(r.problems.join('; ')) || '-'} |`);
    }
    if (s.omitted) lines.push('', `… ${s.omitted} more healthy host(s) not listed`);
  }
  if (s.invalid.length) lines.push('', `invalid specs (not probed): ${s.invalid.map(cell).join(', ')}`);
  return lines.join('\n');
}
