'use strict'
// bench/aedes-node.js: one Aedes node for bench/run --cluster.
//
//   node bench/aedes-node.js --dir DIR --port PORT --redis-port RPORT --id ID
//
// DIR holds node_modules with the versions bench/package.json pins
// (bench/run installs them there from the npm registry). The node listens
// on 127.0.0.1:PORT; its sessions, subscriptions, offline queues and
// retained messages go to aedes-persistence-redis and its traffic between
// nodes to mqemitter-redis, both on the redis-server at 127.0.0.1:RPORT, as
// Aedes documents a cluster. It prints "listening PORT" once it accepts
// connections, and closes the broker, the emitter and the persistence on
// SIGTERM or SIGINT, then exits.

const net = require('node:net')
const path = require('node:path')
const { createRequire } = require('node:module')
const { pathToFileURL } = require('node:url')

function parseArgs (argv) {
  const opts = {}
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]
    const val = argv[i + 1]
    if (!key.startsWith('--') || val === undefined) {
      throw new Error('usage: aedes-node.js --dir DIR --port PORT --redis-port RPORT --id ID')
    }
    opts[key.slice(2)] = val
  }
  for (const k of ['dir', 'port', 'redis-port', 'id']) {
    if (!opts[k]) throw new Error('aedes-node.js: --' + k + ' is required')
  }
  return opts
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const req = createRequire(path.join(path.resolve(opts.dir), 'package.json'))
  // aedes 1.x is an ES module; the other two are CommonJS.
  const { Aedes } = await import(pathToFileURL(req.resolve('aedes')).href)
  const persistenceRedis = req('aedes-persistence-redis')
  const mqemitterRedis = req('mqemitter-redis')
  const redis = { host: '127.0.0.1', port: Number(opts['redis-port']), family: 4 }

  const mq = mqemitterRedis(redis)
  const persistence = persistenceRedis(Object.assign({}, redis))
  const broker = await Aedes.createBroker({ id: opts.id, mq, persistence })
  broker.on('error', (err) => console.error('aedes error:', err.message))

  const server = net.createServer(broker.handle)
  let closing = false
  function shutdown () {
    if (closing) return
    closing = true
    // A broker that does not close within 10 s is left to the exit.
    setTimeout(() => process.exit(1), 10000).unref()
    server.close()
    // destroy() without a callback: with one it waits for a 'ready' event
    // that the promise-based setup() of aedes 1.x never emits.
    broker.close(() => {
      Promise.resolve(persistence.destroy()).finally(() => process.exit(0))
    })
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
  server.on('error', (err) => {
    console.error('aedes-node.js: listen: ' + err.message)
    process.exit(1)
  })
  server.listen(Number(opts.port), '127.0.0.1', () => {
    console.log('listening ' + server.address().port + ' aedes ' + broker.version)
  })
}

main().catch((err) => {
  console.error('aedes-node.js: ' + (err && err.stack ? err.stack : err))
  process.exit(1)
})
