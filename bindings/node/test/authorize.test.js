'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Vault, KeyLedgerError, looksLikeKey, redact, version } = require('..');
const { seeded, refused } = require('../testlib/helpers');

test('a grant carries every field (fast path)', () => {
  const { vault, token, key } = seeded({ credits: 10 });
  const g = vault.authorize(token, { route: ['GET', '/api/v1/numbers/mine'] });
  assert.deepEqual(g, {
    accountId: 'acct_42',
    keyId: key.keyId,
    keyName: 'backend',
    prefix: 'dial_live',
    authMethod: 'apikey',
    scopes: null,
    charged: 0,
    credits: 10,
    totalCredits: 10,
    replayed: false,
    ratelimits: null,
    ratelimit: null,
    holdId: null,
  });
  vault.close();
});

test('full: true also returns scopes and rate limits', () => {
  const { vault, token, key } = seeded({ credits: 10 });
  const g = vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'], full: true });
  assert.equal(g.keyId, key.keyId);
  assert.deepEqual(g.scopes, ['numbers:read', 'sms:send']);
  assert.deepEqual(g.ratelimits, []);
  assert.equal(g.ratelimit, null);
  assert.equal(g.charged, 1);
  assert.equal(g.credits, 9);
  assert.equal(g.totalCredits, 10);
  const s = vault.authorize(token, { scope: 'sms:send', full: true });
  assert.equal(s.charged, 0);
  assert.deepEqual(s.scopes, ['numbers:read', 'sms:send']);
  vault.close();
});

test('route cost, explicit cost, scope calls and idempotency', () => {
  const { vault, token } = seeded({ credits: 10 });
  let g = vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'] });
  assert.equal(g.charged, 1);
  assert.equal(g.credits, 9);
  g = vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'], cost: 3n });
  assert.equal(g.charged, 3);
  assert.equal(g.credits, 6);
  g = vault.authorize(token, { scope: 'sms:send' });
  assert.equal(g.charged, 0);
  g = vault.authorize(token, { scope: 'sms:send', cost: 2, idempotencyKey: 'req-1' });
  assert.equal(g.charged, 2);
  assert.equal(g.replayed, false);
  g = vault.authorize(token, { scope: 'sms:send', cost: 2, idempotencyKey: 'req-1' });
  assert.equal(g.replayed, true);
  assert.equal(vault.balance('acct_42').credits, 4);
  g = vault.authorize(token, { route: ['GET', '/api/v1/messaging/threads/bob'] });
  assert.equal(g.charged, 0);
  vault.close();
});

test('operator keys pass every scope and are never charged', () => {
  const { vault } = seeded({ credits: 1 });
  const { token } = vault.createKey('acct_42', 'admin', ['*'], { operator: true });
  const g = vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'], full: true });
  assert.equal(g.authMethod, 'operator');
  assert.equal(g.charged, 0);
  vault.close();
});

test('invalid_api_key: garbage, wrong secret, unknown key, revoked', () => {
  const { vault, token, key } = seeded();
  const route = ['GET', '/api/v1/numbers/mine'];
  for (const t of ['', 'nope', 'dial_live_abcdefgh_xxxxxxxx', token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')]) {
    const e = refused(assert, () => vault.authorize(t, { route }), 'invalid_api_key', 401);
    assert.ok(e instanceof KeyLedgerError);
    assert.ok(e instanceof Error);
    assert.equal(e.klStatus, 1001);
  }
  vault.revokeKey(key.keyId);
  refused(assert, () => vault.authorize(token, { route }), 'invalid_api_key', 401);
  vault.close();
});

test('api_key_inactive when disabled, and back when enabled', () => {
  const { vault, token, key } = seeded();
  const route = ['GET', '/api/v1/numbers/mine'];
  assert.equal(vault.disableKey(key.keyId).disabled, true);
  refused(assert, () => vault.authorize(token, { route }), 'api_key_inactive', 401);
  vault.enableKey(key.keyId);
  assert.equal(vault.authorize(token, { route }).keyId, key.keyId);
  vault.close();
});

test('api_key_expired, checked with `now`', () => {
  const { vault } = seeded();
  const route = ['GET', '/api/v1/numbers/mine'];
  const { token, key } = vault.createKey('acct_42', 'short', ['numbers:read'], { expiresIn: 60_000 });
  assert.ok(key.expiresAt instanceof Date);
  assert.equal(vault.authorize(token, { route, now: Date.now() }).keyId, key.keyId);
  refused(assert, () => vault.authorize(token, { route, now: Date.now() + 120_000 }), 'api_key_expired', 401);
  refused(assert, () => vault.authorize(token, { route, now: new Date(Date.now() + 120_000) }), 'api_key_expired', 401);
  // setExpiry: a Date in the past, then cleared with null
  vault.setExpiry(key.keyId, new Date(Date.now() - 1000));
  refused(assert, () => vault.authorize(token, { route }), 'api_key_expired', 401);
  assert.equal(vault.setExpiry(key.keyId, null).expiresAt, null);
  assert.equal(vault.authorize(token, { route }).keyId, key.keyId);
  vault.close();
});

test('missing_scope carries `required`', () => {
  const { vault, token } = seeded({ scopes: ['numbers:read'] });
  const e = refused(assert, () => vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'] }), 'missing_scope', 403);
  assert.equal(e.body.required, 'sms:send');
  const s = refused(assert, () => vault.authorize(token, { scope: 'billing:write' }), 'missing_scope', 403);
  assert.equal(s.body.required, 'billing:write');
  vault.close();
});

test('route_not_allowed for a path no rule matches', () => {
  const { vault, token } = seeded();
  refused(assert, () => vault.authorize(token, { route: ['GET', '/admin'] }), 'route_not_allowed', 403);
  refused(assert, () => vault.authorize(token, { route: ['DELETE', '/api/v1/numbers/mine'] }), 'route_not_allowed', 403);
  vault.close();
});

test('insufficient_credits carries credits and required, and debits nothing', () => {
  const { vault, token } = seeded({ credits: 2 });
  const e = refused(assert, () => vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'], cost: 5 }), 'insufficient_credits', 402);
  assert.equal(e.body.credits, 2);
  assert.equal(e.body.required, 5);
  assert.equal(vault.balance('acct_42').credits, 2);
  // the management debit refuses with the same body
  const d = refused(assert, () => vault.debit('acct_42', 3), 'insufficient_credits', 402);
  assert.deepEqual([d.body.credits, d.body.required], [2, 3]);
  vault.close();
});

test('whoami', () => {
  const { vault, token, key } = seeded({ credits: 7 });
  const w = vault.whoami(token);
  assert.equal(w.accountId, 'acct_42');
  assert.equal(w.keyId, key.keyId);
  assert.equal(w.authMethod, 'apikey');
  assert.equal(w.credits, 7);
  refused(assert, () => vault.whoami('bad'), 'invalid_api_key', 401);
  vault.close();
});

test('looksLikeKey, redact, version', () => {
  const { vault, token, key } = seeded();
  assert.equal(looksLikeKey(token), true);
  assert.equal(looksLikeKey(token.slice(0, -1) + '0'), token.endsWith('0') ? true : false);
  assert.equal(looksLikeKey('hello'), false);
  assert.equal(looksLikeKey(42), false);
  assert.equal(redact(token), `dial_live_${key.keyId}_…`);
  assert.ok(!redact(token).includes(token.split('_').pop()));
  assert.match(version(), /^\d+\.\d+\.\d+/);
  vault.close();
});

test('Vault.open is new Vault', () => {
  const { file, vault } = seeded();
  vault.close();
  const again = Vault.open(file, { argon2: { m_kib: 8, t: 1, p: 1 } });
  assert.equal(again.balance('acct_42').credits, 10);
  again.close();
});
