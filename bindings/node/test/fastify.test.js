'use strict';
// The Fastify plugin through Fastify's own test client (fastify.inject).
const test = require('node:test');
const assert = require('node:assert/strict');
const Fastify = require('fastify');
const keyledgerFastify = require('keyledger/fastify');
const { Vault, signRequest, generateMasterKey } = require('..');
const { seeded, vaultPath, FAST } = require('../testlib/helpers');

function app(vault, options = {}, fastifyOptions = {}) {
  const f = Fastify(fastifyOptions);
  f.register(keyledgerFastify, { vault, ...options });
  f.get('/api/v1/numbers/mine', async (request) => ({ account: request.keyledger.accountId, credits: request.keyledger.credits }));
  f.post('/api/v1/messaging/send', async (request) => ({ charged: request.keyledger.charged, body: request.body }));
  return f;
}

test('Fastify plugin: grant on request.keyledger; refusals with the core status, headers and body', async (t) => {
  const { vault, token } = seeded({ credits: 1 });
  const reader = vault.createKey('acct_42', 'reader', ['numbers:read']).token;
  const f = app(vault);
  t.after(async () => {
    await f.close();
    vault.close();
  });
  const bearer = (tok) => ({ authorization: `Bearer ${tok}` });

  let r = await f.inject({ method: 'GET', url: '/api/v1/numbers/mine?page=2', headers: bearer(token) });
  assert.equal(r.statusCode, 200);
  assert.deepEqual(r.json(), { account: 'acct_42', credits: 1 });
  // A bare token in X-Api-Key works too.
  r = await f.inject({ method: 'GET', url: '/api/v1/numbers/mine', headers: { 'x-api-key': token } });
  assert.equal(r.statusCode, 200);

  r = await f.inject({ method: 'POST', url: '/api/v1/messaging/send', headers: bearer(token), payload: { to: 'A' } });
  assert.equal(r.statusCode, 200);
  assert.deepEqual(r.json(), { charged: 1, body: { to: 'A' } });

  // 402: out of credits; the handler never ran.
  r = await f.inject({ method: 'POST', url: '/api/v1/messaging/send', headers: bearer(token), payload: { to: 'B' } });
  assert.equal(r.statusCode, 402);
  assert.equal(r.json().error, 'insufficient_credits');
  assert.equal(r.json().success, false);
  assert.match(r.headers['content-type'], /^application\/json/);

  // 401 with WWW-Authenticate, for no token, a bad one, another scheme.
  for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: `Basic ${token}` }]) {
    r = await f.inject({ method: 'GET', url: '/api/v1/numbers/mine', headers });
    assert.equal(r.statusCode, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer');
    assert.equal(r.json().error, 'invalid_api_key');
  }
  // 403: missing scope, the body names it.
  r = await f.inject({ method: 'POST', url: '/api/v1/messaging/send', headers: bearer(reader) });
  assert.equal(r.statusCode, 403);
  assert.equal(r.json().error, 'missing_scope');
  assert.equal(r.json().required, 'sms:send');
  // The raw target is what the gate reads: an encoded slash is refused, not decoded.
  r = await f.inject({ method: 'GET', url: '/api/v1/numbers%2Fmine', headers: bearer(token) });
  assert.equal(r.statusCode, 400);
  assert.equal(r.json().error, 'ambiguous_path');
  // No rule: the gate refuses (a route unknown to keyledger is never granted by default).
  r = await f.inject({ method: 'GET', url: '/elsewhere', headers: bearer(token) });
  assert.ok(r.statusCode >= 400, `an unruled route got ${r.statusCode}`);
});

test('Fastify plugin: under a prefix the full target is checked; rate limit headers on grants', async (t) => {
  const vault = new Vault(vaultPath(), FAST);
  vault.addRoute('GET', '/v1/things', 'x:read');
  vault.createAccount('a', { credits: 0 });
  const { token, key } = vault.createKey('a', 'k', ['x:read']);
  vault.setRatelimit('per_min', 2, 60_000, { keyId: key.keyId });
  const f = Fastify();
  f.register(async (scope) => {
    scope.register(keyledgerFastify, { vault });
    scope.get('/things', async (request) => ({ key: request.keyledger.keyId }));
  }, { prefix: '/v1' });
  f.get('/health', async (request) => ({ ok: true, gated: request.keyledger !== undefined && request.keyledger !== null }));
  t.after(async () => {
    await f.close();
    vault.close();
  });
  const headers = { authorization: `Bearer ${token}` };
  let r = await f.inject({ method: 'GET', url: '/v1/things', headers });
  assert.equal(r.statusCode, 200);
  assert.equal(r.json().key, key.keyId);
  assert.equal(r.headers['ratelimit-limit'], '2');
  assert.equal(r.headers['ratelimit-remaining'], '1');
  r = await f.inject({ method: 'GET', url: '/v1/things', headers });
  assert.equal(r.statusCode, 200);
  r = await f.inject({ method: 'GET', url: '/v1/things', headers });
  assert.equal(r.statusCode, 429);
  assert.ok(Number(r.headers['retry-after']) > 0);
  assert.equal(r.json().error, 'rate_limited');
  // Outside the registering scope: not gated.
  r = await f.inject({ method: 'GET', url: '/health' });
  assert.equal(r.statusCode, 200);
  assert.equal(r.json().ok, true);
});

test('Fastify plugin: a signed request is verified against its raw body, which still reaches the handler', async (t) => {
  const vault = new Vault(vaultPath(), { ...FAST, masterKey: generateMasterKey() });
  vault.addRoute('POST', '/api/v1/messaging/send', 'sms:send', { cost: 1 });
  vault.createAccount('a', { credits: 5 });
  const { token, signingSecret } = vault.createKey('a', 's', ['sms:send'], { signing: true });
  const f = app(vault, { limit: 64 });
  t.after(async () => {
    await f.close();
    vault.close();
  });
  const body = JSON.stringify({ to: 'A', text: 'hi' });
  const sign = (b) => signRequest(signingSecret, 'POST', '/api/v1/messaging/send', b);
  const send = (b, sig) => f.inject({
    method: 'POST', url: '/api/v1/messaging/send', payload: b,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-keyledger-signature': sig },
  });
  let r = await send(body, sign(body));
  assert.equal(r.statusCode, 200, r.body);
  assert.deepEqual(r.json(), { charged: 1, body: { to: 'A', text: 'hi' } });
  // The same signature over another body: refused, nothing charged.
  r = await send(JSON.stringify({ to: 'B', text: 'hi' }), sign(body));
  assert.equal(r.statusCode, 401, r.body);
  // Over the gate's limit: 413 payload_too_large.
  const big = JSON.stringify({ to: 'A', text: 'x'.repeat(100) });
  r = await send(big, sign(big));
  assert.equal(r.statusCode, 413, r.body);
  assert.equal(r.json().error, 'payload_too_large');
  // A signing key without a signature: refused.
  r = await f.inject({ method: 'POST', url: '/api/v1/messaging/send', payload: body, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
  assert.equal(r.statusCode, 401, r.body);
  assert.equal(vault.balance('a').credits, 4);
  // Bodiless methods with a signature are gated too (preParsing runs for every request).
  for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
    r = await f.inject({ method, url: '/api/v1/numbers/mine', headers: { authorization: 'Bearer nope', 'x-keyledger-signature': 't=1,v2=00' } });
    assert.equal(r.statusCode, 401, `${method}: ${r.body}`);
  }
});

test('Fastify plugin: a bad vault option fails registration', async () => {
  const f = Fastify();
  f.register(keyledgerFastify, {});
  await assert.rejects(f.ready(), /options\.vault must be a keyledger Vault/);
});
