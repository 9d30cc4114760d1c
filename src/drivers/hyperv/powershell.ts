/**
 * The one place PowerShell commands are built, the Windows counterpart of shell.ts.
 *
 *   ps`Get-VMSwitch -Name ${name}`   →   Get-VMSwitch -Name 'SETswitch'
 *
 * Every interpolated value becomes a PowerShell single-quoted string (no variable expansion, no subexpressions;
 * a quote inside is doubled — PowerShell also reads the typographic quotes ‘ ’ ‚ ‛ as single quotes, so those
 * are doubled too). Numbers must be finite, booleans become $true/$false, arrays @('a','b').
 *
 * The finished script travels as `powershell -EncodedCommand <base64 of UTF-16LE>`: Windows OpenSSH hands the
 * command line to cmd.exe (its default shell) or PowerShell, and a base64 word passes through either unchanged —
 * nothing of the script is ever parsed by cmd.exe's quoting.
 */

/** A fragment of PowerShell that is already safe to splice (built by `ps` or `psJoin`). */
export class Ps {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type PsValue = string | number | boolean | Ps | ReadonlyArray<string | number>;

// ' plus U+2018 ‘, U+2019 ’, U+201A ‚, U+201B ‛: all single-quote characters to PowerShell's tokenizer.
const SINGLE_QUOTES = /['\u2018\u2019\u201A\u201B]/g;

/** A PowerShell single-quoted string literal of `s`. */
export function psQuote(s: string): string {
  if (s.includes('\0')) throw new Error('a PowerShell argument cannot contain NUL');
  return `'${s.replace(SINGLE_QUOTES, (q) => q + q)}'`;
}

function renderOne(v: string | number): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`not a finite number: ${v}`);
    return String(v);
  }
  return psQuote(v);
}

function render(v: PsValue): string {
  if (v instanceof Ps) return v.text;
  if (typeof v === 'boolean') return v ? '$true' : '$false';
  if (Array.isArray(v)) return `@(${v.map((x) => renderOne(x)).join(',')})`;
  return renderOne(v as string | number);
}

/** Tagged template: literal parts are trusted script text, interpolations are quoted values. */
export function ps(strings: TemplateStringsArray, ...values: PsValue[]): Ps {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return new Ps(out);
}

/** Joins statements (`;`) or lines. */
export function psJoin(parts: ReadonlyArray<Ps>, sep: '; ' | '\n' = '\n'): Ps {
  return new Ps(parts.map((p) => p.text).join(sep));
}

/** `expr` as one compact JSON array on stdout, whatever number of objects it yields (zero → `[]`). */
export function toJson(expr: Ps, depth = 4): Ps {
  return ps`ConvertTo-Json -InputObject @(${expr}) -Depth ${depth} -Compress`;
}

/** Base64 of the script's UTF-16LE bytes: what `powershell -EncodedCommand` expects. */
export function encodeCommand(script: Ps | string): string {
  return Buffer.from(String(script), 'utf16le').toString('base64');
}

export function decodeCommand(b64: string): string {
  return Buffer.from(b64, 'base64').toString('utf16le');
}

/** cmd.exe's command-line limit: the whole line must fit (the encoded script is ~2.7× the script). */
export const MAX_COMMAND_LINE = 8191;

/** The command line run on the Windows host. */
export function powershellCommandLine(script: Ps): string {
  const line = `powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ${encodeCommand(script)}`;
  if (line.length > MAX_COMMAND_LINE) throw new Error(`PowerShell script too long for one command line (${line.length} > ${MAX_COMMAND_LINE} characters)`);
  return line;
}

/**
 * The script as it runs on the host: errors stop it; `body` runs in a background job bounded by `timeoutSec`
 * on the host itself (exit 124 and the job stopped when it is exceeded — the client's own deadline is only a
 * backstop), and a failure leaves as exit 1 with the message on stderr.
 */
export function boundedScript(body: Ps, timeoutSec: number): Ps {
  const secs = Math.max(1, Math.ceil(timeoutSec));
  return new Ps(
    [
      "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'",
      `$job = Start-Job -ScriptBlock { $ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'`,
      body.text,
      '}',
      `if (-not (Wait-Job -Job $job -Timeout ${secs})) { Stop-Job -Job $job; Remove-Job -Job $job -Force; [Console]::Error.WriteLine('timed out after ${secs} s'); exit 124 }`,
      'try { Receive-Job -Job $job -ErrorAction Stop } catch { [Console]::Error.WriteLine($_.Exception.Message); exit 1 } finally { Remove-Job -Job $job -Force }',
    ].join('\n'),
  );
}
