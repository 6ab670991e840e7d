'use strict';
// lib/constants.js is generated from include/keyledger.h: it must match the header, and the
// binding must take its numbers from it.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const gen = require('../scripts/gen-constants');
const C = require('../lib/constants');
const native = require('../lib/native');

test('lib/constants.js matches include/keyledger.h (node scripts/gen-constants.js)', () => {
  assert.equal(fs.readFileSync(gen.OUT, 'utf8'), gen.expected());
  for (const k of ['KL_OK', 'KL_OWNER_KEY', 'KL_OWNER_ACCOUNT', 'KL_REFILL_DAILY', 'KL_REFILL_MONTHLY',
    'KL_AUTH_OPERATOR', 'KL_INVALID_ARGUMENT', 'KL_VAULT_CLOSED', 'KL_ACCOUNT_ID_SIZE', 'KL_RATELIMIT_NAME_SIZE']) {
    assert.equal(typeof C[k], 'number', k);
  }
});

test('a changed header value makes the check fail', () => {
  const text = fs.readFileSync(require.resolve('../../../include/keyledger.h'), 'utf8');
  const changed = gen.render(gen.parse(text.replace('#define KL_OWNER_ACCOUNT 1', '#define KL_OWNER_ACCOUNT 7')));
  assert.notEqual(changed, gen.expected());
});

test('the kl_grant layout is the header sizes, and the status numbers agree with the library', () => {
  const G = native.GRANT_LAYOUT;
  assert.equal(G.sizes.account_id, C.KL_ACCOUNT_ID_SIZE);
  assert.equal(G.sizes.ratelimit_name, C.KL_RATELIMIT_NAME_SIZE);
  assert.equal(native.kl_status_code(C.KL_VAULT_CLOSED), 'vault_closed');
  assert.equal(native.kl_status_code(C.KL_INVALID_ARGUMENT), 'invalid_argument');
});
