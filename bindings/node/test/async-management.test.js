'use strict';
// The `…Async` twins of the management calls that write: the same results and refusals
// as the synchronous calls, run on libuv worker threads so the event loop keeps turning
// while argon2 (createKey, rotateKey) or a commit runs.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Vault, KeyLedgerError } = require('..');
const { vaultPath, FAST } = require('../testlib/helpers');

test('every management call that writes has an Async twin with the same result', async () => {
  const vault = new Vault(vaultPath(), FAST);
  const acct = await vault.createAccountAsync('acme', { credits: 5, metadata: { plan: 'pro' } });
  assert.equal(acct.id, 'acme');
  assert.deepEqual(acct.metadata, { plan: 'pro' });
  assert.equal((await vault.topUpAsync('acme', 10, { reference: 'inv-1' })).credits, 15);
  assert.equal((await vault.debitAsync('acme', 3, { idempotencyKey: 'd1' })).credits, 12);
  assert.equal((await vault.debitAsync('acme', 3, { idempotencyKey: 'd1' })).credits, 12); // replayed
  assert.equal(vault.balance('acme').credits, 12);

  const rule = await vault.addRouteAsync('POST', '/send', 'sms:send', { cost: 2 });
  assert.equal(rule.scope, 'sms:send');
  const { token, key, signingSecret } = await vault.createKeyAsync('acme', 'k', ['sms:send'], { prefix: 'kl_test' });
  assert.equal(signingSecret, null);
  assert.equal(vault.authorize(token, { route: ['POST', '/send'] }).keyId, key.keyId);
  assert.equal(vault.balance('acme').credits, 10);

  assert.deepEqual((await vault.setScopesAsync(key.keyId, ['sms:send', 'x:read'])).scopes, ['sms:send', 'x:read']);
  const at = new Date(Date.now() + 3_600_000);
  assert.equal((await vault.setExpiryAsync(key.keyId, at)).expiresAt.getTime(), at.getTime());
  assert.equal((await vault.setExpiryAsync(key.keyId, null)).expiresAt, null);
  assert.equal((await vault.disableKeyAsync(key.keyId)).disabled, true);
  assert.throws(() => vault.authorize(token, { scope: 'x:read' }), (e) => e.status === 401 || e.status === 403);
  assert.equal((await vault.enableKeyAsync(key.keyId)).disabled, false);

  const rl = await vault.setRatelimitAsync('per_min', 100, 60_000, { keyId: key.keyId });
  assert.equal(rl.name, 'per_min');
  assert.equal((await vault.removeRatelimitAsync('per_min', { keyId: key.keyId })).name, 'per_min');
  assert.equal((await vault.setRefillAsync('acme', 50, 'daily')).refill.amount, 50);
  assert.equal((await vault.clearRefillAsync('acme')).refill, null);

  const rotated = await vault.rotateKeyAsync(key.keyId, { graceMs: 0 });
  assert.notEqual(rotated.key.keyId, key.keyId);
  assert.equal(vault.authorize(rotated.token, { scope: 'x:read' }).keyId, rotated.key.keyId);
  assert.ok((await vault.revokeKeyAsync(rotated.key.keyId)).revokedAt instanceof Date);
  assert.equal((await vault.removeRouteAsync('POST', '/send')).pattern, '/send');
  assert.equal(await vault.setArgon2ParamsAsync({ m_kib: 16, t: 1, p: 1 }), undefined);
  vault.close();
});

test('Async twins refuse as the synchronous calls do: bad arguments at once, refusals from the worker', async () => {
  const vault = new Vault(vaultPath(), FAST);
  vault.createAccount('a', { credits: 1 });
  // Checked before anything runs: a rejected Promise, never a synchronous throw.
  const p = vault.createKeyAsync('a', 'k', 'not-an-array');
  assert.ok(p instanceof Promise);
  await assert.rejects(p, TypeError);
  await assert.rejects(vault.topUpAsync('a', -1), (e) => e.code === 'invalid_argument');
  await assert.rejects(vault.revokeKeyAsync('a\uDC00'), (e) => e.code === 'invalid_argument');
  await assert.rejects(vault.setRefillAsync('a', 1, 'hourly'), (e) => e.code === 'invalid_argument');
  // Decided by the core on the worker thread.
  await assert.rejects(vault.debitAsync('a', 2), (e) => e instanceof KeyLedgerError &&
    e.code === 'insufficient_credits' && e.status === 402 && e.body.error === 'insufficient_credits');
  await assert.rejects(vault.createAccountAsync('a'), (e) => e instanceof KeyLedgerError && e.status === 409);
  // The same code and status as the synchronous call's refusal.
  const { key } = vault.createKey('a', 'k', ['x:read']);
  const missing = `${key.keyId.slice(0, -4)}zzzz`;
  let sync;
  try {
    vault.revokeKey(missing);
  } catch (e) {
    sync = e;
  }
  assert.ok(sync instanceof KeyLedgerError);
  await assert.rejects(vault.revokeKeyAsync(missing), (e) => e instanceof KeyLedgerError &&
    e.code === sync.code && e.status === sync.status && e.body.error === sync.code);
  assert.equal(vault.balance('a').credits, 1, 'a refused call changes nothing');
  vault.close();
  await assert.rejects(vault.topUpAsync('a', 1), (e) => e.code === 'vault_closed');
});

test('createKeyAsync at the default argon2 parameters leaves the event loop free', async () => {
  // No argon2 option: the vault's defaults (the OWASP minimum or stronger).
  const vault = new Vault(vaultPath());
  vault.createAccount('a');
  let turns = 0;
  let worst = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    turns++;
  }, 1);
  const started = performance.now();
  const { token } = await vault.createKeyAsync('a', 'k', ['x:read']);
  const took = performance.now() - started;
  clearInterval(ticker);
  assert.equal(vault.authorize(token, { scope: 'x:read' }).accountId, 'a');
  console.log(`# createKeyAsync took ${took.toFixed(0)} ms; the loop turned ${turns} times, worst gap ${worst.toFixed(1)} ms`);
  assert.ok(took > 10, `argon2 at the default parameters should take a while here (${took.toFixed(1)} ms)`);
  assert.ok(turns >= 5, `the event loop turned only ${turns} times during a ${took.toFixed(0)} ms key creation`);
  assert.ok(worst < 50, `the event loop stalled for ${worst.toFixed(1)} ms during createKeyAsync`);
  vault.close();
});
