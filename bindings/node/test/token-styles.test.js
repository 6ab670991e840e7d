'use strict';
// Token styles: a colon-style key (`<keyId>:<secret>`) through the Vault, Express and
// Fastify. The shared gate table's colon cases run in gate-cases.test.js.
const test = require('node:test');
const assert = require('node:assert/strict');
const express = require('express');
const Fastify = require('fastify');
const keyledgerFastify = require('keyledger/fastify');
const { keyledgerMiddleware } = require('../express');
const { Vault, looksLikeKey, redact } = require('..');
const { vaultPath, FAST } = require('../testlib/helpers');

function colonVault() {
  const vault = new Vault(vaultPath(), FAST);
  vault.addRoute('POST', '/api/v1/messaging/send', 'sms:send', { cost: 1 });
  vault.createAccount('acct_42', { credits: 10 });
  const { token, key } = vault.createKey('acct_42', 'voice', ['sms:send'], { style: 'colon' });
  return { vault, token, key };
}

const forged = (t) => t.slice(0, -1) + (t.endsWith('a') ? 'b' : 'a');

test('a colon-style key is <keyId>:<secret>, redacted to <keyId>:…, and kept by rotation', () => {
  const { vault, token, key } = colonVault();
  try {
    assert.equal(key.style, 'colon');
    assert.equal(key.prefix, '');
    const [id, secret] = token.split(':');
    assert.equal(id, key.keyId);
    assert.match(secret, /^[0-9A-Za-z]{40}$/);
    assert.equal(looksLikeKey(token), true);
    assert.equal(redact(token), `${key.keyId}:…`);
    const g = vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'] });
    assert.equal(g.credits, 9);
    const rotated = vault.rotateKey(key.keyId);
    assert.equal(rotated.key.style, 'colon');
    assert.ok(rotated.token.startsWith(`${rotated.key.keyId}:`));
    assert.throws(() => vault.createKey('acct_42', 'x', ['sms:send'], { style: 'dots' }), (e) => e.code === 'invalid_argument');
  } finally {
    vault.close();
  }
});

test('Express grants a colon-style key and refuses a forged one', async (t) => {
  const { vault, token } = colonVault();
  const app = express();
  app.use(keyledgerMiddleware(vault));
  app.post('/api/v1/messaging/send', (req, res) => res.json({ credits: req.keyledger.credits }));
  const server = await new Promise((resolve) => { const s = app.listen(0, '127.0.0.1', () => resolve(s)); });
  t.after(() => { server.close(); vault.close(); });
  const url = `http://127.0.0.1:${server.address().port}/api/v1/messaging/send`;
  let r = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { credits: 9 });
  for (const authorization of [`Bearer ${forged(token)}`, `Basic ${token}`, `Bearer :${token}`]) {
    r = await fetch(url, { method: 'POST', headers: { authorization } });
    assert.equal(r.status, 401, authorization.slice(0, 6));
    assert.equal((await r.json()).error, 'invalid_api_key');
  }
});

test('Fastify grants a colon-style key and refuses a forged one', async (t) => {
  const { vault, token } = colonVault();
  const f = Fastify();
  f.register(keyledgerFastify, { vault });
  f.post('/api/v1/messaging/send', async (request) => ({ credits: request.keyledger.credits }));
  t.after(async () => { await f.close(); vault.close(); });
  let r = await f.inject({ method: 'POST', url: '/api/v1/messaging/send', headers: { 'x-api-key': token } });
  assert.equal(r.statusCode, 200);
  assert.deepEqual(r.json(), { credits: 9 });
  r = await f.inject({ method: 'POST', url: '/api/v1/messaging/send', headers: { authorization: `Bearer ${forged(token)}` } });
  assert.equal(r.statusCode, 401);
  assert.equal(r.json().error, 'invalid_api_key');
});
