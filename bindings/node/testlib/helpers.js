'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Vault } = require('..');

// Small argon2 parameters: tests never need real password-hashing cost.
const FAST = { argon2: { m_kib: 8, t: 1, p: 1 } };

let dir;
function tmpDir() {
  if (!dir) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyledger-node-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return dir;
}

let n = 0;
function vaultPath() {
  n += 1;
  return path.join(tmpDir(), `v${process.pid}-${n}.redb`);
}

/** A vault with the seeds' routes, an account with `credits`, and a key. */
function seeded({ credits = 10, scopes = ['numbers:read', 'sms:send'], options = {} } = {}) {
  const file = vaultPath();
  const vault = new Vault(file, { ...FAST, ...options });
  vault.addRoute('POST', '/api/v1/messaging/send', 'sms:send', { cost: 1 });
  vault.addRoute('GET', '/api/v1/numbers/mine', 'numbers:read');
  vault.addRoute('GET', '/api/v1/messaging/threads/:counterparty', 'numbers:read');
  vault.createAccount('acct_42', { credits, metadata: { plan: 'pro' } });
  const { token, key } = vault.createKey('acct_42', 'backend', scopes, { prefix: 'dial_live' });
  return { file, vault, token, key };
}

/** Assert that `fn` throws a KeyLedgerError with `code` (and returns it). */
function refused(assert, fn, code, status) {
  let caught;
  assert.throws(fn, (e) => {
    caught = e;
    return e && e.name === 'KeyLedgerError';
  });
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  if (status !== undefined) assert.equal(caught.status, status);
  assert.equal(caught.body.error, code);
  assert.equal(caught.body.success, false);
  assert.equal(typeof caught.message, 'string');
  return caught;
}

module.exports = { FAST, tmpDir, vaultPath, seeded, refused };
