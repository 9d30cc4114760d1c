/**
 * zod schemas for the parts of vSphere answers the driver reads, over the parsed-XML shape of
 * src/transports/soap.ts `parseXml`: leaf text is a string, an element with attributes is `{ '#text', '@_attr' }`,
 * `xsi:type` is `@_xsiType`, and a repeated element is an array while a single one is not (`many` evens that out).
 * Objects are loose (vCenter sends far more than is read here); what is read is checked.
 */
import { z } from 'zod';
import { UnexpectedOutputError } from '../../common/errors';

export interface Mor {
  type: string;
  value: string;
}

/** Zero, one or many repetitions of an element, as an array. */
export function many<T extends z.ZodType>(item: T) {
  return z.preprocess((v) => (v === undefined || v === null || v === '' ? [] : Array.isArray(v) ? v : [v]), z.array(item));
}

const MOR_VALUE = /^[A-Za-z0-9_.:\-[\]]{1,200}$/;

/** `<x type="HostSystem">host-21</x>` → `{ type, value }`. */
export const morSchema = z
  .object({ '#text': z.string().regex(MOR_VALUE), '@_type': z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,99}$/) })
  .transform((o): Mor => ({ type: o['@_type'], value: o['#text'] }));

/** An xsd:int / xsd:long leaf. */
export const intSchema = z
  .string()
  .regex(/^-?\d{1,18}$/)
  .transform(Number);
/** An xsd:boolean leaf. */
export const boolSchema = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
/** A leaf that may be empty (`<x></x>` parses as ''). */
export const textSchema = z.string();

export const AboutSchema = z.looseObject({
  fullName: z.string(),
  apiVersion: z.string(),
  /** `VirtualCenter` (vCenter) or `HostAgent` (an ESXi host's own hostd). */
  apiType: z.string().optional(),
  version: z.string().optional(),
  build: z.string().optional(),
});

export const ServiceContentSchema = z.looseObject({
  rootFolder: morSchema,
  propertyCollector: morSchema,
  viewManager: morSchema,
  sessionManager: morSchema,
  /** The OptionManager of the service's advanced settings (vCenter's `config.vpxd.*`). */
  setting: morSchema.optional(),
  about: AboutSchema,
});

export const RetrieveResultSchema = z.object({
  token: z.string().optional(),
  objects: many(z.unknown()),
});

export interface ObjectContent {
  obj: Mor;
  /** Property path → the raw parsed value (validate it with a schema before use). */
  props: Record<string, unknown>;
  /** Paths vCenter could not return for this object, with the fault type. */
  missing: Record<string, string>;
}

export const ObjectContentSchema = z
  .object({
    obj: morSchema,
    propSet: many(z.object({ name: z.string(), val: z.unknown() })),
    missingSet: many(z.object({ path: z.string(), fault: z.object({ fault: z.looseObject({ '@_xsiType': z.string().optional() }).optional() }).optional() })),
  })
  .transform((o): ObjectContent => ({
    obj: o.obj,
    props: Object.fromEntries(o.propSet.map((p) => [p.name, p.val])),
    missing: Object.fromEntries(o.missingSet.map((m) => [m.path, m.fault?.fault?.['@_xsiType'] ?? 'unknown'])),
  }));

export interface TaskInfo {
  state: 'queued' | 'running' | 'success' | 'error';
  progress?: number;
  error?: { fault: string; localizedMessage?: string; detail: Record<string, unknown> };
}

export const TaskInfoSchema = z
  .object({
    state: z.enum(['queued', 'running', 'success', 'error']),
    progress: intSchema.optional(),
    error: z
      .object({
        fault: z.looseObject({ '@_xsiType': z.string() }),
        localizedMessage: z.string().optional(),
      })
      .optional(),
  })
  .transform((t): TaskInfo => ({
    state: t.state,
    ...(t.progress !== undefined ? { progress: t.progress } : {}),
    ...(t.error
      ? { error: { fault: t.error.fault['@_xsiType'].replace(/^[^:]*:/, ''), localizedMessage: t.error.localizedMessage, detail: t.error.fault } }
      : {}),
  }));

/** Validates an answer; a shape that differs is UnexpectedOutputError naming what was read and where it broke. */
export function parseWith<T extends z.ZodType>(schema: T, value: unknown, what: string, host: string): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(value)'}: ${i.message}`);
  throw new UnexpectedOutputError(`unexpected answer shape from ${what}`, { host, command: what, observed: issues.join('; ') });
}
