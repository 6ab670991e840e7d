'use strict';
// argon2 parameters change only through the audited setArgon2Params; an opener's
// `argon2` option no longer rewrites an existing vault's.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { Vault } = require('..');

const FAST = { m_kib: 8, t: 1, p: 1 };

test('setArgon2Params is audited and validated; an opener does not rewrite the parameters', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kl-secrets-'));
  const file = path.join(dir, 'v.redb');
  const v = Vault.open(file, { argon2: FAST });
  v.setArgon2Params({ m_kib: 64, t: 2, p: 1 });
  assert.throws(() => v.setArgon2Params({ m_kib: 64, t: 0, p: 1 }), (e) => e.code === 'invalid_argument');
  assert.throws(() => v.setArgon2Params({ m_kib: 64, t: 2 ** 32, p: 1 }), (e) => e.code === 'invalid_argument');
  v.close();
  // Reopened with the fast parameters: nothing is rewritten, nothing audited.
  const again = Vault.open(file, { argon2: FAST });
  const entries = again.audit({ action: 'argon2_params_changed' });
  assert.equal(entries.length, 1);
  assert.deepEqual(entries[0].details, { from: FAST, to: { m_kib: 64, t: 2, p: 1 } });
  again.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
