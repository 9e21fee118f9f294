// `@vexil/web/openfeature`: Vexil as a provider of OpenFeature's web SDK
// (`@openfeature/web-sdk`, a peer dependency), over the browser client. Already on
// OpenFeature? One line changes:
//
//   await OpenFeature.setProviderAndWait(new VexilWebProvider('vxl-client-…', { endpoint }))
//
// The static context is OpenFeature's evaluation context in Vexil's form (see
// `toVexilContext`); a context change identifies the new context. Reasons are OpenFeature's
// (`TARGETING_MATCH`, `DEFAULT`, `SPLIT` in an experiment, `DISABLED`; `CACHED` and `STALE`
// for values not fresh from the server), with Vexil's own in the flag metadata. The
// client's status becomes the provider's events: READY, STALE, ERROR, and
// CONFIGURATION_CHANGED with the flags that changed.

import {
  ErrorCode,
  OpenFeatureEventEmitter,
  ProviderEvents,
  StandardResolutionReasons,
} from '@openfeature/web-sdk'
import type {
  EvaluationContext,
  FlagMetadata,
  JsonValue as OpenFeatureJson,
  Provider,
  ResolutionDetails,
  TrackingEventDetails,
} from '@openfeature/web-sdk'
import { VexilClient } from './client.js'
import type { ClientStatus, Context, EvaluationDetail, ErrorKind, JsonValue, SingleContextObject, ValueType } from './types.js'
import type { VexilOptions } from './options.js'

/**
 * Vexil's context for an OpenFeature evaluation context: `targetingKey` is the key (`key`
 * when there is no `targetingKey`), `kind` the kind (`user` when absent), every other field
 * an attribute. A multi-kind context is
 * `{ kind: 'multi', user: { targetingKey: 'u1', … }, org: { targetingKey: 'o1' } }`: each
 * other field an object, one kind, named by the field. The same convention as the server's
 * OFREP endpoint.
 */
export function toVexilContext(context: EvaluationContext): Context {
  const single = (fields: Record<string, unknown>, kind: unknown): SingleContextObject => {
    const keyField = 'targetingKey' in fields ? 'targetingKey' : 'key'
    const attributes: Record<string, JsonValue> = {}
    for (const [name, value] of Object.entries(fields)) {
      if (name !== keyField && name !== 'kind' && value !== undefined) attributes[name] = toJson(value)
    }
    const out: SingleContextObject = { key: fields[keyField] as string, attributes }
    if (kind !== undefined) out.kind = kind as string
    return out
  }
  if (context.kind === 'multi') {
    const contexts: SingleContextObject[] = []
    for (const [kind, fields] of Object.entries(context)) {
      if (kind === 'kind' || kind === 'targetingKey') continue
      contexts.push(single(typeof fields === 'object' && fields !== null && !Array.isArray(fields) ? fields as Record<string, unknown> : {}, kind))
    }
    return { kind: 'multi', contexts }
  }
  return single(context, context.kind)
}

/** Dates, which OpenFeature contexts may hold, as Vexil reads them: RFC 3339 strings. */
function toJson(value: unknown): JsonValue {
  if (value instanceof Date) return value.toISOString()
  if (Array.isArray(value)) return value.map(toJson)
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, toJson(item)]))
  }
  return value as JsonValue
}

const ERROR_CODES: Record<ErrorKind, ErrorCode> = {
  FLAG_NOT_FOUND: ErrorCode.FLAG_NOT_FOUND,
  WRONG_TYPE: ErrorCode.TYPE_MISMATCH,
  MALFORMED_FLAG: ErrorCode.PARSE_ERROR,
  INVALID_CONTEXT: ErrorCode.INVALID_CONTEXT,
  CLIENT_NOT_READY: ErrorCode.PROVIDER_NOT_READY,
}

/** OpenFeature's resolution of a Vexil detail. */
export function toResolution<T>(detail: EvaluationDetail<T>): ResolutionDetails<T> {
  const reason = detail.reason
  const flagMetadata: Record<string, string | number | boolean> = {
    vexilReason: reason.kind,
    inExperiment: detail.inExperiment,
    flagVersion: detail.flagVersion,
    source: detail.source,
  }
  if (reason.ruleIndex !== undefined) flagMetadata.ruleIndex = reason.ruleIndex
  if (reason.ruleId !== undefined) flagMetadata.ruleId = reason.ruleId
  if (reason.prerequisiteKey !== undefined) flagMetadata.prerequisiteKey = reason.prerequisiteKey
  if (detail.experimentKey !== null) flagMetadata.experimentKey = detail.experimentKey
  const metadata: FlagMetadata = flagMetadata
  if (reason.kind === 'ERROR') {
    const kind = reason.errorKind ?? 'CLIENT_NOT_READY'
    return {
      value: detail.value,
      reason: StandardResolutionReasons.ERROR,
      errorCode: ERROR_CODES[kind],
      errorMessage: kind,
      flagMetadata: metadata,
    }
  }
  let resolved: string
  if (detail.source === 'CACHE') resolved = StandardResolutionReasons.CACHED
  else if (detail.source === 'STALE') resolved = StandardResolutionReasons.STALE
  else if (reason.kind === 'TARGET_MATCH' || reason.kind === 'RULE_MATCH') resolved = StandardResolutionReasons.TARGETING_MATCH
  else if (reason.kind === 'FALLTHROUGH') resolved = detail.inExperiment ? StandardResolutionReasons.SPLIT : StandardResolutionReasons.DEFAULT
  else resolved = StandardResolutionReasons.DISABLED
  const out: ResolutionDetails<T> = { value: detail.value, reason: resolved, flagMetadata: metadata }
  if (detail.variation !== null) out.variant = String(detail.variation)
  return out
}

/** Vexil's browser client as an OpenFeature web provider. */
export class VexilWebProvider implements Provider {
  readonly metadata = { name: 'Vexil' } as const
  readonly runsOn = 'client'
  readonly events = new OpenFeatureEventEmitter()
  /** The client underneath, for what OpenFeature has no word for (`flush`, `allFlags`). */
  readonly client: VexilClient
  private readonly initTimeoutMs: number
  private readonly stopStatus: () => void

  /**
   * `options` are the client's (`endpoint`, `bootstrap`, `storage`, `events`…), less the
   * context, which is OpenFeature's; `initTimeoutMs` bounds `initialize` (default 5000).
   */
  constructor(sdkKey: string, options: Omit<VexilOptions, 'context'> & { initTimeoutMs?: number } = {}) {
    const { initTimeoutMs, ...clientOptions } = options
    this.initTimeoutMs = initTimeoutMs ?? 5000
    this.client = new VexilClient(sdkKey, clientOptions)
    this.client.on('change', (change) => {
      this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: change.flagKeys })
    })
    let previous: ClientStatus['status'] = 'INITIALIZING'
    this.stopStatus = this.client.onStatus((status) => {
      // READY after initialization is the SDK's to announce; afterwards it means "back".
      if (status.status === 'STALE') this.events.emit(ProviderEvents.Stale, { message: status.reason })
      else if (status.status === 'FAILED') this.events.emit(ProviderEvents.Error, { message: status.reason, errorCode: ErrorCode.GENERAL })
      else if (status.status === 'READY' && (previous === 'STALE' || previous === 'FAILED')) this.events.emit(ProviderEvents.Ready)
      previous = status.status
    })
  }

  /**
   * Identifies the static context and waits for its values (or the cache's, or bootstrap).
   * With no context yet, there is nothing to wait for: flags serve their defaults (or
   * bootstrap values) until `OpenFeature.setContext`.
   */
  async initialize(context?: EvaluationContext): Promise<void> {
    if (context === undefined || Object.keys(context).length === 0) return
    await this.identify(context)
    const status = await this.client.waitForInitialization(this.initTimeoutMs)
    if (status === 'FAILED') throw new Error(`vexil: ${this.client.status().reason ?? 'the SDK key was refused'}`)
    if (status === 'INITIALIZING' && this.client.status().source === 'DEFAULTS') {
      throw new Error(`vexil: no values within ${this.initTimeoutMs} ms`)
    }
  }

  async onContextChange(_old: EvaluationContext, context: EvaluationContext): Promise<void> {
    await this.identify(context)
  }

  private async identify(context: EvaluationContext): Promise<void> {
    // An invalid context rejects here, and OpenFeature reports it as an error.
    await this.client.identify(toVexilContext(context), this.initTimeoutMs)
  }

  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean): ResolutionDetails<boolean> {
    return this.resolve(flagKey, defaultValue, 'bool')
  }

  resolveStringEvaluation(flagKey: string, defaultValue: string): ResolutionDetails<string> {
    return this.resolve(flagKey, defaultValue, 'string')
  }

  resolveNumberEvaluation(flagKey: string, defaultValue: number): ResolutionDetails<number> {
    return this.resolve(flagKey, defaultValue, 'number')
  }

  resolveObjectEvaluation<T extends OpenFeatureJson>(flagKey: string, defaultValue: T): ResolutionDetails<T> {
    return this.resolve(flagKey, defaultValue, 'json')
  }

  private resolve<T>(flagKey: string, defaultValue: T, type: ValueType): ResolutionDetails<T> {
    return toResolution(this.client.variationDetail(flagKey, defaultValue, type)) as ResolutionDetails<T>
  }

  /** A `track` event for the identified context; `value` is the event's number. */
  track(eventName: string, _context: EvaluationContext, details?: TrackingEventDetails): void {
    const { value, ...data } = details ?? {}
    const extra = Object.keys(data).length > 0 ? (toJson(data) as Record<string, JsonValue>) : undefined
    this.client.track(eventName, value, extra)
  }

  async onClose(): Promise<void> {
    this.stopStatus()
    await this.client.close()
  }
}
