'use strict';
// authorizeAsync / authorizeHttpAsync: the same answers as the synchronous calls, with a
// cold key's argon2 run on a libuv worker thread while the event loop keeps turning.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Vault, KeyLedgerError } = require('..');
const { seeded, vaultPath } = require('../testlib/helpers');

test('authorizeAsync grants and refuses as authorize does', async () => {
  const { vault, token, key } = seeded({ credits: 2 });
  const send = { route: ['POST', '/api/v1/messaging/send'] };
  const g = await vault.authorizeAsync(token, send); // cold: on a worker
  assert.equal(g.keyId, key.keyId);
  assert.equal(g.charged, 1);
  assert.equal(g.credits, 1);
  assert.equal(g.scopes, null);
  const full = await vault.authorizeAsync(token, { scope: 'sms:send', full: true }); // warm: inline
  assert.deepEqual(full.scopes, ['numbers:read', 'sms:send']);
  assert.equal((await vault.authorizeAsync(token, send)).credits, 0);
  // A charge needs a commit: decided on a worker, the refusal has its code and status.
  await assert.rejects(vault.authorizeAsync(token, send), (e) => e instanceof KeyLedgerError &&
    e.code === 'insufficient_credits' && e.status === 402 && e.body.error === 'insufficient_credits');
  // Decided inline (no argon2, no commit): the full body.
  await assert.rejects(vault.authorizeAsync(token, { scope: 'admin:write' }), (e) => e.code === 'missing_scope' &&
    e.status === 403 && e.body.required === 'admin:write');
  const wrong = `${token.slice(0, -8)}AAAAAAAA`;
  await assert.rejects(vault.authorizeAsync(wrong, send), (e) => e instanceof KeyLedgerError &&
    e.code === 'invalid_api_key' && e.status === 401 && e.body.error === 'invalid_api_key' && e.body.success === false);
  await assert.rejects(vault.authorizeAsync(42, send), TypeError);
  await assert.rejects(vault.authorizeAsync('a\uDC00', send), (e) => e.code === 'invalid_argument');
  vault.close();
  await assert.rejects(vault.authorizeAsync(token, send), (e) => e.code === 'vault_closed');
});

test('authorizeHttpAsync answers like authorizeHttp, refusals included', async () => {
  const { vault, token } = seeded({ credits: 1 });
  const req = { method: 'POST', target: '/api/v1/messaging/send', authorization: `Bearer ${token}` };
  const ok = await vault.authorizeHttpAsync(req);
  assert.equal(ok.status, 200);
  assert.equal(ok.grant.credits, 0);
  const short = await vault.authorizeHttpAsync(req);
  assert.equal(short.status, 402);
  assert.equal(short.grant, null);
  assert.equal(JSON.parse(short.body).error, 'insufficient_credits');
  const none = await vault.authorizeHttpAsync({ method: 'GET', target: '/api/v1/numbers/mine' });
  assert.equal(none.status, 401);
  assert.ok(none.headers.some(([n, v]) => n === 'www-authenticate' && v === 'Bearer'));
  vault.close();
});

test('a cold authorizeAsync (argon2) leaves the event loop free', async () => {
  // Costly argon2 parameters: the cold verification takes a while on a debug build.
  const file = vaultPath();
  const vault = new Vault(file, { argon2: { m_kib: 16384, t: 1, p: 1 } });
  vault.addRoute('GET', '/x', 'x:read');
  vault.createAccount('a');
  const { token } = vault.createKey('a', 'k', ['x:read']);
  vault.close();
  const cold = new Vault(file);
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
  const g = await cold.authorizeAsync(token, { route: ['GET', '/x'] });
  const took = performance.now() - started;
  clearInterval(ticker);
  assert.equal(g.accountId, 'a');
  const s = cold.stats();
  assert.equal(s.argon2Runs, 1);
  console.log(`# cold authorizeAsync took ${took.toFixed(0)} ms; the loop turned ${turns} times, worst gap ${worst.toFixed(1)} ms`);
  assert.ok(took > 20, `argon2 should take a while here (${took.toFixed(1)} ms)`);
  assert.ok(turns >= 5, `the event loop turned only ${turns} times during a ${took.toFixed(0)} ms cold authorize`);
  assert.ok(worst < 50, `the event loop stalled for ${worst.toFixed(1)} ms during a cold authorize`);
  cold.close();
});

test('close() while async calls are queued or running: each answers (a grant or vault_closed) and the file is released', async () => {
  const file = vaultPath();
  const setup = new Vault(file, { argon2: { m_kib: 16384, t: 1, p: 1 } });
  setup.addRoute('GET', '/x', 'x:read');
  setup.createAccount('a');
  const tokens = [];
  for (let i = 0; i < 6; i++) tokens.push(setup.createKey('a', `k${i}`, ['x:read']).token);
  setup.close();
  const vault = new Vault(file);
  // Cold keys: each needs argon2, so each goes to a worker thread (some wait in the queue).
  const pending = tokens.map((t) => vault.authorizeAsync(t, { route: ['GET', '/x'] }).then(
    (g) => g.accountId,
    (e) => e.code,
  ));
  const http = vault.authorizeHttpAsync({ method: 'GET', target: '/x', authorization: `Bearer ${tokens[0]}x` });
  vault.close();
  const answers = await Promise.all(pending);
  for (const a of answers) assert.ok(a === 'a' || a === 'vault_closed', `answer ${a}`);
  await http.then((out) => assert.ok(out.status === 401 || out.status >= 400), (e) => assert.equal(e.code, 'vault_closed'));
  assert.equal(vault.closed, true);
  // The file is free again: an exclusive open succeeds.
  new Vault(file, { exclusive: true }).close();
});
