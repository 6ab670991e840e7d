'use strict';
// Where the shared library is looked for, in this order (lib/native.js):
//   1. $KEYLEDGER_LIB, the path of the library (an error if it does not exist);
//   2. the library built from source at install time (scripts/install.js):
//      build/<platform>-<arch>/libkeyledger.so;
//   3. the prebuilt library shipped in the npm package:
//      prebuilds/<platform>-<arch>/libkeyledger.so (copied in by scripts/prepack.js);
//   4. the repository's target/release/ then target/debug/ (a checkout of the source tree).
const fs = require('node:fs');
const path = require('node:path');

function libFileName() {
  switch (process.platform) {
    case 'darwin': return 'libkeyledger.dylib';
    case 'win32': return 'keyledger.dll';
    default: return 'libkeyledger.so';
  }
}

/** The directory of the prebuilt library for this platform inside the package at `pkg`. */
function prebuiltDir(pkg) {
  return path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`);
}

/** The directory of the library built at install time (scripts/install.js). */
function builtDir(pkg) {
  return path.join(pkg, 'build', `${process.platform}-${process.arch}`);
}

function findLibrary() {
  const fromEnv = process.env.KEYLEDGER_LIB;
  if (fromEnv) {
    if (!fs.existsSync(fromEnv)) {
      throw new Error(`keyledger: KEYLEDGER_LIB points to ${fromEnv}, which does not exist`);
    }
    return fromEnv;
  }
  const pkg = path.resolve(__dirname, '..');
  const root = path.resolve(pkg, '..', '..');
  const candidates = [
    path.join(builtDir(pkg), libFileName()),
    path.join(prebuiltDir(pkg), libFileName()),
    ...['release', 'debug'].map((p) => path.join(root, 'target', p, libFileName())),
  ];
  for (const c of candidates) {
    if (fs.existsSync(c)) return c;
  }
  throw new Error(
    'keyledger: the shared library was not found. Build it with `cargo build --lib` ' +
      '(or `cargo build --lib --release`) at the repository root, or set KEYLEDGER_LIB ' +
      `to the path of ${libFileName()}. Looked in: ${candidates.join(', ')}`,
  );
}

module.exports = { libFileName, prebuiltDir, builtDir, findLibrary };
