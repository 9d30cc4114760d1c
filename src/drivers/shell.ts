/**
 * The one place shell commands are built. Every interpolated value is quoted, always.
 *
 *   sh`ip link set dev ${nic} master ${bond}`   →  ip link set dev 'eth1' master 'bond0'
 *
 * Spec values are already restricted to safe patterns (src/spec/identifiers.ts); quoting here is the second,
 * independent layer, so a bug in one never becomes an injection.
 */

/** A fragment of shell text that is already safe to splice (built by `sh` or `join`). */
export class Shell {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type ShellValue = string | number | Shell | ReadonlyArray<string | number>;

const BARE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** POSIX-quotes one argument. Plain words stay readable; anything else goes in single quotes. */
export function quote(arg: string | number): string {
  const s = String(arg);
  if (s !== '' && BARE.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function render(v: ShellValue): string {
  if (v instanceof Shell) return v.text;
  if (Array.isArray(v)) return v.map((x) => quote(x)).join(' ');
  return quote(v as string | number);
}

/**
 * Tagged template: literal parts are trusted program text, interpolations are quoted.
 * Literal text is the template's cooked string, as in any JS template: write `\${` for a shell `${`, and
 * note `\t`/`\n` become real tab/newline characters (inside single quotes printf prints them the same).
 */
export function sh(strings: TemplateStringsArray, ...values: ShellValue[]): Shell {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return new Shell(out);
}

/** Joins fragments: `&&` stops at the first failure, `;` runs all, `|` pipes, ' ' splices words. */
export function join(op: '&&' | ';' | '||' | '|' | ' ', parts: ReadonlyArray<Shell>): Shell {
  return new Shell(parts.map((p) => p.text).join(op === ' ' ? ' ' : ` ${op} `));
}

/**
 * Writes a value to a file (sysfs attributes, config files) without echo's escape pitfalls — through `tee`, the
 * one elevated writer (src/drivers/elevate.ts), never a shell redirection, which a non-root login cannot make.
 */
export function writeTo(path: string, value: string | number): Shell {
  return sh`printf '%s\n' ${String(value)} | tee ${path} >/dev/null`;
}

/**
 * A file-name glob, spliced unquoted so that the shell expands it (`*.network`). Only name characters and the
 * wildcards `*` and `?` pass; anything else is refused here, so a glob can never carry shell syntax.
 */
export function glob(pattern: string): Shell {
  if (!/^[A-Za-z0-9_.@*?-]{1,128}$/.test(pattern) || !/[*?]/.test(pattern)) throw new Error(`not a plain file-name glob: ${JSON.stringify(pattern)}`);
  return new Shell(pattern);
}
