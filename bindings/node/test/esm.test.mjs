// The ES module entry points: `import … from 'keyledger'` gives the very objects
// `require('keyledger')` gives (one library, one class identity), and they work.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import keyledgerDefault, { Vault, KeyLedgerError, looksLikeKey, version, libraryPath } from 'keyledger';
import * as esm from 'keyledger';
import { keyledgerMiddleware, captureRawBody, gateUpgrades } from 'keyledger/express';

const require = createRequire(import.meta.url);
const cjs = require('keyledger');
const cjsExpress = require('keyledger/express');
const { vaultPath, FAST } = require('../testlib/helpers.js');

test('import and require give the same exports, by identity', () => {
  assert.equal(Vault, cjs.Vault);
  assert.equal(KeyLedgerError, cjs.KeyLedgerError);
  assert.equal(keyledgerDefault, cjs);
  const named = Object.keys(esm).filter((k) => k !== 'default').sort();
  assert.deepEqual(named, Object.keys(cjs).sort());
  for (const k of named) assert.equal(esm[k], cjs[k], k);
  assert.equal(libraryPath, cjs.libraryPath);
  assert.equal(typeof version(), 'string');
});

test('keyledger/express imports as an ES module too', () => {
  assert.equal(keyledgerMiddleware, cjsExpress.keyledgerMiddleware);
  assert.equal(captureRawBody, cjsExpress.captureRawBody);
  assert.equal(gateUpgrades, cjsExpress.gateUpgrades);
});

test('a vault opened through the ES module entry point authorizes', () => {
  const vault = new Vault(vaultPath(), FAST);
  vault.addRoute('GET', '/x', 'x:read');
  vault.createAccount('a', { credits: 1 });
  const { token } = vault.createKey('a', 'k', ['x:read']);
  assert.ok(looksLikeKey(token));
  assert.equal(vault.authorize(token, { route: ['GET', '/x'] }).accountId, 'a');
  assert.throws(() => vault.authorize(token, { scope: 'y:write' }), (e) => e instanceof cjs.KeyLedgerError && e.code === 'missing_scope');
  vault.close();
});
