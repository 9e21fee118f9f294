'use strict'
// `npm pack`, then an install of the tarball into an empty project (offline: the package has
// no dependencies), then a CommonJS and an ES module script against the installed package.

const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')

const PACKAGE = path.join(__dirname, '..')

function npm(args, cwd) {
  return execFileSync('npm', args, {
    cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' },
  })
}

test('the packed tarball installs into an empty project and runs from CJS and ESM', { timeout: 180000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vexil-node-pack-'))
  try {
    const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], PACKAGE))
    const files = packed[0].files.map((f) => f.path)
    for (const expected of ['index.js', 'index.mjs', 'index.d.ts', 'package.json', 'README.md'])
      assert.ok(files.includes(expected), `the tarball has ${expected}`)
    assert.ok(files.some((f) => f.endsWith('.node')), 'the tarball has the addon')
    assert.ok(!files.some((f) => f.startsWith('src/') || f.startsWith('test/')), 'no sources or tests')

    const project = path.join(dir, 'app')
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
    npm(['install', '--offline', '--no-save', path.join(dir, packed[0].filename)], project)

    const ruleset = path.join(project, 'flags.json')
    fs.writeFileSync(ruleset, JSON.stringify({
      flags: [{ key: 'banner', kind: 'string', variations: ['old', 'new'], on: true, fallthrough: { variation: 1 } }],
    }))
    fs.writeFileSync(path.join(project, 'app.cjs'), `
      const { Client, Context } = require('@vexil/node')
      const client = new Client('vxl-server-app', { offline: true, bootstrap: ${JSON.stringify(ruleset)} })
      const detail = client.variationDetail('banner', new Context({ key: 'a' }), 'none')
      console.log(client.stringVariation('banner', { key: 'a' }, 'none'), detail.source)
      client.close()`)
    fs.writeFileSync(path.join(project, 'app.mjs'), `
      import { Client } from '@vexil/node'
      const client = new Client('vxl-server-app', { offline: true, bootstrap: ${JSON.stringify(ruleset)} })
      console.log(client.stringVariation('banner', { key: 'a' }, 'none'), (await client.waitForInitialization(100)))
      await client.close()`)
    const run = (file) => execFileSync(process.execPath, [file], { cwd: project, encoding: 'utf8' }).trim()
    assert.equal(run('app.cjs'), 'new BOOTSTRAP')
    assert.equal(run('app.mjs'), 'new OFFLINE')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
