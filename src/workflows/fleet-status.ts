/**
 * What the Web UI shows of a fleet (the workflow's current details, live): the phase, a progress bar, the counts
 * against the budget and the cap, one row per wave, the servers running, and the failed, skipped and invalid
 * servers with their one-line reasons. Pure: the CLI renders the same progress as text (src/cli/fleet.ts).
 */
import type { FleetProgress, WaveSummary } from './fleet-messages';

const MAX_ROWS = 20;

/** A markdown table cell: one line, no pipe breaking the table, clipped. */
function cell(v: string | number | null | undefined, max = 90): string {
  const s = String(v ?? '')
    .replace(/\s+/g, ' ')
    .replace(/\|/g, '\\|')
    .trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Servers that have ended (onboarded, failed, cancelled, skipped) of the ones known. */
export function fleetDone(p: FleetProgress): number {
  const c = p.counts;
  return c.onboarded + c.failed + c.cancelled + c.skipped;
}

export function fleetBar(p: FleetProgress, width = 20): string {
  const of = p.total ?? Math.max(p.counts.seen, 1);
  const done = fleetDone(p) + p.counts.invalid;
  const fill = of ? Math.min(width, Math.round((done / of) * width)) : 0;
  return `[${'█'.repeat(fill)}${'░'.repeat(width - fill)}] ${done}/${p.total ?? '?'}`;
}

export function waveName(w: Pick<WaveSummary, 'index' | 'canary'>): string {
  return w.canary ? 'canary' : `wave ${w.index}`;
}

export function waveState(w: WaveSummary, p: FleetProgress): string {
  if (!w.endedAt) return p.phase === 'stopping' ? 'stopping' : 'running';
  if (w.canary && p.canary?.approvedBy) return `done · approved by ${p.canary.approvedBy}`;
  return 'done';
}

export function renderFleetDetails(p: FleetProgress): string {
  const c = p.counts;
  const lines = [
    `**${p.fleetId}** · ${p.phase}${p.stopReason ? ` · ${cell(p.stopReason, 120)}` : ''}`,
    '',
    `${fleetBar(p)} · **${c.onboarded}** onboarded · **${c.failed}** failed (budget ${p.budget.allowed}) · ${c.cancelled} cancelled · ${c.skipped} skipped · ${c.invalid} invalid · ${c.running} running (cap ${p.concurrency})`,
    '',
  ];
  if (p.control.pause) lines.push(`⏸ Paused by ${p.control.pause.by}: no new server starts — \`underlay fleet resume ${fleetName(p.fleetId)}\``, '');
  if (p.phase === 'awaiting-approval') lines.push(`⏳ The canary onboarded: \`underlay fleet approve ${fleetName(p.fleetId)}\` to go on`, '');
  if (p.control.abort)
    lines.push(`✗ Aborted by ${p.control.abort.by}: running onboardings ${p.control.abort.onStop === 'rollback' ? 'are rolled back' : 'finish'}`, '');
  lines.push('| wave | started | onboarded | failed | skipped | state |', '|---|---|---|---|---|---|');
  if (p.foldedWaves) lines.push(`| … ${p.foldedWaves} earlier | | | | | |`);
  for (const w of p.waves) {
    lines.push(
      `| ${waveName(w)} | ${w.size}${w.planned ? `/${w.planned}` : ''} | ${w.onboarded} | ${w.failed + w.cancelled} | ${w.skipped} | ${waveState(w, p)} |`,
    );
  }
  const section = (title: string, rows: Array<{ serverId: string; reason: string }>, total: number) => {
    if (!rows.length) return;
    lines.push('', `**${title}** (${total})`, '', '| server | reason |', '|---|---|');
    for (const r of rows.slice(0, MAX_ROWS)) lines.push(`| ${cell(r.serverId, 40)} | ${cell(r.reason, 160)} |`);
    if (total > Math.min(rows.length, MAX_ROWS)) lines.push(`| … | ${total - Math.min(rows.length, MAX_ROWS)} more |`);
  };
  if (p.running.length) {
    lines.push(
      '',
      `**Running** (${c.running})`,
      '',
      p.running
        .slice(0, MAX_ROWS)
        .map((r) => `\`${r.serverId}\``)
        .join(' · ') + (c.running > MAX_ROWS ? ' · …' : ''),
    );
  }
  section('Failed', p.failures, c.failed + c.cancelled);
  section('Skipped', p.skipped, c.skipped);
  section('Invalid', p.invalid, c.invalid);
  return lines.join('\n');
}

/** `fleet-rack-r12` → `rack-r12` (the name the CLI takes). */
export function fleetName(fleetId: string): string {
  return fleetId.replace(/^fleet-/, '');
}
