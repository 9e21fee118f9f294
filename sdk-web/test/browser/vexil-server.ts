// A real vexil-server for the tests, started from the workspace build
// ($CARGO_TARGET_DIR/debug; ci.sh builds it) on its embedded SQLite, and changed through the
// `vexil` command.

import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
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

/**
 * A free port below Linux's ephemeral range (32768 and up). The server is restarted on the
 * same ports while clients keep connecting to them; a port from the ephemeral range could be
 * taken meanwhile as the source port of one of those connections (a TCP self-connect), and
 * the restarted server could not listen.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const server = createServer()
    const free = await new Promise<boolean>((done) => {
      server.once('error', () => done(false))
      server.listen(port, '127.0.0.1', () => done(true))
    })
    if (free) {
      await new Promise((done) => server.close(done))
      return port
    }
  }
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
    // The server's output goes to a file, quoted when it does not become ready.
    const logFile = join(this.workdir, 'server.log')
    const log = openSync(logFile, 'a')
    const child = spawn(SERVER_BIN, [
      '--listen', `127.0.0.1:${this.port}`,
      '--http-listen', `127.0.0.1:${this.httpPort}`,
      '--data-dir', join(this.workdir, 'data'),
      '--heartbeat-interval', '0.5',
    ], { stdio: ['ignore', log, log] })
    closeSync(log)
    this.process = child
    try {
      await eventually(async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`vexil-server exited (${child.exitCode ?? child.signalCode})`)
        try {
          return (await fetch(`http://127.0.0.1:${this.httpPort}/readyz`)).ok
        } catch {
          return false
        }
      }, 'vexil-server to be ready', 30_000)
    } catch (err) {
      const output = readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n')
      throw new Error(`${(err as Error).message}; its last output:\n${output}`)
    }
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
