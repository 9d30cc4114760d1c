/** A real Temporal dev server for tests: the project's pinned CLI binary, never a download. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, type Logger, type RuntimeOptions, type Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { SEARCH_ATTRIBUTES } from '../../src/common/search-attributes';
import { cachedWorkflowBundle } from './bundle';

export const TEMPORAL_BIN = resolve(__dirname, '../../.tools/bin/temporal');

let runtimeInstalled = false;

/** Worker logs at ERROR: expected workflow failures (WARN) would drown the test output. */
function installQuietRuntime(logger?: Logger): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: logger ?? new DefaultLogger('ERROR') });
}

/**
 * Installs the process-global Runtime with `opts` (e.g. a Prometheus exporter: metricsRuntimeOptions), before
 * anything else touches it; startTemporal then leaves it as it is. Call it first, once per test process.
 */
export function installRuntime(opts: RuntimeOptions): void {
  if (runtimeInstalled) throw new Error('the worker Runtime is installed already: installRuntime must come first');
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('ERROR'), ...opts });
}

export interface TemporalOptions {
  /** Serve the Web UI on this port (127.0.0.1); default: headless. */
  uiPort?: number;
  /** Create this namespace (with underlay's search attributes) besides `default`; env.client uses it. */
  namespace?: string;
  /** The worker Runtime's logger (installed once per process, by the first call); default ERROR to stderr. */
  logger?: Logger;
}

export async function startTemporal(opts: TemporalOptions = {}): Promise<TestWorkflowEnvironment> {
  installQuietRuntime(opts.logger);
  if (!existsSync(TEMPORAL_BIN)) throw new Error(`${TEMPORAL_BIN} is missing: run \`npm run setup\` (scripts/install-temporal.sh)`);
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: TEMPORAL_BIN },
      ip: '127.0.0.1',
      searchAttributes: SEARCH_ATTRIBUTES,
      log: { format: 'pretty', level: 'warn' },
      ...(opts.uiPort ? { ui: true, uiPort: opts.uiPort } : {}),
      ...(opts.namespace ? { namespace: opts.namespace } : {}),
    },
  });
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** The workflow bundle: once per test process, and from test/helpers/bundle.ts's cache across processes. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= cachedWorkflowBundle(require.resolve('../../src/workflows'));
  return bundle;
}

/** A worker that runs in the background of a test file; `stop()` shuts it down and waits for its run to end. */
export interface BackgroundWorker {
  worker: Worker;
  stop(): Promise<void>;
}

export function runInBackground(worker: Worker): BackgroundWorker {
  const done = worker.run();
  return {
    worker,
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}
