// A Daemon subclass with an init-script command line:
//
//   node examples/service.js start|stop|restart|status|reload [pidfile]
//
// It serves HTTP on 127.0.0.1 (port written to PIDFILE.port), closes the server on shutdown
// and logs on reload.
const fs = require('node:fs')
const http = require('node:http')
const { Daemon } = require('..')

const pidFile = process.argv[3] ?? '/tmp/daemonkit-service.pid'

class Server extends Daemon {
  async run(ctx) {
    const server = http.createServer((req, res) => res.end(`ok from ${ctx.pid}\n`))
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve)) // ready once run() resolves
    fs.writeFileSync(`${ctx.pidFile}.port`, String(server.address().port))
    ctx.onShutdown(() => new Promise((resolve) => server.close(resolve)))
    ctx.onReload(() => console.log(`reload at ${new Date().toISOString()}`))
  }
}

new Server({ pidFile, stdout: `${pidFile}.log`, stderr: `${pidFile}.log` }).cli(process.argv[2])
