'use strict';
// `npm pack` / `npm publish` run this first: it copies the shared library into
// prebuilds/<platform>-<arch>/ so the tarball works outside this repository (lib/native.js
// looks there after $KEYLEDGER_LIB). Which library: $KEYLEDGER_LIB if set, else the
// repository's target/release/, else target/debug/. Debug sections are stripped from the
// copy when `strip` is available. Fails (and so stops the pack) when no library is built.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { libFileName, prebuiltDir } = require('../lib/locate');

const root = path.resolve(__dirname, '..', '..', '..');
const candidates = process.env.KEYLEDGER_LIB
  ? [process.env.KEYLEDGER_LIB]
  : ['release', 'debug'].map((p) => path.join(root, 'target', p, libFileName()));
const from = candidates.find((c) => fs.existsSync(c));
if (!from) {
  console.error(`keyledger prepack: no shared library to ship. Build it first (cargo build --lib --release at the repository root) or set KEYLEDGER_LIB. Looked in: ${candidates.join(', ')}`);
  process.exit(1);
}
const dir = prebuiltDir(path.join(__dirname, '..'));
fs.rmSync(path.join(__dirname, '..', 'prebuilds'), { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
const to = path.join(dir, libFileName());
fs.copyFileSync(from, to);
const stripped = process.platform === 'linux' && spawnSync('strip', ['--strip-debug', to], { stdio: 'ignore' }).status === 0;
console.error(`keyledger prepack: ${from} -> ${path.relative(path.join(__dirname, '..'), to)}${stripped ? ' (debug sections stripped)' : ''}`);
