// The web testee's page side: answers the commands of conformance/PROTOCOL.md through the
// public API of the built bundle, in the browser. testee.mjs relays each command here with
// `window.vexilTestee(command)` and writes the answer back to the runner; it serves
// conformance/tools/testee.mjs, the part of the testee the JavaScript SDKs share, as
// /testee-common.js.

import { VexilClient } from '/vexil-web.min.js'
import { commandHandlers, required } from '/testee-common.js'

/** This SDK's part of the commands (testee-common.js has the rest). */
const handlers = commandHandlers({
  newClient(command, options) {
    if (command.bootstrap !== undefined) {
      throw new Error('bootstrap: the browser SDK starts from evaluated values (server-side rendering), not from a ruleset file')
    }
    // The browser's cache is localStorage; a `cache_dir` asks for a cache.
    options.storage = command.cache_dir !== undefined ? window.localStorage : null
    options.logger = null
    return new VexilClient(required(command, 'sdk_key'), options)
  },
  // The browser SDK evaluates for the identified context: `context` is that of `identify`
  // (or `create`), and the command's own is not used.
  variationDetail(client, command) {
    return client.variationDetail(required(command, 'flag'), command.default ?? null, command.type)
  },
  allFlags(client) {
    return client.allFlags()
  },
  identify(client, command) {
    return client.identify(required(command, 'context'), command.timeout_ms ?? 5000)
  },
  track(client, command) {
    client.track(required(command, 'name'), command.value)
  },
})

window.vexilTestee = async (command) => {
  const handler = handlers[command.cmd]
  if (handler === undefined) return { id: command.id, ok: false, error: `unknown command ${command.cmd}` }
  try {
    return { id: command.id, ok: true, ...(await handler(command)) }
  } catch (err) {
    return { id: command.id, ok: false, error: err instanceof Error ? err.message : String(err) }
  }
}
