'use strict';
// JSON from the C ABI → JS values:
//  - integers beyond Number.MAX_SAFE_INTEGER (u64 credits) become BigInt, never a
//    silently rounded Number;
//  - snake_case field names become camelCase, except inside user data (`metadata`,
//    audit `details`), which comes back exactly as stored;
//  - times (unix ms) become Date objects: every `*_at` field, audit `time`, and the
//    hour starts of usage `hourly`.

const crypto = require('node:crypto');

// A marker no real string can collide with by accident (random per process).
const BIG = `\u0000kl-big-${crypto.randomBytes(6).toString('hex')}:`;
const BIG_JSON = JSON.stringify(BIG).slice(1, -1);

function bigReviver(_key, value) {
  if (typeof value === 'string' && value.startsWith(BIG)) return BigInt(value.slice(BIG.length));
  return value;
}

/** Quote every integer literal that a Number cannot hold exactly. */
function quoteBigIntegers(text) {
  let out = '';
  let last = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // skip the string
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < n && /[0-9.eE+-]/.test(text[j])) j++;
      const tok = text.slice(i, j);
      if (/^-?\d+$/.test(tok) && !Number.isSafeInteger(Number(tok))) {
        out += text.slice(last, i) + '"' + BIG_JSON + tok + '"';
        last = j;
      }
      i = j - 1;
    }
  }
  return last === 0 ? text : out + text.slice(last);
}

/** JSON.parse that keeps big integers exact (as BigInt). */
function parse(text) {
  if (!/\d{16}/.test(text)) return JSON.parse(text);
  return JSON.parse(quoteBigIntegers(text), bigReviver);
}

const camelCache = new Map();
function camel(key) {
  let c = camelCache.get(key);
  if (c === undefined) {
    c = key.replace(/_([a-z0-9])/g, (_, ch) => ch.toUpperCase());
    if (camelCache.size < 1000) camelCache.set(key, c);
  }
  return c;
}

function toDate(v) {
  if (typeof v === 'number') return new Date(v);
  if (typeof v === 'bigint') return new Date(Number(v));
  return v; // null stays null
}

const USER_DATA = new Set(['metadata', 'details']);

/** Convert a parsed document from the C ABI into its JS shape (see top of file). */
function convert(value) {
  if (Array.isArray(value)) return value.map(convert);
  if (value === null || typeof value !== 'object') return value;
  const out = {};
  for (const key of Object.keys(value)) {
    const v = value[key];
    let r;
    if (USER_DATA.has(key)) r = v;
    else if (key.endsWith('_at') || key === 'time') r = toDate(v);
    else if (key === 'hourly' && Array.isArray(v)) r = v.map(([h, n]) => [toDate(h), n]);
    else r = convert(v);
    out[camel(key)] = r;
  }
  return out;
}

module.exports = { parse, convert, camel, quoteBigIntegers };
