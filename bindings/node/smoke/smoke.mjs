// The installed package's smoke test (scripts/test-node runs it in a temp directory
// outside the repository, after `npm install <tarball>`, with the shipped prebuilt and
// again built from source at install time): both entry points load, the library comes
// from the package itself, and a vault opens, mints a key and authorizes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Vault, libraryPath, version } from 'keyledger';

const require = createRequire(import.meta.url);
const cjs = require('keyledger');
assert.equal(cjs.Vault, Vault, 'require and import give the same Vault');
assert.equal(typeof require('keyledger/fastify'), 'function');
assert.equal(typeof require('keyledger/express').keyledgerMiddleware, 'function');

// Where the library must come from: prebuilds/ (shipped in the tarball), or build/ when
// the install script built it from source (KEYLEDGER_SMOKE_LIB_DIR=build).
const pkgDir = path.dirname(require.resolve('keyledger/package.json'));
const libDir = process.env.KEYLEDGER_SMOKE_LIB_DIR || 'prebuilds';
assert.ok(libraryPath.startsWith(path.join(pkgDir, libDir) + path.sep),
  `the library should come from the package's ${libDir}/, not ${libraryPath}`);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyledger-smoke-'));
try {
  const vault = new Vault(path.join(dir, 'keys.redb'));
  vault.addRoute('POST', '/send', 'sms:send', { cost: 1 });
  vault.createAccount('acme', { credits: 2 });
  const { token } = await vault.createKeyAsync('acme', 'backend', ['sms:send']);
  const g = await vault.authorizeAsync(token, { route: ['POST', '/send'] });
  assert.equal(g.accountId, 'acme');
  assert.equal(g.credits, 1);
  assert.throws(() => vault.authorize(`${token.slice(0, -4)}AAAA`, { route: ['POST', '/send'] }), (e) => e.status === 401);
  vault.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`keyledger ${version()} from ${libraryPath}: installed package works`);
