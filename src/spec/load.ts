/** Reads a spec file (YAML or JSON — YAML is a superset) and validates it. */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { InvalidSpecError } from '../common/errors';
import { validateServerSpec, type SpecResult } from './validate';

export function parseSpecText(text: string, source: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new InvalidSpecError(
      `${source} is not valid YAML/JSON`,
      doc.errors.map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}`, message: e.message.split('\n')[0] ?? e.code })),
    );
  }
  return doc.toJS();
}

export async function validateSpecFile(path: string): Promise<SpecResult> {
  const text = await readFile(path, 'utf8');
  try {
    return validateServerSpec(parseSpecText(text, path));
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
