// The conformance vectors as OpenFeature clients ask them: which cases OpenFeature's form can
// carry, the context in that form, and how an OpenFeature answer is checked against a case.
//
// Vexil's answers in OpenFeature's terms: OFF and PREREQUISITE_FAILED are DISABLED,
// TARGET_MATCH and RULE_MATCH TARGETING_MATCH, FALLTHROUGH DEFAULT (SPLIT in an experiment);
// FLAG_NOT_FOUND is FLAG_NOT_FOUND, WRONG_TYPE the provider's own TYPE_MISMATCH (it compares
// the value's JavaScript type with the default's), INVALID_CONTEXT INVALID_CONTEXT or
// TARGETING_KEY_MISSING. Left out: contexts OpenFeature's form cannot carry (attributes that
// are not an object, two contexts of one kind, a context that is not an object); `json` cases
// whose value is not an object or a list (the providers want structures for objects); cases
// serving no value without an error; and flag keys that change in a URL (the Node provider's
// version puts the key in the path unencoded, so a trailing space is trimmed by the URL parser
// and another flag is asked for). The two files whose flags the server refuses to store
// cannot run against a server.

import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './vexil-server.js'

const VECTORS = join(ROOT, 'conformance', 'vectors')
const UNSTORABLE = new Set(['malformed.json', 'prerequisite_cycles.json'])
const REASONS: Record<string, string> = {
  OFF: 'DISABLED', PREREQUISITE_FAILED: 'DISABLED', TARGET_MATCH: 'TARGETING_MATCH', RULE_MATCH: 'TARGETING_MATCH',
}
const ERRORS: Record<string, string[]> = {
  FLAG_NOT_FOUND: ['FLAG_NOT_FOUND'], WRONG_TYPE: ['TYPE_MISMATCH'], INVALID_CONTEXT: ['INVALID_CONTEXT', 'TARGETING_KEY_MISSING'],
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type AskedType = 'bool' | 'string' | 'number' | 'json'

export interface Case {
  name: string
  flag: string
  context: Json
  default: Json
  type?: AskedType
  expect: { value: Json; variation: number | null; in_experiment: boolean; reason: { kind: string; error_kind?: string; rule_id?: string } }
}

export interface VectorFile {
  name: string
  flags: unknown[]
  segments: unknown[]
  cases: Case[]
}

/** What an OpenFeature client answered. */
export interface Answer {
  value: unknown
  reason?: string
  variant?: string
  errorCode?: string
  errorMessage?: string
  flagMetadata: Record<string, unknown>
}

/** Every vector file a server can store. */
export function vectorFiles(): VectorFile[] {
  return readdirSync(VECTORS).filter((name) => name.endsWith('.json') && !UNSTORABLE.has(name)).sort().map((name) => {
    const file = JSON.parse(readFileSync(join(VECTORS, name), 'utf8')) as Partial<VectorFile>
    return { name, flags: file.flags ?? [], segments: file.segments ?? [], cases: file.cases ?? [] }
  })
}

/** The context in OpenFeature's form, or undefined when that form cannot carry it. */
export function openFeatureContext(context: Json): Record<string, Json> | undefined {
  const fields = (single: { [key: string]: Json }): Record<string, Json> | undefined => {
    const attributes = single.attributes ?? {}
    if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes)) return undefined
    // OpenFeature's form has no private-attribute marks (they only concern events).
    if ('private_attributes' in single) return undefined
    // Vexil's references `key` and `kind` read the context's own: attributes of those names are unreachable.
    const out: Record<string, Json> = {}
    for (const [name, value] of Object.entries(attributes)) if (name !== 'key' && name !== 'kind') out[name] = value
    if ('key' in single) out.targetingKey = single.key
    return out
  }
  if (typeof context !== 'object' || context === null || Array.isArray(context)) return undefined
  if (context.kind === 'multi') {
    const out: Record<string, Json> = { kind: 'multi' }
    for (const single of Array.isArray(context.contexts) ? context.contexts : []) {
      if (typeof single !== 'object' || single === null || Array.isArray(single)) return undefined
      const kind = typeof single.kind === 'string' ? single.kind : 'user'
      const one = fields(single)
      if (one === undefined || kind in out) return undefined
      out[kind] = one
    }
    return out
  }
  const out = fields(context)
  if (out === undefined) return undefined
  if ('kind' in context) out.kind = context.kind
  return out
}

/** The type an OpenFeature client asks the case as, or undefined when it cannot ask it. */
export function askedType(c: Case): AskedType | undefined {
  if (openFeatureContext(c.context) === undefined) return undefined
  if (c.expect.variation === null && c.expect.reason.kind !== 'ERROR') return undefined
  if (encodeURIComponent(c.flag) !== c.flag) return undefined
  const type = c.type ?? ({ boolean: 'bool', string: 'string', number: 'number' } as Record<string, AskedType>)[typeof c.default] ?? 'json'
  if (type === 'json' && c.expect.reason.kind !== 'ERROR' && (typeof c.expect.value !== 'object' || c.expect.value === null)) return undefined
  return type
}

/** What is wrong with an OpenFeature answer to a case (nothing: an empty list). */
export function check(c: Case, answer: Answer): string[] {
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)
  const reason = c.expect.reason
  const failures: string[] = []
  if (reason.kind === 'ERROR') {
    if (!(ERRORS[reason.error_kind ?? ''] ?? []).includes(answer.errorCode ?? '')) {
      failures.push(`${c.name}: error ${answer.errorCode}, expected ${reason.error_kind}`)
    }
    if (!same(answer.value, c.default)) failures.push(`${c.name}: value ${JSON.stringify(answer.value)}, expected the default`)
    return failures
  }
  if (answer.errorCode !== undefined) return [`${c.name}: error ${answer.errorCode} ${answer.errorMessage}`]
  const wanted = REASONS[reason.kind] ?? (c.expect.in_experiment ? 'SPLIT' : 'DEFAULT')
  if (!same(answer.value, c.expect.value)) failures.push(`${c.name}: value ${JSON.stringify(answer.value)}, expected ${JSON.stringify(c.expect.value)}`)
  if (answer.reason !== wanted) failures.push(`${c.name}: reason ${answer.reason}, expected ${wanted}`)
  if (answer.variant !== String(c.expect.variation)) failures.push(`${c.name}: variant ${answer.variant}, expected ${c.expect.variation}`)
  if (answer.flagMetadata.vexilReason !== reason.kind || (reason.rule_id !== undefined && answer.flagMetadata.ruleId !== reason.rule_id)) {
    failures.push(`${c.name}: metadata ${JSON.stringify(answer.flagMetadata)}, expected ${JSON.stringify(reason)}`)
  }
  return failures
}
