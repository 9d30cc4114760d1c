/** A worker process the test can kill without warning, as a crashed host would: SIGKILL to its whole group. */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface DetachedProcess {
  child: ChildProcess;
  /** SIGKILL to the process group; a no-op when it is already gone. */
  kill(): void;
}

/**
 * Spawns in its own process group: bin/underlay and `node --import tsx` run the worker in a child node process,
 * and the kill must take the whole tree down at once (killing only the parent would leave the worker running).
 */
export function spawnDetached(command: string, args: string[], opts: Omit<SpawnOptions, 'detached'>): DetachedProcess {
  const child = spawn(command, args, { ...opts, detached: true });
  return {
    child,
    kill: () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}
