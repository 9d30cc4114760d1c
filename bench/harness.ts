/**
 * The benchmark harness: scenarios, each measured at a size (smoke in CI, medium or full by hand), each returning a
 * table whose rows carry a ratio against a baseline measured in the same run, side by side. Never a timed assertion:
 * the smoke test (test/bench/bench.test.ts) checks only that the tables are complete and consistent.
 *
 * Adding a scenario (e.g. the lab network onboarding against raw SSH and ansible-playbook) is one more entry in
 * SCENARIOS (bench/scenarios.ts): a name, a title, `needs` (what it must have running: `temporal`, or `lab` for one
 * that boots lab VMs and is skipped unless asked by name), and `run(ctx, size)` returning a Table.
 */
import { cpus, totalmem, type, release } from 'node:os';
import type { TestWorkflowEnvironment } from '@temporalio/testing';

export const SIZES = ['smoke', 'medium', 'full'] as const;
export type Size = (typeof SIZES)[number];

export interface BenchContext {
  env: TestWorkflowEnvironment;
  /** A scratch directory, removed after the run. */
  tmp: string;
  log(line: string): void;
  /** Figures one scenario leaves for later ones (e.g. the engine's throughput, a baseline for the fleet). */
  shared: Record<string, number>;
  /** Runs after the last scenario, before the dev server stops (e.g. a worker one scenario leaves to the next). */
  atEnd(fn: () => Promise<void>): void;
}

export interface Table {
  scenario: string;
  title: string;
  /** What the ratios compare against (measured in this run). */
  baseline: string;
  columns: string[];
  rows: Array<Array<string | number>>;
  notes: string[];
}

export interface Scenario {
  name: string;
  title: string;
  needs: 'temporal' | 'lab';
  run(ctx: BenchContext, size: Size): Promise<Table>;
}

/** The p-th percentile (0–100) of a list of numbers, nearest rank; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Samples this process's resident set size until stopped; returns the peak in MiB. */
export function rssSampler(everyMs = 200): { stop(): number } {
  let peak = process.memoryUsage().rss;
  const t = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), everyMs);
  return {
    stop: () => {
      clearInterval(t);
      peak = Math.max(peak, process.memoryUsage().rss);
      return Math.round(peak / 2 ** 20);
    },
  };
}

export function fmt(v: string | number): string {
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return '–';
  return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(v < 1 ? 3 : 2);
}

export function ratio(value: number, base: number): string {
  return Number.isFinite(value) && Number.isFinite(base) && base > 0 ? `${(value / base).toFixed(2)}×` : '–';
}

/** The table as aligned text (the terminal). */
export function renderText(t: Table): string {
  const cells = [t.columns, ...t.rows.map((r) => r.map(fmt))];
  const widths = t.columns.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `${t.title}  (baseline: ${t.baseline})`,
    line(t.columns),
    line(widths.map((w) => '-'.repeat(w))),
    ...cells.slice(1).map(line),
    ...t.notes.map((n) => `  ${n}`),
  ].join('\n');
}

export function renderMarkdown(t: Table): string {
  return [
    `### ${t.title}`,
    '',
    `Baseline: ${t.baseline}.`,
    '',
    `| ${t.columns.join(' | ')} |`,
    `|${t.columns.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(fmt).join(' | ')} |`),
    '',
    ...t.notes.map((n) => `- ${n}`),
  ].join('\n');
}

/** Which machine, when: the header every published table carries. */
export function machine(): string {
  const c = cpus();
  return `${type()} ${release()}, ${c.length} × ${c[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}`;
}

/** A sane table: every row as wide as the columns, no empty cell, at least one row. What the CI smoke checks. */
export function tableProblems(t: Table): string[] {
  const out: string[] = [];
  if (!t.rows.length) out.push(`${t.scenario}: no rows`);
  for (const [i, r] of t.rows.entries()) {
    if (r.length !== t.columns.length) out.push(`${t.scenario} row ${i}: ${r.length} cells for ${t.columns.length} columns`);
    for (const [j, c] of r.entries())
      if (c === '' || (typeof c === 'number' && Number.isNaN(c))) out.push(`${t.scenario} row ${i} column ${t.columns[j]}: empty`);
  }
  return out;
}
