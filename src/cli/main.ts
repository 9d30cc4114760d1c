#!/usr/bin/env node
/**
 * underlay — onboard bare-metal servers into a hypervisor fleet as durable Temporal workflows.
 *
 *   underlay worker [--metrics h:p]     run a worker (workflows + SSH step activities), optionally with metrics
 *   underlay onboard <spec> [--watch]   start onboarding the server a spec describes
 *   underlay status <serverId>          per-step status of an onboarding
 *   underlay pause|resume|approve|cancel <serverId>   operator control of a running onboarding (control.ts)
 *   underlay list [--site …]            onboardings filtered by search attributes (list.ts)
 *   underlay validate <spec...>         check spec files; exit 1 listing every bad field
 *   underlay schema                     JSON Schema of the spec (for editors)
 *   underlay drift …                    drift sweeps, their schedule, reports and approvals (drift.ts)
 *   underlay codec-server               decrypt payloads for the Web UI (payload encryption: workers/codec-*.ts)
 */
import { Command } from 'commander';
import { LINUX_STEPS } from '../activities';
import { sshConnector } from '../activities/connect';
import { planOnboarding, renderPlan } from '../activities/plan';
import { WorkflowNotFoundError } from '@temporalio/client';
import { onboardingWorkflowId, TASK_QUEUE } from '../common/config';
import { UnderlayError, InvalidSpecError, printable } from '../common/errors';
import { devServerSearchAttributeFlags } from '../common/search-attributes';
import { loadSpecFile, validateSpecFile } from '../spec/load';
import type { ServerSpec } from '../spec/server';
import { serverSpecJsonSchema } from '../spec/validate';
import { checkScopeAtStart, lexicalScopeProblems, secretScopeFromEnv } from '../transports/secret-scope';
import { connectWorker, withClient } from '../workers/connection';
import { createWorker } from '../workers/worker';
import { DEFAULT_CODEC_LISTEN, runCodecServer } from '../workers/codec-server';
import { installMetricsRuntime } from '../workers/step-metrics';
import { registerDriftCommands } from './drift';
import { registerControlCommands } from './control';
import { assertOnboardable, describeFailure, queryStatus, startOnboarding } from './onboarding';
import { renderStatus } from './render';
import { watchOnboarding } from './watch';

const program = new Command('underlay').description('Onboard bare-metal servers into a hypervisor fleet as durable Temporal workflows');

program
  .command('worker')
  .description('run a worker: onboarding workflows and step activities (SSH with pinned host keys)')
  .option('--task-queue <name>', 'task queue to poll', TASK_QUEUE)
  .option('--metrics <host:port>', 'serve Prometheus metrics at http://<host:port>/metrics (default $UNDERLAY_METRICS_ADDRESS; off when unset)')
  .action(async (opts: { taskQueue: string; metrics?: string }) => {
    // The secret scope first: a prefix overlapping the worker's own settings, or a codec key file inside the
    // credentials directory, stops the worker before it takes any task.
    const scope = secretScopeFromEnv();
    for (const note of checkScopeAtStart(scope)) console.log(`underlay worker: ${note}`);
    console.log(`underlay worker: specs may reference env vars ${scope.envPrefix}* and files in ${scope.credentialsDir}`);
    const metrics = installMetricsRuntime(opts.metrics); // before any connection: the Runtime installs once
    if (metrics) console.log(`underlay worker metrics on http://${metrics}/metrics`);
    const { connection, namespace } = await connectWorker();
    const worker = await createWorker({ connection, namespace, taskQueue: opts.taskQueue });
    console.log(`underlay worker polling task queue "${opts.taskQueue}" in namespace ${namespace}`);
    await worker.run();
  });

program
  .command('onboard <spec>')
  .description('start onboarding the server described by a spec file (YAML or JSON)')
  .option('-w, --watch', 'follow progress until the onboarding ends')
  .option('--task-queue <name>', 'task queue of the workers', TASK_QUEUE)
  .option('--approve-before <steps>', 'steps that wait for `underlay approve` before they run, e.g. hypervisor (comma-separated)')
  .action(async (file: string, opts: { watch?: boolean; taskQueue: string; approveBefore?: string }) => {
    const spec = await loadSpecFile(file);
    assertOnboardable(spec);
    warnScope(file, spec);
    await withClient(async (client) => {
      const handle = await startOnboarding(client, spec, { taskQueue: opts.taskQueue, approvalBefore: opts.approveBefore });
      console.log(`started ${handle.workflowId} (run ${handle.firstExecutionRunId})`);
      console.log(`Web UI: http://127.0.0.1:8233/namespaces/${client.options.namespace}/workflows/${handle.workflowId}`);
      if (opts.watch) process.exitCode = await watchOnboarding(client, spec.id, process.stdout);
    });
  });

program
  .command('status <serverId>')
  .description('per-step status of the latest onboarding of a server')
  .option('--json', 'print JSON')
  .option('-w, --watch', 'follow progress until the onboarding ends')
  .action(async (serverId: string, opts: { json?: boolean; watch?: boolean }) => {
    await withClient(async (client) => {
      if (opts.watch) {
        process.exitCode = await watchOnboarding(client, serverId, process.stdout);
        return;
      }
      const status = await queryStatus(client, serverId);
      console.log(opts.json ? JSON.stringify(status, null, 2) : renderStatus(status));
    }).catch((err: unknown) => {
      if (err instanceof WorkflowNotFoundError) throw new Error(`no onboarding found for ${serverId} (workflow ${onboardingWorkflowId(serverId)})`);
      throw err;
    });
  });

program
  .command('plan <spec>')
  .description('dry run: observe the host over SSH and print what onboarding would change (changes nothing)')
  .option('--json', 'print JSON')
  .action(async (file: string, opts: { json?: boolean }) => {
    const plan = await planOnboarding(await loadSpecFile(file), sshConnector, LINUX_STEPS);
    console.log(opts.json ? JSON.stringify(plan, null, 2) : renderPlan(plan));
  });

program
  .command('validate <specs...>')
  .description('validate spec files; exit 1 listing the path of every bad field')
  .action(async (files: string[]) => {
    let bad = 0;
    for (const f of files) {
      const r = await validateSpecFile(f);
      if (r.ok) {
        console.log(`${f}: ok (${r.spec.id}, ${r.spec.hypervisor.kind})`);
        warnScope(f, r.spec);
      } else {
        bad++;
        console.error(`${f}: ${r.issues.length} problem(s)`);
        for (const i of r.issues) console.error(`  ${printable(i.path, 300)}: ${printable(i.message, 500)}`);
      }
    }
    if (bad) process.exitCode = 1;
  });

program
  .command('schema')
  .description('print the JSON Schema of a server spec')
  .action(() => {
    console.log(JSON.stringify(serverSpecJsonSchema(), null, 2));
  });

registerDriftCommands(program);
registerControlCommands(program);

program
  .command('codec-server')
  .description(
    'decrypt/encrypt payloads for the Temporal Web UI and CLI (keys from $UNDERLAY_CODEC_KEYS_FILE or $UNDERLAY_CODEC_KEY; ' +
      'callers authenticate with a bearer token from $UNDERLAY_CODEC_TOKEN / $UNDERLAY_CODEC_TOKEN_FILE and/or a client certificate)',
  )
  .option('--listen <host:port>', 'address to listen on (a non-loopback address needs --tls-cert/--tls-key)', DEFAULT_CODEC_LISTEN)
  .option('--cors-origin <url...>', 'browser origin(s) allowed to call it, e.g. http://localhost:8233')
  .option('--allowed-host <host:port...>', 'extra Host header values to answer to (default: the listen address; for loopback also localhost)')
  .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
  .option('--tls-key <file>', "the certificate's private key (PEM, mode 600)")
  .option('--client-ca <file>', 'require a client certificate issued by this CA (mTLS)')
  .option('--insecure-no-auth', 'serve without authentication (loopback only; a local dev setup)')
  .action(
    (opts: { listen: string; corsOrigin?: string[]; allowedHost?: string[]; tlsCert?: string; tlsKey?: string; clientCa?: string; insecureNoAuth?: boolean }) =>
      runCodecServer(opts),
  );

program
  .command('dev-server-flags', { hidden: true })
  .description('print the search-attribute flags for `temporal server start-dev`')
  .action(() => {
    console.log(devServerSearchAttributeFlags().join(' '));
  });

/**
 * The worker decides which credentials a spec may reference (its secret scope); this machine's CLI may not be
 * configured like the workers, so here a reference outside the local scope is only a warning.
 */
function warnScope(file: string, spec: ServerSpec): void {
  let problems: Array<{ path: string; message: string }>;
  try {
    problems = lexicalScopeProblems(spec, secretScopeFromEnv());
  } catch (err) {
    console.error(`${file}: warning: ${(err as Error).message}`);
    return;
  }
  for (const p of problems) console.error(`${file}: warning: ${p.path}: ${p.message} — a worker configured like this machine refuses it`);
}

program.parseAsync().catch((err: unknown) => {
  if (err instanceof InvalidSpecError) {
    console.error(`underlay: ${printable(err.summary, 300)}${err.issues.length ? ':' : ''}`);
    for (const i of err.issues) console.error(`  ${printable(i.path, 300)}: ${printable(i.message, 500)}`);
  } else if (err instanceof UnderlayError) console.error(`underlay: ${err.message}`);
  else console.error(`underlay: ${describeFailure(err)}`);
  process.exit(1);
});
