// Contexts: checked against the rules of the flag model (conformance/SCHEMA.md, "Context")
// before anything is sent, so that a bad context is the caller's error at once, not a stream
// the server refuses again and again.

import { describe, VexilError } from './errors.js'
import type { Context as WireContext } from './gen/vexil/v1/model.js'
import type { Context, JsonValue, SingleContextObject } from './types.js'

/** A context checked and put in one canonical form, with what the client derives from it. */
export interface CheckedContext {
  /** The canonical form: kinds filled in, attributes cleaned, multi parts in kind order. */
  readonly context: Context
  /** Canonical JSON text (object keys sorted): equal for equal contexts; the cache's key. */
  readonly key: string
  /** The kinds and keys only: what makes an exposure of "the same context". */
  readonly units: string
}

const KIND = /^[A-Za-z0-9._-]{1,64}$/
/** Deeper than this is taken for a cycle rather than data. */
const MAX_DEPTH = 64

class Problem {
  constructor(readonly message: string) {}
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A copy of `value` that is plain JSON, or a `Problem` naming the path at fault. */
function jsonCopy(value: unknown, path: string, depth: number): JsonValue {
  if (depth > MAX_DEPTH) throw new Problem(`${path}: nested more than ${MAX_DEPTH} levels (a cycle?)`)
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Problem(`${path}: expected a JSON value, got ${value}`)
    return value
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new Problem(`${path}: an invalid Date`)
    return value.toISOString()
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => {
      if (item === undefined) throw new Problem(`${path}[${i}]: expected a JSON value, got undefined`)
      return jsonCopy(item, `${path}[${i}]`, depth + 1)
    })
  }
  if (isPlainRecord(value)) {
    const out: Record<string, JsonValue> = {}
    for (const name of Object.keys(value)) {
      const field = value[name]
      if (field !== undefined) out[name] = jsonCopy(field, `${path}.${name}`, depth + 1)
    }
    return out
  }
  throw new Problem(`${path}: expected a JSON value, got ${describe(value)}`)
}

function single(input: unknown, path: string): SingleContextObject {
  if (!isPlainRecord(input)) throw new Problem(`${path}: expected an object, got ${describe(input)}`)
  const kind = input.kind === undefined ? 'user' : input.kind
  if (typeof kind !== 'string' || !KIND.test(kind) || kind === 'kind' || kind === 'multi') {
    throw new Problem(
      `${path}.kind: expected 1 to 64 of A-Z a-z 0-9 . _ - (not "kind" or "multi"), got ${describe(kind)}`,
    )
  }
  if (typeof input.key !== 'string' || input.key === '') {
    throw new Problem(`${path}.key: expected a non-empty string, got ${describe(input.key)}`)
  }
  const out: SingleContextObject = { kind, key: input.key }
  if (input.attributes !== undefined && input.attributes !== null) {
    if (!isPlainRecord(input.attributes)) {
      throw new Problem(`${path}.attributes: expected an object, got ${describe(input.attributes)}`)
    }
    const attributes = jsonCopy(input.attributes, `${path}.attributes`, 1) as Record<string, JsonValue>
    if (Object.keys(attributes).length > 0) out.attributes = attributes
  }
  const marked = input.private_attributes
  if (marked !== undefined && marked !== null) {
    if (!Array.isArray(marked)) {
      throw new Problem(`${path}.private_attributes: expected an array of attribute references, got ${describe(marked)}`)
    }
    const references: string[] = []
    marked.forEach((reference: unknown, i: number) => {
      if (typeof reference !== 'string' || parseReference(reference) === null) {
        throw new Problem(
          `${path}.private_attributes[${i}]: expected an attribute reference (a name, or a JSON Pointer such as "/address/street"), got ${describe(reference)}`,
        )
      }
      if (!references.includes(reference)) references.push(reference)
    })
    if (references.length > 0) out.private_attributes = references
  }
  return out
}

/** An attribute reference (conformance/SCHEMA.md, "Attribute references"), parsed. */
type Reference = { readonly key: true } | { readonly name: string } | { readonly pointer: readonly string[] }

/** `null` for text that is not an attribute reference (empty, or `~` not followed by 0 or 1). */
export function parseReference(reference: string): Reference | null {
  if (reference === '') return null
  if (!reference.startsWith('/')) {
    return reference === 'key' || reference === 'kind' ? { key: true } : { name: reference }
  }
  const tokens: string[] = []
  for (const raw of reference.slice(1).split('/')) {
    if (/~(?![01])/.test(raw)) return null
    tokens.push(raw.replace(/~1/g, '/').replace(/~0/g, '~'))
  }
  if (tokens.length === 1 && (tokens[0] === 'key' || tokens[0] === 'kind')) return { key: true }
  return { pointer: tokens }
}

/** Which attributes events leave out: every one, or those the references name. */
export interface Redaction {
  readonly all: boolean
  readonly references: readonly string[]
}

/**
 * Removes what `reference` names from `attributes` (a copy the caller owns); whether there
 * was something. A pointer walks objects only: an array element is never removed (that
 * would renumber the others), and `key` and `kind` never are.
 */
function removeReferenced(attributes: Record<string, JsonValue>, reference: string): boolean {
  const parsed = parseReference(reference)
  if (parsed === null || 'key' in parsed) return false
  const path = 'name' in parsed ? [parsed.name] : parsed.pointer
  let object: Record<string, JsonValue> = attributes
  for (const token of path.slice(0, -1)) {
    const inner = Object.prototype.hasOwnProperty.call(object, token) ? object[token] : undefined
    if (typeof inner !== 'object' || inner === null || Array.isArray(inner)) return false
    // Copied on the way down: the caller's context is frozen and shared.
    object = object[token] = { ...inner }
  }
  const last = path[path.length - 1]
  if (!Object.prototype.hasOwnProperty.call(object, last)) return false
  delete object[last]
  return true
}

function singleForEvents(context: SingleContextObject, redaction: Redaction): WireContext {
  let attributes: Record<string, JsonValue> = { ...(context.attributes as Record<string, JsonValue> | undefined) }
  const redacted: string[] = []
  const note = (reference: string): void => {
    if (!redacted.includes(reference)) redacted.push(reference)
  }
  if (redaction.all) {
    Object.keys(attributes).forEach(note)
    attributes = {}
  }
  for (const reference of [...redaction.references, ...(context.private_attributes ?? [])]) {
    if (removeReferenced(attributes, reference)) note(reference)
  }
  return {
    kind: context.kind ?? 'user',
    key: context.key,
    attributes: Object.keys(attributes).length > 0 ? attributes : undefined,
    contexts: [],
    redactedAttributes: redacted,
  }
}

/**
 * A checked context as events carry it: the attributes `redaction` and the context's own
 * `private_attributes` name are removed, and each kind lists the references it lost in
 * `redactedAttributes` (names, never values).
 */
export function contextForEvents(context: Context, redaction: Redaction): WireContext {
  if (context.kind === 'multi') {
    const parts = (context as { contexts: SingleContextObject[] }).contexts
    return { kind: 'multi', key: '', attributes: undefined, contexts: parts.map((p) => singleForEvents(p, redaction)), redactedAttributes: [] }
  }
  return singleForEvents(context as SingleContextObject, redaction)
}

function canonical(input: unknown, path: string): Context {
  if (!isPlainRecord(input)) throw new Problem(`${path}: expected an object, got ${describe(input)}`)
  if (input.kind !== 'multi') return single(input, path)
  const parts = input.contexts
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new Problem(`${path}.contexts: a multi-kind context needs a non-empty array`)
  }
  const singles = parts.map((part, i) => {
    if (isPlainRecord(part) && part.kind === 'multi') {
      throw new Problem(`${path}.contexts[${i}]: a multi-kind context cannot nest another`)
    }
    return single(part, `${path}.contexts[${i}]`)
  })
  singles.sort((a, b) => ((a.kind as string) < (b.kind as string) ? -1 : a.kind === b.kind ? 0 : 1))
  for (let i = 1; i < singles.length; i++) {
    if (singles[i].kind === singles[i - 1].kind) {
      throw new Problem(`${path}.contexts: kind ${JSON.stringify(singles[i].kind)} appears more than once`)
    }
  }
  // One part is the same context as that part alone (as the engine reads it).
  return singles.length === 1 ? singles[0] : { kind: 'multi', contexts: singles }
}

/**
 * A plain-JSON copy of `value` (a `Date` becomes its ISO string, `undefined` fields are
 * left out); throws a `VexilError` (`VEXIL_INVALID_ARGUMENT`) naming `path` when it is not JSON.
 */
export function jsonValue(value: unknown, path: string): JsonValue {
  try {
    return jsonCopy(value, path, 0)
  } catch (err) {
    if (err instanceof Problem) throw new VexilError('VEXIL_INVALID_ARGUMENT', err.message)
    throw new VexilError('VEXIL_INVALID_ARGUMENT', `${path}: cannot be read (${String(err)})`)
  }
}

/** JSON text with object keys sorted, so that equal values give equal text. */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const names = Object.keys(value).sort()
  return `{${names.map((name) => `${JSON.stringify(name)}:${canonicalJson(value[name])}`).join(',')}}`
}

/** Checks `input`; throws a `VexilError` (`VEXIL_INVALID_CONTEXT`) naming `path` and the problem. */
export function checkContext(input: unknown, path = 'context'): CheckedContext {
  let context: Context
  try {
    context = canonical(input, path)
  } catch (err) {
    if (err instanceof Problem) throw new VexilError('VEXIL_INVALID_CONTEXT', err.message)
    // A getter that throws, or an exotic object: still the caller's context at fault.
    throw new VexilError('VEXIL_INVALID_CONTEXT', `${path}: cannot be read (${String(err)})`)
  }
  const parts = context.kind === 'multi' ? (context as { contexts: SingleContextObject[] }).contexts : [context as SingleContextObject]
  return {
    context,
    key: canonicalJson(context as unknown as JsonValue),
    units: parts.map((p) => `${p.kind}\u0000${p.key}`).join('\u0001'),
  }
}

/**
 * Throws a `VexilError` with code `VEXIL_INVALID_CONTEXT` and a message naming the problem
 * when `context` breaks the rules of the flag model; returns nothing otherwise.
 */
export function validateContext(context: unknown): asserts context is Context {
  checkContext(context)
}
