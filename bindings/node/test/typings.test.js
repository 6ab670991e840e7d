'use strict';
// The declarations stay true to the code: every value `index.d.ts` (and `express.d.ts`)
// declares is exported by `index.js` (`express.js`) and nothing exported is undeclared;
// for each declared class, its members are exactly the runtime class's (statics,
// prototype methods and getters, and the fields an instance carries). Parsed from the .d.ts
// text so it needs no TypeScript install; types and interfaces (no runtime value) are
// not compared.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const keyledger = require('..');
const express = require('../express');
const { vaultPath, FAST } = require('../testlib/helpers');

const root = path.join(__dirname, '..');

/** The .d.ts text without comments (string literals in .d.ts files hold no comment marks). */
function source(file) {
  return fs
    .readFileSync(path.join(root, file), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
}

/** Names of the top-level value exports: functions, consts and classes. */
function declaredValues(text) {
  const names = new Set();
  const re = /^export\s+(?:declare\s+)?(?:function|const|let|var|class)\s+([A-Za-z_$][\w$]*)/gm;
  for (const m of text.matchAll(re)) names.add(m[1]);
  return [...names].sort();
}

/** The member names of `export class <name> … { … }`, constructor excluded. */
function declaredMembers(text, name) {
  const start = text.search(new RegExp(`^export\\s+(?:declare\\s+)?class\\s+${name}\\b`, 'm'));
  assert.notEqual(start, -1, `class ${name} is not declared`);
  const open = text.indexOf('{', start);
  const members = [];
  let depth = 0;
  let current = '';
  for (let i = open + 1; i < text.length; i += 1) {
    const c = text[i];
    if (depth === 0 && c === '}') break;
    if ('({['.includes(c)) depth += 1;
    if (')}]'.includes(c)) depth -= 1;
    if (depth === 0 && c === ';') {
      members.push(current.trim());
      current = '';
    } else {
      current += c;
    }
  }
  const names = new Set();
  for (const m of members) {
    const hit = /^(?:static\s+)?(?:readonly\s+)?(?:get\s+|set\s+)?([A-Za-z_$][\w$]*)/.exec(m);
    assert.ok(hit, `cannot read the member declaration ${JSON.stringify(m)} of ${name}`);
    if (hit[1] !== 'constructor') names.add(hit[1]);
  }
  return [...names].sort();
}

/** The public members of a runtime class, given an instance of it. */
function runtimeMembers(cls, instance) {
  const names = new Set();
  for (const n of Object.getOwnPropertyNames(cls)) {
    if (!['length', 'name', 'prototype'].includes(n)) names.add(n);
  }
  for (const n of Object.getOwnPropertyNames(cls.prototype)) {
    if (n !== 'constructor') names.add(n);
  }
  for (const n of Object.getOwnPropertyNames(instance)) {
    if (!['stack', 'message'].includes(n)) names.add(n);
  }
  return [...names].sort();
}

test('index.d.ts declares exactly the values index.js exports', () => {
  assert.deepEqual(declaredValues(source('index.d.ts')), Object.keys(keyledger).sort());
});

test('express.d.ts declares exactly the values express.js exports', () => {
  assert.deepEqual(declaredValues(source('express.d.ts')), Object.keys(express).sort());
});

test('the declared Vault has exactly the runtime Vault members', () => {
  const vault = new keyledger.Vault(vaultPath(), FAST);
  try {
    assert.deepEqual(declaredMembers(source('index.d.ts'), 'Vault'), runtimeMembers(keyledger.Vault, vault));
  } finally {
    vault.close();
  }
});

test('the declared KeyLedgerError has exactly the fields a thrown one carries', () => {
  const vault = new keyledger.Vault(vaultPath(), FAST);
  let error;
  try {
    vault.balance('nobody');
  } catch (e) {
    error = e;
  } finally {
    vault.close();
  }
  assert.ok(error instanceof keyledger.KeyLedgerError, `not a KeyLedgerError: ${error}`);
  assert.deepEqual(
    declaredMembers(source('index.d.ts'), 'KeyLedgerError'),
    runtimeMembers(keyledger.KeyLedgerError, error),
  );
});

test('the parser sees a member that is missing from the runtime', () => {
  // The check itself can fail: a declaration with one extra method differs.
  const text = `${source('index.d.ts')}\nexport class Extra {\n  one(): void;\n  two(a: { b: number }): void;\n}\n`;
  assert.deepEqual(declaredMembers(text, 'Extra'), ['one', 'two']);
  class Extra {
    one() {}
  }
  assert.notDeepEqual(declaredMembers(text, 'Extra'), runtimeMembers(Extra, new Extra()));
});
