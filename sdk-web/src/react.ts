// @vexil/web/react: a provider and hooks over one VexilClient. A component re-renders when a
// flag it reads changes; nothing else about the client is React's business.

import { createContext, createElement, useContext, useMemo, useRef, useSyncExternalStore } from 'react'
import type { ReactElement, ReactNode } from 'react'
import type { VexilClient } from './client.js'
import { VexilError } from './errors.js'
import type { EvaluationDetail, JsonValue, ValueType } from './types.js'

const ClientContext = createContext<VexilClient | null>(null)

export interface VexilProviderProps {
  /** The client the hooks below read from; created (and closed) by the application. */
  client: VexilClient
  children?: ReactNode
}

/** Makes `client` available to the hooks of every component below. */
export function VexilProvider({ client, children }: VexilProviderProps): ReactElement {
  return createElement(ClientContext.Provider, { value: client }, children)
}

/** The client of the nearest `VexilProvider`; throws `VEXIL_INVALID_ARGUMENT` without one. */
export function useVexilClient(): VexilClient {
  const client = useContext(ClientContext)
  if (client === null) {
    throw new VexilError('VEXIL_INVALID_ARGUMENT', 'useVexilClient: no <VexilProvider client={…}> above this component')
  }
  return client
}

/** The type a hook returns for a default of type `T`. */
export type FlagValue<T> = T extends boolean ? boolean : T extends string ? string : T extends number ? number : JsonValue | T

function sameDetail<T>(a: EvaluationDetail<T>, b: EvaluationDetail<T>): boolean {
  // Held values and reasons are shared, frozen objects: the same answer is the same reference.
  return (
    a.value === b.value &&
    a.variation === b.variation &&
    a.reason === b.reason &&
    a.source === b.source &&
    a.version === b.version &&
    a.flagVersion === b.flagVersion
  )
}

/**
 * The flag's detail (see `VexilClient.variationDetail`), re-rendering the component when
 * the flag changes. The type asked for is `type`, or that of `defaultValue`.
 */
export function useVariationDetail<T>(flagKey: string, defaultValue: T, type?: ValueType): EvaluationDetail<FlagValue<T>> {
  const client = useVexilClient()
  // An object default made anew on each render must not start a new subscription each time.
  const fallback = useRef(defaultValue)
  fallback.current = defaultValue
  const defaultKey = typeof defaultValue === 'object' && defaultValue !== null ? '(object)' : defaultValue
  const store = useMemo(() => {
    let last: EvaluationDetail<JsonValue | T> | undefined
    return {
      subscribe(onChange: () => void): () => void {
        const event = `change:${flagKey}` as const
        client.on(event, onChange)
        return () => client.off(event, onChange)
      },
      snapshot(): EvaluationDetail<JsonValue | T> {
        const detail = client.variationDetail(flagKey, fallback.current, type)
        if (last === undefined || !sameDetail(last, detail)) last = detail
        return last
      },
    }
    // The default is read through the ref; only a primitive default changes the answer.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, flagKey, type, defaultKey])
  return useSyncExternalStore(store.subscribe, store.snapshot, store.snapshot) as EvaluationDetail<FlagValue<T>>
}

/** The flag's value, typed like `defaultValue`, re-rendering the component when it changes. */
export function useFlag<T>(flagKey: string, defaultValue: T): FlagValue<T> {
  return useVariationDetail(flagKey, defaultValue).value
}
