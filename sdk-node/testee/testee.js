'use strict'
// The Node SDK's testee: answers the commands of conformance/PROTOCOL.md (one JSON object per
// line on stdin, one answer per line on stdout, in order) through @vexil/node's public API.

const path = require('node:path')
const readline = require('node:readline')

const { Client } = require(path.join(__dirname, '..'))

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

/** The next change (of `flag`, when given) within `timeoutMs`. */
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
    const options = {
      initialBackoffMs: 100,
      maxBackoffMs: 500,
      streamTimeoutMs: 5000,
      events: {
        flushIntervalMs: command.flush_interval_ms ?? 5000,
        privateAttributes: command.private_attributes ?? [],
        allAttributesPrivate: command.all_attributes_private ?? false,
      },
    }
    if (command.endpoint !== undefined) options.endpoint = command.endpoint
    if (command.cache_dir !== undefined) options.cacheDir = command.cache_dir
    if (command.bootstrap !== undefined) options.bootstrap = command.bootstrap
    if (command.offline === true) options.offline = true
    if (command.context !== undefined && command.context !== null) options.context = command.context
    const created = new Client(required(command, 'sdk_key'), options)
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
  async evaluate(command) {
    const detail = requireClient().variationDetail(
      required(command, 'flag'),
      command.context ?? null,
      command.default ?? null,
      command.type,
    )
    return {
      value: detail.value,
      variation: detail.variation,
      reason: snakeReason(detail.reason),
      in_experiment: detail.inExperiment,
      source: detail.source,
      version: detail.version,
    }
  },
  async evaluate_all(command) {
    const flags = {}
    for (const [key, detail] of Object.entries(requireClient().allFlags(command.context))) {
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
    return { arrived: await requireClient().identify(command.context, command.timeout_ms ?? 5000) }
  },
  async track(command) {
    requireClient().track(required(command, 'name'), command.context, command.value)
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

async function answer(line) {
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
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  // Commands are answered one at a time, in order, even when some wait.
  for await (const line of lines) {
    if (line.trim() === '') continue
    process.stdout.write(JSON.stringify(await answer(line)) + '\n')
  }
  await closeClient()
}

main().catch((err) => {
  process.stderr.write(`testee: ${err.stack}\n`)
  process.exit(1)
})
