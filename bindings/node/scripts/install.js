'use strict';
// npm runs this when the package is installed (the `install` script). It makes sure a
// shared library is there for lib/locate.js to find:
//   - the prebuilt library shipped for this platform (prebuilds/<platform>-<arch>/) is used
//     as it is, unless KEYLEDGER_BUILD_FROM_SOURCE=1;
//   - otherwise the library is built with cargo from the Rust source shipped in native/
//     (the core crate: Cargo.toml, Cargo.lock, src/), `cargo build --release --lib
//     --locked`, into build/<platform>-<arch>/. CARGO_NET_OFFLINE=true builds from the
//     local cargo registry cache alone; CARGO and CARGO_TARGET_DIR are honoured.
//   - with KEYLEDGER_LIB set (the user's own library), nothing is built.
// In the repository itself (no native/ directory: a checkout, not a tarball) it does
// nothing: lib/locate.js finds the repository's target/.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { libFileName, prebuiltDir, builtDir } = require('../lib/locate');

const pkg = path.resolve(__dirname, '..');
const native = path.join(pkg, 'native');
const platform = `${process.platform}-${process.arch}`;

function say(msg) {
  console.error(`keyledger install: ${msg}`);
}

function fail(msg) {
  console.error(`keyledger install: ${msg}`);
  process.exit(1);
}

function main() {
  const force = process.env.KEYLEDGER_BUILD_FROM_SOURCE === '1';
  const prebuilt = path.join(prebuiltDir(pkg), libFileName());
  if (!force && fs.existsSync(prebuilt)) {
    say(`using the prebuilt library for ${platform}`);
    return;
  }
  if (!force && process.env.KEYLEDGER_LIB) {
    say(`no prebuilt library for ${platform}; KEYLEDGER_LIB is set (${process.env.KEYLEDGER_LIB}), nothing to build`);
    return;
  }
  if (!fs.existsSync(path.join(native, 'Cargo.toml'))) {
    // A checkout of the repository: the library comes from its target/ (cargo build --lib).
    if (force) say('KEYLEDGER_BUILD_FROM_SOURCE=1 in a repository checkout: build with `cargo build --lib` at its root');
    return;
  }
  const why = force ? 'KEYLEDGER_BUILD_FROM_SOURCE=1' : `no prebuilt library for ${platform}`;
  const cargo = process.env.CARGO || 'cargo';
  const probe = spawnSync(cargo, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    fail(
      `${why}, so the library must be built from source, but cargo was not found ` +
        `(tried \`${cargo} --version\`: ${probe.error ? probe.error.code || probe.error.message : `exit ${probe.status}`}). ` +
        'Install Rust (https://rustup.rs, Rust 1.90 or newer) and reinstall, or build ' +
        `libkeyledger yourself and set KEYLEDGER_LIB to the path of its ${libFileName()}.`,
    );
  }
  say(`${why}: building the library from source with ${probe.stdout.trim()} (cargo build --release --lib --locked; a few minutes)`);
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(native, 'target');
  const args = ['build', '--release', '--lib', '--locked', '--manifest-path', path.join(native, 'Cargo.toml')];
  const run = spawnSync(cargo, args, {
    stdio: 'inherit',
    env: { ...process.env, CARGO_TARGET_DIR: targetDir },
  });
  if (run.error || run.status !== 0) {
    fail(`\`${cargo} ${args.join(' ')}\` failed (${run.error ? run.error.message : `exit ${run.status}`}); see its output above`);
  }
  const built = path.join(targetDir, 'release', libFileName());
  if (!fs.existsSync(built)) fail(`cargo succeeded but ${built} is missing`);
  const dir = builtDir(pkg);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(built, path.join(dir, libFileName()));
  if (!process.env.CARGO_TARGET_DIR) fs.rmSync(targetDir, { recursive: true, force: true });
  say(`built ${path.relative(pkg, path.join(dir, libFileName()))}`);
}

main();
