'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Vault } = require('..');
const { seeded, refused, vaultPath, FAST } = require('../testlib/helpers');

test('every call after close() is vault_closed; close() twice is fine', () => {
  const { vault, token, key } = seeded();
  assert.equal(vault.closed, false);
  vault.close();
  vault.close();
  assert.equal(vault.closed, true);
  const calls = [
    () => vault.authorize(token, { route: ['GET', '/api/v1/numbers/mine'] }),
    () => vault.authorize(token, { scope: 'sms:send', full: true }),
    () => vault.whoami(token),
    () => vault.balance('acct_42'),
    () => vault.createAccount('new'),
    () => vault.topUp('acct_42', 1),
    () => vault.debit('acct_42', 1),
    () => vault.createKey('acct_42', 'k', ['x']),
    () => vault.revokeKey(key.keyId),
    () => vault.listKeys(),
    () => vault.listRoutes(),
    () => vault.audit(),
    () => vault.usage(key.keyId),
    () => vault.flush(),
  ];
  for (const f of calls) {
    const e = refused(assert, f, 'vault_closed', 500);
    assert.equal(e.klStatus, 2007);
  }
});

test('an exclusive vault locks out a second opener until closed', () => {
  const file = vaultPath();
  const a = new Vault(file, { ...FAST, exclusive: true });
  refused(assert, () => new Vault(file, FAST), 'vault_locked', 500);
  a.close();
  const b = new Vault(file, { ...FAST, exclusive: true, durability: 'eventual' });
  b.close();
});

test('a forgotten vault is freed by the FinalizationRegistry', () => {
  const file = vaultPath();
  const script = `
    const { Vault } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
    const opts = ${JSON.stringify({ ...FAST, exclusive: true })};
    (function () { new Vault(process.argv[1], opts); })();
    let tries = 0;
    (function again() {
      globalThis.gc();
      setTimeout(() => {
        try {
          new Vault(process.argv[1], opts).close();
          console.log('reopened after', tries);
        } catch (e) {
          if (e.code !== 'vault_locked' || ++tries > 50) throw e;
          again();
        }
      }, 10);
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script, file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /reopened after/);
});

test('the management API round trip', () => {
  const { vault, token, key } = seeded({ credits: 5 });
  const acct = vault.account('acct_42');
  assert.equal(acct.id, 'acct_42');
  assert.ok(acct.createdAt instanceof Date);
  assert.deepEqual(acct.metadata, { plan: 'pro' });
  assert.deepEqual(vault.listAccounts().map((a) => a.id), ['acct_42']);

  assert.deepEqual(vault.topUp('acct_42', 10, { reference: 'stripe_pi_1' }), { accountId: 'acct_42', credits: 15, totalCredits: 15, held: 0, available: 15 });
  assert.deepEqual(vault.debit('acct_42', 4, { idempotencyKey: 'order-1' }), { accountId: 'acct_42', credits: 11, totalCredits: 15, held: 0, available: 11 });
  assert.equal(vault.debit('acct_42', 4, { idempotencyKey: 'order-1' }).credits, 11);
  assert.equal(vault.balance('acct_42').credits, 11);

  const k = vault.key(key.keyId);
  assert.equal(k.keyId, key.keyId);
  assert.equal(k.name, 'backend');
  assert.equal(k.accountId, 'acct_42');
  assert.equal(k.revokedAt, null);
  assert.ok(!JSON.stringify(k).includes(token.split('_').pop()), 'KeyInfo never holds the secret');
  assert.deepEqual(vault.setScopes(key.keyId, ['sms:*']).scopes, ['sms:*']);
  assert.equal(vault.authorize(token, { scope: 'sms:send' }).keyId, key.keyId);

  const created = vault.createKey('acct_42', 'second', ['numbers:read'], {
    expiresAt: new Date(Date.now() + 3_600_000),
    metadata: { team: 'ops', snake_case: true },
  });
  assert.deepEqual(created.key.metadata, { team: 'ops', snake_case: true });
  assert.ok(created.key.expiresAt instanceof Date);
  assert.equal(vault.listKeys('acct_42').length, 2);
  assert.equal(vault.listKeys().length, 2);
  assert.deepEqual(vault.listKeys('nobody'), []);

  // rotation with grace: both work, the new one is a new key_id
  const rotated = vault.rotateKey(key.keyId, { graceMs: 60_000 });
  assert.notEqual(rotated.key.keyId, key.keyId);
  assert.equal(rotated.key.rotatedFrom, key.keyId);
  assert.equal(vault.authorize(rotated.token, { scope: 'sms:send' }).keyId, rotated.key.keyId);
  assert.equal(vault.authorize(token, { scope: 'sms:send' }).keyId, key.keyId);
  assert.ok(vault.key(key.keyId).expiresAt instanceof Date);

  const revoked = vault.revokeKey(created.key.keyId);
  assert.ok(revoked.revokedAt instanceof Date);

  // routes
  assert.deepEqual(vault.matchRoute('GET', '/api/v1/messaging/threads/alice'), {
    method: 'GET', pattern: '/api/v1/messaging/threads/:counterparty', scope: 'numbers:read', cost: 0,
  });
  assert.equal(vault.matchRoute('GET', '/nowhere'), null);
  vault.addRoute('GET', '/sms/*', 'sms.read', { cost: 2n });
  assert.equal(vault.listRoutes().length, 4);
  assert.deepEqual(vault.removeRoute('GET', '/sms/*'), { method: 'GET', pattern: '/sms/*', scope: 'sms.read', cost: 2 });

  // audit and usage
  vault.flush();
  const audit = vault.audit({ accountId: 'acct_42', limit: 500 });
  const actions = audit.map((e) => e.action);
  for (const a of ['account_created', 'credits_added', 'credits_debited', 'key_created', 'key_rotated', 'key_revoked', 'key_scopes_changed']) {
    assert.ok(actions.includes(a), `audit has ${a}`);
  }
  assert.ok(audit[0].time instanceof Date);
  assert.ok(audit[0].seq > audit[audit.length - 1].seq, 'newest first');
  assert.equal(vault.audit({ action: 'key_revoked' }).length, 1);
  assert.equal(vault.audit({ limit: 2 }).length, 2);
  assert.equal(vault.audit({ since: new Date(Date.now() + 60_000) }).length, 0);
  assert.equal(vault.audit({ keyId: key.keyId, action: 'key_created' }).length, 1);

  const u = vault.usage(key.keyId);
  assert.equal(u.keyId, key.keyId);
  assert.ok(u.granted >= 2);
  assert.ok(u.lastUsedAt instanceof Date);
  assert.ok(Array.isArray(u.hourly) && u.hourly[0][0] instanceof Date);
  vault.close();
});

test('credits beyond 2^53 come back as BigInt, smaller ones as numbers', () => {
  const { vault, token } = seeded({ credits: 1 });
  const big = 2n ** 60n;
  const b = vault.topUp('acct_42', big);
  assert.equal(b.credits, big + 1n);
  assert.equal(typeof b.credits, 'bigint');
  const g = vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'] });
  assert.equal(g.credits, big);
  assert.equal(g.totalCredits, big + 1n);
  assert.equal(g.charged, 1);
  const f = vault.authorize(token, { route: ['POST', '/api/v1/messaging/send'], full: true });
  assert.equal(f.credits, big - 1n);
  assert.equal(vault.account('acct_42').totalCredits, big + 1n);
  assert.equal(vault.debit('acct_42', big - 1n).credits, 0);
  assert.equal(typeof vault.balance('acct_42').credits, 'number');
  vault.close();
});
