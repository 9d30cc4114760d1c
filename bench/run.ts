/** Runs the scenarios at a size against a fresh dev server and returns their tables (bench/main.ts prints them). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTemporal } from '../test/helpers/temporal';
import type { Size, Table } from './harness';
import { SCENARIOS } from './scenarios';

export async function runBench(size: Size, opts: { only?: string[]; log?: (line: string) => void } = {}): Promise<Table[]> {
  const log = opts.log ?? ((l: string) => console.error(`# ${l}`));
  const chosen = SCENARIOS.filter((s) => (opts.only?.length ? opts.only.includes(s.name) : s.needs === 'temporal'));
  const tmp = mkdtempSync(join(tmpdir(), 'underlay-bench-'));
  const env = await startTemporal();
  const shared: Record<string, number> = {};
  const tables: Table[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  const atEnd = (fn: () => Promise<void>) => void cleanups.push(fn);
  try {
    for (const s of chosen) {
      const t0 = Date.now();
      tables.push(await s.run({ env, tmp, log, shared, atEnd }, size));
      log(`${s.name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => log(`cleanup: ${err instanceof Error ? err.message : String(err)}`));
    await env.teardown();
    rmSync(tmp, { recursive: true, force: true });
  }
  return tables;
}
