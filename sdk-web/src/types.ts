/** Any value JSON can hold: what flags serve and what context attributes are. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** One kind of a context as a plain object (the canonical JSON of the flag model). */
export interface SingleContextObject {
  /** `user` when absent; 1 to 64 of `A-Z a-z 0-9 . _ -`, never `kind` or `multi`. */
  kind?: string
  /** A non-empty string. */
  key: string
  /**
   * JSON values, read by the server's clauses and rollouts. An attribute whose value is
   * `undefined` is left out, as `JSON.stringify` would.
   */
  attributes?: Record<string, JsonValue | undefined>
  /**
   * Attributes of this context that events never carry (private attributes): names, or JSON
   * Pointers into the attributes (`/address/street`). Flags are still evaluated with them;
   * events list their names in `redacted_attributes`, never their values.
   */
  private_attributes?: string[]
}

/** Several kinds at once, each of a different kind. */
export interface MultiContextObject {
  kind: 'multi'
  contexts: SingleContextObject[]
}

/** What flags are evaluated for: the user of the page, their organization, their device… */
export type Context = SingleContextObject | MultiContextObject

/** The type a variation is asked for. */
export type ValueType = 'bool' | 'string' | 'number' | 'json'

/** Where a client stands. */
export type Status = 'INITIALIZING' | 'READY' | 'STALE' | 'OFFLINE' | 'FAILED' | 'CLOSED'

/** Where the data behind a value came from. */
export type Source = 'NETWORK' | 'STALE' | 'CACHE' | 'BOOTSTRAP' | 'DEFAULTS'

/** What went wrong when a variation returned its default because of an error. */
export type ErrorKind =
  | 'FLAG_NOT_FOUND'
  | 'WRONG_TYPE'
  | 'MALFORMED_FLAG'
  | 'INVALID_CONTEXT'
  | 'CLIENT_NOT_READY'

/** Why a value was served (the `reason` of the conformance vectors, in camelCase). */
export interface Reason {
  kind: 'OFF' | 'TARGET_MATCH' | 'RULE_MATCH' | 'FALLTHROUGH' | 'PREREQUISITE_FAILED' | 'ERROR'
  /** `RULE_MATCH`: the index of the rule that matched. */
  ruleIndex?: number
  /** `RULE_MATCH`: the id of the rule that matched. */
  ruleId?: string
  /** `PREREQUISITE_FAILED`: the prerequisite that was not met. */
  prerequisiteKey?: string
  /** `ERROR`: what went wrong. */
  errorKind?: ErrorKind
}

/** A variation with everything known about it. */
export interface EvaluationDetail<T = JsonValue> {
  /** The value served, or the default. */
  value: T
  /** The index of the variation served; `null` when the default was returned. */
  variation: number | null
  reason: Reason
  /** Whether the context is counted in an experiment. */
  inExperiment: boolean
  /** The experiment the context is counted in. */
  experimentKey: string | null
  /** The flag's version (0 when unknown). */
  flagVersion: number
  /** Where the data came from. */
  source: Source
  /** The environment version of the data (0 when none). */
  version: number
}

/** Flags whose values changed, passed to `'change'` and `'change:<flag key>'` listeners. */
export interface FlagChange {
  /** The flags whose value, variation or reason may have changed, in key order. */
  flagKeys: string[]
  /** The environment version after the change. */
  version: number
}

/** Counters of the event pipeline. */
export interface EventStats {
  /** Events dropped: the queue was full, the server refused their batch, or they were unusable. */
  dropped: number
  /** Events the server accepted. */
  sent: number
  /** Batches that failed every attempt (kept, with their id, for the next flush). */
  failedBatches: number
  /** Events waiting to be sent. */
  queued: number
}

/** Where a client stands. */
export interface ClientStatus {
  status: Status
  /** Why the client is `STALE` or `FAILED`. */
  reason?: string
  /** Where the data served now comes from. */
  source: Source
  /** The environment version of the data held (0 when none). */
  version: number
  events: EventStats
}

/**
 * Values to start with, by flag key, for instance written into the page by server-side
 * rendering: each a plain value, or an `EvaluationDetail`-like object (`value` with a
 * `reason`; `variation`, `inExperiment`, `experimentKey`, `flagVersion` when known), which is
 * what `allFlags()` of the Node SDK returns.
 */
export type Bootstrap = Record<string, JsonValue | BootstrapDetail>

/** A bootstrap entry with its detail (see `Bootstrap`). */
export interface BootstrapDetail {
  value: JsonValue
  reason: Reason
  variation?: number | null
  inExperiment?: boolean
  experimentKey?: string | null
  flagVersion?: number
}

/** What the cache needs of `window.localStorage`. */
export interface StorageLike {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

/** Where the client reports what it cannot tell its caller (refused key, unusable cache). */
export interface Logger {
  warn(message: string): void
  error(message: string): void
}

/** Settings of the event pipeline (exposures, track events, evaluation summaries). */
export interface EventOptions {
  /** Send events at all (default true). */
  enabled?: boolean
  /** Events held at most while waiting to be sent (default 10000); beyond, dropped and counted. */
  capacity?: number
  /** Events per batch at most (default 500). */
  batchSize?: number
  /** How often pending events are sent, in milliseconds (default 5000). */
  flushIntervalMs?: number
  /** An exposure of the same context, flag and variation within this window is sent once (default 1 h). */
  exposureWindowMs?: number
  /** Recent exposures remembered for deduplication (default 10000). */
  exposureMemory?: number
  /** Count evaluations per flag and variation and send the counts (default true). */
  summaries?: boolean
  /** Attempts to send a batch before keeping it for the next flush (default 3). */
  attempts?: number
  /** Send what is pending when the page is hidden or left (default true). */
  flushOnPageHide?: boolean
  /**
   * Attributes that events never carry, on every context (private attributes): names, or
   * JSON Pointers into the attributes (`/address/street`). Their values are removed before
   * an event is queued and their names listed in the context's `redacted_attributes`; the
   * server still evaluates flags with them. A context's own `private_attributes` are removed
   * as well.
   */
  privateAttributes?: string[]
  /** Every attribute private: events carry kinds and keys only (default false). */
  allAttributesPrivate?: boolean
}
