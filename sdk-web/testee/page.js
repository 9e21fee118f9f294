// The web testee's page side: answers the commands of conformance/PROTOCOL.md through the
// public API of the built bundle, in the browser. testee.mjs relays each command here with
// `window.vexilTestee(command)` and writes the answer back to the runner.

import { VexilClient } from '/vexil-web.min.js'

let client = null
/** Changes seen by the client's listener and not yet taken by `wait_change`. */
let changes = []
/** Wakes a waiting `wait_change` when a change arrives. */
let changeArrived = null

function snakeReason(reason) {
  const out = { kind: reason.kind }
  if (reason.ruleIndex !== undefined) out.rule_index = reason.ruleIndex
  if (reason.ruleId !== undefined) out.rule_id = reason.ruleId
  if (reason.prerequisiteKey !== undefined) out.prerequisite_key = reason.prerequisiteKey
  if (reason.errorKind !== undefined) out.error_kind = reason.errorKind
  return out
}

function requireClient() {
  if (!client) throw new Error('no client: send `create` first')
  return client
}

function required(command, field) {
  if (command[field] === undefined) throw new Error(`${field}: required`)
  return command[field]
}

async function closeClient() {
  if (client) {
    const closing = client
    client = null
    await closing.close()
  }
}

async function waitChange(flag, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    while (changes.length > 0) {
      const keys = changes.shift()
      if (flag === undefined || keys.includes(flag)) return { changed: true, flag_keys: keys }
    }
    const left = deadline - Date.now()
    if (left <= 0) return { changed: false, flag_keys: [] }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, left)
      changeArrived = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    changeArrived = null
  }
}

const handlers = {
  async create(command) {
    await closeClient()
    if (command.bootstrap !== undefined) {
      throw new Error('bootstrap: the browser SDK starts from evaluated values (server-side rendering), not from a ruleset file')
    }
    const options = {
      initialBackoffMs: 100,
      maxBackoffMs: 500,
      streamTimeoutMs: 5000,
      events: {
        flushIntervalMs: command.flush_interval_ms ?? 5000,
        privateAttributes: command.private_attributes ?? [],
        allAttributesPrivate: command.all_attributes_private ?? false,
      },
      // The browser's cache is localStorage; a `cache_dir` asks for a cache.
      storage: command.cache_dir !== undefined ? window.localStorage : null,
      logger: null,
    }
    if (command.endpoint !== undefined) options.endpoint = command.endpoint
    if (command.offline === true) options.offline = true
    if (command.context !== undefined && command.context !== null) options.context = command.context
    const created = new VexilClient(required(command, 'sdk_key'), options)
    changes = []
    created.on('change', (change) => {
      changes.push(change.flagKeys)
      if (changeArrived) changeArrived()
    })
    client = created
    return {}
  },
  async wait_init(command) {
    return { status: await requireClient().waitForInitialization(command.timeout_ms ?? 5000) }
  },
  // The browser SDK evaluates for the identified context: `context` is that of `identify`
  // (or `create`), and the command's own is not used.
  async evaluate(command) {
    const detail = requireClient().variationDetail(required(command, 'flag'), command.default ?? null, command.type)
    return {
      value: detail.value,
      variation: detail.variation,
      reason: snakeReason(detail.reason),
      in_experiment: detail.inExperiment,
      source: detail.source,
      version: detail.version,
    }
  },
  async evaluate_all() {
    const flags = {}
    for (const [key, detail] of Object.entries(requireClient().allFlags())) {
      flags[key] = {
        value: detail.value,
        variation: detail.variation,
        reason: snakeReason(detail.reason),
        in_experiment: detail.inExperiment,
      }
    }
    return { flags }
  },
  async identify(command) {
    return { arrived: await requireClient().identify(required(command, 'context'), command.timeout_ms ?? 5000) }
  },
  async track(command) {
    requireClient().track(required(command, 'name'), command.value)
    return {}
  },
  async flush(command) {
    return { delivered: await requireClient().flush(command.timeout_ms ?? 5000) }
  },
  async wait_change(command) {
    requireClient()
    return waitChange(command.flag, command.timeout_ms ?? 5000)
  },
  async status() {
    const status = requireClient().status()
    return {
      status: status.status,
      source: status.source,
      version: status.version,
      events: { dropped: status.events.dropped, sent: status.events.sent, queued: status.events.queued },
    }
  },
  async close() {
    await closeClient()
    return {}
  },
}

window.vexilTestee = async (command) => {
  const handler = handlers[command.cmd]
  if (handler === undefined) return { id: command.id, ok: false, error: `unknown command ${command.cmd}` }
  try {
    return { id: command.id, ok: true, ...(await handler(command)) }
  } catch (err) {
    return { id: command.id, ok: false, error: err instanceof Error ? err.message : String(err) }
  }
}
