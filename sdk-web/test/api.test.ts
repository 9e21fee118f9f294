// The public API's edges: misuse at construction throws a coded error naming the option;
// variation calls never throw, whatever they are given; contexts are checked and canonical.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { afterEach, describe, test } from 'node:test'
import { SDK_VERSION, validateContext, VexilClient, VexilError } from '../src/index.js'
import type { VexilOptions } from '../src/index.js'
import { checkContext } from '../src/context.js'
import {
  ALICE,
  closeAll,
  FakeServer,
  KEY,
  result,
  TestClient,
  values,
} from './helpers.js'

afterEach(closeAll)

function create(key: unknown, options?: unknown): VexilClient {
  return new TestClient(key as string, { storage: null, offline: true, ...(options as VexilOptions) })
}

describe('construction', () => {
  test('a key that is not a client key is refused with VEXIL_INVALID_KEY', () => {
    for (const key of [undefined, 42, '', 'vxl-client-', 'sdk-123', 'VXL-CLIENT-abc']) {
      assert.throws(() => create(key), { name: 'VexilError', code: 'VEXIL_INVALID_KEY', message: /^sdkKey: / })
    }
    assert.throws(() => create('vxl-server-secret'), (err: unknown) => {
      assert.ok(err instanceof VexilError)
      assert.equal(err.code, 'VEXIL_INVALID_KEY')
      assert.match(err.message, /must never reach a browser/)
      assert.ok(!err.message.includes('secret'), 'the message never holds the key')
      return true
    })
    create('vxl-mobile-abc').close()
    create(KEY).close()
  })

  test('a bad option throws VEXIL_INVALID_ARGUMENT naming it', () => {
    const cases: [unknown, RegExp][] = [
      ['not an object', /^options: expected an object, got "not an object"/],
      [{ endpont: 'x' }, /^options\.endpont: unknown option/],
      [{ events: { batchSize: 0 } }, /^options\.events\.batchSize: expected a whole number of at least 1, got 0$/],
      [{ events: { flushInterval: 5 } }, /^options\.events\.flushInterval: unknown option/],
      [{ events: { enabled: 'yes' } }, /^options\.events\.enabled: expected true or false, got "yes"/],
      [{ streamTimeoutMs: 1.5 }, /^options\.streamTimeoutMs: expected a whole number/],
      [{ initialBackoffMs: 5000, maxBackoffMs: 1000 }, /^options\.maxBackoffMs: expected a whole number of at least 5000/],
      [{ storage: {} }, /^options\.storage: expected null or an object with getItem/],
      [{ logger: { warn() {} } }, /^options\.logger: /],
      [{ fetch: 'fetch' }, /^options\.fetch: expected a function/],
      [{ offline: 1 }, /^options\.offline: expected true or false, got 1/],
      [{ events: { privateAttributes: 'email' } }, /^options\.events\.privateAttributes: expected an array/],
      [{ events: { privateAttributes: ['ok', '/bad~2'] } }, /^options\.events\.privateAttributes\[1\]: expected an attribute reference/],
      [{ events: { allAttributesPrivate: 'yes' } }, /^options\.events\.allAttributesPrivate: expected true or false/],
    ]
    for (const [options, message] of cases) {
      assert.throws(() => new TestClient(KEY, options as VexilOptions), { code: 'VEXIL_INVALID_ARGUMENT', message }, String(message))
    }
  })

  test('a bad endpoint throws VEXIL_INVALID_ENDPOINT; a bad context VEXIL_INVALID_CONTEXT', () => {
    for (const endpoint of ['127.0.0.1:50051', 'ftp://flags', 'https://flags?x=1', 7]) {
      assert.throws(() => create(KEY, { endpoint, offline: false }), { code: 'VEXIL_INVALID_ENDPOINT', message: /^options\.endpoint: / })
    }
    assert.throws(() => create(KEY, { context: { kind: 'user' } }), { code: 'VEXIL_INVALID_CONTEXT', message: /^options\.context\.key: / })
  })
})

describe('variations never throw', () => {
  test('bad flag keys, defaults and types give the default with an ERROR reason', async () => {
    const server = new FakeServer()
    const client = new TestClient(KEY, { fetch: server.fetch, context: ALICE, storage: null, logger: null })
    ;(await server.watchCount(1)).send(values(1, result('on', true, { variation: 1 }), result('name', 'x'), result('obj', { a: [1] })))
    await client.waitForInitialization(1000)
    const weird: unknown[] = [undefined, null, 42, {}, [], Symbol('s'), () => 1, 'x'.repeat(10_000)]
    for (const key of weird) {
      const k = key as string
      assert.equal(client.boolVariation(k, true), true)
      assert.equal(client.stringVariation(k, 'd'), 'd')
      assert.equal(client.numberVariation(k, 5), 5)
      assert.equal(client.jsonVariation(k, 'j'), 'j')
      assert.deepEqual(client.variationDetail(k, 1).reason, { kind: 'ERROR', errorKind: 'FLAG_NOT_FOUND' })
    }
    // Wrong types: the method's type decides, whatever the default is.
    assert.equal(client.stringVariation('on', 'd'), 'd')
    assert.equal(client.numberVariation('name', 1), 1)
    assert.equal(client.boolVariation('on', 'oops' as unknown as boolean), true)
    assert.equal(client.boolVariation('obj', false), false)
    assert.deepEqual(client.variationDetail('on', 'd').reason, { kind: 'ERROR', errorKind: 'WRONG_TYPE' })
    assert.deepEqual(client.variationDetail('on', 'd', 'integer' as 'bool').reason, { kind: 'ERROR', errorKind: 'WRONG_TYPE' })
    assert.equal(client.variationDetail('on', 'd', 'json').value, true, "'json' takes any kind")
    assert.equal(client.variationDetail('on', undefined).value, true, 'no default: json')
    assert.equal(client.variationDetail('on', null, 'bool').value, true)

    // Values handed out are the client's own: frozen.
    const obj = client.jsonVariation('obj', null) as { a: number[] }
    assert.throws(() => obj.a.push(2))
    assert.deepEqual(client.jsonVariation('obj', null), { a: [1] })

    assert.deepEqual(Object.keys(client.allFlags()).sort(), ['name', 'obj', 'on'])
    assert.deepEqual(client.allFlags().on, {
      value: true,
      variation: 1,
      reason: { kind: 'FALLTHROUGH' },
      inExperiment: false,
      experimentKey: null,
      flagVersion: 1,
      source: 'NETWORK',
      version: 1,
    })
    await client.close()
    assert.equal(client.boolVariation('on', false), true, 'after close: the last values')
  })

  test('misuse of the asynchronous calls rejects instead of throwing', async () => {
    const client = create(KEY)
    await assert.rejects(client.waitForInitialization(-5), { code: 'VEXIL_INVALID_ARGUMENT' })
    await assert.rejects(client.flush('soon' as unknown as number), { code: 'VEXIL_INVALID_ARGUMENT' })
    await assert.rejects(client.identify(null as unknown as typeof ALICE), { code: 'VEXIL_INVALID_CONTEXT' })
    await client.close()
  })
})

describe('contexts', () => {
  test('validateContext accepts the flag model contexts and names what is wrong otherwise', () => {
    validateContext({ key: 'a' })
    validateContext({ kind: 'organization', key: 'acme', attributes: { plan: 'pro', seats: 3, tags: ['a'], meta: { x: null } } })
    validateContext({ kind: 'multi', contexts: [{ kind: 'user', key: 'a' }, { kind: 'org', key: 'b' }] })
    const bad: [unknown, RegExp][] = [
      [null, /^context: expected an object, got null/],
      [{ key: 1 }, /^context\.key: expected a non-empty string/],
      [{ key: 'a', kind: 'kind' }, /^context\.kind: /],
      [{ key: 'a', kind: 'x'.repeat(65) }, /^context\.kind: /],
      [{ key: 'a', kind: 'a b' }, /^context\.kind: /],
      [{ key: 'a', attributes: [] }, /^context\.attributes: expected an object/],
      [{ key: 'a', attributes: { n: Number.NaN } }, /^context\.attributes\.n: expected a JSON value, got NaN/],
      [{ key: 'a', attributes: { f: () => 1 } }, /^context\.attributes\.f: /],
      [{ key: 'a', attributes: { list: [1, undefined] } }, /^context\.attributes\.list\[1\]: /],
      [{ kind: 'multi', contexts: [] }, /^context\.contexts: a multi-kind context needs a non-empty array/],
      [{ kind: 'multi', contexts: [{ kind: 'multi', contexts: [] }] }, /^context\.contexts\[0\]: a multi-kind context cannot nest/],
      [{ kind: 'multi', contexts: [{ key: 'a' }, { kind: 'user', key: 'b' }] }, /kind "user" appears more than once/],
      [{ key: 'a', private_attributes: 'email' }, /^context\.private_attributes: expected an array/],
      [{ key: 'a', private_attributes: [''] }, /^context\.private_attributes\[0\]: expected an attribute reference/],
      [{ key: 'a', private_attributes: [3] }, /^context\.private_attributes\[0\]: /],
    ]
    for (const [context, message] of bad) {
      assert.throws(() => validateContext(context), { code: 'VEXIL_INVALID_CONTEXT', message }, String(message))
    }
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    assert.throws(() => validateContext({ key: 'a', attributes: cyclic }), { code: 'VEXIL_INVALID_CONTEXT', message: /a cycle/ })
  })

  test('one canonical form: default kind, sorted multi parts, a one-part multi is that part, undefined left out', () => {
    const a = checkContext({ kind: 'multi', contexts: [{ kind: 'org', key: 'acme' }, { key: 'alice', attributes: { b: 1, a: 2 } }] })
    const b = checkContext({ kind: 'multi', contexts: [{ kind: 'user', key: 'alice', attributes: { a: 2, b: 1, c: undefined } }, { kind: 'org', key: 'acme' }] })
    assert.equal(a.key, b.key)
    assert.deepEqual(a.context, {
      kind: 'multi',
      contexts: [
        { kind: 'org', key: 'acme' },
        { kind: 'user', key: 'alice', attributes: { b: 1, a: 2 } },
      ],
    })
    assert.deepEqual(checkContext({ kind: 'multi', contexts: [{ key: 'x' }] }).context, { kind: 'user', key: 'x' })
    assert.deepEqual(checkContext({ key: 'x', attributes: { at: new Date(Date.UTC(2026, 0, 2)) } }).context, {
      kind: 'user',
      key: 'x',
      attributes: { at: '2026-01-02T00:00:00.000Z' },
    })
    assert.notEqual(checkContext({ key: 'x', attributes: { a: 1 } }).key, checkContext({ key: 'x', attributes: { a: '1' } }).key)
  })
})

test('SDK_VERSION is the package version', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  assert.equal(SDK_VERSION, pkg.version)
})
