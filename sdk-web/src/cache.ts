// The last values received for a context, kept in localStorage so that a reload starts with
// them (source CACHE) before the stream answers.
//
// Layout, per SDK key (`<k>`: a hash of the key, so the storage never holds the key itself):
//   vexil:<k>:contexts    JSON array of the cached contexts' hashes, most recent first
//   vexil:<k>:<c>         one context's values: {"format": 1, "savedAt": ms, "version": n,
//                         "context": {...}, "values": {flag key: {value, variation, reason,
//                         inExperiment, experimentKey, flagVersion}}}
// At most `MAX_CONTEXTS` contexts are kept per key (a shared computer's users, a login after
// an anonymous visit); older ones are removed. The entry holds its full context and is used
// only when it equals the one asked for, so a hash collision costs a cache miss, never another
// user's values.

import { canonicalJson } from './context.js'
import type { Held } from './wire.js'
import { deepFreeze } from './wire.js'
import type { Context, JsonValue, Logger, Reason, StorageLike } from './types.js'

const FORMAT = 1
export const MAX_CONTEXTS = 5

/** Values of one context as read from the cache. */
export interface CachedValues {
  values: Map<string, Held>
  version: number
  savedAt: number
}

/** A 64-bit hash of a string as 16 hex digits (two 32-bit multiplicative lanes); not for secrets. */
export function hash64(text: string): string {
  let a = 0x811c9dc5
  let b = 0x01000193 ^ text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
    b ^= b >>> 15
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b)
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35)
  return (a >>> 0).toString(16).padStart(8, '0') + ((b ^ (b >>> 16)) >>> 0).toString(16).padStart(8, '0')
}

const REASON_KINDS = new Set(['OFF', 'TARGET_MATCH', 'RULE_MATCH', 'FALLTHROUGH', 'PREREQUISITE_FAILED', 'ERROR'])

function readHeld(flagKey: string, entry: unknown): Held | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined
  const e = entry as Record<string, unknown>
  const reason = e.reason as Reason | undefined
  if (typeof reason !== 'object' || reason === null || !REASON_KINDS.has(reason.kind)) return undefined
  if (e.variation !== null && typeof e.variation !== 'number') return undefined
  return {
    flagKey,
    value: 'value' in e ? deepFreeze(e.value as JsonValue) : undefined,
    variation: e.variation as number | null,
    reason: Object.freeze({ ...reason }),
    inExperiment: e.inExperiment === true,
    experimentKey: typeof e.experimentKey === 'string' ? e.experimentKey : null,
    flagVersion: typeof e.flagVersion === 'number' ? e.flagVersion : 0,
    count: 0,
    exposedTo: null,
    exposedAt: 0,
  }
}

export class ValueCache {
  private readonly prefix: string
  private warned = false

  constructor(
    private readonly storage: StorageLike,
    sdkKey: string,
    private readonly logger: Logger | null,
  ) {
    this.prefix = `vexil:${hash64(sdkKey)}:`
  }

  private warn(message: string): void {
    // Once: a full or refused storage would otherwise warn on every change.
    if (this.warned) return
    this.warned = true
    this.logger?.warn(`vexil: ${message}`)
  }

  private index(): string[] {
    const text = this.storage.getItem(`${this.prefix}contexts`)
    if (text === null) return []
    const list: unknown = JSON.parse(text)
    return Array.isArray(list) ? list.filter((item): item is string => typeof item === 'string') : []
  }

  /** The cached values of the context whose canonical JSON is `contextKey`, if any. */
  load(contextKey: string): CachedValues | undefined {
    const name = `${this.prefix}${hash64(contextKey)}`
    let text: string | null
    try {
      text = this.storage.getItem(name)
    } catch (err) {
      this.warn(`cannot read the flag cache (${String(err)})`)
      return undefined
    }
    if (text === null) return undefined
    try {
      const entry = JSON.parse(text) as Record<string, unknown>
      if (entry.format !== FORMAT) throw new Error(`format ${String(entry.format)}, expected ${FORMAT}`)
      if (canonicalJson(entry.context as JsonValue) !== contextKey) return undefined
      if (typeof entry.values !== 'object' || entry.values === null) throw new Error('no values')
      const values = new Map<string, Held>()
      for (const [key, stored] of Object.entries(entry.values as Record<string, unknown>)) {
        const held = readHeld(key, stored)
        if (held === undefined) throw new Error(`unreadable value of ${JSON.stringify(key)}`)
        values.set(key, held)
      }
      return {
        values,
        version: typeof entry.version === 'number' ? entry.version : 0,
        savedAt: typeof entry.savedAt === 'number' ? entry.savedAt : 0,
      }
    } catch (err) {
      this.logger?.warn(`vexil: ignoring an unreadable flag cache entry (${String(err)})`)
      try {
        this.storage.removeItem(name)
      } catch {
        // Nothing more to do: the entry is ignored either way.
      }
      return undefined
    }
  }

  /** Writes one context's values and makes it the most recent; keeps at most `MAX_CONTEXTS`. */
  save(context: Context, contextKey: string, values: Map<string, Held>, version: number, now: number): void {
    const hash = hash64(contextKey)
    const stored: Record<string, unknown> = {}
    for (const [key, held] of values) {
      const entry: Record<string, unknown> = {
        variation: held.variation,
        reason: held.reason,
        inExperiment: held.inExperiment,
        experimentKey: held.experimentKey,
        flagVersion: held.flagVersion,
      }
      if (held.value !== undefined) entry.value = held.value
      stored[key] = entry
    }
    const text = JSON.stringify({ format: FORMAT, savedAt: now, version, context, values: stored })
    try {
      let index: string[]
      try {
        index = this.index()
      } catch {
        index = []
      }
      index = [hash, ...index.filter((item) => item !== hash)]
      for (const evicted of index.splice(MAX_CONTEXTS)) this.storage.removeItem(`${this.prefix}${evicted}`)
      try {
        this.storage.setItem(`${this.prefix}${hash}`, text)
      } catch {
        // Most likely the quota: make room by forgetting the other contexts, then try once more.
        for (const other of index.splice(1)) this.storage.removeItem(`${this.prefix}${other}`)
        this.storage.setItem(`${this.prefix}${hash}`, text)
      }
      this.storage.setItem(`${this.prefix}contexts`, JSON.stringify(index))
    } catch (err) {
      this.warn(`cannot write the flag cache (${String(err)}); values will not survive a reload`)
    }
  }
}
