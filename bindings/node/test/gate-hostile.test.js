'use strict';
// The hostile-target table (tests/gates/hostile_targets.json) through the Express gate, in
// front of Express's real router and `express.static`, on a real http server on 127.0.0.1.
// Requests go through raw `net` sockets so each target reaches the server byte for byte
// (fetch and http.request would normalise `..`, `#`, spaces and absolute-form).
//
// The bug this pins: the gate decided on one reading of the path (`req.path`, and
// byte-for-byte rule matching) while Express routed another (`/SEND` to the `/send`
// handler, `%23/../` resolved by express.static, HEAD served by the GET handler), so a key
// reached a handler its scopes or credits did not allow. For every target and key, the
// response must be the gate's refusal (nothing charged, no handler ran) or come from a
// handler of the rule the gate charged (or from no handler: the router's own 404).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const express = require('express');
const { Vault } = require('..');
const { keyledgerMiddleware } = require('../express');
const { FAST, tmpDir, vaultPath } = require('../testlib/helpers');

const TABLE = JSON.parse(
  fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'tests', 'gates', 'hostile_targets.json'), 'utf8'),
);
const REPORT = 'the paid report\n';

/** A vault with the table's rules, and one account + key per table key. */
function tableVault() {
  const vault = new Vault(vaultPath(), FAST);
  for (const r of TABLE.rules) vault.addRoute(r.method, r.pattern, r.scope, { cost: r.cost });
  const tokens = {};
  for (const [name, k] of Object.entries(TABLE.keys)) {
    vault.createAccount(`acct_${name}`, { credits: k.credits });
    tokens[name] = vault.createKey(`acct_${name}`, name, k.scopes).token;
  }
  return { vault, tokens };
}

/** The test app of the table's `about`: every handler labels its response `x-handler`. */
function tableApp(vault, { caseSensitive }) {
  const app = express();
  if (caseSensitive) app.enable('case sensitive routing');
  app.use(keyledgerMiddleware(vault));
  const dir = fs.mkdtempSync(path.join(tmpDir(), 'static-'));
  fs.writeFileSync(path.join(dir, 'report.pdf'), REPORT);
  const label = (name) => (req, res) => res.set('x-handler', name).json({ handler: name, charged: req.keyledger.charged });
  // fallthrough: false — a missing file is the file server's own 404, never the next route's.
  app.use('/files', express.static(dir, { fallthrough: false, setHeaders: (res) => res.set('x-handler', 'files-static') }));
  app.get('/dl/{*rest}', label('dl'));
  app.get('/report', label('report'));
  app.post('/api/v1/messaging/send', label('send'));
  app.all('/api/{*rest}', label('api'));
  app.get('/items/:id', label('items'));
  app.all('/{*rest}', label('public'));
  // Errors (a file server refusing a path, a malformed escape) answer without a handler.
  app.use((err, req, res, _next) => res.status(err.status || err.statusCode || 500).end());
  return app;
}

function listen(app) {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** One request, written byte for byte; resolves with the status, headers and body. */
function send(port, method, target, token) {
  const head = Buffer.concat([
    Buffer.from(`${method} `, 'latin1'),
    Buffer.from(target, 'utf8'),
    Buffer.from(` HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, 'latin1'),
  ]);
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    sock.setTimeout(10_000, () => sock.destroy(new Error(`no answer to ${method} ${JSON.stringify(target)}`)));
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const cut = text.indexOf('\r\n\r\n');
      const headText = cut < 0 ? text : text.slice(0, cut);
      const headers = {};
      for (const line of headText.split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(headText.split(' ')[1]), headers, body: cut < 0 ? '' : text.slice(cut + 4), raw: headText });
    });
    sock.write(head); // no half-close: Node aborts a request whose client has ended
  });
}

function jsonOf(text) {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/** Run every target of the table for every key, with the app routing case-(in)sensitively. */
async function runTable(t, { caseSensitive }) {
  const { vault, tokens } = tableVault();
  const server = await listen(tableApp(vault, { caseSensitive }));
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
  const port = server.address().port;
  const rules = Object.fromEntries(TABLE.rules.map((r) => [r.id, r]));
  const failures = [];
  let checked = 0;
  for (const row of TABLE.targets) {
    const insensitive = !caseSensitive;
    const expect = (insensitive && row.expect_case_insensitive) || row.expect;
    const outcomes = (insensitive && row.outcomes_case_insensitive) || row.outcomes;
    for (const key of Object.keys(TABLE.keys)) {
      const want = outcomes[key];
      const before = vault.balance(`acct_${key}`).credits;
      const res = await send(port, row.method, row.target, tokens[key]);
      const charged = before - vault.balance(`acct_${key}`).credits;
      const handler = res.headers['x-handler'] || null;
      const what = `${row.method} ${JSON.stringify(row.target)} as ${key} (${row.why}): ${res.raw.split('\r\n')[0]} ${res.body.slice(0, 120)}`;
      checked += 1;
      if (!want.granted) {
        const gateAnswer = (res.headers['content-type'] || '').startsWith('application/json') ? jsonOf(res.body) : null;
        const transport = row.transport_may_refuse && res.status === 400 && gateAnswer === null && handler === null;
        // A HEAD answer has no body: its status says it all.
        const codeSeen = row.method === 'HEAD' ? gateAnswer !== null : gateAnswer && gateAnswer.error === want.code;
        if (!transport && (res.status !== want.status || !codeSeen)) {
          failures.push(`expected ${want.status} ${want.code}, got ${what}`);
        }
        if (handler !== null) failures.push(`refused, yet handler ${handler} ran: ${what}`);
        if (charged !== 0) failures.push(`refused, yet charged ${charged}: ${what}`);
        continue;
      }
      if (row.transport_may_refuse && res.status === 400 && handler === null && charged === 0) continue;
      const rule = rules[expect.rule];
      if (charged !== want.charged) failures.push(`expected ${want.charged} charged, got ${charged}: ${what}`);
      if (handler === null) {
        // No handler: only the router's own 404/405 may answer a granted request.
        if (res.status !== 404 && res.status !== 405) failures.push(`granted, no handler, status ${res.status}: ${what}`);
      } else if (!rule.handlers.includes(handler)) {
        failures.push(`rule ${rule.id} was charged but handler ${handler} ran: ${what}`);
      } else if (handler === 'files-static' && res.status === 200 && row.method === 'GET' && res.body !== REPORT) {
        failures.push(`the file server sent something else: ${what}`);
      }
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${checked} requests went wrong`);
  assert.ok(checked >= 2 * 50, `only ${checked} requests checked`);
}

test('hostile targets through Express (case-insensitive routing, the default) and express.static', async (t) => {
  await runTable(t, { caseSensitive: false });
});

test('hostile targets through Express with case sensitive routing on', async (t) => {
  await runTable(t, { caseSensitive: true });
});

test('the Express gate reads the case setting of the app it runs in, and its own option wins', async (t) => {
  const { vault, tokens } = tableVault();
  const ran = [];
  const build = (app, options) => {
    app.use(keyledgerMiddleware(vault, options));
    app.post('/api/v1/messaging/send', (req, res) => { ran.push('send'); res.json({ charged: req.keyledger.charged }); });
    app.all('/{*rest}', (req, res) => { ran.push('other'); res.json({ charged: req.keyledger.charged }); });
    return app;
  };
  const insensitive = await listen(build(express()));
  const sensitive = await listen(build(express().enable('case sensitive routing')));
  const forced = await listen(build(express(), { caseInsensitive: true }));
  t.after(() => new Promise((r) => insensitive.close(() => sensitive.close(() => forced.close(() => { vault.close(); r(); })))));
  // The case: a key with only api:basic and 0 credits, `/SEND` in capitals.
  let r = await send(insensitive.address().port, 'POST', '/api/v1/messaging/SEND', tokens.attacker);
  assert.equal(r.status, 403, r.raw);
  assert.equal(JSON.parse(r.body).required, 'sms:send');
  assert.deepEqual(ran, []);
  r = await send(sensitive.address().port, 'POST', '/api/v1/messaging/SEND', tokens.attacker);
  assert.equal(r.status, 200, r.raw);
  assert.deepEqual(ran, ['other']); // Express did not route it to /send either
  assert.throws(() => keyledgerMiddleware(vault, { caseInsensitive: 'yes' }), TypeError);
  assert.throws(() => vault.authorizeRequest(tokens.payer, 'GET', '/report', { caseInsensitive: 1 }), TypeError);
  r = await send(forced.address().port, 'POST', '/api/v1/messaging/SEND', tokens.payer);
  assert.equal(r.status, 200, r.raw);
  assert.equal(JSON.parse(r.body).charged, 1);
});

test('vault.authorizeRequest: raw target, HEAD like GET, ambiguous targets refused, nothing charged', () => {
  const { vault, tokens } = tableVault();
  const g = vault.authorizeRequest(tokens.payer, 'HEAD', '/report?x=1');
  assert.equal(g.charged, 7);
  const full = vault.authorizeRequest(tokens.payer, 'GET', 'http://example.com/files/report.pdf', { full: true });
  assert.equal(full.charged, 5);
  assert.ok(full.scopes.includes('files:read'));
  assert.equal(vault.authorizeRequest(tokens.payer, 'POST', '/API/v1/messaging/SEND', { caseInsensitive: true }).charged, 1);
  for (const target of ['/files/%23/../report.pdf', '/files/%2e%2e/report.pdf', '/files//x', '/files/', '*', '/a b']) {
    let caught;
    assert.throws(() => vault.authorizeRequest(tokens.payer, 'GET', target), (e) => { caught = e; return true; });
    assert.equal(caught.code, 'ambiguous_path', target);
    assert.equal(caught.status, 400);
    assert.equal(caught.body.error, 'ambiguous_path');
  }
  assert.equal(vault.balance('acct_payer').credits, 1000 - 7 - 5 - 1);
  assert.throws(() => vault.authorizeRequest(tokens.payer, 'GET', '/report', { route: ['GET', '/report'] }), TypeError);
  assert.throws(() => vault.authorizeRequest(tokens.payer, 'GET', 42), TypeError);
  vault.close();
});
