'use strict'
// `@vexil/node/openfeature`: Vexil as a provider of OpenFeature's server SDK
// (`@openfeature/server-sdk`, a peer dependency), over the native client. Already on
// OpenFeature? One line changes:
//
//   await OpenFeature.setProviderAndWait(new VexilProvider('vxl-server-…', { endpoint }))
//
// Each call's evaluation context becomes a Vexil context (see `toVexilContext`) and is
// evaluated in this process (server keys). Reasons are OpenFeature's, with Vexil's own in
// the flag metadata; the client's status and changes become the provider's events.

const { ErrorCode, OpenFeatureEventEmitter, ProviderEvents, StandardResolutionReasons } = require('@openfeature/server-sdk')
const { Client } = require('./index.js')

/** How often the provider looks at the client's status to announce STALE and READY. */
const STATUS_INTERVAL_MS = 250

const ERROR_CODES = {
  FLAG_NOT_FOUND: ErrorCode.FLAG_NOT_FOUND,
  WRONG_TYPE: ErrorCode.TYPE_MISMATCH,
  MALFORMED_FLAG: ErrorCode.PARSE_ERROR,
  INVALID_CONTEXT: ErrorCode.INVALID_CONTEXT,
  CLIENT_NOT_READY: ErrorCode.PROVIDER_NOT_READY,
}

/** Dates, which OpenFeature contexts may hold, as Vexil reads them: RFC 3339 strings. */
function toJson(value) {
  if (value instanceof Date) return value.toISOString()
  if (Array.isArray(value)) return value.map(toJson)
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, toJson(item)]))
  }
  return value
}

function single(fields, kind) {
  const keyField = 'targetingKey' in fields ? 'targetingKey' : 'key'
  const attributes = {}
  for (const [name, value] of Object.entries(fields)) {
    if (name !== keyField && name !== 'kind' && value !== undefined) attributes[name] = toJson(value)
  }
  const out = { key: fields[keyField], attributes }
  if (kind !== undefined) out.kind = kind
  return out
}

/**
 * Vexil's context for an OpenFeature evaluation context, or null when it has no key:
 * `targetingKey` is the key, `kind` the kind (`user` when absent), other fields attributes;
 * multi-kind is `{ kind: 'multi', user: { targetingKey: … }, org: { targetingKey: … } }`.
 */
function toVexilContext(context) {
  if (context === undefined || context === null) return null
  if (context.kind === 'multi') {
    const contexts = []
    for (const [kind, fields] of Object.entries(context)) {
      if (kind === 'kind' || kind === 'targetingKey') continue
      contexts.push(single(typeof fields === 'object' && fields !== null ? fields : {}, kind))
    }
    return contexts.length > 0 && contexts.every((c) => typeof c.key === 'string' && c.key !== '')
      ? { kind: 'multi', contexts }
      : null
  }
  const out = single(context, context.kind)
  return typeof out.key === 'string' && out.key !== '' ? out : null
}

/** OpenFeature's resolution of a Vexil detail. */
function toResolution(detail) {
  const reason = detail.reason
  const flagMetadata = {
    vexilReason: reason.kind,
    inExperiment: detail.inExperiment,
    flagVersion: detail.flagVersion,
    source: detail.source,
  }
  if (reason.ruleIndex !== undefined) flagMetadata.ruleIndex = reason.ruleIndex
  if (reason.ruleId !== undefined) flagMetadata.ruleId = reason.ruleId
  if (reason.prerequisiteKey !== undefined) flagMetadata.prerequisiteKey = reason.prerequisiteKey
  if (detail.experimentKey !== null) flagMetadata.experimentKey = detail.experimentKey
  if (reason.kind === 'ERROR') {
    const kind = reason.errorKind ?? 'CLIENT_NOT_READY'
    return {
      value: detail.value,
      reason: StandardResolutionReasons.ERROR,
      errorCode: ERROR_CODES[kind] ?? ErrorCode.GENERAL,
      errorMessage: kind,
      flagMetadata,
    }
  }
  let resolved
  if (detail.source === 'CACHE') resolved = StandardResolutionReasons.CACHED
  else if (detail.source === 'STALE') resolved = StandardResolutionReasons.STALE
  else if (reason.kind === 'TARGET_MATCH' || reason.kind === 'RULE_MATCH') resolved = StandardResolutionReasons.TARGETING_MATCH
  else if (reason.kind === 'FALLTHROUGH') resolved = detail.inExperiment ? StandardResolutionReasons.SPLIT : StandardResolutionReasons.DEFAULT
  else resolved = StandardResolutionReasons.DISABLED
  const out = { value: detail.value, reason: resolved, flagMetadata }
  if (detail.variation !== null) out.variant = String(detail.variation)
  return out
}

/** `@vexil/node`'s `Client` as an OpenFeature server provider; `options` are the client's. */
class VexilProvider {
  constructor(sdkKey, options = {}) {
    const { initTimeoutMs, ...clientOptions } = options
    this.metadata = { name: 'Vexil' }
    this.runsOn = 'server'
    this.hooks = []
    this.events = new OpenFeatureEventEmitter()
    this.initTimeoutMs = initTimeoutMs ?? 5000
    /** The client underneath, for what OpenFeature has no word for (`flush`, `allFlags`). */
    this.client = new Client(sdkKey, clientOptions)
    this.initialized = false
    this.timer = undefined
    this.changed = (change) => {
      // Changes before initialization ends are the first data, not changes to announce.
      if (this.initialized) this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: change.flagKeys })
    }
    this.client.on('change', this.changed)
  }

  async initialize() {
    const status = await this.client.waitForInitialization(this.initTimeoutMs)
    if (status === 'FAILED') throw new Error(`vexil: ${this.client.status().reason ?? 'the SDK key was refused'}`)
    if (status === 'INITIALIZING' && this.client.status().source === 'DEFAULTS') {
      throw new Error(`vexil: no flag data within ${this.initTimeoutMs} ms`)
    }
    this.initialized = true
    let previous = this.client.status().status
    this.timer = setInterval(() => {
      const now = this.client.status()
      if (now.status === previous) return
      if (now.status === 'STALE') this.events.emit(ProviderEvents.Stale, { message: now.reason })
      else if (now.status === 'FAILED') this.events.emit(ProviderEvents.Error, { message: now.reason, errorCode: ErrorCode.GENERAL })
      else if (now.status === 'READY') this.events.emit(ProviderEvents.Ready)
      previous = now.status
    }, STATUS_INTERVAL_MS)
    this.timer.unref()
  }

  resolve(flagKey, defaultValue, context, type) {
    const vexilContext = toVexilContext(context)
    if (vexilContext === null) {
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ErrorCode.TARGETING_KEY_MISSING,
        errorMessage: 'the evaluation context has no targeting key',
      }
    }
    return toResolution(this.client.variationDetail(flagKey, vexilContext, defaultValue, type))
  }

  async resolveBooleanEvaluation(flagKey, defaultValue, context) {
    return this.resolve(flagKey, defaultValue, context, 'bool')
  }

  async resolveStringEvaluation(flagKey, defaultValue, context) {
    return this.resolve(flagKey, defaultValue, context, 'string')
  }

  async resolveNumberEvaluation(flagKey, defaultValue, context) {
    return this.resolve(flagKey, defaultValue, context, 'number')
  }

  async resolveObjectEvaluation(flagKey, defaultValue, context) {
    return this.resolve(flagKey, defaultValue, context, 'json')
  }

  /** A Vexil track event for the context, with the details' `value`. */
  track(eventName, context, details) {
    const vexilContext = toVexilContext(context)
    if (vexilContext === null) return
    this.client.track(eventName, vexilContext, details?.value)
  }

  async onClose() {
    clearInterval(this.timer)
    this.client.off('change', this.changed)
    await this.client.close()
  }
}

module.exports = { VexilProvider, toVexilContext, toResolution }
