// gRPC-web over `fetch`, binary format: the two call shapes the SDK makes (a unary Publish
// and the server-streaming Watch), written from the protocol rather than taken from a
// general RPC library, which would cost a page more than the rest of the SDK.
//
// A request body is one frame: a flags byte (0: an uncompressed message), the message's
// length as a 32-bit big-endian integer, and the message. A response body is a sequence of
// such frames, data frames (flags 0) followed by one trailer frame (flags 0x80) whose payload
// is HTTP/1-style header lines carrying `grpc-status` and `grpc-message`. A call that fails
// before sending anything may carry its status in the response headers instead
// ("trailers-only"), and a proxy may answer with a plain HTTP error.

/** The gRPC status codes the SDK reads, by name. */
export const Code = {
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  Unauthenticated: 16,
} as const

const CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
]

/** A call that ended with a status other than OK (or never reached a server). */
export class GrpcError extends Error {
  constructor(
    readonly code: number,
    /** The server's `grpc-message`, decoded; or what went wrong on the way. */
    readonly detail: string,
  ) {
    super(`${CODE_NAMES[code] ?? `code ${code}`}: ${detail}`)
    this.name = 'GrpcError'
  }

  /** Any error as a `GrpcError`: a failed `fetch` is UNAVAILABLE, an aborted one CANCELED. */
  static from(err: unknown): GrpcError {
    if (err instanceof GrpcError) return err
    if (err instanceof Error && err.name === 'AbortError') return new GrpcError(Code.Canceled, 'the call was canceled')
    return new GrpcError(Code.Unavailable, err instanceof Error ? err.message : String(err))
  }
}

export type Fetch = (input: string, init: RequestInit) => Promise<Response>

export interface CallOptions {
  readonly headers: Record<string, string>
  readonly signal: AbortSignal
  /** `fetch` with `keepalive`, so that the request outlives the page (small bodies only). */
  readonly keepalive?: boolean
}

const TRAILER_FLAG = 0x80
const COMPRESSED_FLAG = 0x01
/** Larger frames are refused rather than buffered (the server's own limit is 4 MiB). */
const MAX_FRAME_BYTES = 16 * 1024 * 1024

/** Which gRPC status an HTTP status without one stands for (as gRPC's HTTP mapping says). */
function codeOfHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return Code.Internal
    case 401:
      return Code.Unauthenticated
    case 403:
      return Code.PermissionDenied
    case 404:
      return Code.Unimplemented
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.Unavailable
    default:
      return Code.Unknown
  }
}

function decodeMessage(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** The status in a set of headers (response headers or a trailer frame), if there is one. */
function statusOf(get: (name: string) => string | null): GrpcError | null | undefined {
  const status = get('grpc-status')
  if (status === null) return undefined
  const code = Number.parseInt(status, 10)
  if (!Number.isInteger(code) || code < 0) return new GrpcError(Code.Internal, `invalid grpc-status ${JSON.stringify(status)}`)
  return code === 0 ? null : new GrpcError(code, decodeMessage(get('grpc-message') ?? ''))
}

function parseTrailer(payload: Uint8Array): Map<string, string> {
  const trailer = new Map<string, string>()
  for (const line of new TextDecoder().decode(payload).split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) trailer.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return trailer
}

function requestBody(message: Uint8Array): Uint8Array<ArrayBuffer> {
  const body = new Uint8Array(5 + message.length)
  new DataView(body.buffer).setUint32(1, message.length)
  body.set(message, 5)
  return body
}

/**
 * Calls `url` and yields each response message; returns when the server ends the call with
 * OK, throws a `GrpcError` otherwise (including when the body ends without a status).
 */
export async function* call(fetch: Fetch, url: string, message: Uint8Array, options: CallOptions): AsyncGenerator<Uint8Array> {
  let response: Response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { ...options.headers, 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
      body: requestBody(message),
      signal: options.signal,
      ...(options.keepalive === true ? { keepalive: true } : {}),
    })
  } catch (err) {
    throw GrpcError.from(err)
  }
  if (options.signal.aborted) {
    await response.body?.cancel().catch(() => {})
    throw new GrpcError(Code.Canceled, 'the call was canceled')
  }
  const headerStatus = statusOf((name) => response.headers.get(name))
  if (headerStatus !== undefined) {
    // Trailers-only: the status is all there is.
    await response.body?.cancel().catch(() => {})
    if (headerStatus !== null) throw headerStatus
    return
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => {})
    throw new GrpcError(codeOfHttpStatus(response.status), `HTTP ${response.status} ${response.statusText}`.trim())
  }
  const type = response.headers.get('content-type') ?? ''
  if (!type.startsWith('application/grpc-web')) {
    await response.body?.cancel().catch(() => {})
    throw new GrpcError(Code.Unknown, `the response is not gRPC-web (content-type ${JSON.stringify(type)})`)
  }
  if (response.body === null) throw new GrpcError(Code.Internal, 'the response has no body')

  const reader = response.body.getReader()
  let buffered: Uint8Array = new Uint8Array(0)
  try {
    for (;;) {
      // Every complete frame in the buffer first, then more bytes.
      while (buffered.length >= 5) {
        const flags = buffered[0]
        const length = new DataView(buffered.buffer, buffered.byteOffset).getUint32(1)
        if (length > MAX_FRAME_BYTES) throw new GrpcError(Code.ResourceExhausted, `a response frame of ${length} bytes`)
        if (buffered.length < 5 + length) break
        const payload = buffered.subarray(5, 5 + length)
        buffered = buffered.subarray(5 + length)
        if ((flags & TRAILER_FLAG) !== 0) {
          const trailer = parseTrailer(payload)
          const status = statusOf((name) => trailer.get(name) ?? null)
          if (status === undefined) throw new GrpcError(Code.Internal, 'the trailer has no grpc-status')
          if (status !== null) throw status
          return
        }
        if ((flags & COMPRESSED_FLAG) !== 0) throw new GrpcError(Code.Internal, 'a compressed message, which was not asked for')
        yield payload
      }
      let chunk: ReadableStreamReadResult<Uint8Array>
      try {
        chunk = await reader.read()
      } catch (err) {
        throw GrpcError.from(err)
      }
      if (chunk.done) throw new GrpcError(Code.Unavailable, 'the response ended without a status')
      buffered = buffered.length === 0 ? chunk.value : concat(buffered, chunk.value)
    }
  } finally {
    reader.cancel().catch(() => {})
  }
}

/** A unary call: its one response message. */
export async function unary(fetch: Fetch, url: string, message: Uint8Array, options: CallOptions): Promise<Uint8Array> {
  let response: Uint8Array | undefined
  for await (const payload of call(fetch, url, message, options)) {
    if (response !== undefined) throw new GrpcError(Code.Unimplemented, 'more than one message in a unary response')
    response = payload
  }
  if (response === undefined) throw new GrpcError(Code.Unimplemented, 'no message in a unary response')
  return response
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}
