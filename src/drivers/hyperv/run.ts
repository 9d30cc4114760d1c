/**
 * Runs PowerShell on a Windows host over its OpenSSH server, through the one command runner (RemoteHost.runLine)
 * with its own line: RemoteHost.run wraps commands in `timeout … sh -c`, which Windows lacks. The deadline holds
 * on the host (boundedScript: a job stopped after the timeout, exit 124) and on the client, a little later.
 */
import type { z } from 'zod';
import { UnexpectedOutputError } from '../../common/errors';
import type { RemoteHost } from '../remote';
import { boundedScript, powershellCommandLine, toJson, type Ps } from './powershell';

export interface PsRunOptions {
  /** What it does, for errors ("New-VMSwitch SETswitch"). */
  description: string;
  timeoutMs?: number;
  /** False when a failure is deterministic (bad argument): Temporal must not retry it. */
  retryable?: boolean;
}

export interface PsResult {
  stdout: string;
  stderr: string;
}

/** PowerShell's serialized error/progress streams (`#< CLIXML` …) are noise in an error message. */
export function cleanStderr(s: string): string {
  return s
    .replace(/^#< CLIXML\s*/m, '')
    .replace(/<Objs[\s\S]*?<\/Objs>/g, '')
    .trim();
}

export async function runPs(host: RemoteHost, body: Ps, opts: PsRunOptions): Promise<PsResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  // The host-side deadline: a job stopped after the timeout, exit 124 (boundedScript); the client waits 30 s more.
  const line = {
    text: powershellCommandLine(boundedScript(body, timeoutMs / 1000)),
    hostDeadline: { exitCodes: [124], marginMs: 30_000 },
    cleanOutput: cleanStderr,
  };
  const r = await host.runLine(line, { description: opts.description, timeoutMs, retryable: opts.retryable, privileged: false });
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Parses ConvertTo-Json output as a list: `[...]`, a single object (PowerShell unwraps one-element arrays), or nothing. */
export function parsePsJsonList<T extends z.ZodType>(
  schema: T,
  text: string,
  what: string,
  ctx: { host?: string; step?: RemoteHost['step'] } = {},
): Array<z.output<T>> {
  const body = text.replace(/^\uFEFF/, '').trim();
  if (!body) return [];
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new UnexpectedOutputError(`${what}: not JSON`, { ...ctx, observed: body.slice(0, 200) });
  }
  const items = Array.isArray(raw) ? raw : [raw];
  return items.map((item, i) => {
    const r = schema.safeParse(item);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new UnexpectedOutputError(`${what}[${i}]: ${issue ? `${issue.path.join('.') || '(item)'}: ${issue.message}` : 'bad shape'}`, {
        ...ctx,
        observed: JSON.stringify(item).slice(0, 200),
      });
    }
    return r.data;
  });
}

/** Runs `expr`, returns what it yields as parsed, validated JSON objects. */
export async function readPs<T extends z.ZodType>(host: RemoteHost, expr: Ps, schema: T, opts: PsRunOptions): Promise<Array<z.output<T>>> {
  const r = await runPs(host, toJson(expr), opts);
  return parsePsJsonList(schema, r.stdout, opts.description, { host: host.label, step: host.step });
}
