#!/usr/bin/env node
/**
 * underlay — onboard bare-metal servers into a hypervisor fleet as durable Temporal workflows.
 *
 *   underlay worker [--metrics h:p] [--shutdown-grace 60s]   run a worker (workflows + SSH step activities) until SIGTERM
 *   underlay worker --site fra1 [--workflows]   a site-local worker: that site's step activities (underlay-fra1)
 *   underlay onboard <spec> [--watch]   start onboarding the server a spec describes
 *   underlay status <serverId>          per-step status of an onboarding
 *   underlay rollback <serverId> --yes  undo a completed onboarding (rollbackServer)
 *   underlay pause|resume|approve|cancel <serverId>   operator control of a running onboarding (control.ts)
 *   underlay list [--site …]            onboardings filtered by search attributes (list.ts)
 *   underlay validate <spec...>         check spec files; exit 1 listing every bad field
 *   underlay schema                     JSON Schema of the spec (for editors)
 *   underlay sudoers [--user NAME]      the sudoers fragment of a non-root login (src/drivers/elevate.ts)
 *   underlay fleet onboard|status|pause|resume|approve|abort   many servers: canary, waves, cap, failure budget (fleet.ts)
 *   underlay drift …                    drift sweeps, their schedule, reports and approvals (drift.ts)
 *   underlay codec-server               decrypt payloads for the Web UI (payload encryption: workers/codec-*.ts)
 */
import { Command } from 'commander';
import { PLATFORM_STEP_SET } from '../activities';
import { sshConnector } from '../activities/connect';
import { planOnboarding, renderPlan } from '../activities/plan';
import { DEFAULT_PING_COUNT, probeServer, renderHealth } from '../activities/probe';
import { WorkflowNotFoundError } from '@temporalio/client';
import { onboardingWorkflowId, TASK_QUEUE } from '../common/config';
import { UnderlayError, InvalidSpecError, printable } from '../common/errors';
import { devServerSearchAttributeFlags } from '../common/search-attributes';
import { loadSpecFile, validateSpecFile } from '../spec/load';
import type { ServerSpec } from '../spec/server';
import { serverSpecJsonSchema } from '../spec/validate';
import { DEFAULT_SUDO_USER, sudoersFragment } from '../drivers/elevate';
import { lexicalScopeProblems, secretScopeFromEnv } from '../transports/secret-scope';
import { withClient } from '../workers/connection';
import { DEFAULT_CODEC_LISTEN, runCodecServer } from '../workers/codec-server';
import { registerDriftCommands } from './drift';
import { registerFleetCommands } from './fleet';
import { registerHealthCommands } from './health';
import { registerControlCommands } from './control';
import { loadRollback } from '../activities/rollback';
import { describeCompensations } from '../workflows/saga';
import {
  assertOnboardable,
  describeFailure,
  hasLiveWorker,
  renderRollbackPlan,
  renderServerSideStatus,
  startOnboarding,
  startRollback,
  statusOrServerView,
} from './onboarding';
import { registerWorkerCommand } from './worker';
import { renderStatus } from './render';
import { watchOnboarding } from './watch';

const program = new Command('underlay').description('Onboard bare-metal servers into a hypervisor fleet as durable Temporal workflows');

registerWorkerCommand(program);

program
  .command('onboard <spec>')
  .description('start onboarding the server described by a spec file (YAML or JSON)')
  .option('-w, --watch', 'follow progress until the onboarding ends')
  .option('--task-queue <name>', 'task queue of the workers', TASK_QUEUE)
  .option('--approve-before <steps>', 'steps that wait for `underlay approve` before they run, e.g. hypervisor (comma-separated)')
  .option('--site-queues', "run the step activities on the server's site queue (<task-queue>-<site>; default $UNDERLAY_SITE_QUEUES)")
  .action(async (file: string, opts: { watch?: boolean; taskQueue: string; approveBefore?: string; siteQueues?: boolean }) => {
    const spec = await loadSpecFile(file);
    assertOnboardable(spec);
    warnScope(file, spec);
    await withClient(async (client) => {
      const handle = await startOnboarding(client, spec, {
        taskQueue: opts.taskQueue,
        approvalBefore: opts.approveBefore,
        ...(opts.siteQueues ? { siteQueues: true } : {}),
      });
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
      const view = await statusOrServerView(client, serverId);
      if ('status' in view) console.log(opts.json ? JSON.stringify(view.status, null, 2) : renderStatus(view.status));
      else {
        console.log(opts.json ? JSON.stringify(view.server, null, 2) : renderServerSideStatus(view.server));
        process.exitCode = hasLiveWorker(view.server) ? 1 : 3;
      }
    }).catch((err: unknown) => {
      if (err instanceof WorkflowNotFoundError) throw new Error(`no onboarding found for ${serverId} (workflow ${onboardingWorkflowId(serverId)})`);
      throw err;
    });
  });

const healthCommand = program
  .command('health')
  .argument('<spec>', 'spec file of the host to probe (or a subcommand: run, schedule, status, unschedule)')
  .description(
    'probe the host now over SSH: gateway loss and RTT per VLAN, bond ports, NIC links and errors, LLDP, VFs (changes nothing unless --textfile-dir)',
  )
  .option('--json', 'print JSON')
  .option('--count <n>', 'echo requests per gateway', String(DEFAULT_PING_COUNT))
  .option('--textfile-dir <dir>', "also write underlay.prom there on the host (node_exporter's textfile directory)")
  .action(async (file: string, opts: { json?: boolean; count: string; textfileDir?: string }) => {
    const h = await probeServer(await loadSpecFile(file), sshConnector, { count: Number(opts.count), textfileDir: opts.textfileDir ?? null });
    console.log(opts.json ? JSON.stringify(h, null, 2) : renderHealth(h));
  });

program
  .command('plan <spec>')
  .description('dry run: observe the host over SSH and print what onboarding would change (changes nothing)')
  .option('--json', 'print JSON')
  .action(async (file: string, opts: { json?: boolean }) => {
    const plan = await planOnboarding(await loadSpecFile(file), sshConnector, PLATFORM_STEP_SET);
    console.log(opts.json ? JSON.stringify(plan, null, 2) : renderPlan(plan));
  });

program
  .command('rollback <serverId>')
  .description('undo a completed onboarding: every step that changed the host, newest first, back to its pre-state (verified)')
  .option('--yes', 'do it (without it, only print what would be undone)')
  .option('--task-queue <name>', 'task queue of the workers', TASK_QUEUE)
  .option('--site-queues', "run the undo activities on the server's site queue (default $UNDERLAY_SITE_QUEUES)")
  .action(async (serverId: string, opts: { yes?: boolean; taskQueue: string; siteQueues?: boolean }) => {
    await withClient(async (client) => {
      const plan = await loadRollback(client, serverId);
      console.log(renderRollbackPlan(plan).replace(/\*\*|`/g, ''));
      if (!opts.yes) {
        console.log('\nnothing changed: run again with --yes to roll back');
        return;
      }
      const handle = await startRollback(client, plan, { taskQueue: opts.taskQueue, ...(opts.siteQueues ? { siteQueues: true } : {}) });
      console.log(`started ${handle.workflowId} (rollbackServer, run ${handle.firstExecutionRunId})`);
      const result = await handle.result();
      console.log(`rolled back ${result.serverId}: ${describeCompensations(result.compensations)}`);
    });
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

program
  .command('sudoers')
  .description('print the sudoers fragment a non-root SSH login needs: exactly the commands underlay runs as root (deploy/sudoers/underlay)')
  .option('--user <name>', 'the login it is for', DEFAULT_SUDO_USER)
  .action((o: { user: string }) => {
    try {
      process.stdout.write(sudoersFragment(o.user));
    } catch (e) {
      console.error(`underlay sudoers: ${printable((e as Error).message, 300)}`);
      process.exitCode = 2;
    }
  });

registerDriftCommands(program);
registerHealthCommands(healthCommand);
registerFleetCommands(program);
registerControlCommands(program);

program
  .command('codec-server')
  .description(
    'decrypt/encrypt payloads for the Temporal Web UI and CLI (keys from $UNDERLAY_CODEC_KEYS_FILE or $UNDERLAY_CODEC_KEY; ' +
      'callers authenticate with a bearer token from $UNDERLAY_CODEC_TOKEN / $UNDERLAY_CODEC_TOKEN_FILE and/or a client certificate)',
  )
  .option('--listen <host:port>', 'address to listen on (a non-loopback address needs --tls-cert/--tls-key)', DEFAULT_CODEC_LISTEN)
  .option('--cors-origin <url...>', 'browser origin(s) allowed to call it, e.g. http://localhost:8233')
  .option('--no-temporal-check', 'start without connecting to Temporal (by default it checks the profile and namespace first)')
  .option('--allowed-host <host:port...>', 'extra Host header values to answer to (default: the listen address; for loopback also localhost)')
  .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
  .option('--tls-key <file>', "the certificate's private key (PEM, mode 600)")
  .option('--client-ca <file>', 'require a client certificate issued by this CA (mTLS)')
  .option('--insecure-no-auth', 'serve without authentication (loopback only; a local dev setup)')
  .action(
    (opts: {
      listen: string;
      corsOrigin?: string[];
      temporalCheck: boolean;
      allowedHost?: string[];
      tlsCert?: string;
      tlsKey?: string;
      clientCa?: string;
      insecureNoAuth?: boolean;
    }) => runCodecServer(opts),
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
