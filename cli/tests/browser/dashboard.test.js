// A real-browser test of `keyledger dashboard`: headless Chromium (Debian's
// `chromium`) driven by playwright-core. Log in, create an account with credits, mint a
// dial_live key with scope sms:send, read its secret from the page once, authorize with it
// through the CLI (granted), revoke it in the page, authorize again (refused,
// invalid_api_key), reload the keys page and check the secret is nowhere in it. A
// screenshot of every page goes to $SCREENSHOT_DIR (default target/dashboard-screenshots).
//
// Environment: KEYLEDGER_BIN (the built binary; default target/debug/keyledger),
// CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

// The workspace root (cli/tests/browser -> the repository), where target/ is.
const root = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.KEYLEDGER_BIN || path.join(root, 'target', 'debug', 'keyledger');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOT_DIR || path.join(root, 'target', 'dashboard-screenshots');
const ADMIN = 'browser-test-' + crypto.randomBytes(24).toString('hex');

let tmp;
let vault;
let server;
let base;
let context;
let page;
const pageErrors = [];
let serverOutput = '';

// The environment of the children, without a KEYLEDGER_VAULT that could point elsewhere.
function env(extra) {
  const e = { ...process.env, ...extra };
  delete e.KEYLEDGER_VAULT;
  return e;
}

function cli(args, input) {
  const r = spawnSync(BIN, ['--argon2-fast', '--vault', vault, ...args], {
    input: input === undefined ? '' : input,
    encoding: 'utf8',
    env: env({}),
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
}

// Go to a page and wait until its script has rendered it.
async function open(p) {
  await page.goto(base + p);
  await page.waitForSelector('body[data-ready="true"]');
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `build the binary first: ${BIN} is missing`);
  fs.mkdirSync(SHOTS, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'keyledger-dashboard-'));
  vault = path.join(tmp, 'keyledger.redb');
  const init = cli(['init']);
  assert.equal(init.code, 0, init.stderr);

  server = spawn(BIN, ['--argon2-fast', '--vault', vault, 'dashboard', '--listen', '127.0.0.1:0'], {
    env: env({ KEYLEDGER_ADMIN_TOKEN: ADMIN }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  server.stderr.on('data', (d) => { stderr += d; serverOutput += d; });
  server.stdout.on('data', (d) => { serverOutput += d; });
  base = await new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: server.stdout });
    lines.once('line', (line) => {
      const m = /listening on (http:\/\/\S+?)\/?$/.exec(line.trim());
      if (m) resolve(m[1]); else reject(new Error('unexpected first line: ' + line));
    });
    server.once('exit', (code) => reject(new Error(`dashboard exited (${code}): ${stderr}`)));
  });

  context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 860 },
  });
  page = context.pages()[0] || await context.newPage();
  page.on('dialog', (d) => d.accept());
  page.on('pageerror', (e) => pageErrors.push(String(e)));
});

after(async () => {
  if (context) await context.close();
  if (server) {
    server.kill('SIGTERM');
    await new Promise((resolve) => (server.exitCode !== null ? resolve() : server.once('exit', resolve)));
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('mint a key, copy its secret once, authorize, revoke, and the secret is gone', async () => {
  // Pages need a session.
  await page.goto(base + '/keys');
  assert.match(page.url(), /\/login$/);
  await page.waitForSelector('#login-form');
  await shot('login');

  // A wrong token is refused on the page.
  await page.fill('#token', 'not-the-admin-token');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#flash .msg.error');
  assert.match(await page.textContent('#flash'), /wrong admin token/);

  await page.fill('#token', ADMIN);
  await page.click('#login-form button[type=submit]');
  await page.waitForURL(base + '/keys');

  // Accounts: create one with credits.
  await open('/accounts');
  await page.fill('#account-form [name=id]', 'acct_42');
  await page.fill('#account-form [name=credits]', '100');
  await page.click('#account-form button[type=submit]');
  await page.waitForSelector('tr[data-account="acct_42"]');
  assert.match(await page.textContent('tr[data-account="acct_42"]'), /100/);

  // Bad input: a clear message, nothing changed.
  await page.fill('#topup-form [name=amount]', '-5');
  await page.click('#topup-form button[type=submit]');
  await page.waitForSelector('#flash .msg.error');
  assert.match(await page.textContent('#flash'), /amount must not be negative/);
  await open('/accounts');
  assert.match(await page.textContent('tr[data-account="acct_42"] td:nth-child(2)'), /^100$/);

  // A good top-up.
  await page.fill('#topup-form [name=amount]', '50');
  await page.fill('#topup-form [name=reference]', 'inv_1');
  await page.click('#topup-form button[type=submit]');
  await page.waitForSelector('#flash .msg.ok');
  assert.match(await page.textContent('tr[data-account="acct_42"] td:nth-child(2)'), /^150$/);
  await shot('accounts');

  // Keys: mint a dial_live key with scope sms:send; the secret is on the page once.
  await open('/keys');
  await page.selectOption('#key-form [name=account_id]', 'acct_42');
  await page.fill('#key-form [name=name]', 'sms server');
  await page.fill('#key-form [name=prefix]', 'dial_live');
  await page.fill('#key-form [name=scopes]', 'sms:send');
  await page.click('#key-form button[type=submit]');
  await page.waitForSelector('#new-token');
  const token = (await page.textContent('#new-token')).trim();
  assert.match(token, /^dial_live_[a-z0-9]{8}_[0-9A-Za-z]{46}$/);
  const keyId = token.split('_')[2];
  const secret = token.split('_')[3];
  assert.ok(await page.isVisible('#copy-token'));
  await page.waitForSelector(`tr[data-key-id="${keyId}"][data-status="active"]`);
  await shot('keys-new-token');

  // The token works, through the CLI, in another process.
  const granted = cli(['authorize', '-', '--scope', 'sms:send'], token);
  assert.equal(granted.code, 0, granted.stderr);
  assert.match(granted.stdout, /granted/);

  // Revoke it in the page.
  await page.click(`button[data-action="revoke"][data-key="${keyId}"]`);
  await page.waitForSelector(`tr[data-key-id="${keyId}"][data-status="revoked"]`);
  assert.equal(await page.$('#new-token'), null, 'the token is gone after a change');

  const refused = cli(['authorize', '-', '--scope', 'sms:send'], token);
  assert.equal(refused.code, 2, refused.stdout + refused.stderr);
  assert.match(refused.stdout, /invalid_api_key/);

  // Reload: the secret is nowhere in the HTML.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForSelector(`tr[data-key-id="${keyId}"]`);
  const html = await page.content();
  assert.ok(!html.includes(token), 'the token is in the reloaded keys page');
  assert.ok(!html.includes(secret), 'the secret is in the reloaded keys page');
  assert.equal(await page.$('#new-token'), null);
  // A second, live key for the other pages.
  await page.selectOption('#key-form [name=account_id]', 'acct_42');
  await page.fill('#key-form [name=name]', 'sms worker');
  await page.fill('#key-form [name=prefix]', 'dial_live');
  await page.fill('#key-form [name=scopes]', 'sms:send, numbers:read');
  await page.click('#key-form button[type=submit]');
  await page.waitForSelector('#new-token');
  const token2 = (await page.textContent('#new-token')).trim();
  const keyId2 = token2.split('_')[2];
  await page.click('#dismiss-token');
  await page.waitForSelector(`tr[data-key-id="${keyId2}"]`);
  assert.equal(await page.$('#new-token'), null);
  assert.ok(!(await page.content()).includes(token2));
  await shot('keys');

  // Routes: add a rule and ask which rule matches a request.
  await open('/routes');
  await page.selectOption('#route-form [name=method]', 'POST');
  await page.fill('#route-form [name=pattern]', '/api/v1/messaging/send');
  await page.fill('#route-form [name=scope]', 'sms:send');
  await page.fill('#route-form [name=cost]', '1');
  await page.click('#route-form button[type=submit]');
  await page.waitForSelector('#flash .msg.ok');
  await page.selectOption('#route-form [name=method]', 'GET');
  await page.fill('#route-form [name=pattern]', '/api/v1/messaging/threads/:counterparty');
  await page.fill('#route-form [name=scope]', 'numbers:read');
  await page.fill('#route-form [name=cost]', '0');
  await page.click('#route-form button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 2);
  await page.selectOption('#match-form [name=method]', 'POST');
  await page.fill('#match-form [name=path]', '/api/v1/messaging/send');
  await page.click('#match-form button[type=submit]');
  await page.waitForSelector('#match-result .msg.ok');
  assert.match(await page.textContent('#match-result'), /sms:send/);
  for (let i = 0; i < 3; i++) assert.equal(cli(['authorize', '-', '--route', 'POST /api/v1/messaging/send'], token2).code, 0);
  await shot('routes');

  // Rate limits.
  await open('/limits');
  await page.selectOption('#limit-form [name=owner]', 'account');
  await page.fill('#limit-form [name=owner_id]', 'acct_42');
  await page.fill('#limit-form [name=name]', 'per-minute');
  await page.fill('#limit-form [name=limit]', '600');
  await page.fill('#limit-form [name=seconds]', '60');
  await page.click('#limit-form button[type=submit]');
  await page.waitForSelector('#flash .msg.ok');
  assert.match(await page.textContent('table'), /per-minute/);
  await shot('limits');

  // Usage of the live key: the hourly chart has a bar.
  await open('/usage?key=' + keyId2);
  await page.waitForSelector('#usage-chart svg rect.bar:not(.zero)');
  assert.equal((await page.textContent('#usage-granted')).trim(), '3');
  await shot('usage');

  // Audit log, filtered by the revoked key: created and revoked by the dashboard, and the
  // refused authorization after the revocation.
  await open('/audit?key=' + keyId);
  const audit = await page.textContent('table');
  assert.match(audit, /key_created/);
  assert.match(audit, /key_revoked/);
  assert.match(audit, /auth_refused/);
  assert.match(audit, /dashboard/);
  assert.ok(!(await page.content()).includes(secret));
  await open('/audit');
  await shot('audit');

  // Rotate the live key with a grace period: a new token, shown once; the old key keeps
  // working until the grace ends.
  await open('/keys');
  await page.selectOption('#key-manage [name=key_id]', keyId2);
  await page.fill('#key-manage [name=grace]', '3600');
  await page.click('#key-manage button[value=rotate]');
  await page.waitForSelector('#new-token');
  const token3 = (await page.textContent('#new-token')).trim();
  assert.match(token3, /^dial_live_[a-z0-9]{8}_[0-9A-Za-z]{46}$/);
  assert.match(await page.textContent('#flash'), /stops at/);
  await page.click('#copy-token');
  await page.waitForFunction(() => document.getElementById('copy-token').textContent !== 'Copy');
  assert.equal(cli(['authorize', '-', '--scope', 'sms:send'], token3).code, 0);
  assert.equal(cli(['authorize', '-', '--scope', 'sms:send'], token2).code, 0, 'the old key works during the grace');
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  const after = await page.content();
  for (const t of [token, token2, token3]) assert.ok(!after.includes(t.split('_')[3]));

  // Nothing secret went to the server's output either.
  for (const t of [token, token2, token3]) assert.ok(!serverOutput.includes(t.split('_')[3]), 'a secret in the server log');
  assert.ok(!serverOutput.includes(ADMIN), 'the admin token in the server log');
  assert.deepEqual(pageErrors, [], 'no script errors on any page');
});
