'use strict'
// Type tests: snippets a user would write, compiled with the TypeScript compiler against the
// built declarations (dist/*.d.ts) under `strict`. Some must compile; others must NOT, with the
// error given (a typo in an error code, a wrong option type, a mistyped run()).
const fs = require('node:fs')
const path = require('node:path')
const test = require('ava')
const ts = require('typescript')
const h = require('./helpers')

const ROOT = path.join(__dirname, '..')
const OPTIONS = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  moduleResolution: ts.ModuleResolutionKind.Node10,
  types: ['node'],
  typeRoots: [path.join(ROOT, 'node_modules', '@types')],
  esModuleInterop: true,
}

/** A temp project where `import … from 'daemonkit'` resolves to this checkout. */
function project(t, files) {
  const dir = h.tempDir(t)
  fs.mkdirSync(path.join(dir, 'node_modules'))
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'daemonkit'))
  const names = []
  for (const [name, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, name), text)
    names.push(path.join(dir, name))
  }
  return { dir, names }
}

/** { file: [TS error codes] } for every file. */
function diagnostics(names) {
  const program = ts.createProgram(names, OPTIONS)
  const out = {}
  for (const name of names) {
    const sf = program.getSourceFile(name)
    out[path.basename(name)] = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)].map((d) => ({
      code: d.code,
      text: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
    }))
  }
  return out
}

const IMPORTS = `import {
  AlreadyRunningError, Daemon, DaemonkitError, isDaemonkitError, spawnDaemon,
  type AnyDaemonkitError, type DaemonContext, type DaemonizeOptions, type DaemonkitErrorCode, type NormalizedOptions,
} from 'daemonkit'
declare const err: unknown
declare const e: DaemonkitError
export {}
`

const MUST_COMPILE = `${IMPORTS}
const code: DaemonkitError['code'] = 'EDAEMONRUNNING'
const codes: DaemonkitErrorCode[] = [code, 'EPIDFILE', 'EDAEMONNOTREADY', 'ELOGFILE']
const own: AlreadyRunningError['code'] = 'EDAEMONRUNNING'
if (isDaemonkitError(err)) {
  const any: AnyDaemonkitError = err
  // a check on code narrows to the class
  if (err.code === 'EDAEMONRUNNING') { const pid: number | undefined = err.pid; const file: string = err.path }
  if (err.code === 'EDAEMONNOTREADY') { const tail: string = err.daemonStderr; const why: 'exited' | 'timeout' = err.reason }
  if (err.code === 'ELOGFILE' || err.code === 'EPIDFILE') { const reason: string = err.reason }
}
if (e.code === 'EDAEMONSIGNAL') {}
const o: DaemonizeOptions = { pidFile: 'app.pid', stdout: 'ignore', stderr: '/var/log/app.log' }
class Server extends Daemon {
  protected async run(ctx: DaemonContext): Promise<void> {
    ctx.onShutdown(() => {})
  }
}
const d = new Daemon({ pidFile: 'app.pid', run: async (ctx) => { const pid: number = ctx.pid; ctx.signal.throwIfAborted() } })
const resolved: Readonly<NormalizedOptions> = d.options
const s: Promise<{ pid: number; commandPid: number }> = spawnDaemon('sleep', ['60'], { stdout: 'ignore' })
void [codes, own, o, Server, resolved, s]
`

// Each must fail with the TypeScript error code given.
const MUST_NOT_COMPILE = {
  'typo-in-code.ts': [2367, `${IMPORTS}\nif (e.code === 'EDAEMONRUNING') {}\n`],
  'unknown-code.ts': [2322, `${IMPORTS}\nconst c: DaemonkitError['code'] = 'EWHATEVER'\nvoid c\n`],
  'other-class-code.ts': [2322, `${IMPORTS}\nconst c: AlreadyRunningError['code'] = 'EPIDFILE'\nvoid c\n`],
  'no-pid-on-pidfile-error.ts': [2339, `${IMPORTS}\nif (isDaemonkitError(err) && err.code === 'EPIDFILE') { void err.pid }\n`],
  'output-not-a-string.ts': [2322, `${IMPORTS}\nconst o: DaemonizeOptions = { stdout: 42 }\nvoid o\n`],
  'run-with-wrong-context.ts': [2416, `${IMPORTS}\nclass S extends Daemon { protected async run(ctx: string) { void ctx } }\nvoid S\n`],
  'run-option-wrong-context.ts': [2339, `${IMPORTS}\nnew Daemon({ pidFile: 'a.pid', run: (ctx) => { void ctx.nope } })\n`],
}

test('what a user writes compiles under strict; the mistakes do not, with the expected error', (t) => {
  const { names } = project(t, { 'ok.ts': MUST_COMPILE, ...Object.fromEntries(Object.entries(MUST_NOT_COMPILE).map(([f, [, text]]) => [f, text])) })
  const found = diagnostics(names)
  t.deepEqual(found['ok.ts'], [], 'ok.ts compiles')
  for (const [file, [code]] of Object.entries(MUST_NOT_COMPILE)) {
    t.deepEqual(found[file].map((d) => d.code), [code], `${file}: ${JSON.stringify(found[file])}`)
  }
})

test("editors offer 'ignore' for stdout / stderr (the type does not collapse into string)", (t) => {
  const text = "import type { DaemonizeOptions } from 'daemonkit'\nexport const o: DaemonizeOptions = { stdout: '' }\n"
  const { names } = project(t, { 'complete.ts': text })
  const file = names[0]
  const host = {
    getScriptFileNames: () => [file],
    getScriptVersion: () => '1',
    getScriptSnapshot: (f) => (fs.existsSync(f) ? ts.ScriptSnapshot.fromString(fs.readFileSync(f, 'utf8')) : undefined),
    getCurrentDirectory: () => path.dirname(file),
    getCompilationSettings: () => OPTIONS,
    getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
    fileExists: ts.sys.fileExists,
    readFile: ts.sys.readFile,
    readDirectory: ts.sys.readDirectory,
    directoryExists: ts.sys.directoryExists,
    getDirectories: ts.sys.getDirectories,
    realpath: ts.sys.realpath,
  }
  const service = ts.createLanguageService(host, ts.createDocumentRegistry())
  const completions = service.getCompletionsAtPosition(file, text.indexOf("''") + 1, {})
  t.true((completions?.entries ?? []).some((entry) => entry.name === 'ignore'), JSON.stringify(completions?.entries?.map((x) => x.name)))
})

test('every type a public declaration refers to is exported by the package', (t) => {
  // Walk the declarations of everything 'daemonkit' exports, following each type reference into
  // the package's own .d.ts files: every interface, type alias, class or enum reached must be
  // importable by name, or users cannot write it down (TS2614).
  const { names } = project(t, { 'walk.ts': "import * as dk from 'daemonkit'\nexport type T = typeof dk\n" })
  const program = ts.createProgram(names, OPTIONS)
  const checker = program.getTypeChecker()
  const source = program.getSourceFile(names[0])
  const mod = checker.getSymbolAtLocation(source.statements[0].moduleSpecifier)
  const exports = checker.getExportsOfModule(mod)
  const exported = new Set(exports.map((sym) => sym.name))
  const ours = (decl) => {
    const file = fs.realpathSync(decl.getSourceFile().fileName)
    return file.startsWith(path.join(ROOT, 'dist') + path.sep) || file.startsWith(path.join(ROOT, 'binding') + path.sep)
  }
  const seen = new Set()
  const missing = new Set()
  const visit = (node) => {
    if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node)) {
      const at = ts.isTypeReferenceNode(node) ? node.typeName : node.expression
      let sym = checker.getSymbolAtLocation(at)
      if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym)
      const decls = sym?.declarations?.filter(ours) ?? []
      if (decls.length && !(sym.flags & ts.SymbolFlags.TypeParameter)) {
        if (!exported.has(sym.name)) missing.add(`${sym.name} (${path.relative(ROOT, decls[0].getSourceFile().fileName)})`)
        for (const d of decls) walk(d)
      }
    }
    // Private members are not part of the API.
    if ((ts.isPropertyDeclaration(node) || ts.isMethodDeclaration(node)) && node.modifiers?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword)) return
    ts.forEachChild(node, visit)
  }
  const walk = (decl) => {
    if (seen.has(decl)) return
    seen.add(decl)
    visit(decl)
  }
  for (const sym of exports) {
    const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym
    for (const d of target.declarations ?? []) walk(d)
  }
  t.true(seen.size > 20, `walked ${seen.size} declarations`)
  t.deepEqual([...missing].sort(), [])
})
