// Types of the ES module entry (esm/index.mjs): the same API as the CommonJS build.
import * as daemonkit from '../dist/index.js'

export * from '../dist/index.js'
export default daemonkit
