// Times the variation calls: a client holding bootstrap values (its stream never answers),
// each call repeated in batches; prints the median nanoseconds per call of 7 batches.
//
//   npm run bench                      (Node; the same code a browser runs, not minified)
//
// The figures depend on the engine: the browser figure is measured in Chromium by the
// real-browser harness. Compare calls as ratios within one run, not across machines.

import { VexilClient } from '../src/index.js'
import type { EventOptions } from '../src/index.js'

const CALLS = 1_000_000
const BATCHES = 7

/** A `fetch` whose calls never answer: the client serves its bootstrap values. */
function silent(_url: string, init: RequestInit): Promise<Response> {
  return new Promise((_resolve, reject) => init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))))
}

function client(events: EventOptions): VexilClient {
  return new VexilClient('vxl-client-bench', {
    fetch: silent,
    context: { kind: 'user', key: 'alice' },
    storage: null,
    logger: null,
    events: { flushIntervalMs: 3_600_000, ...events },
    bootstrap: {
      checkout: { value: true, variation: 1, reason: { kind: 'FALLTHROUGH' }, flagVersion: 3 },
      banner: { value: 'blue', variation: 0, reason: { kind: 'RULE_MATCH', ruleIndex: 0, ruleId: 'r' } },
      experiment: { value: 'b', variation: 1, reason: { kind: 'FALLTHROUGH' }, inExperiment: true, experimentKey: 'x' },
    },
  })
}

function time(name: string, call: () => unknown): number {
  let sink: unknown
  for (let i = 0; i < CALLS; i++) sink = call() // warm-up: let the engine optimise the call
  const perCall: number[] = []
  for (let b = 0; b < BATCHES; b++) {
    const start = performance.now()
    for (let i = 0; i < CALLS; i++) sink = call()
    perCall.push(((performance.now() - start) * 1e6) / CALLS)
  }
  if (sink === Symbol.for('never')) console.log(sink)
  perCall.sort((a, b) => a - b)
  const median = perCall[BATCHES >> 1]
  console.log(`  ${name.padEnd(58)} ${median.toFixed(1).padStart(7)} ns  (${perCall[0].toFixed(1)}-${perCall[BATCHES - 1].toFixed(1)})`)
  return median
}

const counting = client({})
const quiet = client({ enabled: false })
console.log(`variation calls, median of ${BATCHES} batches of ${CALLS} calls (Node ${process.version})`)
const bool = time('boolVariation (summaries counted)', () => counting.boolVariation('checkout', false))
time('boolVariation (events off)', () => quiet.boolVariation('checkout', false))
time('stringVariation', () => counting.stringVariation('banner', 'red'))
time('stringVariation of a flag in an experiment (exposure deduplicated)', () => counting.stringVariation('experiment', 'a'))
time('boolVariation of an unknown flag (error counted)', () => counting.boolVariation('missing', false))
time('variationDetail', () => counting.variationDetail('checkout', false))
console.log(`target: a variation call <= 1000 ns: ${bool <= 1000 ? 'met' : 'NOT met'} (${bool.toFixed(1)} ns)`)
await counting.close()
await quiet.close()
