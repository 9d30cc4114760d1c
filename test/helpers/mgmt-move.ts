/**
 * What the lab files of the commit-confirmed management move share (test/lab/mgmt-move.lab.test.ts on networkd,
 * test/lab/mgmt-move-managers.lab.test.ts on ifupdown and NetworkManager): a step run in-process with its progress
 * notes printed, the spec of a lab server whose management moves onto bond0.<tag>, its two paths, and the network
 * state a rollback must restore, read without the step code.
 */
import { connect } from 'node:net';
import type { MetricMeter } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { sshConnector, sshTarget } from '../../src/activities/connect';
import { SshSession } from '../../src/transports/ssh';
import { runStep, undoStep } from '../../src/activities/run-step';
import type { StepChoice, StepResult, UndoResult } from '../../src/activities/step';
import { atPath, movedPath } from '../../src/spec/management';
import type { ServerSpec, ServerSpecInput } from '../../src/spec/server';
import type { StepName } from '../../src/steps';
import { parseServerSpec } from '../../src/spec/validate';
import { labSpecInput, labVm } from '../../lab/spec';
import { onHost } from './lab';

export const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
export const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} };

function printingEnv(label: string, metricMeter?: MetricMeter): MockActivityEnvironment {
  const env = new MockActivityEnvironment({}, { logger: silent, ...(metricMeter ? { metricMeter } : {}) });
  const t0 = Date.now();
  let last: string | undefined;
  env.on('heartbeat', (d: { note?: string }) => {
    if (d?.note && d.note !== last) console.log(`  [${label} +${secs(Date.now() - t0)}] ${(last = d.note)}`);
  });
  return env;
}

/** Runs a step in-process; its progress notes (arm, confirm, rollback wait) are printed with the time since its start. */
export function runOn(name: StepName, step: StepChoice, raw: unknown, label: string = name, metricMeter?: MetricMeter): Promise<StepResult> {
  return printingEnv(label, metricMeter).run(runStep, name, step, raw, sshConnector) as Promise<StepResult>;
}

/** Runs a step's undo in-process (the compensation's activity, as the rollback workflow runs it), back to `pre`. */
export function undoOn(name: StepName, step: StepChoice, raw: unknown, pre: unknown, label: string = `${name} undo`): Promise<UndoResult> {
  return printingEnv(label).run(undoStep, name, step, raw, pre, sshConnector) as Promise<UndoResult>;
}

/** A lab server managed over its data NIC, with management moving onto bond0.<tag> (100 is what the switch trunks and forwards to). */
export function moveInputOf(lab: string, server: string, opts: { tag?: number; windowSec: number; id?: string }): ServerSpecInput {
  const base = labSpecInput(server, { dir: lab });
  const dm = labVm(server, lab).dataMgmt!;
  const k = Number(/^server(\d+)$/.exec(server)?.[1] ?? NaN);
  const tag = opts.tag ?? 100;
  return {
    ...base,
    id: opts.id ?? base.id,
    vlans: [
      { id: tag, parent: 'bond0', address: dm.newAddress, gateway: dm.gateway },
      { id: 200, parent: 'bond0', address: `198.18.1.${10 + k}/24`, gateway: '198.18.1.1' },
    ],
    network: {
      manager: 'auto',
      management: { interface: `bond0.${tag}`, reachAt: { address: '127.0.0.1', port: dm.newPort }, confirmWindowSeconds: opts.windowSec },
    },
  };
}

export const specOf = (input: ServerSpecInput): ServerSpec => parseServerSpec(input, 'mgmt-move lab spec');
export const oldPath = (spec: ServerSpec): ServerSpec => spec;
export const newPath = (spec: ServerSpec): ServerSpec => atPath(spec, movedPath(spec)!);

/** Where each lab image's network manager keeps its files. */
export const MANAGER_FILES = {
  networkd: '/etc/systemd/network',
  ifupdown: '/etc/network',
  nm: '/etc/NetworkManager/system-connections',
} as const;

/** The network state a rollback must restore, read without the step code (`filesDir`: the manager's files). */
export async function netState(
  spec: ServerSpec,
  filesDir: string = MANAGER_FILES.networkd,
): Promise<{ links: string; addrs: string; files: string; session: string }> {
  return onHost(spec, async (run) => ({
    links: (await run(`ip -br link | awk '{print $1, $2}' | grep -v '^lo ' | sort`)).trim(),
    addrs: (await run(`ip -4 -br addr | awk '{ $2=""; print }' | sort`)).trim(),
    files: (await run(`cd ${filesDir} && find . -type f | sort | xargs sha256sum`)).trim(),
    session: (await run('printf "%s" "$SSH_CONNECTION" | cut -d" " -f3')).trim(),
  }));
}

/** The host's transaction journal, one line per event. */
export async function journal(spec: ServerSpec): Promise<string[]> {
  const text = await onHost(spec, (run) => run('cat /var/lib/underlay/txn/journal 2>/dev/null || true'));
  return text.trim().split('\n').filter(Boolean);
}

/**
 * Whether a path answers SSH (the host key is checked): one connection attempt with a 20 s connect timeout. Used to
 * assert silence too, where onHost's patience (3 attempts, 5 s apart) cost ≈ 70 s per check on a dead path.
 */
export async function answers(spec: ServerSpec): Promise<boolean> {
  return SshSession.connect(sshTarget(spec), { connectTimeoutMs: 20_000 }).then(
    (s) => {
      s.close();
      return true;
    },
    () => false,
  );
}

/**
 * Whether an SSH server's banner arrives on 127.0.0.1:`port` within `ms` — for a path that must be silent, a bounded
 * look (one connection, no retries) instead of a full SSH connect that waits out its connect timeouts and retries.
 */
export function sshBanner(port: number, ms = 10_000): Promise<boolean> {
  return new Promise((done) => {
    let text = '';
    const socket = connect({ host: '127.0.0.1', port });
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      done(ok);
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.startsWith('SSH-')) finish(true);
      else if (text.length >= 4) finish(false);
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
  });
}
