'use strict';
// Strings entering keyledger must be valid Unicode. A JS string can hold a lone UTF-16
// surrogate, which has no UTF-8 form: on its way to C it would become U+FFFD, so that
// `'a\uDC00'` and `'a\uDC01'` would name the same account, key or route. Every string
// argument is checked here, once, and refused with `invalid_argument` instead.

const hasIsWellFormed = typeof String.prototype.isWellFormed === 'function';
// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether `s` (a string) is valid Unicode: no lone surrogate. */
function wellFormed(s) {
  return hasIsWellFormed ? s.isWellFormed() : !LONE.test(s);
}

/**
 * JSON.stringify(v), calling `bad(where)` for the first key or string value (at any depth)
 * that is not valid Unicode.
 */
function stringifyChecked(v, bad) {
  return JSON.stringify(v, function check(k, x) {
    if (k !== '' && !wellFormed(k)) bad(`a key ${JSON.stringify(k)}`);
    if (typeof x === 'string' && !wellFormed(x)) bad(k === '' ? 'a string' : `the value of ${JSON.stringify(k)}`);
    return x;
  });
}

module.exports = { wellFormed, stringifyChecked, LONE };
