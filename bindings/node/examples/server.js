'use strict';
// An Express app gated by keyledger: two routes, one free and one costing a credit.
//
//   node examples/server.js            # creates ./example.redb, prints a token
//   curl -H "Authorization: Bearer <token>" http://127.0.0.1:3000/api/v1/numbers/mine
//   curl -X POST -H "Authorization: Bearer <token>" http://127.0.0.1:3000/api/v1/messaging/send

const path = require('node:path');
const express = require('express');
const { Vault } = require('..');
const { keyledgerMiddleware } = require('../express');

function createApp(vault) {
  const app = express();
  app.use(keyledgerMiddleware(vault));
  app.get('/api/v1/numbers/mine', (req, res) => {
    res.json({ account: req.keyledger.accountId, numbers: ['+15550100'], credits: req.keyledger.credits });
  });
  app.post('/api/v1/messaging/send', (req, res) => {
    res.json({ sent: true, charged: req.keyledger.charged, credits: req.keyledger.credits });
  });
  return app;
}

/** Routes and a demo account, once. */
function seed(vault) {
  const have = new Set(vault.listRoutes().map((r) => `${r.method} ${r.pattern}`));
  if (!have.has('GET /api/v1/numbers/mine')) vault.addRoute('GET', '/api/v1/numbers/mine', 'numbers:read');
  if (!have.has('POST /api/v1/messaging/send')) {
    vault.addRoute('POST', '/api/v1/messaging/send', 'sms:send', { cost: 1 });
  }
  if (!vault.listAccounts().some((a) => a.id === 'acct_demo')) vault.createAccount('acct_demo', { credits: 3 });
  return vault.createKey('acct_demo', 'demo', ['numbers:read', 'sms:send'], { prefix: 'dial_live' }).token;
}

module.exports = { createApp, seed };

if (require.main === module) {
  const vault = new Vault(process.env.KEYLEDGER_VAULT || path.join(process.cwd(), 'example.redb'), {
    exclusive: true,
  });
  const token = seed(vault);
  const port = Number(process.env.PORT || 3000);
  const server = createApp(vault).listen(port, '127.0.0.1', () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}`);
    console.log(`a new demo token (shown once): ${token}`);
  });
  const stop = () => server.close(() => { vault.close(); process.exit(0); });
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
