'use strict'
// The client against a real vexil-server started here: initial sync, a change reaching a
// listener on the JavaScript thread, remote evaluation with a mobile key and identify, and
// track + flush counted by the server.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const path = require('node:path')
const { describe, test, before, after } = require('node:test')

const { Client, Context } = require('@vexil/node')
const { Server, eventually, sleep } = require('./helpers')

const USER = { kind: 'user', key: 'alice' }
const BOB = { kind: 'user', key: 'bob' }
const BOOL_ON = {
  key: 'checkout', kind: 'bool', variations: [false, true], on: true, off_variation: 0,
  fallthrough: { variation: 1 },
}

describe('against a real server', () => {
  let server
  const clients = []
  before(async () => {
    server = await Server.start()
  })
  after(async () => {
    await Promise.all(clients.map((c) => c.close()))
    server.stop()
  })

  function client(key, options = {}) {
    const created = new Client(key, {
      endpoint: server.endpoint, initialBackoffMs: 100, maxBackoffMs: 500, ...options,
    })
    clients.push(created)
    return created
  }

  test('initial sync, then a change reaches a listener on the JavaScript thread', async () => {
    server.importFlags([BOOL_ON])
    const local = client(server.keys.server)
    assert.equal(await local.waitForInitialization(10000), 'READY')
    assert.equal(local.boolVariation('checkout', USER, false), true)
    const detail = local.variationDetail('checkout', new Context(USER), false)
    assert.equal(detail.source, 'NETWORK')
    assert.ok(detail.version > 0)
    assert.deepStrictEqual(detail.reason, { kind: 'FALLTHROUGH' })
    assert.equal(local.status().status, 'READY')
    assert.equal(local.status().mode, 'local')

    const removed = []
    const ignored = (change) => removed.push(change)
    assert.equal(local.on('change', ignored), local, 'on returns the client')
    assert.equal(local.off('change', ignored), local, 'off returns the client')
    const seen = new Promise((resolve) => {
      local.on('change', function listener(change) {
        if (change.flagKeys.includes('checkout')) {
          local.off('change', listener)
          resolve(change)
        }
      })
    })
    assert.equal(local.listenerCount('change'), 1)
    server.cli('flags', 'toggle', 'checkout', 'off')
    const change = await Promise.race([seen, sleep(10000).then(() => null)])
    assert.ok(change, 'the change reached the listener')
    assert.ok(change.version > detail.version)
    assert.equal(local.boolVariation('checkout', USER, true), false)
    assert.equal(local.listenerCount('change'), 0)
    assert.deepStrictEqual(removed, [], 'a removed listener is not called')
  })

  test('waiting for initialization does not block the event loop', async () => {
    // Nothing listens there: the wait lasts its whole timeout.
    const unreachable = new Client('vxl-server-unreachable', {
      endpoint: 'http://127.0.0.1:9', connectTimeoutMs: 200, events: { enabled: false },
    })
    clients.push(unreachable)
    let ticks = 0
    const timer = setInterval(() => ticks++, 20)
    const status = await unreachable.waitForInitialization(600)
    clearInterval(timer)
    assert.equal(status, 'INITIALIZING')
    assert.ok(ticks >= 10, `the event loop ran during the wait (${ticks} ticks)`)
    assert.equal(unreachable.boolVariation('checkout', USER, true), true)
    assert.equal(unreachable.variationDetail('checkout', USER, true).reason.errorKind, 'CLIENT_NOT_READY')
  })

  test('remote evaluation with a mobile key, and identify', async () => {
    const flag = {
      ...BOOL_ON, key: 'remote-checkout', client_side: true,
      rules: [{ id: 'bob', clauses: [{ attribute: 'key', op: 'in', values: ['bob'] }], serve: { variation: 0 } }],
    }
    server.importFlags([flag, { ...BOOL_ON, key: 'server-only' }])
    const mobile = client(server.keys.mobile, { context: USER })
    assert.equal(await mobile.waitForInitialization(10000), 'READY')
    assert.equal(mobile.status().mode, 'remote')
    assert.equal(mobile.boolVariation('remote-checkout', USER, false), true)
    assert.deepStrictEqual(mobile.variationDetail('server-only', USER, false).reason,
      { kind: 'ERROR', errorKind: 'FLAG_NOT_FOUND' })
    assert.equal(await mobile.identify(BOB, 10000), true)
    const bob = mobile.variationDetail('remote-checkout', BOB, true)
    assert.equal(bob.value, false)
    assert.deepStrictEqual(bob.reason, { kind: 'RULE_MATCH', ruleIndex: 0, ruleId: 'bob' })
    const all = mobile.allFlags(BOB)
    assert.deepStrictEqual(Object.keys(all), ['remote-checkout'])
    assert.equal(all['remote-checkout'].value, false)
  })

  test('track and flush: the server counts every event once', async () => {
    const experiment = {
      ...BOOL_ON, key: 'experiment-flag',
      fallthrough: {
        rollout: { variations: [{ variation: 0, weight: 50000 }, { variation: 1, weight: 50000 }] },
        experiment: { key: 'checkout-test' },
      },
    }
    server.importFlags([experiment])
    const local = client(server.keys.server, { events: { flushIntervalMs: 3600000 } })
    assert.equal(await local.waitForInitialization(10000), 'READY')
    await eventually(() => local.variationDetail('experiment-flag', USER, false).inExperiment, 'the experiment')
    for (const context of [USER, new Context(BOB)]) {
      for (let i = 0; i < 3; i++) {
        assert.equal(local.variationDetail('experiment-flag', context, false).inExperiment, true)
      }
    }
    local.track('purchase', USER, 1)
    local.track('purchase', new Context(USER), 2)
    local.track('purchase', USER)
    assert.equal(await local.flush(10000), true)
    const counted = (type) => server.metric(`vexil_events_total{environment="default/production",type="${type}"}`)
    assert.equal(await counted('track'), 3)
    assert.equal(await counted('exposure'), 2)
    assert.ok((await counted('summary')) >= 1)
    assert.ok(local.status().events.sent >= 5)
  })

  test('a process with a listener exits once the client is closed', async () => {
    server.importFlags([BOOL_ON])
    const script = `
      const { Client } = require(${JSON.stringify(path.join(__dirname, '..'))})
      const client = new Client(${JSON.stringify(server.keys.server)}, { endpoint: ${JSON.stringify(server.endpoint)} })
      client.on('change', () => {})
      client.waitForInitialization(10000).then(async (status) => {
        console.log(status)
        await client.close()
      })`
    const started = Date.now()
    const output = await new Promise((resolve, reject) => {
      execFile(process.execPath, ['-e', script], { timeout: 20000 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout))
    })
    assert.equal(output.trim(), 'READY')
    assert.ok(Date.now() - started < 15000)
  })
  test('a refused key reaches the logger option once, as an error', async () => {
    const logged = []
    const logger = {
      error: (m) => logged.push(['error', m]),
      warn: (m) => logged.push(['warn', m]),
      info: (m) => logged.push(['info', m]),
      debug: (m) => logged.push(['debug', m]),
    }
    const refused = client('vxl-server-not-a-real-key', { logger })
    assert.equal(await refused.waitForInitialization(10000), 'FAILED')
    await refused.close()
    await eventually(() => logged.length > 0)
    const messages = logged.filter(([, m]) => m.includes('refused the SDK key'))
    assert.equal(messages.length, 1, JSON.stringify(logged))
    assert.equal(messages[0][0], 'error')
    assert.ok(logged.every(([level]) => level !== 'debug'), 'info by default: no status changes')
  })
})
