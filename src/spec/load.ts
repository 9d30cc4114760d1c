/**
 * Reads a spec file (YAML or JSON — YAML is a superset) and validates it.
 *
 * Bounded, whatever the file holds: at most MAX_SPEC_BYTES (256 KiB) are read, from a regular file only (a FIFO
 * or /dev/zero is refused, not read forever); aliases are capped (`maxAliasCount`, so an alias bomb cannot
 * expand); duplicate keys are found in one linear pass (the `yaml` library's own `uniqueKeys` check compares
 * every key with every other: 40k keys took minutes); and every failure — a syntax error, an alias bomb, nesting
 * deep enough to exhaust the stack — is an InvalidSpecError with the file name, never a bare exception.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { isCollection, isMap, isScalar, isSeq, Lexer, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { InvalidSpecError, printable } from '../common/errors';
import { formatPath, MAX_SPEC_DEPTH, validateServerSpec, type SpecIssue, type SpecResult } from './validate';

/** Largest spec file accepted: a full ESXi spec is ≈ 2 KiB; 256 KiB is room for comments, not for abuse. */
export const MAX_SPEC_BYTES = 256 * 1024;
/** Alias uses an expansion may make (yaml's `maxAliasCount`); a spec needs none, anchors are allowed for reuse. */
export const MAX_ALIAS_COUNT = 100;

export interface ParseOptions {
  /** Default MAX_SPEC_BYTES. */
  maxBytes?: number;
}

/** Parses spec text; throws InvalidSpecError (naming `source`) for anything that is not one bounded document. */
export function parseSpecText(text: string, source: string, opts: ParseOptions = {}): unknown {
  const max = opts.maxBytes ?? MAX_SPEC_BYTES;
  const bytes = Buffer.byteLength(text);
  if (bytes > max)
    throw new InvalidSpecError(`${source} is too large`, [{ path: '(file)', message: `${bytes} bytes, over the ${max}-byte limit of a spec file` }]);
  try {
    // Flow nesting (`[[[[…`) is counted on the tokens first: the parser would recurse once per level and exhaust
    // the stack (slowly) on a file of brackets. Block nesting needs indentation, so the size cap bounds it.
    let depth = 0;
    for (const token of new Lexer().lex(text)) {
      if (token === '[' || token === '{') depth++;
      else if (token === ']' || token === '}') depth--;
      if (depth > MAX_SPEC_DEPTH)
        throw new InvalidSpecError(`${source} is invalid`, [{ path: '(file)', message: `nested deeper than ${MAX_SPEC_DEPTH} levels` }]);
    }
    const lines = new LineCounter();
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: false, lineCounter: lines });
    if (doc.errors.length) {
      throw new InvalidSpecError(
        `${source} is not valid YAML/JSON`,
        doc.errors.slice(0, 20).map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}`, message: printable(e.message.split('\n')[0] ?? e.code) })),
      );
    }
    const structural = documentIssues(doc.contents, (offset) => lines.linePos(offset).line);
    if (structural.length) throw new InvalidSpecError(`${source} is invalid`, structural);
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    if (err instanceof InvalidSpecError) throw err;
    // An alias bomb (yaml's ReferenceError), a stack exhausted by nesting (RangeError), anything else the parser
    // throws: the spec's fault, reported like every other spec problem.
    const why =
      err instanceof ReferenceError && /alias/i.test(err.message)
        ? 'too many alias expansions (an alias bomb?)'
        : printable(String((err as Error)?.message ?? err));
    throw new InvalidSpecError(`${source} cannot be parsed`, [{ path: '(file)', message: why }]);
  }
}

/**
 * Duplicate keys, non-scalar keys and excessive nesting, in one pass over the parsed document (no recursion: a
 * deep document cannot exhaust the stack here). Aliases are not followed; their expansion is capped by toJS.
 */
function documentIssues(root: YamlNode | null, lineOf: (offset: number) => number): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const stack: Array<{ node: unknown; path: PropertyKey[] }> = [{ node: root, path: [] }];
  while (stack.length && issues.length < 20) {
    const { node, path } = stack.pop()!;
    if (!isCollection(node)) continue;
    if (path.length >= MAX_SPEC_DEPTH) {
      issues.push({ path: formatPath(path), message: `nested deeper than ${MAX_SPEC_DEPTH} levels` });
      continue;
    }
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = pair.key;
        if (!isScalar(key) || (typeof key.value !== 'string' && typeof key.value !== 'number' && typeof key.value !== 'boolean' && key.value !== null)) {
          issues.push({ path: formatPath(path), message: 'has a key that is not a plain name' });
          continue;
        }
        const name = String(key.value);
        if (seen.has(name)) {
          const at = key.range ? ` at line ${lineOf(key.range[0])}` : '';
          issues.push({ path: formatPath([...path, name]), message: `is set twice (duplicate key${at}); the first value would be silently lost` });
        }
        seen.add(name);
        stack.push({ node: pair.value, path: [...path, name] });
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => stack.push({ node: item, path: [...path, i] }));
    }
  }
  return issues;
}

/** Reads at most `max` bytes of a regular file (no FIFO, device or directory); throws an errno-coded Error. */
async function readBounded(path: string, max: number): Promise<string | { issue: SpecIssue }> {
  // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { issue: { path: '(file)', message: 'is not a regular file' } };
    if (st.size > max) return { issue: { path: '(file)', message: `${st.size} bytes, over the ${max}-byte limit of a spec file` } };
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > max) return { issue: { path: '(file)', message: `grew over the ${max}-byte limit of a spec file while being read` } };
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * Validates a spec file. Never throws for the file's content or a file that cannot be read: those are issues
 * (`(file)`: ENOENT, not a regular file, too large, not YAML), so a caller checking many files goes on.
 */
export async function validateSpecFile(path: string, opts: ParseOptions = {}): Promise<SpecResult> {
  let text: string;
  try {
    const r = await readBounded(path, opts.maxBytes ?? MAX_SPEC_BYTES);
    if (typeof r !== 'string') return { ok: false, issues: [r.issue] };
    text = r;
  } catch (err) {
    return { ok: false, issues: [{ path: '(file)', message: `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'read error'})` }] };
  }
  try {
    return validateServerSpec(parseSpecText(text, path, opts));
  } catch (err) {
    if (err instanceof InvalidSpecError) return { ok: false, issues: err.issues };
    throw err;
  }
}

export async function loadSpecFile(path: string) {
  const r = await validateSpecFile(path);
  if (!r.ok) throw new InvalidSpecError(`${path} is invalid`, r.issues);
  return r.spec;
}
