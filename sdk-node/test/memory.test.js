'use strict'
// No leak: 10,000 clients created, used and closed; the resident memory after the first
// rounds (allocator and JIT warm) stays flat through the rest.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const path = require('node:path')
const { test } = require('node:test')

test('10,000 clients created and closed: memory stays flat', { timeout: 600000 }, async () => {
  const stdout = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', path.join(__dirname, 'fixtures', 'churn.js'), '10000', '10'],
      { timeout: 580000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)))
  })
  const { samples } = JSON.parse(stdout)
  assert.equal(samples.length, 10)
  const mib = (bytes) => (bytes / 1048576).toFixed(1)
  const warm = samples[2]
  const last = samples[samples.length - 1]
  const growth = last - warm
  console.log(`rss per 1,000 clients (MiB): ${samples.map(mib).join(' ')}`)
  // A leak of even 1 KiB per client would be 7 MiB over the last 7,000 clients.
  assert.ok(growth < 4 * 1048576, `rss grew ${mib(growth)} MiB from ${mib(warm)} MiB over 7,000 clients`)
})
