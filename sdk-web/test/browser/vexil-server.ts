// A real vexil-server for the tests, started from the workspace build
// ($CARGO_TARGET_DIR/debug; ci.sh builds it) on its embedded SQLite, and changed through the
// `vexil` command.

import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { eventually } from './page.js'

/** The repository. */
export const ROOT = resolve(import.meta.dirname, '..', '..', '..')
const TARGET = process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target')
const SERVER_BIN = join(TARGET, 'debug', 'vexil-server')
const CLI_BIN = join(TARGET, 'debug', 'vexil')
/** Why the server tests cannot run here, or `false`. */
export const NO_SERVER = existsSync(SERVER_BIN) && existsSync(CLI_BIN) ? false : `no ${SERVER_BIN}: cargo build --bins first`

const run = promisify(execFile)

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  const { port } = server.address() as AddressInfo
  await new Promise((done) => server.close(done))
  return port
}

/** A vexil-server on its embedded SQLite, on fixed ports so that it can be restarted. */
export class VexilServer {
  private process: ChildProcess | undefined
  readonly workdir = mkdtempSync(join(tmpdir(), 'vexil-web-test-'))
  port = 0
  httpPort = 0
  token = ''
  clientKey = ''
  serverKey = ''

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    if (this.port === 0) {
      this.port = await freePort()
      this.httpPort = await freePort()
    }
    this.process = spawn(SERVER_BIN, [
      '--listen', `127.0.0.1:${this.port}`,
      '--http-listen', `127.0.0.1:${this.httpPort}`,
      '--data-dir', join(this.workdir, 'data'),
      '--heartbeat-interval', '0.5',
    ], { stdio: 'ignore' })
    await eventually(async () => {
      try {
        return (await fetch(`http://127.0.0.1:${this.httpPort}/readyz`)).ok
      } catch {
        return false
      }
    }, 'vexil-server to be ready', 30_000)
    if (this.token === '') {
      const credentials = JSON.parse(readFileSync(join(this.workdir, 'data', 'credentials.json'), 'utf8'))
      this.token = credentials.admin_token.token
      this.clientKey = credentials.sdk_keys.production.client
      this.serverKey = credentials.sdk_keys.production.server
    }
  }

  /** Kills the process, as a crash would. */
  kill(): void {
    this.process?.kill('SIGKILL')
    this.process = undefined
  }

  /** Runs the `vexil` command on the production environment. */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run(CLI_BIN, args, {
      env: { ...process.env, VEXIL_SERVER: this.endpoint, VEXIL_TOKEN: this.token, VEXIL_ENVIRONMENT: 'production' },
    })
    return stdout
  }

  async importFlags(flags: unknown[], segments: unknown[] = []): Promise<void> {
    const file = join(this.workdir, `flags-${Date.now()}.json`)
    writeFileSync(file, JSON.stringify({ flags, segments }))
    await this.cli('import', file)
  }

  /** The sum of a Prometheus metric's samples whose labels include `labels`. */
  async metric(name: string, labels: string): Promise<number> {
    const body = await (await fetch(`http://127.0.0.1:${this.httpPort}/metrics`)).text()
    return body.split('\n')
      .filter((line) => line.startsWith(`${name}{`) && line.includes(labels))
      .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0)
  }

  stop(): void {
    this.kill()
    rmSync(this.workdir, { recursive: true, force: true })
  }
}
