/**
 * `underlay worker` exactly as the CLI defines it (src/cli/worker.ts: flags, Temporal profile, signals, shutdown
 * grace), with one difference: the step activities act on a FileHost (FILE_HOST_DIR) instead of SSH hosts, so
 * several of these processes share one host stand-in; and WORKFLOW_BUNDLE may name a prebuilt workflow bundle
 * (tests build it once instead of once per process). Spawned by test/workers/service.test.ts.
 *   node --import tsx test/helpers/service-worker.ts [worker flags…]
 */
import { Command } from 'commander';
import { createActivities } from '../../src/activities';
import { registerWorkerCommand } from '../../src/cli/worker';
import { nullConnector } from './fake-steps';
import { FileHost, fileHostSteps } from './file-host';

const dir = process.env.FILE_HOST_DIR;
if (!dir) throw new Error('FILE_HOST_DIR is required');
const program = new Command('underlay');
const bundle = process.env.WORKFLOW_BUNDLE;
registerWorkerCommand(program, {
  activities: createActivities(nullConnector, fileHostSteps(new FileHost(dir))),
  ...(bundle ? { workflowBundle: { codePath: bundle } } : {}),
});
program.parseAsync(['node', 'underlay', 'worker', ...process.argv.slice(2)]).catch((err: unknown) => {
  console.error(`underlay: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
