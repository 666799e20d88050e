// The ES module entry of daemonkit. It re-exports the CommonJS build (dist/index.js) rather
// than being a second build, so that `import` and `require` in one process share one module
// state: the daemon hand-off is taken once, and `instanceof` works across both.
// Node finds the named exports of dist/index.js statically (cjs-module-lexer);
// __test__/package.test.js checks that they are the same as `require('daemonkit')`'s.
import daemonkit from '../dist/index.js'

export * from '../dist/index.js'
export default daemonkit
