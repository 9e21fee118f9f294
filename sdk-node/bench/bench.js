'use strict'
// boolVariation from JavaScript versus the same call on the Rust client, in one run.
//
//   npm run build && node --expose-gc bench/bench.js [iterations]
//
// Each case is warmed, then timed over several batches; the median batch is reported. The
// Rust figure comes from a hidden function of the addon that times vexil-core's
// `bool_variation` with the same flag and context N times.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const vexil = require('..')
const { Client, Context } = vexil

const iterations = Number(process.argv[2] || 1_000_000)
const batches = 7

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vexil-node-bench-'))
const bootstrap = path.join(dir, 'ruleset.json')
fs.writeFileSync(bootstrap, JSON.stringify({
  flags: [
    {
      key: 'new-checkout', kind: 'bool', variations: [false, true], on: true, off_variation: 0,
      rules: [{ id: 'staff', clauses: [{ attribute: 'email', op: 'ends_with', values: ['@example.com'] }], serve: { variation: 1 } }],
      fallthrough: { variation: 0 },
    },
  ],
}))
// Events on, as in production: every call is counted for the evaluation summaries.
const client = new Client('vxl-server-bench', { offline: true, bootstrap })
const small = { kind: 'user', key: 'alice', attributes: { email: 'alice@example.com' } }
const reused = new Context(small)

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

/** Nanoseconds per call of `body`, the median of `batches` timed batches. */
function time(body) {
  for (let i = 0; i < iterations / 10; i++) body()
  const samples = []
  for (let b = 0; b < batches; b++) {
    const started = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) body()
    samples.push(Number(process.hrtime.bigint() - started) / iterations)
  }
  return median(samples)
}

function rust() {
  vexil.__benchRustBoolVariation(client, 'new-checkout', small, iterations / 10)
  const samples = []
  for (let b = 0; b < batches; b++) samples.push(vexil.__benchRustBoolVariation(client, 'new-checkout', small, iterations))
  return median(samples)
}

if (!client.boolVariation('new-checkout', small, false)) throw new Error('the benchmark flag must serve true')

let sink = 0
const results = {
  rust: rust(),
  plainObject: time(() => { sink += client.boolVariation('new-checkout', small, false) ? 1 : 0 }),
  reusedContext: time(() => { sink += client.boolVariation('new-checkout', reused, false) ? 1 : 0 }),
  // The floor of any native call through napi-rs here: a getter that does almost nothing.
  nativeCallFloor: time(() => { sink += reused.kind.length }),
  freshObject: time(() => {
    sink += client.boolVariation('new-checkout', { kind: 'user', key: 'alice', attributes: { email: 'alice@example.com' } }, false) ? 1 : 0
  }),
}
if (sink === 0) throw new Error('unreachable')

const line = (name, ns) => `${name.padEnd(52)} ${ns.toFixed(0).padStart(6)} ns  ${(ns / results.rust).toFixed(2).padStart(5)}x Rust`
console.log(`node ${process.version}, ${os.cpus()[0].model}, ${os.cpus().length} cpus, load ${os.loadavg()[0].toFixed(2)}`)
console.log(`${iterations} calls per batch, median of ${batches} batches`)
console.log(line('Rust: vexil-core bool_variation (same run)', results.rust))
console.log(line('boolVariation, small plain-object context', results.plainObject))
console.log(line('boolVariation, reused Context', results.reusedContext))
console.log(line('boolVariation, object literal made per call', results.freshObject))
console.log(line('floor: a trivial native getter (Context#kind)', results.nativeCallFloor))

client.close().then(() => fs.rmSync(dir, { recursive: true, force: true }))
