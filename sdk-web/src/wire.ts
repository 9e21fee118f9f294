// Conversions between the generated protobuf messages and the SDK's plain objects.
// google.protobuf.Value fields arrive from the generated decoders as plain JSON values.

import { ErrorKind as WireErrorKind, ReasonKind as WireReasonKind } from './gen/vexil/v1/model.js'
import type { Context as WireContext, EvaluationResult, Reason as WireReason } from './gen/vexil/v1/model.js'
import type { Timestamp } from './gen/google/protobuf/timestamp.js'
import type { Context, ErrorKind, JsonValue, Reason, SingleContextObject } from './types.js'

/** A flag's value for the identified context, as the client holds it. */
export interface Held {
  readonly flagKey: string
  /** `undefined`: the server could not serve the flag (`reason` says why). */
  readonly value: JsonValue | undefined
  readonly variation: number | null
  readonly reason: Reason
  readonly inExperiment: boolean
  readonly experimentKey: string | null
  readonly flagVersion: number
  /** Evaluations served from this value since the event pipeline last read it. */
  count: number
  /**
   * The context (its kinds and keys) this value was last exposed to, and when: lets a
   * repeated evaluation skip the deduplication memory's lookup (see `EventPipeline.expose`).
   */
  exposedTo: string | null
  exposedAt: number
}

const REASON_KINDS: Record<number, Reason['kind'] | undefined> = {
  [WireReasonKind.OFF]: 'OFF',
  [WireReasonKind.TARGET_MATCH]: 'TARGET_MATCH',
  [WireReasonKind.RULE_MATCH]: 'RULE_MATCH',
  [WireReasonKind.FALLTHROUGH]: 'FALLTHROUGH',
  [WireReasonKind.PREREQUISITE_FAILED]: 'PREREQUISITE_FAILED',
  [WireReasonKind.ERROR]: 'ERROR',
}

const ERROR_KINDS: Record<number, ErrorKind | undefined> = {
  [WireErrorKind.FLAG_NOT_FOUND]: 'FLAG_NOT_FOUND',
  [WireErrorKind.WRONG_TYPE]: 'WRONG_TYPE',
  [WireErrorKind.MALFORMED_FLAG]: 'MALFORMED_FLAG',
  [WireErrorKind.INVALID_CONTEXT]: 'INVALID_CONTEXT',
  [WireErrorKind.CLIENT_NOT_READY]: 'CLIENT_NOT_READY',
}

/** The wire number of an error kind (for evaluation summaries). */
export const ERROR_KIND_NUMBERS: Record<ErrorKind, number> = {
  FLAG_NOT_FOUND: WireErrorKind.FLAG_NOT_FOUND,
  WRONG_TYPE: WireErrorKind.WRONG_TYPE,
  MALFORMED_FLAG: WireErrorKind.MALFORMED_FLAG,
  INVALID_CONTEXT: WireErrorKind.INVALID_CONTEXT,
  CLIENT_NOT_READY: WireErrorKind.CLIENT_NOT_READY,
}

/** One frozen reason object per error kind, shared by every call that returns it. */
export const ERROR_REASONS: Record<ErrorKind, Reason> = {
  FLAG_NOT_FOUND: Object.freeze({ kind: 'ERROR', errorKind: 'FLAG_NOT_FOUND' }),
  WRONG_TYPE: Object.freeze({ kind: 'ERROR', errorKind: 'WRONG_TYPE' }),
  MALFORMED_FLAG: Object.freeze({ kind: 'ERROR', errorKind: 'MALFORMED_FLAG' }),
  INVALID_CONTEXT: Object.freeze({ kind: 'ERROR', errorKind: 'INVALID_CONTEXT' }),
  CLIENT_NOT_READY: Object.freeze({ kind: 'ERROR', errorKind: 'CLIENT_NOT_READY' }),
}

/** A reason from the wire; one the SDK cannot read is a malformed flag, as in the Rust client. */
export function reasonFromWire(reason: WireReason | undefined): Reason {
  const kind = reason === undefined ? undefined : REASON_KINDS[reason.kind]
  if (reason === undefined || kind === undefined) return ERROR_REASONS.MALFORMED_FLAG
  switch (kind) {
    case 'RULE_MATCH':
      return Object.freeze({ kind, ruleIndex: reason.ruleIndex ?? 0, ruleId: reason.ruleId })
    case 'PREREQUISITE_FAILED':
      return Object.freeze({ kind, prerequisiteKey: reason.prerequisiteKey })
    case 'ERROR':
      return ERROR_REASONS[ERROR_KINDS[reason.errorKind] ?? 'MALFORMED_FLAG']
    default:
      return Object.freeze({ kind })
  }
}

/** Makes a value immutable, so that a caller changing what a variation returned cannot change the flag. */
export function deepFreeze<T extends JsonValue | undefined>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const item of Object.values(value)) deepFreeze(item)
    Object.freeze(value)
  }
  return value
}

export function heldFromResult(result: EvaluationResult): Held {
  return {
    flagKey: result.flagKey,
    value: result.value === undefined ? undefined : deepFreeze(result.value as JsonValue),
    variation: result.variation ?? null,
    reason: reasonFromWire(result.reason),
    inExperiment: result.inExperiment,
    experimentKey: result.experimentKey === '' ? null : result.experimentKey,
    flagVersion: result.flagVersion,
    count: 0,
    exposedTo: null,
    exposedAt: 0,
  }
}

export function jsonEqual(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return true
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) {
    const list = b as JsonValue[]
    return a.length === list.length && a.every((item, i) => jsonEqual(item, list[i]))
  }
  const record = b as Record<string, JsonValue>
  const names = Object.keys(a)
  return (
    names.length === Object.keys(record).length &&
    names.every((name) => Object.prototype.hasOwnProperty.call(record, name) && jsonEqual(a[name], record[name]))
  )
}

function sameReason(a: Reason, b: Reason): boolean {
  return (
    a.kind === b.kind &&
    a.ruleIndex === b.ruleIndex &&
    a.ruleId === b.ruleId &&
    a.prerequisiteKey === b.prerequisiteKey &&
    a.errorKind === b.errorKind
  )
}

/** Whether two held values would answer every call the same way. */
export function sameHeld(a: Held | undefined, b: Held | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return (
    a.variation === b.variation &&
    a.inExperiment === b.inExperiment &&
    a.experimentKey === b.experimentKey &&
    a.flagVersion === b.flagVersion &&
    sameReason(a.reason, b.reason) &&
    jsonEqual(a.value, b.value)
  )
}

function singleToWire(context: SingleContextObject): WireContext {
  return {
    kind: context.kind ?? 'user',
    key: context.key,
    attributes: context.attributes as Record<string, JsonValue> | undefined,
    contexts: [],
    redactedAttributes: [],
  }
}

/** A checked context as a `vexil.v1.Context` message. */
export function contextToWire(context: Context): WireContext {
  if (context.kind === 'multi') {
    const parts = (context as { contexts: SingleContextObject[] }).contexts
    return { kind: 'multi', key: '', attributes: undefined, contexts: parts.map(singleToWire), redactedAttributes: [] }
  }
  return singleToWire(context as SingleContextObject)
}

/** A time in milliseconds since the epoch as a `google.protobuf.Timestamp`. */
export function timestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000)
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) }
}
