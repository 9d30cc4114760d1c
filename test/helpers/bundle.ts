/**
 * Workflow bundles for tests, built once per machine and source state instead of once per test process.
 *
 * node --test runs every file in its own process, and about twenty files bundle the workflows (webpack, ≈ 5 s of
 * CPU each on the CI machine). The bundle depends only on the sources it is built from, the installed packages
 * and Node, so it is cached under `${UNDERLAY_CACHE}/workflow-bundles/<key>.json` (outside the clone, like the
 * lab's caches), keyed by a hash of: the clone's path, the workflows path, every file under src/ and test/helpers/ (the workflow
 * sources the tests bundle live there), package-lock.json, the SDK's version and Node's. Any source edit is a new
 * key. Written by atomic rename, so concurrent test processes never read half a bundle; the 16 most recently used
 * entries are kept. UNDERLAY_TEST_BUNDLE_CACHE=0 (or an unwritable cache) bundles every time.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

const ROOT = resolve(__dirname, '../..');
const KEEP = 16;

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: (m: string) => console.error(m), log: noop };

/** Files under `dir`, sorted, depth-bounded (the tree is the project's own). */
function files(dir: string, depth = 0): string[] {
  if (depth > 8) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p, depth + 1));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

export function bundleKey(workflowsPath: string): string {
  const h = createHash('sha256');
  // The clone's own path too: webpack records module paths, and a bundle is reused only where it was built.
  h.update(`node ${process.version} root ${ROOT}\n`);
  h.update(`workflows ${relative(ROOT, workflowsPath)}\n`);
  h.update(readFileSync(join(ROOT, 'package-lock.json')));
  h.update(readFileSync(require.resolve('@temporalio/worker/package.json')));
  for (const f of [...files(join(ROOT, 'src')), ...files(join(ROOT, 'test/helpers'))]) {
    h.update(`\0${relative(ROOT, f)}\0`);
    h.update(readFileSync(f));
  }
  return h.digest('hex').slice(0, 24);
}

function cacheDir(): string | undefined {
  if (process.env.UNDERLAY_TEST_BUNDLE_CACHE === '0') return undefined;
  const dir = join(process.env.UNDERLAY_CACHE ?? '/var/cache/underlay', 'workflow-bundles');
  try {
    mkdirSync(dir, { recursive: true });
    return dir;
  } catch {
    return undefined;
  }
}

function prune(dir: string): void {
  const entries = readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .map((n) => ({ p: join(dir, n), t: statSync(join(dir, n)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const e of entries.slice(KEEP)) rmSync(e.p, { force: true });
  // Leftovers of a process killed between write and rename.
  for (const n of readdirSync(dir).filter((x) => x.includes('.tmp.'))) {
    const p = join(dir, n);
    if (Date.now() - statSync(p).mtimeMs > 3_600_000) rmSync(p, { force: true });
  }
}

function isBundle(x: unknown): x is WorkflowBundleWithSourceMap {
  const b = x as { code?: unknown; sourceMap?: unknown } | null;
  return typeof b?.code === 'string' && b.code.length > 0 && typeof b.sourceMap === 'string';
}

/** The bundle of `workflowsPath` (absolute), from the cache when this source state was bundled before. */
export async function cachedWorkflowBundle(workflowsPath: string): Promise<WorkflowBundleWithSourceMap> {
  const dir = cacheDir();
  const file = dir ? join(dir, `${bundleKey(workflowsPath)}.json`) : undefined;
  if (file) {
    try {
      const cached: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (isBundle(cached)) {
        const now = new Date();
        utimesSync(file, now, now);
        return cached;
      }
    } catch {
      // Not cached yet (or unreadable): bundle.
    }
  }
  const bundle = await bundleWorkflowCode({ workflowsPath, logger: quietLogger });
  if (file && dir) {
    try {
      const tmp = `${file}.tmp.${process.pid}`;
      writeFileSync(tmp, JSON.stringify({ code: bundle.code, sourceMap: bundle.sourceMap }));
      renameSync(tmp, file);
      prune(dir);
    } catch {
      // A cache that cannot be written only costs the next process a bundle.
    }
  }
  return bundle;
}
