'use strict';
// Idempotency replays and conflicts: the onReplay option of authorize, and the Express
// gate in front of a real HTTP server on 127.0.0.1 (a retried POST runs its handler once).
const test = require('node:test');
const assert = require('node:assert/strict');
const express = require('express');
const { keyledgerMiddleware } = require('../express');
const { seeded, refused } = require('../testlib/helpers');

const SEND = ['POST', '/api/v1/messaging/send'];
const FREE = ['GET', '/api/v1/numbers/mine'];

test('authorize: a key reused for another request is idempotency_conflict, charging nothing', () => {
  const { vault, token } = seeded({ credits: 10 });
  try {
    const free = vault.authorize(token, { route: FREE, idempotencyKey: 'x' });
    assert.equal(free.charged, 0);
    const e = refused(assert, () => vault.authorize(token, { route: SEND, idempotencyKey: 'x' }), 'idempotency_conflict', 409);
    assert.ok(e);
    assert.equal(vault.balance('acct_42').credits, 10);
  } finally {
    vault.close();
  }
});

test("authorize: onReplay 'refuse' throws duplicate_request with the first charge and time", () => {
  const { vault, token } = seeded({ credits: 10 });
  try {
    const now = Date.UTC(2026, 10, 23);
    const first = vault.authorize(token, { route: SEND, idempotencyKey: 'k', now, onReplay: 'refuse' });
    assert.equal(first.charged, 1);
    const e = refused(
      assert,
      () => vault.authorize(token, { route: SEND, idempotencyKey: 'k', now: now + 5000, onReplay: 'refuse' }),
      'duplicate_request',
      409,
    );
    assert.equal(e.body.charged, 1);
    assert.equal(e.body.first_at, now);
    const again = vault.authorize(token, { route: SEND, idempotencyKey: 'k', now: now + 6000 });
    assert.equal(again.replayed, true);
    assert.equal(again.charged, 0);
    assert.equal(vault.balance('acct_42').credits, 9);
    assert.throws(() => vault.authorize(token, { route: SEND, idempotencyKey: 'k', onReplay: 'maybe' }), /onReplay/);
  } finally {
    vault.close();
  }
});

test('authorize: a time outside 1970..9999 is invalid_argument, not a grant', () => {
  const { vault, token } = seeded({ credits: 10 });
  try {
    refused(assert, () => vault.authorize(token, { route: SEND, now: -9223372036854 }), 'invalid_argument', 400);
    assert.equal(vault.balance('acct_42').credits, 10);
  } finally {
    vault.close();
  }
});

function listen(app) {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function gated(replay) {
  const { vault, token } = seeded({ credits: 10 });
  const app = express();
  const options = { idempotencyHeader: 'idempotency-key' };
  if (replay) options.replay = replay;
  app.use(keyledgerMiddleware(vault, options));
  const calls = [];
  app.post('/api/v1/messaging/send', (req, res) => {
    calls.push(req.keyledger.replayed);
    res.json({ sent: true, replayed: req.keyledger.replayed, charged: req.keyledger.charged });
  });
  const server = await listen(app);
  const base = `http://127.0.0.1:${server.address().port}`;
  const post = (key) =>
    fetch(`${base}/api/v1/messaging/send`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Idempotency-Key': key },
    });
  const close = () => new Promise((r) => server.close(() => { vault.close(); r(); }));
  return { vault, calls, post, close };
}

test('Express gate: a retried POST runs the handler once and answers 409 duplicate_request', async (t) => {
  const g = await gated();
  t.after(g.close);
  let r = await g.post('send-1');
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { sent: true, replayed: false, charged: 1 });
  const before = Date.now();
  r = await g.post('send-1');
  assert.equal(r.status, 409);
  const body = await r.json();
  assert.equal(body.error, 'duplicate_request');
  assert.equal(body.charged, 1);
  assert.ok(body.first_at <= before && body.first_at > before - 60000, `${body.first_at}`);
  assert.deepEqual(g.calls, [false], 'the handler ran once');
  assert.equal(g.vault.balance('acct_42').credits, 9);
  // Another key is another request.
  r = await g.post('send-2');
  assert.equal(r.status, 200);
  assert.deepEqual(g.calls, [false, false]);
});

test("Express gate: replay 'pass' hands the replayed grant to the handler", async (t) => {
  const g = await gated('pass');
  t.after(g.close);
  assert.equal((await g.post('p')).status, 200);
  const r = await g.post('p');
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { sent: true, replayed: true, charged: 0 });
  assert.deepEqual(g.calls, [false, true]);
  assert.equal(g.vault.balance('acct_42').credits, 9);
  assert.throws(() => keyledgerMiddleware(g.vault, { replay: 'again' }), /replay/);
});
