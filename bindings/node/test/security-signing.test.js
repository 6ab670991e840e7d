'use strict';
// Request signatures, format 2, from Node: the published test vector, the query string
// covered (authorize's `query`), no re-split between path and body, format 1 refused, and
// `singleUseSignatures`. Mirrors tests/security_signing.rs.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Vault, generateMasterKey, signRequest } = require('..');
const { FAST, vaultPath, refused } = require('../testlib/helpers');

delete process.env.KEYLEDGER_MASTER_KEY;

// The published test vector (README.md, docs/format.md).
const VECTOR = {
  secret: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  t: new Date(1767225600 * 1000),
  method: 'POST',
  target: '/v1/send?to=%2B15551234&dry=1',
  body: '{"text":"hi"}',
  header: 't=1767225600,v2=3d60d462cf2bf288d18fca6a42076fc1394ed7faccd63145e050c8396f5b6780',
};

function signedVault(extra = {}) {
  const file = vaultPath();
  const master = generateMasterKey();
  const vault = new Vault(file, { ...FAST, masterKey: master, ...extra });
  vault.createAccount('a', { credits: 10 });
  vault.addRoute('POST', '/send', 'sms:send', { cost: 1 });
  vault.addRoute('POST', '/v1/items/*', 'items:write', { cost: 1 });
  const created = vault.createKey('a', 'signed', ['sms:send', 'items:write'], { signing: true });
  return { file, master, vault, ...created };
}

const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);

test('signRequest gives the published test vector, and node:crypto agrees', () => {
  const { secret, t, method, target, body, header } = VECTOR;
  assert.equal(signRequest(secret, method.toLowerCase(), target, body, t), header);
  const hash = crypto.createHash('sha256').update(body).digest('hex');
  const mac = crypto.createHmac('sha256', secret)
    .update(`keyledger-signature-v2\n1767225600\nPOST\n${target}\n${hash}`).digest('hex');
  assert.equal(header, `t=1767225600,v2=${mac}`);
});

test('a signature for /send?to=A is refused for /send?to=B', (t) => {
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const sig = signRequest(signingSecret, 'POST', '/send?to=A', '{}', NOW);
  const call = (query) => vault.authorize(token, { route: ['POST', '/send'], query, signature: sig, body: '{}', now: NOW });
  refused(assert, () => call('to=B'), 'invalid_signature', 401);
  refused(assert, () => call(undefined), 'invalid_signature', 401);
  assert.equal(call('to=A').charged, 1);
  refused(assert, () => vault.authorize(token, { route: ['POST', '/send?to=A'], query: 'to=A', signature: sig, body: '{}', now: NOW }), 'invalid_argument', 400);
});

test('a signature cannot be re-split between path and body', (t) => {
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const sig = signRequest(signingSecret, 'POST', '/v1/items/a.json', '', NOW);
  refused(assert, () => vault.authorize(token, { route: ['POST', '/v1/items/a'], signature: sig, body: 'json.', now: NOW }), 'invalid_signature', 401);
  assert.equal(vault.authorize(token, { route: ['POST', '/v1/items/a.json'], signature: sig, body: '', now: NOW }).charged, 1);
});

test('a format-1 signature is refused', (t) => {
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const ts = NOW.getTime() / 1000;
  const v1 = crypto.createHmac('sha256', signingSecret).update(`${ts}.POST./send.{}`).digest('hex');
  refused(assert, () => vault.authorize(token, { route: ['POST', '/send'], signature: `t=${ts},v1=${v1}`, body: '{}', now: NOW }), 'invalid_signature', 401);
});

test('with singleUseSignatures a replayed signature is refused', (t) => {
  const { vault, token, signingSecret } = signedVault({ singleUseSignatures: true });
  t.after(() => vault.close());
  const sig = signRequest(signingSecret, 'POST', '/send', '{}', NOW);
  const call = () => vault.authorize(token, { route: ['POST', '/send'], signature: sig, body: '{}', now: NOW });
  assert.equal(call().charged, 1);
  refused(assert, call, 'invalid_signature', 401);
  assert.equal(vault.balance('a').credits, 9);
});

test('Express: the gate passes the query string as sent to the signature check', async (t) => {
  const express = require('express');
  const { keyledgerMiddleware } = require('../express');
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const app = express();
  app.use(keyledgerMiddleware(vault));
  app.post('/send', (req, res) => res.json({ sent: true }));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  t.after(() => new Promise((r) => server.close(r)));
  const base = `http://127.0.0.1:${server.address().port}`;
  const post = (target, sig) => fetch(`${base}${target}`, {
    method: 'POST',
    body: '{}',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'X-KeyLedger-Signature': sig },
  });
  const sig = signRequest(signingSecret, 'POST', '/send?to=A', '{}');
  const refusedRes = await post('/send?to=B', sig);
  assert.equal(refusedRes.status, 401);
  assert.equal((await refusedRes.json()).error, 'invalid_signature');
  assert.equal((await post('/send?to=A', sig)).status, 200);
  assert.equal((await post('/send', signRequest(signingSecret, 'POST', '/send', '{}'))).status, 200);
});
