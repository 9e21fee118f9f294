// Types of @vexil/node/openfeature: Vexil as a provider of @openfeature/server-sdk.
import type {
  EvaluationContext,
  JsonValue,
  OpenFeatureEventEmitter,
  Provider,
  ResolutionDetails,
  TrackingEventDetails,
} from '@openfeature/server-sdk'
import type { Client, ClientOptions, ContextObject, EvaluationDetail } from './index'

/**
 * Vexil's context for an OpenFeature evaluation context, or null when it has no key:
 * `targetingKey` is the key, `kind` the kind (`user` when absent), other fields attributes
 * (dates as RFC 3339); multi-kind is `{ kind: 'multi', user: { targetingKey }, org: { … } }`.
 */
export declare function toVexilContext(context: EvaluationContext | undefined | null): ContextObject | null

/** OpenFeature's resolution of a Vexil detail. */
export declare function toResolution<T>(detail: EvaluationDetail): ResolutionDetails<T>

/** `@vexil/node`'s `Client` as an OpenFeature server provider. */
export declare class VexilProvider implements Provider {
  readonly metadata: { readonly name: 'Vexil' }
  readonly runsOn: 'server'
  readonly hooks: []
  readonly events: OpenFeatureEventEmitter
  /** The client underneath, for what OpenFeature has no word for (`flush`, `allFlags`). */
  readonly client: Client
  /** `options` are the client's; `initTimeoutMs` bounds `initialize` (default 5000). */
  constructor(sdkKey: string, options?: ClientOptions & { initTimeoutMs?: number })
  initialize(context?: EvaluationContext): Promise<void>
  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): Promise<ResolutionDetails<boolean>>
  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext): Promise<ResolutionDetails<string>>
  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): Promise<ResolutionDetails<number>>
  resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext): Promise<ResolutionDetails<T>>
  track(trackingEventName: string, context: EvaluationContext, trackingEventDetails?: TrackingEventDetails): void
  onClose(): Promise<void>
}
