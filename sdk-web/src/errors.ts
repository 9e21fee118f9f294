/** The `code` of every error the SDK throws (the Node SDK's codes, where they apply). */
export type ErrorCode =
  | 'VEXIL_INVALID_ARGUMENT'
  | 'VEXIL_INVALID_KEY'
  | 'VEXIL_INVALID_ENDPOINT'
  | 'VEXIL_INVALID_CONTEXT'

/**
 * An error thrown (or a promise rejected) by the SDK for misuse: a bad key, option or context.
 * Variation calls never throw. The message names the argument or option at fault and never
 * holds the SDK key.
 */
export class VexilError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string) {
    super(message)
    this.name = 'VexilError'
    this.code = code
  }
}

/** How a value is described in an error message: its type and a short rendering. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
    case 'number':
    case 'boolean':
    case 'undefined':
    case 'bigint':
      return String(value)
    case 'function':
      return 'a function'
    default:
      return `a ${typeof value}`
  }
}
