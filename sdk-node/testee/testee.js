'use strict'
// The Node SDK's testee: answers the commands of conformance/PROTOCOL.md (one JSON object per
// line on stdin, one answer per line on stdout, in order) through @vexil/node's public API.

const path = require('node:path')
const readline = require('node:readline')
const { pathToFileURL } = require('node:url')

const { Client } = require(path.join(__dirname, '..'))

/** The part of the testee the JavaScript SDKs share (an ES module). */
const SHARED = pathToFileURL(path.join(__dirname, '..', '..', 'conformance', 'tools', 'testee.mjs')).href

/** This SDK's part of the commands (SHARED has the rest). */
function nodeCommands(required) {
  return {
    newClient(command, options) {
      if (command.cache_dir !== undefined) options.cacheDir = command.cache_dir
      if (command.bootstrap !== undefined) options.bootstrap = command.bootstrap
      return new Client(required(command, 'sdk_key'), options)
    },
    variationDetail(client, command) {
      return client.variationDetail(
        required(command, 'flag'),
        command.context ?? null,
        command.default ?? null,
        command.type,
      )
    },
    allFlags(client, command) {
      return client.allFlags(command.context)
    },
    identify(client, command) {
      return client.identify(command.context, command.timeout_ms ?? 5000)
    },
    track(client, command) {
      client.track(required(command, 'name'), command.context, command.value)
    },
  }
}

async function answer(handlers, line) {
  let command
  try {
    command = JSON.parse(line)
  } catch (err) {
    return { id: null, ok: false, error: `not JSON: ${err.message}` }
  }
  const id = command.id ?? null
  const handler = handlers[command.cmd]
  if (!handler) return { id, ok: false, error: `cmd: unknown command ${JSON.stringify(command.cmd)}` }
  try {
    return { ...(await handler(command)), id, ok: true }
  } catch (err) {
    return { id, ok: false, error: err.code ? `${err.code}: ${err.message}` : err.message }
  }
}

async function main() {
  const { commandHandlers, required } = await import(SHARED)
  const handlers = commandHandlers(nodeCommands(required))
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  // Commands are answered one at a time, in order, even when some wait.
  for await (const line of lines) {
    if (line.trim() === '') continue
    process.stdout.write(JSON.stringify(await answer(handlers, line)) + '\n')
  }
  await handlers.close()
}

main().catch((err) => {
  process.stderr.write(`testee: ${err.stack}\n`)
  process.exit(1)
})
