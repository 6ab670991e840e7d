'use strict';
// Holds through the Node binding: reserve, settle, release, list, the balance's `held` and
// `available`, the hold errors, and the Async twins (libuv worker threads).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Vault, KeyLedgerError } = require('..');
const constants = require('../lib/constants');
const { vaultPath, FAST } = require('../testlib/helpers');

test('a hold reserves credits, settles the actual cost and releases the rest', async () => {
  const vault = new Vault(vaultPath(), FAST);
  vault.createAccount('acme', { credits: 100 });
  const h = vault.hold('acme', 30, { ttlMs: 60_000 });
  assert.match(h.holdId, /^hold_[0-9a-f]{24}$/);
  assert.equal(h.state, 'active');
  assert.equal(h.expiresAt.getTime() - h.createdAt.getTime(), 60_000);
  let b = vault.balance('acme');
  assert.deepEqual([b.credits, b.held, b.available], [100, 30, 70]);
  assert.deepEqual(vault.listHolds('acme').map((x) => x.holdId), [h.holdId]);
  const s = vault.settle(h.holdId, 12);
  assert.deepEqual([s.state, s.charged, s.replayed], ['settled', 12, false]);
  assert.equal(vault.settle(h.holdId, 12).replayed, true);
  assert.throws(() => vault.settle(h.holdId, 13), (e) => e instanceof KeyLedgerError && e.code === 'hold_settled' && e.status === 409);

  const a = await vault.holdAsync('acme', 8, { idempotencyKey: 'job-1' });
  const again = await vault.holdAsync('acme', 8, { idempotencyKey: 'job-1' });
  assert.equal(again.holdId, a.holdId);
  assert.equal(again.replayed, true);
  assert.equal((await vault.releaseAsync(a.holdId)).state, 'released');
  const c = vault.hold('acme', 5);
  assert.equal((await vault.settleAsync(c.holdId, 6, { allowOver: true })).charged, 6);
  b = vault.balance('acme');
  assert.deepEqual([b.credits, b.held, b.available], [82, 0, 82]);
  assert.deepEqual(vault.listHolds(), []);
  vault.close();
});

test('bad holds are refused with their codes and change nothing', () => {
  const vault = new Vault(vaultPath(), FAST);
  vault.createAccount('acme', { credits: 10 });
  assert.throws(() => vault.hold('acme', 11), (e) => e.code === 'insufficient_credits' && e.status === 402);
  assert.throws(() => vault.hold('acme', 0), (e) => e.code === 'invalid_argument');
  assert.throws(() => vault.hold('acme', 1, { ttlMs: 0 }), (e) => e.code === 'invalid_argument');
  assert.throws(() => vault.hold('acme', -1), (e) => e.code === 'invalid_argument' || e instanceof TypeError);
  assert.throws(() => vault.release('nope'), (e) => e.code === 'invalid_argument');
  assert.throws(() => vault.release('hold_0123456789abcdef01234567'),
    (e) => e.code === 'hold_not_found' && e.status === 404 && e.klStatus === constants.KL_HOLD_NOT_FOUND);
  assert.throws(() => vault.settle('hold_0123456789abcdef01234567', 1, { allowOver: 'yes' }), (e) => e.code === 'invalid_argument');
  const b = vault.balance('acme');
  assert.deepEqual([b.credits, b.held, b.available], [10, 0, 10]);
  vault.close();
});

test('authorize with hold reserves instead of charging, and the grant names the hold', async () => {
  const { seeded } = require('../testlib/helpers');
  const { vault, token } = seeded({ credits: 50 });
  const send = ['POST', '/api/v1/messaging/send'];
  // A plain call charges the route's cost and names no hold.
  const plain = vault.authorize(token, { route: send });
  assert.deepEqual([plain.charged, plain.holdId], [1, null]);
  // With hold: nothing charged, 20 held, the grant carries the hold's id (fixed struct and JSON).
  const g = vault.authorize(token, { route: send, hold: 20, holdTtlMs: 60_000 });
  assert.match(g.holdId, /^hold_[0-9a-f]{24}$/);
  assert.equal(g.charged, 0);
  let b = vault.balance('acct_42');
  assert.deepEqual([b.credits, b.held, b.available], [49, 20, 29]);
  const full = vault.authorize(token, { route: send, hold: 5, full: true });
  assert.match(full.holdId, /^hold_[0-9a-f]{24}$/);
  assert.notEqual(full.holdId, g.holdId);
  // On a worker thread too.
  const a = await vault.authorizeAsync(token, { route: send, hold: 4 });
  assert.match(a.holdId, /^hold_[0-9a-f]{24}$/);
  assert.equal(vault.settle(g.holdId, 7).charged, 7);
  vault.release(full.holdId);
  vault.release(a.holdId);
  b = vault.balance('acct_42');
  assert.deepEqual([b.credits, b.held, b.available], [42, 0, 42]);
  // Refused, changing nothing: a hold of 0, a TTL without a hold, a hold with a cost, more
  // than is available.
  assert.throws(() => vault.authorize(token, { route: send, hold: 0 }), (e) => e.code === 'invalid_argument');
  assert.throws(() => vault.authorize(token, { route: send, holdTtlMs: 1000 }), (e) => e.code === 'invalid_argument');
  assert.throws(() => vault.authorize(token, { route: send, hold: 2, cost: 1 }), (e) => e.code === 'invalid_argument');
  assert.throws(() => vault.authorize(token, { route: send, hold: 43 }), (e) => e.code === 'insufficient_credits' && e.status === 402);
  b = vault.balance('acct_42');
  assert.deepEqual([b.credits, b.held, b.available], [42, 0, 42]);
  vault.close();
});
