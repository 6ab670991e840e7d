'use strict';
// Debits in flight together from Node share group commits: a verified key's charged
// authorizeAsync waits for a commit, not for argon2, so it goes to the commit lane (up to
// the libuv pool's size at once), not the argon2 lane (one fewer than the cores, which on
// a 2-core machine is one at a time, one commit per debit).
const test = require('node:test');
const assert = require('node:assert/strict');
const { seeded } = require('../testlib/helpers');

test('concurrent authorizeAsync debits share commits, and every debit lands once', async () => {
  const DEBITS = 200;
  const { vault, token } = seeded({ credits: DEBITS });
  vault.authorize(token, { scope: 'sms:send' }); // verified: no argon2 below
  const c0 = vault.stats().commits;
  let next = 0;
  const lane = async () => {
    while (next < DEBITS) {
      next++;
      const g = await vault.authorizeAsync(token, { scope: 'sms:send', cost: 1 });
      assert.equal(g.charged, 1);
    }
  };
  await Promise.all(Array.from({ length: 16 }, lane));
  const commits = vault.stats().commits - c0;
  console.log(`# ${DEBITS} debits, 16 in flight: ${commits} commits (${(DEBITS / commits).toFixed(2)} debits per commit)`);
  assert.ok(commits < DEBITS, `${commits} commits for ${DEBITS} debits: none shared a commit`);
  assert.equal(vault.balance('acct_42').credits, 0);
  await assert.rejects(vault.authorizeAsync(token, { scope: 'sms:send', cost: 1 }), (e) => e.code === 'insufficient_credits' &&
    e.body.credits === 0 && e.body.required === 1);
  vault.close();
});
