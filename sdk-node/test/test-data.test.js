'use strict'
// TestData: flags a test changes one at a time, without a server or a file.

const assert = require('node:assert/strict')
const { test } = require('node:test')

const { Client, TestData } = require('@vexil/node')

const ALICE = { kind: 'user', key: 'alice' }
const BOB = { kind: 'user', key: 'bob' }

test('changes reach the client at once, and its listeners on the JavaScript thread', async () => {
  const data = new TestData()
  data.setValue('checkout', true)
  const client = new Client('vxl-server-test', { testData: data })
  try {
    assert.equal(client.status().status, 'READY')
    assert.equal(client.boolVariation('checkout', ALICE, false), true)
    const changed = new Promise((resolve) => client.on('change', resolve))
    data.setValue('checkout', false)
    assert.equal(client.boolVariation('checkout', ALICE, true), false)
    assert.deepStrictEqual((await changed).flagKeys, ['checkout'])

    data.updateFlag({
      key: 'banner', kind: 'string', variations: ['plain', 'gold'], on: true,
      rules: [{ id: 'bob', clauses: [{ attribute: 'key', op: 'in', values: ['bob'] }], serve: { variation: 1 } }],
      fallthrough: { variation: 0 },
    })
    assert.equal(client.stringVariation('banner', BOB, '?'), 'gold')
    assert.equal(client.stringVariation('banner', ALICE, '?'), 'plain')
    assert.deepStrictEqual(data.flagKeys, ['banner', 'checkout'])
    assert.equal(data.removeFlag('banner'), true)
    assert.equal(data.removeFlag('banner'), false)
    assert.equal(client.stringVariation('banner', BOB, '?'), '?')
  } finally {
    await client.close()
  }
})

test('a flag that does not compile is refused naming the field, and nothing changes', async () => {
  const data = new TestData()
  data.setValue('limit', 3)
  const client = new Client('vxl-server-test', { testData: data })
  try {
    assert.throws(() => data.updateFlag({ key: 'limit', kind: 'number', variations: [1], on: true, fallthrough: { variation: 4 } }),
      (err) => err.code === 'VEXIL_INVALID_ARGUMENT' && err.message.includes('fallthrough'))
    assert.equal(client.numberVariation('limit', ALICE, 0), 3)
    assert.throws(() => new Client('vxl-server-test', { testData: {} }),
      (err) => err.code === 'VEXIL_INVALID_ARGUMENT' && err.message.includes('options.testData'))
  } finally {
    await client.close()
  }
})
