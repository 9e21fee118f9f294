'use strict'
// Every conformance vector through the public API: an offline client bootstrapped with each
// file's ruleset, as conformance/run does, then every case with variationDetail and, where
// the default says the type, with the typed variation call too.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const { describe, test, before, after } = require('node:test')

const { Client, Context } = require('@vexil/node')
const { ROOT } = require('./helpers')

const VECTORS = path.join(ROOT, 'conformance', 'vectors')

/** A detail as the vector files write it (value, variation, reason in snake case,
 * in_experiment): the testees' function, from an ES module, loaded before the tests. */
let evaluation
before(async () => {
  ;({ evaluation } = await import(pathToFileURL(path.join(ROOT, 'conformance', 'tools', 'testee.mjs')).href))
})

/** The typed call matching a case, when its default and requested type agree. */
function typedCall(client, testCase, context) {
  const { flag, default: fallback, type } = testCase
  if (typeof fallback === 'boolean' && (type === undefined || type === 'bool'))
    return client.boolVariation(flag, context, fallback)
  if (typeof fallback === 'string' && (type === undefined || type === 'string'))
    return client.stringVariation(flag, context, fallback)
  if (typeof fallback === 'number' && (type === undefined || type === 'number'))
    return client.numberVariation(flag, context, fallback)
  if (type === 'json') return client.jsonVariation(flag, context, fallback)
  return undefined
}

/** A reusable Context for the case's context, when it is valid. */
function reusable(context) {
  try {
    return new Context(context)
  } catch (err) {
    assert.equal(err.code, 'VEXIL_INVALID_CONTEXT')
    return undefined
  }
}

const files = fs.readdirSync(VECTORS).filter((name) => name.endsWith('.json')).sort()

test('there are vector files', () => assert.ok(files.length >= 10))

for (const file of files) {
  const vectors = JSON.parse(fs.readFileSync(path.join(VECTORS, file), 'utf8'))
  describe(`vectors/${file}`, () => {
    let dir
    let client
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vexil-node-vectors-'))
      const bootstrap = path.join(dir, 'ruleset.json')
      fs.writeFileSync(bootstrap, JSON.stringify({ flags: vectors.flags ?? [], segments: vectors.segments ?? [] }))
      client = new Client('vxl-server-conformance', { offline: true, bootstrap })
    })
    after(async () => {
      await client.close()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    for (const testCase of vectors.cases) {
      test(testCase.name, () => {
        const detail = client.variationDetail(testCase.flag, testCase.context, testCase.default, testCase.type)
        const got = evaluation(detail)
        const expected = {
          value: testCase.expect.value,
          variation: testCase.expect.variation,
          reason: testCase.expect.reason,
          in_experiment: testCase.expect.in_experiment,
        }
        assert.deepStrictEqual(got, expected)
        assert.equal(detail.source, 'BOOTSTRAP')

        const typed = typedCall(client, testCase, testCase.context)
        if (typed !== undefined) assert.deepStrictEqual(typed, testCase.expect.value, 'typed call')

        const context = reusable(testCase.context)
        if (context !== undefined) {
          const again = client.variationDetail(testCase.flag, context, testCase.default, testCase.type)
          assert.deepStrictEqual(again, detail, 'same detail with a reusable Context')
        } else {
          assert.equal(detail.reason.errorKind !== undefined, true, 'an invalid context is an error reason')
        }
      })
    }
  })
}
