// A small HTTP server that runs as a daemon.
//
//   node examples/server.js /tmp/demo.pid /tmp/demo.port
//
// The launching shell gets its prompt back once the server listens (ready: 'manual');
// the port is written next to the pidfile, and the server stops on SIGTERM.
const fs = require('node:fs')
const http = require('node:http')
const { daemonize } = require('..')

const [pidFile = '/tmp/daemonkit-demo.pid', portFile = '/tmp/daemonkit-demo.port'] = process.argv.slice(2)

async function main() {
  const daemon = await daemonize({ pidFile, ready: 'manual', stdout: `${pidFile}.log`, stderr: `${pidFile}.log` })
  const server = http.createServer((req, res) => res.end(`hello from daemon ${daemon.pid}\n`))
  server.listen(0, '127.0.0.1', () => {
    fs.writeFileSync(portFile, String(server.address().port))
    console.log(`listening on ${server.address().port}`)
    daemon.ready() // now the launching process exits 0
  })
}

main()
