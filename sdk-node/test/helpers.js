'use strict'
// Shared by the tests: a real vexil-server on free ports with its own data directory, driven
// with the `vexil` admin command, as the conformance runner does.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..', '..')
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target')
const SERVER_BIN = path.join(TARGET, 'debug', 'vexil-server')
const CLI_BIN = path.join(TARGET, 'debug', 'vexil')

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function httpGet(url) {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { timeout: 2000 }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk) => (body += chunk))
      response.on('end', () => resolve({ status: response.statusCode, body }))
    })
    request.on('timeout', () => request.destroy(new Error('timeout')))
    request.on('error', reject)
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs`. */
async function eventually(check, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const result = await check()
    if (result) return result
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

class Server {
  static async start() {
    const server = new Server()
    server.workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'vexil-node-test-'))
    server.dataDir = path.join(server.workdir, 'server-data')
    // A port found free can be taken by another process before the server binds it; then the
    // server exits at once, and a fresh pair of ports is tried.
    for (let attempt = 1; ; attempt++) {
      server.port = await freePort()
      server.httpPort = await freePort()
      try {
        await server.run()
        break
      } catch (err) {
        if (!err.exitedEarly || attempt === 3) throw err
      }
    }
    const credentials = JSON.parse(fs.readFileSync(path.join(server.dataDir, 'credentials.json'), 'utf8'))
    server.token = credentials.admin_token.token
    server.keys = credentials.sdk_keys.production
    return server
  }

  /**
   * Starts the process (again, after `kill`: same ports and data) and waits until it is ready.
   * A failure carries the end of the server's standard error.
   */
  async run() {
    const server = this
    const child = spawn(
      SERVER_BIN,
      [
        '--listen', `127.0.0.1:${server.port}`,
        '--http-listen', `127.0.0.1:${server.httpPort}`,
        '--data-dir', server.dataDir,
        '--heartbeat-interval', '0.5',
        '--version-check-interval', '0.5',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    server.process = child
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      stderr = (stderr + chunk).slice(-4000)
    })
    let exited = null
    child.on('exit', (code, signal) => {
      exited = signal || `exit code ${code}`
    })
    try {
      await eventually(async () => {
        if (exited) return true
        try {
          return (await httpGet(`http://127.0.0.1:${server.httpPort}/readyz`)).status === 200
        } catch {
          return false
        }
      }, 'vexil-server to be ready', 30000)
    } catch (err) {
      server.kill()
      err.message += `; its standard error ends with:\n${stderr}`
      throw err
    }
    if (exited) {
      if (server.process === child) server.process = null
      const err = new Error(`vexil-server exited before it was ready (${exited}):\n${stderr}`)
      err.exitedEarly = true
      throw err
    }
  }

  /** Kills the process, as a crash would; `run` starts it again. */
  kill() {
    if (this.process) {
      this.process.kill('SIGKILL')
      this.process = null
    }
  }

  get endpoint() {
    return `http://127.0.0.1:${this.port}`
  }

  cli(...args) {
    execFileSync(CLI_BIN, args, {
      env: { ...process.env, VEXIL_SERVER: this.endpoint, VEXIL_TOKEN: this.token, VEXIL_ENVIRONMENT: 'production' },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
  }

  importFlags(flags) {
    const file = path.join(this.workdir, `import-${process.hrtime.bigint()}.json`)
    fs.writeFileSync(file, JSON.stringify({ flags, segments: [] }))
    this.cli('import', file)
  }

  /** The value of a Prometheus sample of the server, 0 when absent. */
  async metric(sample) {
    const { body } = await httpGet(`http://127.0.0.1:${this.httpPort}/metrics`)
    for (const line of body.split('\n')) {
      if (line.startsWith(sample + ' ')) return Number(line.split(' ').pop())
    }
    return 0
  }

  stop() {
    this.kill()
    fs.rmSync(this.workdir, { recursive: true, force: true })
  }
}

module.exports = { ROOT, Server, eventually, sleep, SERVER_BIN }
