#!/usr/bin/env node
/**
 * The `weft` executable (`npm run build` makes what it runs).
 *
 * `init` and `serve` run the CLI as built (`dist/cli/main.js`). Every other
 * command only talks to a running node, and runs the CLI's client bundle
 * (`dist/weft-client.cjs`: the commands without the node) with V8's code
 * cache, so it starts without compiling the bundle again, which is most of
 * a client command's start otherwise.
 *
 * The cache lives in the user's own cache directory (`$XDG_CACHE_HOME/weft`
 * or `~/.cache/weft`, mode 0700: it holds code that runs as the user), keyed
 * by the bundle's size and time and Node's version; V8 refuses a cache that
 * does not fit the code, and it is then made again. Without a place to
 * keep it, the bundle runs uncached.
 */
"use strict"
const fs = require("node:fs")
const os = require("node:os")
const path = require("node:path")
const vm = require("node:vm")
const Module = require("node:module")
const { pathToFileURL } = require("node:url")

const dist = path.join(__dirname, "..", "dist")
const command = process.argv[2]

if (command === "init" || command === "serve") {
  import(pathToFileURL(path.join(dist, "cli", "main.js")).href)
} else {
  const bundle = path.join(dist, "weft-client.cjs")
  const stat = fs.statSync(bundle)
  const dir = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "weft")
  const cache = path.join(dir, `client-${stat.size}-${Math.trunc(stat.mtimeMs)}-${process.version}.v8`)
  let cachedData
  try {
    cachedData = fs.readFileSync(cache)
  } catch {}
  // the bundle's first line is its shebang
  const source = fs.readFileSync(bundle, "utf8").replace(/^#!.*/, "")
  const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData })
  if (cachedData === undefined || script.cachedDataRejected) {
    // written once the command is done, with what it compiled
    process.once("exit", () => {
      try {
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
        fs.writeFileSync(cache, script.createCachedData(), { mode: 0o600 })
      } catch {}
    })
  }
  const module_ = { exports: {} }
  script.runInThisContext()(module_.exports, Module.createRequire(bundle), module_, bundle, dist)
}
