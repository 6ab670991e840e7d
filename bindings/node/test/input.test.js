'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Vault, redact, looksLikeKey, signRequest, signWebhook, verifyWebhook } = require('..');
const { seeded, refused, vaultPath, FAST } = require('../testlib/helpers');

/** Everything a bad call could have changed. */
function snapshot(vault) {
  return JSON.stringify({
    accounts: vault.listAccounts(),
    keys: vault.listKeys(),
    routes: vault.listRoutes(),
    audit: vault.audit({ limit: 1000 }).filter((e) => e.action !== 'auth_refused'),
  }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

test('wrong argument types are TypeErrors', () => {
  const { vault, token, key } = seeded();
  const before = snapshot(vault);
  const route = ['GET', '/api/v1/numbers/mine'];
  const cases = [
    () => vault.authorize(42, { route }),
    () => vault.authorize(null, { route }),
    () => vault.authorize(token),
    () => vault.authorize(token, {}),
    () => vault.authorize(token, 'GET /x'),
    () => vault.authorize(token, { route: ['GET'] }),
    () => vault.authorize(token, { route: 'GET /api/v1/numbers/mine' }),
    () => vault.authorize(token, { route: ['GET', 42] }),
    () => vault.authorize(token, { route, scope: 'sms:send' }),
    () => vault.authorize(token, { scope: 42 }),
    () => vault.authorize(token, { route, cost: '1' }),
    () => vault.authorize(token, { route, idempotencyKey: 7 }),
    () => vault.authorize(token, { route, now: '2024-01-01' }),
    () => vault.createAccount(42),
    () => vault.createAccount('a1', { credits: '5' }),
    () => vault.createAccount('a1', { metadata: 'plan=pro' }),
    () => vault.createAccount('a1', 5),
    () => vault.topUp('acct_42', '5'),
    () => vault.topUp('acct_42', undefined),
    () => vault.topUp('acct_42', 5, { reference: 5 }),
    () => vault.debit('acct_42', null),
    () => vault.debit('acct_42', 1, { idempotencyKey: {} }),
    () => vault.balance(undefined),
    () => vault.createKey('acct_42', 'k', 'sms:send'),
    () => vault.createKey('acct_42', 'k', [1]),
    () => vault.createKey('acct_42', 42, ['sms:send']),
    () => vault.createKey('acct_42', 'k', ['sms:send'], { operator: 'yes' }),
    () => vault.createKey('acct_42', 'k', ['sms:send'], { expiresAt: 'tomorrow' }),
    () => vault.setScopes(key.keyId, 'sms:send'),
    () => vault.setExpiry(key.keyId),
    () => vault.setExpiry(key.keyId, '2030-01-01'),
    () => vault.rotateKey(key.keyId, { graceMs: '1h' }),
    () => vault.addRoute('GET', '/x', 'x:read', { cost: '1' }),
    () => vault.matchRoute('GET'),
    () => vault.audit('key'),
    () => vault.audit({ since: 'yesterday' }),
    () => vault.listKeys(42),
    () => new Vault(42),
    () => new Vault(vaultPath(), 'fast'),
  ];
  for (const [i, f] of cases.entries()) {
    assert.throws(f, TypeError, `case ${i}: ${f}`);
  }
  assert.equal(snapshot(vault), before);
  vault.close();
});

test('negative, fractional and oversized amounts are invalid_argument, checked before C', () => {
  const { vault, token } = seeded({ credits: 10 });
  const before = snapshot(vault);
  const bad = [-1, -1n, 1.5, NaN, Infinity, 2 ** 53, 2 ** 64, 2n ** 64n, 2n ** 70n];
  for (const amount of bad) {
    const e = refused(assert, () => vault.topUp('acct_42', amount), 'invalid_argument', 400);
    assert.equal(e.klStatus, 2003);
    refused(assert, () => vault.debit('acct_42', amount), 'invalid_argument', 400);
    refused(assert, () => vault.createAccount('acct_x', { credits: amount }), 'invalid_argument', 400);
    refused(assert, () => vault.addRoute('GET', '/x', 'x:read', { cost: amount }), 'invalid_argument', 400);
    refused(assert, () => vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'], cost: amount }), 'invalid_argument', 400);
  }
  // zero where positive: refused by the core
  refused(assert, () => vault.topUp('acct_42', 0), 'invalid_argument', 400);
  refused(assert, () => vault.debit('acct_42', 0n), 'invalid_argument', 400);
  // overflow of the balance
  refused(assert, () => vault.topUp('acct_42', 2n ** 64n - 1n), 'invalid_argument', 400);
  assert.equal(snapshot(vault), before);
  assert.equal(vault.balance('acct_42').credits, 10);
  vault.close();
});

test('empty ids, bad scopes, bad metadata, bad options are invalid_argument', () => {
  const { vault, key } = seeded();
  const before = snapshot(vault);
  refused(assert, () => vault.createAccount(''), 'invalid_argument', 400);
  refused(assert, () => vault.createAccount('x'.repeat(129)), 'invalid_argument', 400);
  refused(assert, () => vault.account(''), 'invalid_argument', 400);
  refused(assert, () => vault.topUp('', 1), 'invalid_argument', 400);
  refused(assert, () => vault.createKey('acct_42', 'k', ['Has Space']), 'invalid_argument', 400);
  refused(assert, () => vault.createKey('acct_42', 'k', ['x'.repeat(65)]), 'invalid_argument', 400);
  refused(assert, () => vault.createKey('acct_42', 'k', ['ok'], { prefix: 'Bad-Prefix' }), 'invalid_argument', 400);
  refused(assert, () => vault.createKey('acct_42', 'k', ['ok'], { prefix: 'trailing_' }), 'invalid_argument', 400);
  refused(assert, () => vault.createKey('acct_42', 'k', ['ok'], { metadata: [1, 2] }), 'invalid_argument', 400);
  refused(assert, () => vault.createKey('acct_42', 'k', ['ok'], { metadata: { big: 'x'.repeat(5000) } }), 'invalid_argument', 400);
  refused(assert, () => vault.createKey('acct_42', 'k', ['ok'], { expiresAt: new Date('nope') }), 'invalid_argument', 400);
  refused(assert, () => vault.setScopes(key.keyId, ['UPPER']), 'invalid_argument', 400);
  refused(assert, () => vault.rotateKey(key.keyId, { graceMs: -1 }), 'invalid_argument', 400);
  refused(assert, () => vault.rotateKey(key.keyId, { graceMs: 0.5 }), 'invalid_argument', 400);
  refused(assert, () => vault.addRoute('GET', 'no-slash', 'x:read'), 'invalid_argument', 400);
  refused(assert, () => vault.debit('acct_42', 1, { idempotencyKey: 'k'.repeat(256) }), 'invalid_argument', 400);
  assert.equal(snapshot(vault), before);
  refused(assert, () => new Vault(vaultPath(), { ...FAST, bogus: true }), 'invalid_argument', 400);
  refused(assert, () => new Vault(vaultPath(), { ...FAST, durability: 'eventual' }), 'invalid_argument', 400);
  vault.close();
});

test('not_found and already_exists', () => {
  const { vault } = seeded();
  refused(assert, () => vault.account('nobody'), 'not_found', 404);
  refused(assert, () => vault.key('zzzzzzzz'), 'not_found', 404);
  refused(assert, () => vault.createKey('nobody', 'k', ['x']), 'not_found', 404);
  refused(assert, () => vault.removeRoute('GET', '/nothing'), 'not_found', 404);
  refused(assert, () => vault.createAccount('acct_42'), 'already_exists', 409);
  refused(assert, () => vault.addRoute('GET', '/api/v1/numbers/mine', 'x:read'), 'already_exists', 409);
  vault.close();
});

test('hostile tokens are invalid_api_key, never a crash', () => {
  const { vault, token } = seeded();
  const before = snapshot(vault);
  const route = ['GET', '/api/v1/numbers/mine'];
  const hostile = [
    'x'.repeat(10 * 1024),
    token + 'x'.repeat(10 * 1024),
    'ключ_доступа_секрет',
    'dial_live_\u0000bcdefgh_' + 'A'.repeat(46),
    token.replace('_', '\u00e9'),
    ' ' + token,
    token + '\n',
  ];
  for (const t of hostile) {
    refused(assert, () => vault.authorize(t, { route }), 'invalid_api_key', 401);
    refused(assert, () => vault.whoami(t), 'invalid_api_key', 401);
  }
  // hostile routes and scopes are simply not allowed
  refused(assert, () => vault.authorize(token, { route: ['GET', '/\u0000/'.repeat(1000)] }), 'route_not_allowed', 403);
  refused(assert, () => vault.authorize(token, { route: ['\u00e9', '/api/v1/numbers/mine'] }), 'route_not_allowed', 403);
  assert.equal(snapshot(vault), before);
  assert.equal(vault.authorize(token, { route }).accountId, 'acct_42');
  vault.close();
});

test('non-ASCII ids and metadata round-trip', () => {
  const { vault } = seeded();
  const a = vault.createAccount('did:privy:ключ-é', { credits: 3n, metadata: { name: 'Zoë', nested: { n: 1 } } });
  assert.equal(a.id, 'did:privy:ключ-é');
  assert.deepEqual(a.metadata, { name: 'Zoë', nested: { n: 1 } });
  assert.equal(vault.balance('did:privy:ключ-é').credits, 3);
  vault.close();
});

test('lone UTF-16 surrogates in any string argument are invalid_argument and change nothing', () => {
  const { vault, token, key } = seeded();
  const before = snapshot(vault);
  const route = ['GET', '/api/v1/numbers/mine'];
  const lone = ['a\uDC00', 'a\uDC01', '\uD800', 'x\uD83D', '\uDE00y', 'a\uDC00\uD800b'];
  for (const s of lone) {
    const cases = [
      () => vault.createAccount(s),
      () => vault.account(s),
      () => vault.balance(s),
      () => vault.topUp(s, 1),
      () => vault.debit(s, 1),
      () => vault.topUp('acct_42', 1, { reference: s }),
      () => vault.debit('acct_42', 1, { idempotencyKey: s }),
      () => vault.createAccount('fresh', { metadata: { note: s } }),
      () => vault.createAccount('fresh', { metadata: { [s]: 1 } }),
      () => vault.createKey('acct_42', s, ['sms:send']),
      () => vault.createKey(s, 'k', ['sms:send']),
      () => vault.createKey('acct_42', 'k', [s]),
      () => vault.createKey('acct_42', 'k', ['sms:send'], { prefix: s }),
      () => vault.key(s),
      () => vault.setScopes(key.keyId, [s]),
      () => vault.authorize(s, { route }),
      () => vault.authorize(token + s, { route }),
      () => vault.authorize(token, { route: ['GET', `/api/v1/numbers/${s}`] }),
      () => vault.authorize(token, { route: [s, '/api/v1/numbers/mine'] }),
      () => vault.authorize(token, { scope: s }),
      () => vault.authorize(token, { route, idempotencyKey: s }),
      () => vault.authorize(token, { route, limits: [s] }),
      () => vault.authorize(token, { route, body: s }),
      () => vault.authorizeRequest(token, 'GET', `/api/v1/${s}`),
      () => vault.authorizeHttp({ method: 'GET', target: `/api/v1/${s}`, authorization: `Bearer ${token}` }),
      () => vault.authorizeHttp({ method: 'GET', target: '/api/v1/numbers/mine', authorization: `Bearer ${token}${s}` }),
      () => vault.authorizeHttp({ method: 'GET', target: '/api/v1/numbers/mine', apiKey: s }),
      () => vault.whoami(s),
      () => vault.addRoute('GET', `/x/${s}`, 'x:read'),
      () => vault.addRoute('GET', '/x', s),
      () => vault.matchRoute('GET', `/x/${s}`),
      () => vault.removeRoute('GET', `/x/${s}`),
      () => vault.setRatelimit(s, 1, 1000, { keyId: key.keyId }),
      () => vault.setRatelimit('rl', 1, 1000, { accountId: s }),
      () => vault.audit({ accountId: s }),
      () => redact(s),
      () => signRequest(s, 'GET', '/'),
      () => signRequest('secret', 'GET', `/${s}`),
      () => signWebhook(s, 'body'),
      () => new Vault(vaultPath() + s, FAST),
      () => new Vault(vaultPath(), { ...FAST, masterPassphrase: s }),
    ];
    for (const [i, f] of cases.entries()) {
      const e = refused(assert, f, 'invalid_argument', 400);
      assert.match(e.message, /not valid Unicode/, `case ${i} with ${JSON.stringify(s)}: ${f}`);
    }
    assert.equal(looksLikeKey(token + s), false);
    assert.equal(verifyWebhook('body', s, 'secret'), false);
  }
  // Before the check, 'a\uDC00' and 'a\uDC01' both reached C as 'a\uFFFD': one account.
  assert.equal(snapshot(vault), before);
  assert.equal(vault.authorize(token, { route }).accountId, 'acct_42');
  vault.close();
});
