'use strict';
// The dashboard over a PostgreSQL URL: `keyledger --vault postgresql://… dashboard`, driven
// through its HTTP API (log in, create an account and a key, list keys, top up, revoke,
// read the audit), with the CLI as a second process that authorizes the key before and
// after the revoke.
//
// Run by tests/postgres_hosts/run (from `scripts/test postgres`). KEYLEDGER_PGHOSTS_URL is a
// fresh database on the throwaway cluster; KEYLEDGER_PGHOSTS_CLI the `keyledger` binary
// built with the `postgres` feature. Without them the test fails: it never skips.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const readline = require('node:readline');

const ADMIN = 'pg-hosts-admin-token-5be1f0c2';

function env(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set (tests/postgres_hosts/run sets it)`);
  return value;
}

function withoutVault() {
  const e = { ...process.env };
  delete e.KEYLEDGER_VAULT;
  return e;
}

function cli(args, input) {
  const r = spawnSync(env('KEYLEDGER_PGHOSTS_CLI'), ['--argon2-fast', '--vault', env('KEYLEDGER_PGHOSTS_URL'), ...args], {
    input: input ?? '',
    encoding: 'utf8',
    timeout: 60_000,
    env: withoutVault(),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function startDashboard(t) {
  const child = spawn(
    env('KEYLEDGER_PGHOSTS_CLI'),
    ['--argon2-fast', '--vault', env('KEYLEDGER_PGHOSTS_URL'), 'dashboard', '--listen', '127.0.0.1:0'],
    { env: { ...withoutVault(), KEYLEDGER_ADMIN_TOKEN: ADMIN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL within 60 s; stderr: ${stderr}`)), 60_000);
    lines.once('line', (l) => { clearTimeout(timer); resolve(l); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`dashboard exited ${code}: ${stderr}`)); });
  });
  const m = /^keyledger dashboard listening on (http:\/\/\S+?)\/?$/.exec(first.trim());
  assert.ok(m, `unexpected first line ${first}`);
  return m[1];
}

test('the dashboard serves a PostgreSQL vault: login, keys, top-up, revoke, audit', async (t) => {
  const init = cli(['init']);
  assert.equal(init.code, 0, init.stderr);
  const base = await startDashboard(t);

  const denied = await fetch(`${base}/api/keys`, { headers: { Accept: 'application/json' } });
  assert.equal(denied.status, 401);

  const login = await fetch(`${base}/api/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ token: ADMIN }),
  });
  assert.equal(login.status, 200);
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const { csrf } = await login.json();
  const api = async (method, path, body) => {
    const headers = { Accept: 'application/json', Cookie: cookie };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['X-CSRF-Token'] = csrf;
    }
    const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };

  assert.equal((await api('POST', '/api/accounts', { id: 'dash_acct', credits: '10' })).status, 201);
  const created = await api('POST', '/api/keys', {
    account_id: 'dash_acct', name: 'server', prefix: 'dial_live', scopes: 'sms:send',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { token } = created.body;
  const keyId = created.body.key.key_id;

  const keys = await api('GET', '/api/keys');
  assert.equal(keys.status, 200);
  assert.deepEqual(keys.body.map((k) => k.key_id), [keyId]);
  assert.ok(!JSON.stringify(keys.body).includes(token.split('_').pop()), 'the list shows no secret');

  const topped = await api('POST', '/api/accounts/dash_acct/top-up', { amount: 5, reference: 'inv_1' });
  assert.equal(topped.status, 200);
  assert.equal(Number(topped.body.credits), 15);

  // Another process (the CLI) sees the key and the balance in the same database.
  const granted = cli(['authorize', '-', '--scope', 'sms:send', '--cost', '2'], token);
  assert.equal(granted.code, 0, granted.stderr);
  assert.equal(Number((await api('GET', '/api/accounts/dash_acct')).body.credits), 13);

  const revoked = await api('POST', `/api/keys/${keyId}/revoke`, {});
  assert.equal(revoked.status, 200);
  assert.ok(Number.isInteger(revoked.body.revoked_at));
  const refused = cli(['--json', 'authorize', '-', '--scope', 'sms:send'], token);
  assert.equal(refused.code, 2);
  assert.match(refused.stdout, /invalid_api_key/);

  const audit = await api('GET', '/api/audit?limit=100');
  assert.equal(audit.status, 200);
  const actions = audit.body.map((e) => e.action);
  for (const a of ['account_created', 'key_created', 'credits_added', 'key_revoked']) {
    assert.ok(actions.includes(a), `audit lacks ${a}: ${actions}`);
  }
  assert.equal(audit.body.find((e) => e.action === 'key_revoked').key_id, keyId);
});
