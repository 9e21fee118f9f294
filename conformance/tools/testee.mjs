// What the JavaScript testees share (sdk-node/testee/testee.js, and sdk-web/testee/page.js
// in the browser): the commands of conformance/PROTOCOL.md over a client of either SDK. The
// two APIs differ in how a client is made and in where the context of a call comes from;
// `commandHandlers` takes those parts from the testee.

/** A detail's reason as the protocol (and the vector files) write it. */
export function snakeReason(reason) {
  const out = { kind: reason.kind }
  if (reason.ruleIndex !== undefined) out.rule_index = reason.ruleIndex
  if (reason.ruleId !== undefined) out.rule_id = reason.ruleId
  if (reason.prerequisiteKey !== undefined) out.prerequisite_key = reason.prerequisiteKey
  if (reason.errorKind !== undefined) out.error_kind = reason.errorKind
  return out
}

/** A detail as the protocol writes an evaluation: value, variation, reason, in_experiment. */
export function evaluation(detail) {
  return {
    value: detail.value,
    variation: detail.variation,
    reason: snakeReason(detail.reason),
    in_experiment: detail.inExperiment,
  }
}

/** The command's `field`, which it must have. */
export function required(command, field) {
  if (command[field] === undefined) throw new Error(`${field}: required`)
  return command[field]
}

/**
 * The handlers of the protocol's commands, by `cmd`, over one client at a time. `sdk` gives
 * what differs between the SDKs:
 *
 * - `newClient(command, options)`: the client `create` asks for, made with `options` (the
 *   options both SDKs take the same way: timings, events, endpoint, offline, context) and
 *   the others the command gives;
 * - `variationDetail(client, command)`, `allFlags(client, command)`,
 *   `identify(client, command)` and `track(client, command)`: the calls, with the context
 *   the SDK takes for them.
 */
export function commandHandlers(sdk) {
  let client = null
  /** Changes seen by the client's listener and not yet taken by `wait_change`. */
  let changes = []
  /** Wakes a waiting `wait_change` when a change arrives. */
  let changeArrived = null

  function requireClient() {
    if (!client) throw new Error('no client: send `create` first')
    return client
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

  return {
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
      if (command.offline === true) options.offline = true
      if (command.context !== undefined && command.context !== null) options.context = command.context
      const created = sdk.newClient(command, options)
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
      const detail = sdk.variationDetail(requireClient(), command)
      return { ...evaluation(detail), source: detail.source, version: detail.version }
    },
    async evaluate_all(command) {
      const flags = {}
      for (const [key, detail] of Object.entries(sdk.allFlags(requireClient(), command))) {
        flags[key] = evaluation(detail)
      }
      return { flags }
    },
    async identify(command) {
      return { arrived: await sdk.identify(requireClient(), command) }
    },
    async track(command) {
      sdk.track(requireClient(), command)
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
}
