'use strict';
// A long-running host must not grow with the number of calls. Every string keyledger
// returns (a grant's JSON, a refusal's JSON body, a redacted token) is copied out of C
// memory by lib/native.js; that copy must not leave anything behind. The JS heap is
// collected before each measurement, so what is measured is native memory.
//
// The count: a million string results from the cheapest call that returns one (`redact`,
// a few µs even against a debug build), plus the real authorize paths (refusals with
// their JSON body, `full` grants with their JSON) 20 000 times each, so the test runs in
// seconds against the debug library that scripts/test-node builds. Before the fix the
// million results alone grew RSS by about 18 MiB; after it, by well under 1 MiB.
const test = require('node:test');
const assert = require('node:assert/strict');
const { redact } = require('..');
const v8 = require('node:v8');
const vm = require('node:vm');
const { seeded } = require('../testlib/helpers');

// A gc() to call whether or not node runs with --expose-gc.
v8.setFlagsFromString('--expose-gc');
const gc = global.gc || vm.runInNewContext('gc');

const MiB = 2 ** 20;
const BOUND = 8 * MiB;

function settle() {
  gc();
  gc();
  return process.memoryUsage().rss;
}

test('a million string results, 20 000 refusals and 20 000 grants keep RSS growth under 8 MiB', { timeout: 120_000 }, () => {
  const { vault, token } = seeded({ credits: 10 });
  const refuse = () => {
    try {
      vault.authorize(token, { scope: 'admin:write' });
    } catch (e) {
      if (e.code !== 'missing_scope' || e.body.error !== 'missing_scope') throw e;
      return 1;
    }
    return 0;
  };
  const grant = () => (vault.authorize(token, { scope: 'sms:send', full: true }).accountId === 'acct_42' ? 1 : 0);
  // Warm up: the key is verified once (argon2) and cached; allocators reach steady state.
  for (let i = 0; i < 5_000; i++) {
    refuse();
    grant();
    redact(token);
  }
  const before = settle();
  const expected = redact(token);
  let same = 0;
  for (let i = 0; i < 1_000_000; i++) if (redact(token) === expected) same++;
  const afterStrings = settle();
  let refusals = 0;
  let grants = 0;
  for (let i = 0; i < 20_000; i++) {
    refusals += refuse();
    grants += grant();
  }
  const after = settle();
  vault.close();
  const mib = (b) => (b / MiB).toFixed(1);
  console.log(`# rss before ${mib(before)} MiB; after 1e6 string results ${mib(afterStrings)} MiB; ` +
    `after 2e4 refusals + 2e4 grants ${mib(after)} MiB (growth ${mib(after - before)} MiB)`);
  assert.equal(same, 1_000_000);
  assert.equal(refusals, 20_000);
  assert.equal(grants, 20_000);
  assert.ok(after - before < BOUND,
    `RSS grew by ${mib(after - before)} MiB (bound ${mib(BOUND)} MiB): string results leak native memory`);
});
