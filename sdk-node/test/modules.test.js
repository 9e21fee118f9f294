'use strict'
// The package by its name, from CommonJS and from an ES module: the same classes.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const { test } = require('node:test')

const cjs = require('@vexil/node')

test('require exposes the classes', () => {
  assert.equal(typeof cjs.Client, 'function')
  assert.equal(typeof cjs.Context, 'function')
})

test('import exposes the same classes, with named and default exports', async () => {
  const esm = await import('@vexil/node')
  assert.equal(esm.Client, cjs.Client)
  assert.equal(esm.Context, cjs.Context)
  assert.equal(esm.default.Client, cjs.Client)
})

test('an ES module script evaluates a flag', async () => {
  const script = `
    import { Client } from '@vexil/node'
    const client = new Client('vxl-server-esm', { offline: true })
    console.log(client.boolVariation('missing', { key: 'a' }, true), client.status().status)
    await client.close()`
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: __dirname },
      (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout))))
  assert.equal(out.trim(), 'true OFFLINE')
})
