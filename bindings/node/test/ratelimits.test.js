'use strict';
// Rate limits and refills from Node: rate limits on keys and accounts, refills, and the Express
// middleware's RateLimit-* / Retry-After headers.
const test = require('node:test');
const assert = require('node:assert/strict');
const express = require('express');
const { KeyLedgerError } = require('..');
const { keyledgerMiddleware } = require('../express');
const { seeded, refused } = require('../testlib/helpers');

// A whole second, a minute from now: every call below happens "at" a chosen instant.
const NOW = (Math.floor(Date.now() / 1000) + 60) * 1000;

test('ten per second: the 11th call is refused with 429, then the window refills', () => {
  const { vault, token, key } = seeded({ credits: 100 });
  const lim = vault.setRatelimit('per_second', 10, 1000, { keyId: key.keyId });
  assert.deepEqual(lim, { name: 'per_second', limit: 10, durationMs: 1000, autoApply: true });
  assert.deepEqual(vault.ratelimits({ keyId: key.keyId }), [lim]);
  assert.deepEqual(vault.ratelimits({ accountId: 'acct_42' }), []);

  for (let i = 0; i < 10; i++) {
    const g = vault.authorize(token, { scope: 'sms:send', cost: 1, now: NOW });
    assert.equal(g.ratelimits, null);
    assert.equal(g.ratelimit.name, 'per_second');
    assert.equal(g.ratelimit.max, 10);
    assert.equal(g.ratelimit.remaining, 9 - i);
    assert.ok(g.ratelimit.resetMs > NOW && g.ratelimit.resetMs <= NOW + 1000);
  }
  const e = refused(assert, () => vault.authorize(token, { scope: 'sms:send', cost: 1, now: NOW }), 'rate_limited', 429);
  assert.ok(e instanceof KeyLedgerError);
  assert.equal(e.body.limit, 'per_second');
  assert.equal(e.body.max, 10);
  assert.equal(e.body.remaining, 0);
  assert.equal(e.body.retry_after, 1);
  assert.equal(typeof e.body.reset_ms, 'number');
  assert.equal(vault.balance('acct_42').credits, 90); // the refusal charged nothing

  // A second later there is room again; the JSON variant lists every applied limit.
  const g = vault.authorize(token, { scope: 'sms:send', now: NOW + 1000, full: true });
  assert.equal(g.ratelimits.length, 1);
  assert.deepEqual(Object.keys(g.ratelimits[0]).sort(), ['max', 'name', 'remaining', 'resetMs']);
  assert.equal(g.ratelimits[0].remaining, 9);
  assert.deepEqual(g.ratelimit, g.ratelimits[0]);

  assert.deepEqual(vault.removeRatelimit('per_second', { keyId: key.keyId }), lim);
  assert.deepEqual(vault.ratelimits({ keyId: key.keyId }), []);
  refused(assert, () => vault.removeRatelimit('per_second', { keyId: key.keyId }), 'not_found', 404);
  assert.equal(vault.authorize(token, { scope: 'sms:send', now: NOW }).ratelimit, null);
  vault.close();
});

test('account limits: named with `limits`, weighted with `limitCost`, shared by its keys', () => {
  const { vault, token } = seeded({ credits: 10 });
  const t2 = vault.createKey('acct_42', 'second', ['sms:send']).token;
  const lim = vault.setRatelimit('tokens', 100, 60_000, { accountId: 'acct_42', autoApply: false });
  assert.equal(lim.autoApply, false);
  assert.equal(vault.authorize(token, { scope: 'sms:send', now: NOW }).ratelimit, null);
  let g = vault.authorize(token, { scope: 'sms:send', limits: ['tokens'], limitCost: 70, now: NOW });
  assert.deepEqual({ ...g.ratelimit, resetMs: 0 }, { name: 'tokens', max: 100, remaining: 30, resetMs: 0 });
  const e = refused(assert, () => vault.authorize(t2, { scope: 'sms:send', limits: ['tokens'], limitCost: 31n, now: NOW }), 'rate_limited', 429);
  assert.equal(e.body.limit, 'tokens');
  g = vault.authorize(t2, { scope: 'sms:send', limits: ['tokens'], limitCost: 30, now: NOW, full: true });
  assert.equal(g.ratelimits[0].remaining, 0);
  refused(assert, () => vault.authorize(t2, { scope: 'sms:send', limits: ['nope'], now: NOW }), 'invalid_argument', 400);
  assert.throws(() => vault.authorize(t2, { scope: 'sms:send', limits: 'tokens' }), TypeError);
  assert.throws(() => vault.authorize(t2, { scope: 'sms:send', limits: [1] }), TypeError);
  refused(assert, () => vault.authorize(t2, { scope: 'sms:send', limitCost: -1 }), 'invalid_argument');

  // The tightest of several limits is the one with the fewest units left.
  const k3 = vault.createKey('acct_42', 'third', ['sms:send']);
  vault.setRatelimit('burst', 5, 1000, { keyId: k3.key.keyId });
  g = vault.authorize(k3.token, { scope: 'sms:send', limits: ['tokens'], now: NOW + 60_000, full: true });
  assert.deepEqual(g.ratelimits.map((r) => [r.name, r.remaining]).sort(), [['burst', 4], ['tokens', 99]]);
  assert.equal(g.ratelimit.name, 'burst');
  g = vault.authorize(k3.token, { scope: 'sms:send', limits: ['tokens'], now: NOW + 60_000 });
  assert.deepEqual([g.ratelimit.name, g.ratelimit.remaining, g.ratelimit.max], ['burst', 3, 5]);
  vault.close();
});

test('bad limit definitions and owners', () => {
  const { vault, key } = seeded();
  const bad = [
    () => vault.setRatelimit('x', 0, 1000, { accountId: 'acct_42' }),
    () => vault.setRatelimit('x', 1, 0, { accountId: 'acct_42' }),
    () => vault.setRatelimit('x', -1, 1000, { accountId: 'acct_42' }),
    () => vault.setRatelimit('Bad', 1, 1000, { accountId: 'acct_42' }),
    () => vault.setRatelimit('x', 1, 1000),
    () => vault.setRatelimit('x', 1, 1000, { keyId: key.keyId, accountId: 'acct_42' }),
    () => vault.ratelimits({}),
    () => vault.removeRatelimit('x', {}),
    () => vault.setRefill('acct_42', 10, 'weekly'),
    () => vault.setRefill('acct_42', 10, 'monthly', { day: 29 }),
    () => vault.setRefill('acct_42', 10, 'monthly', { day: 300 }),
    () => vault.setRefill('acct_42', -1, 'daily'),
  ];
  for (const call of bad) refused(assert, call, 'invalid_argument', 400);
  refused(assert, () => vault.setRatelimit('x', 1, 1000, { accountId: 'nobody' }), 'not_found', 404);
  refused(assert, () => vault.setRatelimit('x', 1, 1000, { keyId: 'zzzzzzzz' }), 'not_found', 404);
  refused(assert, () => vault.ratelimits({ accountId: 'nobody' }), 'not_found', 404);
  refused(assert, () => vault.setRefill('nobody', 1, 'daily'), 'not_found', 404);
  refused(assert, () => vault.clearRefill('nobody'), 'not_found', 404);
  assert.throws(() => vault.setRatelimit(7, 1, 1000, { accountId: 'acct_42' }), TypeError);
  assert.throws(() => vault.setRatelimit('x', '1', 1000, { accountId: 'acct_42' }), TypeError);
  assert.throws(() => vault.setRatelimit('x', 1, 1000, { accountId: 'acct_42', autoApply: 'yes' }), TypeError);
  assert.throws(() => vault.ratelimits({ keyId: 42 }), TypeError);
  assert.throws(() => vault.setRefill('acct_42', 1, 'daily', { day: 1.5 }), TypeError);
  assert.deepEqual(vault.ratelimits({ accountId: 'acct_42' }), []); // nothing was set
  vault.close();
  refused(assert, () => vault.ratelimits({ accountId: 'acct_42' }), 'vault_closed', 500);
});

test('a daily refill sets the credits at the first call after midnight UTC', () => {
  const { vault, token } = seeded({ credits: 3 });
  const acct = vault.setRefill('acct_42', 50, 'daily');
  assert.deepEqual(acct.refill, { amount: 50, interval: 'daily', day: 1 });
  assert.equal(acct.credits, 3);
  assert.deepEqual(vault.account('acct_42').refill, { amount: 50, interval: 'daily', day: 1 });
  assert.equal(vault.authorize(token, { scope: 'sms:send', cost: 1 }).credits, 2); // no refill yet
  const tomorrow = new Date(Date.now() + 86_400_000);
  let g = vault.authorize(token, { scope: 'sms:send', cost: 1, now: tomorrow });
  assert.equal(g.charged, 1);
  assert.equal(g.credits, 49);
  g = vault.authorize(token, { scope: 'sms:send', cost: 1, now: tomorrow });
  assert.equal(g.credits, 48); // once per period
  assert.equal(vault.audit({ action: 'credits_refilled' }).length, 1);
  assert.deepEqual(vault.setRefill('acct_42', 1000n, 'monthly', { day: 15 }).refill, { amount: 1000, interval: 'monthly', day: 15 });
  const cleared = vault.clearRefill('acct_42');
  assert.equal(cleared.refill, null);
  assert.equal(cleared.credits, 48);
  vault.close();
});

function listen(app) {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

test('Express middleware: RateLimit-* on grants, Retry-After and RateLimit-* on 429', async (t) => {
  const { vault, token, key } = seeded({ credits: 10 });
  vault.setRatelimit('per_minute', 2, 60_000, { keyId: key.keyId });
  vault.setRatelimit('weighted', 10, 60_000, { accountId: 'acct_42', autoApply: false });
  const show = (req, res) => res.json({ ratelimit: req.keyledger.ratelimit });
  // The gate matches the whole request target, mount path included (`req.originalUrl`).
  vault.addRoute('GET', '/w/api/v1/numbers/mine', 'numbers:read');
  const weighted = express.Router();
  weighted.use(keyledgerMiddleware(vault, { limits: ['weighted'], limitCost: (req) => Number(req.query.n || 1) }));
  weighted.get('/api/v1/numbers/mine', show);
  const app = express();
  app.use('/w', weighted);
  app.get('/api/v1/numbers/mine', keyledgerMiddleware(vault), show);
  const server = await listen(app);
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
  const base = `http://127.0.0.1:${server.address().port}`;
  const get = (path) => fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${token}` } });

  let r = await get('/api/v1/numbers/mine');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('ratelimit-limit'), '2');
  assert.equal(r.headers.get('ratelimit-remaining'), '1');
  const reset = Number(r.headers.get('ratelimit-reset'));
  assert.ok(reset >= 1 && reset <= 60, `reset ${reset}`);
  assert.equal((await r.json()).ratelimit.name, 'per_minute');
  r = await get('/api/v1/numbers/mine');
  assert.equal(r.headers.get('ratelimit-remaining'), '0');
  r = await get('/api/v1/numbers/mine');
  assert.equal(r.status, 429);
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  assert.equal(r.headers.get('ratelimit-limit'), '2');
  assert.equal(r.headers.get('ratelimit-remaining'), '0');
  const body = await r.json();
  assert.equal(body.error, 'rate_limited');
  assert.equal(body.limit, 'per_minute');
  assert.equal(vault.balance('acct_42').credits, 10);

  // Named and weighted limits through the middleware options (the key limit is gone).
  vault.removeRatelimit('per_minute', { keyId: key.keyId });
  r = await get('/w/api/v1/numbers/mine?n=7');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('ratelimit-limit'), '10');
  assert.equal(r.headers.get('ratelimit-remaining'), '3');
  r = await get('/w/api/v1/numbers/mine?n=4');
  assert.equal(r.status, 429);
  assert.equal((await r.json()).limit, 'weighted');
  // No limit applied: no RateLimit headers.
  r = await get('/api/v1/numbers/mine');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('ratelimit-limit'), null);
});
