/**
 * npm run bench [-- smoke|medium|full] [--only engine,fleet,drift] [--write]
 *
 * Prints each scenario's table (with its ratios against a baseline measured in the same run); `--write` also
 * writes docs/benchmarks.md with the machine and the date: the whole file for a run of the default scenarios, or,
 * with `--only`, just the section of those scenarios (replaced if the file has one, else appended). Smoke is the default (what CI runs, via
 * test/bench/bench.test.ts, without writing).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { machine, renderMarkdown, renderText, SIZES, type Size } from './harness';
import { runBench } from './run';
import { benchmarksDoc } from './doc';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const size = (args.find((a) => (SIZES as readonly string[]).includes(a)) ?? 'smoke') as Size;
  const unknown = args.filter((a) => !(SIZES as readonly string[]).includes(a) && a !== '--write' && a !== '--only' && args[args.indexOf(a) - 1] !== '--only');
  if (unknown.length) throw new Error(`unknown argument(s): ${unknown.join(' ')} — usage: npm run bench -- [${SIZES.join('|')}] [--only a,b] [--write]`);
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? (args[onlyAt + 1] ?? '').split(',').filter(Boolean) : undefined;
  const started = new Date();
  const tables = await runBench(size, only ? { only } : {});
  for (const t of tables) console.log(`\n${renderText(t)}`);
  if (args.includes('--write')) {
    const file = resolve(__dirname, '../docs/benchmarks.md');
    const block = [
      `## Measured: size \`${size}\`${only ? `, \`--only ${only.join(',')}\`` : ''}, ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      '',
      `Machine: ${machine()}.`,
      '',
      ...tables.map((t) => `${renderMarkdown(t)}\n`),
    ].join('\n');
    writeFileSync(file, benchmarksDoc(existsSync(file) ? readFileSync(file, 'utf8') : '', block, only));
    console.log(`\nwrote ${file}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
