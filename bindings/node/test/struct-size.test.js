'use strict';
// The growth path of the C structs: kl_authorize_opts and kl_grant start with `size`; the
// binding sets it to the struct as it declares it, and the library refuses a size below
// its first layout before any work.
const test = require('node:test');
const assert = require('node:assert/strict');
const native = require('../lib/native');
const C = require('../lib/constants');
const { seeded } = require('../testlib/helpers');

const blen = Buffer.byteLength;

function opts(size) {
  return {
    size, cost: 1, has_cost: 1, idempotency_key: null, idempotency_key_len: 0, signature: null,
    signature_len: 0, body: null, body_len: 0, now_ms: 0, limits_json: null, limits_json_len: 0,
    limit_cost: 0, has_limit_cost: 0, refuse_replay: 0, query: null, query_len: 0, case_insensitive: 0, error_body: null,
  };
}

test('the binding sets size in the structs it passes, and the library honours it', () => {
  const { vault, token } = seeded({ credits: 10 });
  const buf = native.grantBuffer();
  assert.equal(buf.readUInt32LE(native.GRANT_LAYOUT.size_field), native.GRANT_LAYOUT.size);
  assert.equal(native.GRANT_LAYOUT.size_field, 0);
  const g = vault.authorize(token, { scope: 'sms:send', cost: 2 });
  assert.equal(g.charged, 2);
  assert.equal(g.credits, 8);
  vault.close();
});

test('a size below the first layout is invalid_argument, before any work', () => {
  const { file, vault, token } = seeded({ credits: 10 });
  vault.authorize(token, { scope: 'sms:send' }); // verified: the raw calls below are warm
  vault.close();
  const out = [null];
  const h = [null];
  const path = file;
  assert.equal(native.kl_vault_open(path, blen(path), null, 0, h), C.KL_OK);
  const v = h[0];
  try {
    const scope = 'sms:send';
    // Options too small: refused, the grant buffer untouched.
    const grant = native.grantBuffer();
    const before = Buffer.from(grant);
    const st = native.kl_authorize_scope(v, token, blen(token), scope, blen(scope), opts(4), grant);
    assert.equal(st, C.KL_INVALID_ARGUMENT);
    assert.match(native.kl_last_error_message(), /kl_authorize_opts->size is 4/);
    assert.deepEqual(grant, before);
    // A grant too small: refused before the charge.
    const small = native.grantBuffer();
    small.writeUInt32LE(8, 0);
    const before2 = Buffer.from(small);
    const st2 = native.kl_authorize_scope(v, token, blen(token), scope, blen(scope), opts(native.KL_AUTHORIZE_OPTS_SIZE), small);
    assert.equal(st2, C.KL_INVALID_ARGUMENT);
    assert.match(native.kl_last_error_message(), /kl_grant->size is 8/);
    assert.deepEqual(small, before2);
    // Nothing was charged; then size 0 (the library's layout) works.
    assert.equal(native.kl_balance(v, 'acct_42', blen('acct_42'), out), C.KL_OK);
    assert.equal(JSON.parse(native.takeString(out[0])).credits, 10);
    const zero = Buffer.alloc(native.GRANT_LAYOUT.size);
    assert.equal(native.kl_authorize_scope(v, token, blen(token), scope, blen(scope), opts(0), zero), C.KL_OK);
    assert.equal(zero.readUInt32LE(0), 0);
    assert.equal(zero.readBigUInt64LE(native.GRANT_LAYOUT.credits), 9n);
  } finally {
    native.kl_vault_close(v);
    native.kl_vault_free(v);
  }
});
