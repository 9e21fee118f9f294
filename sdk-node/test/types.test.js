'use strict'
// index.d.ts is the real API: the TypeScript example type-checks against it (strict), and
// every class and method the addon exports is declared there.

const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { test } = require('node:test')

const vexil = require('@vexil/node')

const PACKAGE = path.join(__dirname, '..')
const types = fs.readFileSync(path.join(PACKAGE, 'index.d.ts'), 'utf8')

test('the TypeScript example type-checks against index.d.ts', { timeout: 120000 }, () => {
  const tsc = path.join(PACKAGE, 'node_modules', 'typescript', 'bin', 'tsc')
  execFileSync(process.execPath, [tsc, '-p', path.join(PACKAGE, 'examples')], { stdio: 'pipe' })
})

test('every exported class and method is declared', () => {
  for (const name of ['Client', 'Context']) {
    assert.match(types, new RegExp(`export declare class ${name} `), name)
    for (const method of Object.getOwnPropertyNames(vexil[name].prototype)) {
      if (method === 'constructor') continue
      assert.match(types, new RegExp(`\\b${method}\\b`), `${name}.${method}`)
    }
  }
  assert.doesNotMatch(types, /__benchRust|__panicForTest/, 'hidden helpers stay out of the types')
})
