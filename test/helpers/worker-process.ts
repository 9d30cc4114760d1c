/**
 * `underlay worker` processes for tests that kill or stop them: either bin/underlay itself, or
 * test/helpers/service-worker.ts (the CLI's worker command over a FileHost that several processes share, loading a
 * prebuilt workflow bundle). Each runs in its own process group (kill() = SIGKILL to the group).
 */
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnDetached, type DetachedProcess } from './detached';

const root = resolve(__dirname, '../..');
const TSX_LOADER = join(root, 'node_modules/tsx/dist/loader.mjs');

export interface WorkerProcess extends DetachedProcess {
  pid: number;
  output(): string;
  /** Resolves with the exit code (bounded). */
  exited(ms: number): Promise<number | null>;
}

export interface WorkerProcessOptions {
  taskQueue: string;
  /** `--shutdown-grace`. */
  grace: string;
  /** The environment (Temporal address, HOME, FILE_HOST_DIR…). */
  env: NodeJS.ProcessEnv;
  /** bin/underlay (real SSH steps) instead of the FileHost worker. */
  bin?: boolean;
  /** A prebuilt workflow bundle for the FileHost worker (WORKFLOW_BUNDLE). */
  bundleFile?: string;
  /** More `underlay worker` flags. */
  extraArgs?: string[];
  /** Where to keep the started processes, for the test's cleanup. */
  track?: DetachedProcess[];
}

/** A worker process; resolves once it polls (bounded: 90 s — bin/underlay bundles the workflows at start). */
export async function spawnWorker(o: WorkerProcessOptions): Promise<WorkerProcess> {
  const args = ['worker', '--task-queue', o.taskQueue, '--shutdown-grace', o.grace, ...(o.extraArgs ?? [])];
  const p = o.bin
    ? spawnDetached(join(root, 'bin/underlay'), args, { cwd: root, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawnDetached(process.execPath, ['--import', TSX_LOADER, join(root, 'test/helpers/service-worker.ts'), ...args.slice(1)], {
        cwd: root,
        env: { ...o.env, ...(o.bundleFile ? { WORKFLOW_BUNDLE: o.bundleFile } : {}) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
  o.track?.push(p);
  const child = p.child;
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const wp: WorkerProcess = {
    ...p,
    pid: child.pid!,
    output: () => out,
    exited: (ms) => Promise.race([exit, sleep(ms).then(() => Promise.reject(new Error(`worker ${child.pid} still running after ${ms} ms:\n${out}`)))]),
  };
  for (let i = 0; i < 900 && !/polling task queue/.test(out); i++) {
    if (child.exitCode !== null) throw new Error(`worker exited ${child.exitCode}:\n${out}`);
    await sleep(100);
  }
  assert.match(out, /polling task queue/, out);
  return wp;
}
