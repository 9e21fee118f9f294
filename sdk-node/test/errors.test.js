'use strict'
// Bad input is an Error with a documented `code` and a message naming the argument or field;
// a panic inside the addon is an exception, and the process goes on.

const assert = require('node:assert/strict')
const { test, after } = require('node:test')

const vexil = require('@vexil/node')
const { Client, Context } = vexil

const offline = new Client('vxl-server-errors', { offline: true })
after(() => offline.close())

/** Asserts that `fn` throws an Error with `code` whose message contains `mentions`. */
function throwsCode(fn, code, mentions) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Error, 'an Error')
    assert.equal(err.code, code, err.message)
    assert.ok(err.message.includes(mentions), `${JSON.stringify(err.message)} mentions ${mentions}`)
    return true
  })
}

test('an SDK key that is not a Vexil key', () => {
  throwsCode(() => new Client('sdk-123'), 'VEXIL_INVALID_KEY', 'sdkKey')
  throwsCode(() => new Client(42), 'VEXIL_INVALID_ARGUMENT', 'sdkKey')
  throwsCode(() => new Client(), 'VEXIL_INVALID_ARGUMENT', 'sdkKey')
})

test('the logger options are checked by name', () => {
  throwsCode(() => new Client('vxl-server-x', { offline: true, logLevel: 'loud' }), 'VEXIL_INVALID_ARGUMENT', 'options.logLevel')
  throwsCode(() => new Client('vxl-server-x', { offline: true, logLevel: 3 }), 'VEXIL_INVALID_ARGUMENT', 'options.logLevel')
  throwsCode(() => new Client('vxl-server-x', { offline: true, logger: 'console' }), 'VEXIL_INVALID_ARGUMENT', 'options.logger')
  throwsCode(() => new Client('vxl-server-x', { offline: true, logger: { error() {} } }), 'VEXIL_INVALID_ARGUMENT', 'options.logger: has no warn method')
  // Only the levels asked for need a method; `null` and 'silent' log nothing.
  new Client('vxl-server-x', { offline: true, logger: { error() {} }, logLevel: 'error' }).close()
  new Client('vxl-server-x', { offline: true, logger: null }).close()
  new Client('vxl-server-x', { offline: true, logLevel: 'silent' }).close()
})

test('an endpoint that is not an address', () => {
  throwsCode(() => new Client('vxl-server-x', { endpoint: 'not a url' }), 'VEXIL_INVALID_ENDPOINT', 'options.endpoint')
})

test('options of the wrong type, or unknown, are named', () => {
  throwsCode(() => new Client('vxl-server-x', 'offline'), 'VEXIL_INVALID_ARGUMENT', 'options')
  throwsCode(() => new Client('vxl-server-x', { offline: 'yes' }), 'VEXIL_INVALID_ARGUMENT', 'options.offline')
  throwsCode(() => new Client('vxl-server-x', { cachedir: '/tmp' }), 'VEXIL_INVALID_ARGUMENT', 'options.cachedir')
  throwsCode(() => new Client('vxl-server-x', { connectTimeoutMs: -1 }), 'VEXIL_INVALID_ARGUMENT', 'options.connectTimeoutMs')
  throwsCode(() => new Client('vxl-server-x', { streamTimeoutMs: '5s' }), 'VEXIL_INVALID_ARGUMENT', 'options.streamTimeoutMs')
  throwsCode(() => new Client('vxl-server-x', { events: { batchSize: 0 } }), 'VEXIL_INVALID_ARGUMENT', 'options.events.batchSize')
  throwsCode(() => new Client('vxl-server-x', { events: { flushInterval: 5 } }), 'VEXIL_INVALID_ARGUMENT', 'options.events.flushInterval')
  throwsCode(() => new Client('vxl-client-x', { context: { kind: 'user' } }), 'VEXIL_INVALID_CONTEXT', 'options.context')
})

test('invalid contexts for new Context name the problem', () => {
  throwsCode(() => new Context({ kind: 'user' }), 'VEXIL_INVALID_CONTEXT', 'key')
  throwsCode(() => new Context({ kind: 'user', key: '' }), 'VEXIL_INVALID_CONTEXT', 'key')
  throwsCode(() => new Context({ kind: 'no spaces', key: 'a' }), 'VEXIL_INVALID_CONTEXT', 'kind')
  throwsCode(() => new Context({ kind: 'multi', contexts: [] }), 'VEXIL_INVALID_CONTEXT', 'multi-kind')
  throwsCode(
    () => new Context({ kind: 'multi', contexts: [{ kind: 'user', key: 'a' }, { kind: 'user', key: 'b' }] }),
    'VEXIL_INVALID_CONTEXT',
    'more than once',
  )
  throwsCode(() => new Context('alice'), 'VEXIL_INVALID_CONTEXT', 'JSON object')
  throwsCode(() => new Context({ key: 'a', attributes: { f() {} } }), 'VEXIL_INVALID_CONTEXT', 'context')
})

test('a reusable Context keeps its canonical form', () => {
  const context = new Context({ key: 'alice', attributes: { plan: 'pro', seats: 3 } })
  assert.equal(context.kind, 'user')
  assert.equal(context.key, 'alice')
  assert.deepStrictEqual(JSON.parse(JSON.stringify(context)), {
    kind: 'user',
    key: 'alice',
    attributes: { plan: 'pro', seats: 3 },
  })
  const multi = new Context({ kind: 'multi', contexts: [{ kind: 'user', key: 'a' }, { kind: 'org', key: 'o' }] })
  assert.equal(multi.kind, 'multi')
  assert.equal(multi.key, null)
})

test('misused variation calls throw; invalid contexts give the default with a reason', () => {
  throwsCode(() => offline.boolVariation(1, { key: 'a' }, false), 'VEXIL_INVALID_ARGUMENT', 'flagKey')
  throwsCode(() => offline.boolVariation('f', { key: 'a' }, 'no'), 'VEXIL_INVALID_ARGUMENT', 'defaultValue')
  throwsCode(() => offline.stringVariation('f', { key: 'a' }, 3), 'VEXIL_INVALID_ARGUMENT', 'defaultValue')
  throwsCode(() => offline.numberVariation('f', { key: 'a' }, '3'), 'VEXIL_INVALID_ARGUMENT', 'defaultValue')
  throwsCode(() => offline.jsonVariation('f', { key: 'a' }, () => 1), 'VEXIL_INVALID_ARGUMENT', 'defaultValue')
  throwsCode(() => offline.variationDetail('f', { key: 'a' }, 1, 'integer'), 'VEXIL_INVALID_ARGUMENT', 'type')
  // The variation methods check what they are called on (a Context wraps another type).
  for (const method of ['boolVariation', 'stringVariation', 'numberVariation', 'jsonVariation']) {
    throwsCode(() => Client.prototype[method].call({}, 'f', { key: 'a' }, false), 'VEXIL_INVALID_ARGUMENT', 'this')
    throwsCode(() => Client.prototype[method].call(new Context({ key: 'a' }), 'f', { key: 'a' }, false), 'VEXIL_INVALID_ARGUMENT', 'this')
  }
  // Evaluation itself never throws: an invalid context is the default with a reason.
  assert.equal(offline.boolVariation('f', 'not a context', true), true)
  assert.equal(offline.boolVariation('f', undefined, true), true)
})

test('identify, track, allFlags and the listener API check their arguments', async () => {
  throwsCode(() => offline.identify({ kind: 'user' }), 'VEXIL_INVALID_CONTEXT', 'context')
  throwsCode(() => offline.identify({ key: 'a' }, 'soon'), 'VEXIL_INVALID_ARGUMENT', 'timeoutMs')
  throwsCode(() => offline.track('', { key: 'a' }), 'VEXIL_INVALID_ARGUMENT', 'eventName')
  throwsCode(() => offline.track('buy', { key: 'a' }, 'ten'), 'VEXIL_INVALID_ARGUMENT', 'value')
  throwsCode(() => offline.track('buy', { key: 'a' }, Number.NaN), 'VEXIL_INVALID_ARGUMENT', 'value')
  throwsCode(() => offline.track('buy', 7), 'VEXIL_INVALID_CONTEXT', 'context')
  throwsCode(() => offline.allFlags(null), 'VEXIL_INVALID_CONTEXT', 'context')
  throwsCode(() => offline.on('update', () => {}), 'VEXIL_INVALID_ARGUMENT', 'event')
  throwsCode(() => offline.on('change', 'not a function'), 'VEXIL_INVALID_ARGUMENT', 'listener')
  throwsCode(() => offline.waitForInitialization(-5), 'VEXIL_INVALID_ARGUMENT', 'timeoutMs')
  throwsCode(() => offline.flush(Infinity), 'VEXIL_INVALID_ARGUMENT', 'timeoutMs')
})

test('a panic inside the addon is a VEXIL_PANIC exception, and the process goes on', () => {
  throwsCode(() => vexil.__panicForTest('boom'), 'VEXIL_PANIC', 'boom')
  throwsCode(() => vexil.__panicForTest('again'), 'VEXIL_PANIC', 'again')
  assert.equal(offline.boolVariation('f', { key: 'a' }, true), true)
})

test('the error codes are the documented ones', () => {
  const fs = require('node:fs')
  const path = require('node:path')
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const types = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')
  for (const code of ['VEXIL_INVALID_ARGUMENT', 'VEXIL_INVALID_KEY', 'VEXIL_INVALID_ENDPOINT',
    'VEXIL_INVALID_CONTEXT', 'VEXIL_RUNTIME', 'VEXIL_PANIC', 'VEXIL_INTERNAL']) {
    assert.ok(readme.includes(code), `README documents ${code}`)
    assert.ok(types.includes(`'${code}'`), `index.d.ts declares ${code}`)
  }
})
