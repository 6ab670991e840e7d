'use strict';
// keyledger for Node.js: an embedded API-key vault with credits, over the C ABI
// (include/keyledger.h) with koffi. See README.md and index.d.ts.

const os = require('node:os');
const koffi = require('koffi');
const { isMainThread } = require('node:worker_threads');
const native = require('./lib/native');
const json = require('./lib/json');
const http = require('./lib/http');
const { wellFormed, stringifyChecked } = require('./lib/strings');

const C = require('./lib/constants');

const { KL_OK, KL_VAULT_CLOSED } = C;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const TWO_32 = 2 ** 32;
const SAFE_HI = 0x200000; // hi word below 2^21 → hi * 2^32 + lo ≤ 2^53 - 1

// ---------------------------------------------------------------------------- errors

/**
 * Every refusal and every failed call. `status` is the HTTP status, `code` the stable
 * code (`invalid_api_key`, `missing_scope`, …), `body` the parsed JSON body a host sends
 * with that status, `klStatus` the numeric `kl_status` of the C ABI.
 */
class KeyLedgerError extends Error {
  constructor(message, { status, code, body, klStatus }) {
    super(message);
    this.name = 'KeyLedgerError';
    this.status = status;
    this.code = code;
    this.body = body;
    this.klStatus = klStatus;
  }
}

const outA = [null];
const outB = [null];

/** Build the error of the last failed call on this thread. */
function lastError(st) {
  const code = native.kl_status_code(st);
  const status = native.kl_status_http(st);
  const message = native.kl_last_error_message() || code;
  let body;
  if (native.kl_last_error_body(outA) === KL_OK) {
    const text = native.takeString(outA[0]);
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  }
  if (!body || typeof body !== 'object') body = { success: false, error: code, message };
  return new KeyLedgerError(message, { status, code, body, klStatus: st });
}

function jsError(klStatus, message) {
  const code = native.kl_status_code(klStatus);
  return new KeyLedgerError(message, {
    status: native.kl_status_http(klStatus),
    code,
    body: { success: false, error: code, message },
    klStatus,
  });
}

function invalid(message) {
  return jsError(C.KL_INVALID_ARGUMENT, message);
}

function check(st) {
  if (st !== KL_OK) throw lastError(st);
}

// ---------------------------------------------------------------------- arguments

/**
 * The one check every string argument goes through: a string (else TypeError) that is
 * valid Unicode (a lone UTF-16 surrogate: `invalid_argument`, see lib/strings.js).
 */
function str(name, v) {
  if (typeof v !== 'string') throw new TypeError(`keyledger: ${name} must be a string, got ${describe(v)}`);
  if (!wellFormed(v)) throw notUnicode(name);
  return v;
}

function notUnicode(name) {
  return invalid(`${name} is not valid Unicode (it holds a lone UTF-16 surrogate)`);
}

/** JSON text of `v` whose every key and string is valid Unicode. */
function jsonArg(name, v) {
  return stringifyChecked(v, (where) => {
    throw notUnicode(`${name} (${where})`);
  });
}

function optStr(name, v) {
  return v === undefined || v === null ? null : str(name, v);
}

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

function opts(name, v) {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) {
    throw new TypeError(`keyledger: ${name} must be an options object, got ${describe(v)}`);
  }
  return v;
}

/** A u64 amount: a safe non-negative integer Number, or a BigInt in [0, 2^64). */
function u64(name, v) {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw invalid(`${name} must be an integer, got ${v}`);
    if (v < 0) throw invalid(`${name} must not be negative, got ${v}`);
    if (!Number.isSafeInteger(v)) {
      throw invalid(`${name} is beyond Number.MAX_SAFE_INTEGER and would be rounded: pass a BigInt`);
    }
    return v;
  }
  if (typeof v === 'bigint') {
    if (v < 0n) throw invalid(`${name} must not be negative, got ${v}`);
    if (v > U64_MAX) throw invalid(`${name} does not fit in 64 bits`);
    return v;
  }
  throw new TypeError(`keyledger: ${name} must be a number or a bigint, got ${describe(v)}`);
}

/** A signed 64-bit integer count of milliseconds (a duration or a unix time). */
function i64(name, v) {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw invalid(`${name} must be an integer number of milliseconds, got ${v}`);
    return v;
  }
  if (typeof v === 'bigint') {
    if (v < I64_MIN || v > I64_MAX) throw invalid(`${name} does not fit in 64 bits`);
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  }
  throw new TypeError(`keyledger: ${name} must be a number of milliseconds, got ${describe(v)}`);
}

/** A point in time: a Date or unix milliseconds. */
function instant(name, v) {
  if (v instanceof Date) {
    const t = v.getTime();
    if (Number.isNaN(t)) throw invalid(`${name} is an invalid Date`);
    return t;
  }
  if (typeof v === 'number' || typeof v === 'bigint') return i64(name, v);
  throw new TypeError(`keyledger: ${name} must be a Date or unix milliseconds, got ${describe(v)}`);
}

function scopesArg(v) {
  if (!Array.isArray(v)) throw new TypeError(`keyledger: scopes must be an array of strings, got ${describe(v)}`);
  for (const s of v) {
    if (typeof s !== 'string') throw new TypeError(`keyledger: scopes must be an array of strings, found ${describe(s)}`);
    str('scope', s);
  }
  return v;
}

function metadataArg(v) {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object') throw new TypeError(`keyledger: metadata must be an object, got ${describe(v)}`);
  let text;
  try {
    text = JSON.stringify(v);
  } catch (e) {
    throw invalid(`metadata is not JSON-serialisable: ${e.message}`);
  }
  jsonArg('metadata', v);
  return text;
}

const blen = Buffer.byteLength;

// The UTF-8 lengths of the last route's method and path (a hot caller passes the same
// ones again and again): a short string compare instead of a byte count per call.
let lastMethod = '';
let lastMethodLen = 0;
let lastPath = '';
let lastPathLen = 0;

/** A `route` option: `[method, path]`, two well-formed strings (else a TypeError). */
function checkRoute(route) {
  if (!Array.isArray(route) || route.length !== 2) {
    throw new TypeError('keyledger: route must be [method, path]');
  }
  if (typeof route[0] !== 'string' || typeof route[1] !== 'string') {
    throw new TypeError('keyledger: route must be [method, path] with two strings');
  }
  if (!wellFormed(route[0])) throw notUnicode('route method');
  if (!wellFormed(route[1])) throw notUnicode('route path');
}

/** Results: parse the JSON and convert it to its JS shape. */
function takeJson(ptr) {
  return json.convert(json.parse(native.takeString(ptr)));
}

/** buf.readUInt32LE(off) without its argument checks (the grant's offsets are fixed, in range). */
function u32At(buf, off) {
  return buf[off] + buf[off + 1] * 0x100 + buf[off + 2] * 0x10000 + buf[off + 3] * 0x1000000;
}

function u64At(buf, off) {
  const lo = u32At(buf, off);
  const hi = u32At(buf, off + 4);
  return hi < SAFE_HI ? hi * TWO_32 + lo : buf.readBigUInt64LE(off);
}

/** A signed 64-bit integer (unix ms) as a Number: exact below 2^53 in magnitude. */
function i64At(buf, off) {
  return buf.readInt32LE(off + 4) * TWO_32 + buf.readUInt32LE(off);
}

/**
 * One char[] field of the grant: its UTF-8 text up to the first NUL (or the whole field),
 * remembering the bytes and the
 * string it last decoded: a hot caller sees the same account, key and name on every call,
 * and a short byte compare in JS costs less than a Buffer#toString (strings are
 * immutable: handing out the same one again is the same result).
 */
class FieldText {
  constructor(off, size) {
    this.off = off;
    this.size = size;
    this.bytes = Buffer.alloc(size);
    this.len = -1;
    this.text = '';
  }

  read(buf) {
    const off = this.off;
    const size = this.size;
    const prev = this.bytes;
    const plen = this.len;
    let same = true;
    let n = 0;
    for (; n < size; n++) {
      const b = buf[off + n];
      if (b === 0) break;
      if (same && (n >= plen || prev[n] !== b)) same = false;
    }
    if (same && n === plen) return this.text;
    const text = buf.toString('utf8', off, off + n);
    buf.copy(prev, 0, off, off + n);
    this.len = n;
    this.text = text;
    return text;
  }
}

const G = native.GRANT_LAYOUT;
const grantAccountId = new FieldText(G.account_id, G.sizes.account_id);
const grantKeyId = new FieldText(G.key_id, G.sizes.key_id);
const grantKeyName = new FieldText(G.key_name, G.sizes.key_name);
const grantPrefix = new FieldText(G.prefix, G.sizes.prefix);
const grantRatelimitName = new FieldText(G.ratelimit_name, G.sizes.ratelimit_name);
const grantHoldId = new FieldText(G.hold_id, G.sizes.hold_id);

function decodeGrant(buf) {
  return {
    accountId: grantAccountId.read(buf),
    keyId: grantKeyId.read(buf),
    keyName: grantKeyName.read(buf),
    prefix: grantPrefix.read(buf),
    authMethod: u32At(buf, G.auth_method) === C.KL_AUTH_OPERATOR ? 'operator' : 'apikey',
    scopes: null,
    charged: u64At(buf, G.charged),
    credits: u64At(buf, G.credits),
    totalCredits: u64At(buf, G.total_credits),
    replayed: buf[G.replayed] !== 0,
    ratelimits: null,
    ratelimit: buf[G.has_ratelimit] === 0 ? null : {
      name: grantRatelimitName.read(buf),
      max: u64At(buf, G.ratelimit_limit),
      remaining: u64At(buf, G.ratelimit_remaining),
      resetMs: i64At(buf, G.ratelimit_reset_ms),
    },
    holdId: buf[G.hold_id] === 0 ? null : grantHoldId.read(buf),
  };
}

/** The tightest of the applied limits: the first with the fewest units left; or null. */
function tightest(limits) {
  let t = null;
  for (const r of limits) if (t === null || r.remaining < t.remaining) t = r;
  return t;
}

function grantFromJson(text) {
  const g = json.parse(text);
  const ratelimits = (g.ratelimits || []).map((r) => json.convert(r));
  return {
    accountId: g.account_id,
    keyId: g.key_id,
    keyName: g.key_name,
    prefix: g.prefix,
    authMethod: g.auth_method,
    scopes: g.scopes,
    charged: g.charged,
    credits: g.credits,
    totalCredits: g.total_credits,
    replayed: g.replayed,
    ratelimits,
    ratelimit: tightest(ratelimits),
    holdId: g.hold_id === undefined ? null : g.hold_id,
  };
}

function camelToSnake(k) {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function snakeKeys(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const out = {};
  for (const k of Object.keys(v)) {
    if (v[k] !== undefined) out[camelToSnake(k)] = snakeKeys(v[k]);
  }
  return out;
}

// ------------------------------------------------------------------ async support

/**
 * Calls sent to libuv worker threads go through one of two lanes, each with its own bound
 * and queue (a queued call costs no thread):
 * - `cpu` (argon2: a key's first verification, creating or rotating a key, and every
 *   management call): at most `OFFLOAD_MAX` at a time, one core short of the machine's.
 *   argon2 is CPU-bound, and an event loop that competes with as many argon2 runs as
 *   there are cores is starved by the OS scheduler even though it never blocks.
 * - `commit` (an authorize of a verified key that waits for its debit's commit): at most
 *   `COMMIT_MAX`, the libuv thread pool's size (UV_THREADPOOL_SIZE, default 4). Those
 *   calls wait on the disk, not the CPU, and the more of them wait at once, the more
 *   debits share each group commit.
 */
const OFFLOAD_MAX = Math.max(1, (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length) - 1);
const COMMIT_MAX = Math.max(1, Math.min(1024, Number.parseInt(process.env.UV_THREADPOOL_SIZE, 10) || 4));
const LANES = {
  cpu: { max: OFFLOAD_MAX, running: 0, queue: [] },
  commit: { max: COMMIT_MAX, running: 0, queue: [] },
};

/** Run `start(done)` (which starts an async native call) under its lane's bound. */
function offload(start, laneName = 'cpu') {
  const lane = LANES[laneName];
  return new Promise((resolve, reject) => {
    const run = () => {
      lane.running++;
      let finished = false;
      const done = (err, value) => {
        if (finished) return;
        finished = true;
        lane.running--;
        if (lane.queue.length) lane.queue.shift()();
        if (err) reject(err);
        else resolve(value);
      };
      try {
        start(done);
      } catch (e) {
        done(e);
      }
    };
    if (lane.running < lane.max) run();
    else lane.queue.push(run);
  });
}

/** The lane of a call the non-blocking attempt just answered KL_WOULD_BLOCK (this thread). */
function laneOfWouldBlock() {
  return native.kl_last_would_block() === C.KL_NEEDS_COMMIT ? 'commit' : 'cpu';
}

/**
 * The error of a call that failed on a worker thread, from the body the call copied to
 * `errSlot` (`kl_authorize_opts.error_body`): the same error `lastError` builds inline.
 */
function workerErrorFrom(st, errSlot) {
  const ptr = koffi.decode(errSlot, 'void *');
  if (ptr === null) return workerError(st);
  let body;
  try {
    body = JSON.parse(native.takeString(ptr));
  } catch {
    return workerError(st);
  }
  const code = native.kl_status_code(st);
  const message = typeof body.message === 'string' && body.message ? body.message : code;
  return new KeyLedgerError(message, { status: native.kl_status_http(st), code, body, klStatus: st });
}

/**
 * The error of a call that failed on a worker thread without a way to return its body:
 * its message and body were that thread's last error, so they are rebuilt from the status.
 */
function workerError(st) {
  const code = native.kl_status_code(st);
  return jsError(st, code.replace(/_/g, ' '));
}

// ------------------------------------------------------------ management calls

/**
 * Every management call that writes, as a plan: `{ f, args, outs, finish }`, the native
 * function, its arguments after the vault handle, how many `void **` out-parameters
 * follow them, and what turns those into the result. `Vault` runs a plan inline
 * (`createKey`) or on a libuv worker thread (`createKeyAsync`): the arguments are checked
 * the same way, before anything runs, for both.
 */
const json1 = (outs) => takeJson(outs[0][0]);
const newKey = (outs) => takeNewKey(outs[0], outs[1], outs[2]);

const PLANS = {
  createAccount(id, options) {
    str('id', id);
    const o = opts('options', options);
    const credits = o.credits === undefined || o.credits === null ? 0 : u64('credits', o.credits);
    const meta = metadataArg(o.metadata);
    return { f: native.kl_create_account, args: [id, blen(id), credits, meta, meta ? blen(meta) : 0], outs: 1, finish: json1 };
  },
  topUp(id, amount, options) {
    str('id', id);
    const n = u64('amount', amount);
    const ref = optStr('reference', opts('options', options).reference);
    return { f: native.kl_top_up, args: [id, blen(id), n, ref, ref === null ? 0 : blen(ref)], outs: 1, finish: json1 };
  },
  debit(id, amount, options) {
    str('id', id);
    const n = u64('amount', amount);
    const key = optStr('idempotencyKey', opts('options', options).idempotencyKey);
    return { f: native.kl_debit, args: [id, blen(id), n, key, key === null ? 0 : blen(key)], outs: 1, finish: json1 };
  },
  createKey(accountId, name, scopes, options) {
    str('accountId', accountId);
    str('name', name);
    scopesArg(scopes);
    const o = opts('options', options);
    const spec = { account_id: accountId, name, scopes };
    if (o.prefix !== undefined && o.prefix !== null) spec.prefix = str('prefix', o.prefix);
    // Token styles: 'prefixed' (default) or 'colon' (`<keyId>:<secret>`); checked by the core.
    if (o.style !== undefined && o.style !== null) spec.style = str('style', o.style);
    if (o.expiresAt !== undefined && o.expiresAt !== null) spec.expires_at = toJsonInt(instant('expiresAt', o.expiresAt));
    if (o.expiresIn !== undefined && o.expiresIn !== null) spec.expires_in_ms = toJsonInt(i64('expiresIn', o.expiresIn));
    if (o.operator !== undefined && o.operator !== null) spec.operator = bool('operator', o.operator);
    if (o.signing !== undefined && o.signing !== null) spec.signing = bool('signing', o.signing);
    if (o.metadata !== undefined && o.metadata !== null) {
      metadataArg(o.metadata);
      spec.metadata = o.metadata;
    }
    const text = JSON.stringify(spec);
    // Out-parameters: token, signing secret, key JSON.
    return { f: native.kl_create_key_signing, args: [text, blen(text)], outs: 3, finish: newKey };
  },
  revokeKey: (keyId) => keyPlan(native.kl_revoke_key, keyId),
  disableKey: (keyId) => keyPlan(native.kl_disable_key, keyId),
  enableKey: (keyId) => keyPlan(native.kl_enable_key, keyId),
  setScopes(keyId, scopes) {
    str('keyId', keyId);
    const text = JSON.stringify(scopesArg(scopes));
    return { f: native.kl_set_scopes, args: [keyId, blen(keyId), text, blen(text)], outs: 1, finish: json1 };
  },
  setExpiry(keyId, expiresAt) {
    str('keyId', keyId);
    if (expiresAt === undefined) throw new TypeError('keyledger: setExpiry needs a Date, unix ms, or null to clear');
    const has = expiresAt !== null;
    const at = has ? instant('expiresAt', expiresAt) : 0;
    return { f: native.kl_set_expiry, args: [keyId, blen(keyId), has ? 1 : 0, at], outs: 1, finish: json1 };
  },
  rotateKey(keyId, options) {
    str('keyId', keyId);
    const o = opts('options', options);
    const grace = o.graceMs === undefined || o.graceMs === null ? 0 : i64('graceMs', o.graceMs);
    return { f: native.kl_rotate_key_signing, args: [keyId, blen(keyId), grace], outs: 3, finish: newKey };
  },
  addRoute(method, pattern, scope, options) {
    str('method', method);
    str('pattern', pattern);
    str('scope', scope);
    const o = opts('options', options);
    const cost = o.cost === undefined || o.cost === null ? 0 : u64('cost', o.cost);
    return { f: native.kl_add_route, args: [method, blen(method), pattern, blen(pattern), scope, blen(scope), cost], outs: 1, finish: json1 };
  },
  removeRoute(method, pattern) {
    str('method', method);
    str('pattern', pattern);
    return { f: native.kl_remove_route, args: [method, blen(method), pattern, blen(pattern)], outs: 1, finish: json1 };
  },
  setRatelimit(name, limit, durationMs, options) {
    str('name', name);
    const n = u64('limit', limit);
    const d = u64('durationMs', durationMs);
    const o = opts('options', options);
    const [kind, id] = ownerArg(o);
    const auto = o.autoApply === undefined || o.autoApply === null ? true : bool('autoApply', o.autoApply);
    return { f: native.kl_set_ratelimit, args: [kind, id, blen(id), name, blen(name), n, d, auto ? 1 : 0], outs: 1, finish: json1 };
  },
  removeRatelimit(name, options) {
    str('name', name);
    const [kind, id] = ownerArg(opts('options', options));
    return { f: native.kl_remove_ratelimit, args: [kind, id, blen(id), name, blen(name)], outs: 1, finish: json1 };
  },
  setRefill(accountId, amount, interval, options) {
    str('accountId', accountId);
    const n = u64('amount', amount);
    if (interval !== 'daily' && interval !== 'monthly') {
      throw invalid(`interval must be 'daily' or 'monthly', got ${typeof interval === 'string' ? JSON.stringify(interval) : describe(interval)}`);
    }
    const o = opts('options', options);
    let day = 1;
    if (o.day !== undefined && o.day !== null) {
      if (typeof o.day !== 'number' || !Number.isInteger(o.day)) {
        throw new TypeError(`keyledger: day must be an integer, got ${describe(o.day)}`);
      }
      // Monthly days outside 1–28 are refused by keyledger; daily refills ignore the day.
      if (o.day < 0 || o.day > 255) throw invalid(`day must be between 1 and 28, got ${o.day}`);
      day = o.day;
    }
    const kind = interval === 'daily' ? C.KL_REFILL_DAILY : C.KL_REFILL_MONTHLY;
    return { f: native.kl_set_refill, args: [accountId, blen(accountId), n, kind, day], outs: 1, finish: json1 };
  },
  clearRefill(accountId) {
    str('accountId', accountId);
    return { f: native.kl_clear_refill, args: [accountId, blen(accountId)], outs: 1, finish: json1 };
  },
  rekey(newMasterKey) {
    const b64 = masterKeyArg('newMasterKey', newMasterKey);
    return { f: native.kl_rekey, args: [b64, blen(b64)], outs: 1, zero: 0, finish: (outs) => Number(outs[0][0]) };
  },
  rekeyPassphrase(passphrase) {
    str('passphrase', passphrase);
    return { f: native.kl_rekey_passphrase, args: [passphrase, blen(passphrase)], outs: 1, zero: 0, finish: (outs) => Number(outs[0][0]) };
  },
  setArgon2Params(params) {
    const p = opts('params', params);
    const u32 = (k) => {
      const v = u64(k, p[k]);
      if (BigInt(v) > 0xffffffffn) throw invalid(`${k} does not fit in 32 bits`);
      return Number(v);
    };
    return { f: native.kl_set_argon2_params, args: [u32('m_kib'), u32('t'), u32('p')], outs: 0, finish: () => undefined };
  },
  // Holds.
  hold(accountId, amount, options) {
    str('accountId', accountId);
    const n = u64('amount', amount);
    const o = opts('options', options);
    const ttl = o.ttlMs === undefined || o.ttlMs === null ? C.KL_HOLD_DEFAULT_TTL_MS : u64('ttlMs', o.ttlMs);
    const key = optStr('idempotencyKey', o.idempotencyKey);
    return { f: native.kl_hold, args: [accountId, blen(accountId), n, ttl, key, key === null ? 0 : blen(key)], outs: 1, finish: json1 };
  },
  settle(holdId, actual, options) {
    str('holdId', holdId);
    const n = u64('actual', actual);
    const o = opts('options', options);
    if (o.allowOver !== undefined && typeof o.allowOver !== 'boolean') throw invalid('allowOver must be a boolean');
    const key = optStr('idempotencyKey', o.idempotencyKey);
    return { f: native.kl_settle, args: [holdId, blen(holdId), n, o.allowOver ? 1 : 0, key, key === null ? 0 : blen(key)], outs: 1, finish: json1 };
  },
  release(holdId) {
    str('holdId', holdId);
    return { f: native.kl_release, args: [holdId, blen(holdId)], outs: 1, finish: json1 };
  },
};

function keyPlan(f, keyId) {
  str('keyId', keyId);
  return { f, args: [keyId, blen(keyId)], outs: 1, finish: json1 };
}

/** The out-parameters of a plan: fresh one-element arrays (a call on a worker owns its own). */
function outsOf(plan) {
  const outs = [];
  for (let i = 0; i < plan.outs; i++) outs.push([plan.zero === undefined ? null : plan.zero]);
  return outs;
}

// ----------------------------------------------------------------------- the vault

// Frees the C handle of a Vault that was garbage-collected without close() (only closes
// it when the thread's exit frees it: see native.freeAtThreadExit).
const registry = new FinalizationRegistry(({ handle, freedAtThreadExit }) => {
  if (freedAtThreadExit) native.kl_vault_close(handle);
  else native.kl_vault_free(handle);
});

// Vaults still open, closed (flushed) when the process or worker exits normally.
const openVaults = new Set();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const ref of openVaults) {
      const v = ref.deref();
      if (v) {
        try {
          v.close();
        } catch {
          // exiting anyway
        }
      }
    }
  });
}

/**
 * An open vault file. Synchronous: every call runs on the calling thread (a cold
 * authorize runs argon2 once per key per process; a debit waits for its commit).
 */
class Vault {
  #h = null;
  #ref = null;
  #path;
  // In a worker thread: the handle is freed when the thread exits (even by
  // worker.terminate(), which runs no JS), so close() only closes it.
  #freedAtThreadExit = false;
  // Calls queued or running on worker threads, and the handle close() left for the last
  // of them to free (freeing a handle in use would be a use-after-free).
  #inflight = 0;
  #freeWhenIdle = null;
  #grantBuf = native.grantBuffer();

  /**
   * Open (or create) the vault file at `path`. `options`: `exclusive`, `durability`
   * (`'immediate'` | `'eventual'`), `argon2` (`{ m_kib, t, p }`, used only when this open
   * creates the vault: see `setArgon2Params`), `cacheCapacity`,
   * `actor`, `flushIntervalMs`, `masterKey` (base64 string or 32-byte Buffer),
   * `masterPassphrase`, `signatureWindowMs`, `singleUseSignatures`, `throttle` (`{ burst, perSecond,
   * budgetBurst, budgetPerSecond }`), `argon2Queue`
   * (camelCase or snake_case; unknown fields are refused). Without `masterKey` or
   * `masterPassphrase` the library reads `KEYLEDGER_MASTER_KEY` itself.
   */
  constructor(path, options) {
    str('path', path);
    const o = { ...opts('options', options) };
    for (const k of ['masterKey', 'master_key']) {
      if (o[k] !== undefined && o[k] !== null) o[k] = masterKeyArg(k, o[k]);
    }
    for (const k of ['masterPassphrase', 'master_passphrase']) {
      if (o[k] !== undefined && o[k] !== null) str(k, o[k]);
    }
    const optsJson = Object.keys(o).length ? jsonArg('options', snakeKeys(o)) : null;
    const out = [null];
    check(native.kl_vault_open(path, blen(path), optsJson, optsJson ? blen(optsJson) : 0, out));
    this.#h = out[0];
    this.#path = path;
    if (!isMainThread && native.freeAtThreadExit !== null) {
      this.#freedAtThreadExit = native.freeAtThreadExit(this.#h);
    }
    registry.register(this, { handle: this.#h, freedAtThreadExit: this.#freedAtThreadExit }, this);
    installExitHook();
    this.#ref = new WeakRef(this);
    openVaults.add(this.#ref);
  }

  /** Same as `new Vault(path, options)`. */
  static open(path, options) {
    return new Vault(path, options);
  }

  /** The path the vault was opened with. */
  get path() {
    return this.#path;
  }

  /** True after `close()`. */
  get closed() {
    return this.#h === null;
  }

  #handle() {
    if (this.#h === null) throw jsError(KL_VAULT_CLOSED, 'the vault is closed');
    return this.#h;
  }

  /** Flush usage counters and request-path audit entries now (also done every second). */
  flush() {
    check(native.kl_vault_flush(this.#handle()));
  }

  /**
   * Flush, close and free the vault. Later calls throw `vault_closed`; closing twice is
   * a no-op. This is the reliable way to release the file: the FinalizationRegistry
   * only frees a forgotten handle whenever the garbage collector gets to it.
   */
  close() {
    const h = this.#h;
    if (h === null) return;
    this.#h = null;
    registry.unregister(this);
    openVaults.delete(this.#ref);
    const st = native.kl_vault_close(h);
    const err = st === KL_OK ? null : lastError(st);
    if (!this.#freedAtThreadExit) {
      if (this.#inflight > 0) this.#freeWhenIdle = h;
      else native.kl_vault_free(h);
    }
    if (err) throw err;
  }

  /**
   * `offload(start)`, counted: the handle is not freed while a call on it is queued or
   * running on a worker thread (a close() meanwhile makes it answer `vault_closed`), and
   * the pending promise keeps this object (so the FinalizationRegistry) from freeing it.
   */
  #offload(start, lane) {
    this.#inflight++;
    const settle = () => {
      this.#inflight--;
      if (this.#inflight === 0 && this.#freeWhenIdle !== null) {
        const h = this.#freeWhenIdle;
        this.#freeWhenIdle = null;
        native.kl_vault_free(h);
      }
    };
    return offload(start, lane).then((v) => {
      settle();
      return v;
    }, (e) => {
      settle();
      throw e;
    });
  }

  /** Run a management plan (PLANS) inline. */
  #run(plan) {
    const outs = outsOf(plan);
    check(plan.f(this.#handle(), ...plan.args, ...outs));
    return plan.finish(outs);
  }

  /**
   * Run a management plan on a libuv worker thread (koffi's async calls, under the same
   * bound as `authorizeAsync`): the event loop stays free while argon2 (creating or
   * rotating a key) or the commit runs. Bad arguments and a closed vault reject at once,
   * with what the synchronous call would throw. A refusal decided on the worker carries
   * `status`, `code` and a body `{ success, error, message }` only (the worker thread's
   * detailed message is out of reach).
   */
  #runAsync(makePlan) {
    let plan;
    let outs;
    let h;
    try {
      plan = makePlan();
      outs = outsOf(plan);
      h = this.#handle();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#offload((done) => plan.f.async(h, ...plan.args, ...outs, done)).then((st) => {
      if (st !== KL_OK) throw workerError(st);
      return plan.finish(outs);
    });
  }

  // ------------------------------------------------------------------ authorize

  /**
   * Authorize a request. `options.route = [method, path]` or `options.scope = 'ns:x'`
   * (exactly one); `cost`, `idempotencyKey`, `now` (Date | ms), `signature`, `body`
   * (Buffer | string), `limits` (names of rate limits to apply besides the auto-applied
   * ones), `limitCost` (the call's weight against every applied limit, default 1),
   * `onReplay` ('grant', the default: a repeat of `idempotencyKey` returns the first
   * grant with `replayed: true`; 'refuse': it throws `duplicate_request`, 409, body with
   * the first call's `charged` and `first_at`; a reuse for another request throws
   * `idempotency_conflict`, 409, either way),
   * `full` (true: also return `scopes` and `ratelimits`, via the JSON variant of the C
   * call). Every grant has `ratelimit`: the tightest applied limit `{ name, max,
   * remaining, resetMs }`, or null. Throws KeyLedgerError on every refusal (an exceeded
   * limit: `rate_limited`, 429, body with `limit`, `max`, `reset_ms`, `retry_after`).
   */
  authorize(token, options) {
    // The hot path (a route): the checks of #authorizeCall, in the same order, with the
    // same errors, but calling koffi directly (no argument array, no call object).
    if (typeof token !== 'string' || !wellFormed(token)) str('token', token);
    if (options === null || typeof options !== 'object') {
      throw new TypeError('keyledger: authorize needs an options object with `route` or `scope`');
    }
    const route = options.route;
    const scope = options.scope;
    if (route !== undefined && route !== null && (scope === undefined || scope === null)) {
      checkRoute(route);
      const method = route[0];
      const path = route[1];
      const o = authorizeOpts(options);
      const h = this.#handle();
      if (options.full === true) {
        const st = native.kl_authorize_json(h, token, blen(token), method, blen(method), path, blen(path), o, outA);
        if (st !== KL_OK) throw lastError(st);
        return grantFromJson(native.takeString(outA[0]));
      }
      if (method !== lastMethod) {
        lastMethodLen = blen(method);
        lastMethod = method;
      }
      if (path !== lastPath) {
        lastPathLen = blen(path);
        lastPath = path;
      }
      const buf = this.#grantBuf;
      const st = native.kl_authorize(h, token, blen(token), method, lastMethodLen, path, lastPathLen, o, buf);
      if (st !== KL_OK) throw lastError(st);
      return decodeGrant(buf);
    }
    const c = this.#authorizeCallWith(token, options, route, scope);
    if (c.full) {
      const st = native[c.fn](...c.args, outA);
      if (st !== KL_OK) throw lastError(st);
      return grantFromJson(native.takeString(outA[0]));
    }
    const buf = this.#grantBuf;
    const st = native[c.fn](...c.args, buf);
    if (st !== KL_OK) throw lastError(st);
    return decodeGrant(buf);
  }

  /**
   * `authorize` that never holds the event loop for a key's argon2 run or a commit wait:
   * a Promise of the same grant, rejected with the same KeyLedgerError codes. The call is
   * first made inline without blocking (`kl_authorize_try`): a key already verified in
   * this process on a call that writes nothing, and every refusal that needs no argon2,
   * are answered at once. Only a call that needs argon2 (a secret not yet verified here,
   * e.g. a forged token) or a commit (a cost, an idempotency key) goes to a libuv worker
   * thread (koffi's async calls): argon2 at most one fewer than the machine's cores at a
   * time, commit waits up to the libuv pool's size, so concurrent debits share commits.
   * A refusal is the same KeyLedgerError wherever it was decided (status, code, message
   * and the whole body, as `authorize`'s): on a worker, the call copies its body to
   * `kl_authorize_opts.error_body`, since that thread's last error is out of reach here.
   */
  authorizeAsync(token, options) {
    let c;
    let out;
    let lane;
    try {
      c = this.#authorizeCall(token, options);
      out = c.full ? [null] : native.grantBuffer();
      const st = native[`${c.fn}_try`](...c.args, out);
      if (st !== C.KL_WOULD_BLOCK) {
        if (st !== KL_OK) throw lastError(st);
        return Promise.resolve(c.full ? grantFromJson(native.takeString(out[0])) : decodeGrant(out));
      }
      lane = laneOfWouldBlock();
    } catch (e) {
      return Promise.reject(e);
    }
    // On the worker, a failure copies its body to errSlot (the thread's last error is out
    // of reach from here): the refusal is the same as the synchronous call's.
    const errSlot = Buffer.alloc(8);
    const args = c.args.slice();
    const last = args.length - 1;
    args[last] = { ...(args[last] || authorizeOptsStruct()), error_body: errSlot };
    return this.#offload((done) => native[c.fn].async(...args, out, done), lane).then((st) => {
      if (st !== KL_OK) throw workerErrorFrom(st, errSlot);
      return c.full ? grantFromJson(native.takeString(out[0])) : decodeGrant(out);
    });
  }

  /** The checked arguments of an authorize call: `{ fn, args, full }` (out-parameter last). */
  #authorizeCall(token, options) {
    if (typeof token !== 'string' || !wellFormed(token)) str('token', token);
    if (options === null || typeof options !== 'object') {
      throw new TypeError('keyledger: authorize needs an options object with `route` or `scope`');
    }
    const { route, scope } = options;
    return this.#authorizeCallWith(token, options, route, scope);
  }

  /** #authorizeCall once `token` and `options` are checked and `route`/`scope` read. */
  #authorizeCallWith(token, options, route, scope) {
    let method;
    let path;
    if (route !== undefined && route !== null) {
      if (scope !== undefined && scope !== null) {
        throw new TypeError('keyledger: pass either `route` or `scope`, not both');
      }
      checkRoute(route);
      method = route[0];
      path = route[1];
    } else if (scope === undefined || scope === null) {
      throw new TypeError('keyledger: authorize needs `route: [method, path]` or `scope`');
    } else {
      str('scope', scope);
    }
    const o = authorizeOpts(options);
    const h = this.#handle();
    const full = options.full === true;
    if (route) {
      return {
        fn: full ? 'kl_authorize_json' : 'kl_authorize',
        args: [h, token, blen(token), method, blen(method), path, blen(path), o],
        full,
      };
    }
    return { fn: full ? 'kl_authorize_scope_json' : 'kl_authorize_scope', args: [h, token, blen(token), scope, blen(scope), o], full };
  }

  /**
   * The HTTP gate: authorize a request from its method and its raw request target, exactly
   * as received on the request line (`/files/a%20b?x=1`, or absolute-form
   * `http://host/path`), never a decoded path. keyledger decodes it once, and refuses a
   * target whose meaning depends on how a router would normalise it (encoded `/ ? # \`
   * or NUL, `.`/`..` segments in any encoding, empty segments a wildcard or parameter
   * would swallow, ...) with `ambiguous_path` (400). HEAD is matched and charged like GET.
   * Options: those of `authorize` (but not `route`/`scope`), and `caseInsensitive`
   * (true: the rules' literal segments match regardless of ASCII case, as a
   * case-insensitive router such as Express by default would route them).
   */
  authorizeRequest(token, method, target, options) {
    if (typeof token !== 'string' || !wellFormed(token)) str('token', token);
    str('method', method);
    str('target', target);
    const given = opts('options', options);
    if (given.route !== undefined || given.scope !== undefined) {
      throw new TypeError('keyledger: authorizeRequest takes the method and target as arguments, not `route` or `scope`');
    }
    const o = authorizeOpts(given);
    const h = this.#handle();
    if (given.full === true) {
      const st = native.kl_authorize_request_json(h, token, blen(token), method, blen(method), target, blen(target), o, outA);
      if (st !== KL_OK) throw lastError(st);
      return grantFromJson(native.takeString(outA[0]));
    }
    const buf = this.#grantBuf;
    const st = native.kl_authorize_request(h, token, blen(token), method, blen(method), target, blen(target), o, buf);
    if (st !== KL_OK) throw lastError(st);
    return decodeGrant(buf);
  }

  /**
   * The whole HTTP gate (what the Express middleware runs): see lib/http.js. Returns
   * `{ status, headers, body, grant }`; `options.full` false drops `scopes`/`ratelimits`
   * from the grant, as `authorize` does.
   */
  authorizeHttp(request, options) {
    const o = opts('options', options);
    const toGrant = (text) => {
      const g = grantFromJson(text);
      return o.full === true ? g : { ...g, scopes: null, ratelimits: null };
    };
    const out = http.authorizeHttp(this.#handle(), httpRequestArg(request), httpOptionsArg(o), toGrant);
    if (out.st !== undefined) throw lastError(out.st);
    return out;
  }

  /**
   * `authorizeHttp` that never holds the event loop for argon2 or a commit wait (what the
   * Express middleware runs): a Promise of `{ status, headers, body, grant }`. Decided
   * inline when it can be without blocking (`"nonblocking": true`), else on a libuv
   * worker thread. Refusals resolve with their status and full body, as with
   * `authorizeHttp`; only a failed call (bad arguments, a closed vault) rejects.
   */
  authorizeHttpAsync(request, options) {
    let pending;
    try {
      const o = opts('options', options);
      httpOptionsArg(o);
      const toGrant = (text) => {
        const g = grantFromJson(text);
        return o.full === true ? g : { ...g, scopes: null, ratelimits: null };
      };
      pending = http.authorizeHttpAsync(this.#handle(), httpRequestArg(request), o, toGrant, (start, lane) => this.#offload(start, lane));
    } catch (e) {
      return Promise.reject(e);
    }
    return pending.then((out) => {
      if (out.st !== undefined) throw out.worker ? workerError(out.st) : lastError(out.st);
      return out;
    });
  }

  /** Who `token` belongs to and what its account has left (no route, scope or credit check). */
  whoami(token) {
    str('token', token);
    check(native.kl_whoami(this.#handle(), token, blen(token), outA));
    return takeJson(outA[0]);
  }

  // ------------------------------------------------------------------- accounts

  /** Create an account (`credits` default 0, `metadata` a JSON object). */
  createAccount(id, options) {
    return this.#run(PLANS.createAccount(id, options));
  }

  /** `createAccount` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  createAccountAsync(id, options) {
    return this.#runAsync(() => PLANS.createAccount(id, options));
  }

  account(id) {
    str('id', id);
    check(native.kl_account(this.#handle(), id, blen(id), outA));
    return takeJson(outA[0]);
  }

  listAccounts() {
    check(native.kl_list_accounts(this.#handle(), outA));
    return takeJson(outA[0]);
  }

  /** Add `amount` (> 0) credits; `reference` is kept in the audit entry. */
  topUp(id, amount, options) {
    return this.#run(PLANS.topUp(id, amount, options));
  }

  /** `topUp` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  topUpAsync(id, amount, options) {
    return this.#runAsync(() => PLANS.topUp(id, amount, options));
  }

  /** Debit `amount` (> 0) credits; refused with `insufficient_credits` (402) if short. */
  debit(id, amount, options) {
    return this.#run(PLANS.debit(id, amount, options));
  }

  /** `debit` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  debitAsync(id, amount, options) {
    return this.#runAsync(() => PLANS.debit(id, amount, options));
  }

  balance(id) {
    str('id', id);
    check(native.kl_balance(this.#handle(), id, blen(id), outA));
    return takeJson(outA[0]);
  }

  // ---------------------------------------------------------------------- holds

  /**
   * Reserve `amount` credits of an account (`{ ttlMs, idempotencyKey }`; default TTL 15
   * minutes): a hold `{ hold_id, account_id, amount, state, expires_at, ... }`. Refused
   * with `insufficient_credits` (402) when fewer are available.
   */
  hold(accountId, amount, options) {
    return this.#run(PLANS.hold(accountId, amount, options));
  }

  /** `hold` on a libuv worker thread: a Promise of the same result. */
  holdAsync(accountId, amount, options) {
    return this.#runAsync(() => PLANS.hold(accountId, amount, options));
  }

  /** Charge `actual` credits of a hold and give the rest back (`{ allowOver, idempotencyKey }`). */
  settle(holdId, actual, options) {
    return this.#run(PLANS.settle(holdId, actual, options));
  }

  /** `settle` on a libuv worker thread: a Promise of the same result. */
  settleAsync(holdId, actual, options) {
    return this.#runAsync(() => PLANS.settle(holdId, actual, options));
  }

  /** Give every credit of a hold back. */
  release(holdId) {
    return this.#run(PLANS.release(holdId));
  }

  /** `release` on a libuv worker thread: a Promise of the same result. */
  releaseAsync(holdId) {
    return this.#runAsync(() => PLANS.release(holdId));
  }

  /** The active holds of an account (or of every account, with no argument). */
  listHolds(accountId) {
    const id = optStr('accountId', accountId);
    check(native.kl_list_holds(this.#handle(), id, id === null ? 0 : blen(id), outA));
    return takeJson(outA[0]);
  }

  // ----------------------------------------------------------------------- keys

  /**
   * Mint a key: `{ token, key, signingSecret }`. The token is shown once and never again;
   * `signingSecret` (64 hex characters, `null` unless `signing: true`) is what the client
   * signs requests with (`signRequest`); an admin can recover it with
   * `revealSigningSecret`. Options: `prefix`, `style` ('prefixed' | 'colon'), `expiresAt` (Date | ms), `expiresIn` (ms),
   * `operator`, `signing` (needs the vault's master key), `metadata`.
   */
  createKey(accountId, name, scopes, options) {
    return this.#run(PLANS.createKey(accountId, name, scopes, options));
  }

  /**
   * `createKey` on a libuv worker thread (koffi's async calls, at most one fewer than the
   * machine's cores at a time, shared with `authorizeAsync`): a Promise of the same
   * `{ token, key, signingSecret }`, and the event loop keeps turning while argon2 hashes
   * the new secret. Every other management call that writes has the same `…Async` twin.
   * Bad arguments and a closed vault reject with what the synchronous call throws; a
   * refusal decided on the worker carries `status`, `code` and a body
   * `{ success, error, message }` only (the worker's detailed message is out of reach).
   */
  createKeyAsync(accountId, name, scopes, options) {
    return this.#runAsync(() => PLANS.createKey(accountId, name, scopes, options));
  }

  key(keyId) {
    return this.#keyCall(native.kl_key, keyId);
  }

  /** Every key, or the keys of `accountId`. */
  listKeys(accountId) {
    const a = optStr('accountId', accountId);
    check(native.kl_list_keys(this.#handle(), a, a === null ? 0 : blen(a), outA));
    return takeJson(outA[0]);
  }

  revokeKey(keyId) {
    return this.#run(PLANS.revokeKey(keyId));
  }

  /** `revokeKey` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  revokeKeyAsync(keyId) {
    return this.#runAsync(() => PLANS.revokeKey(keyId));
  }

  disableKey(keyId) {
    return this.#run(PLANS.disableKey(keyId));
  }

  /** `disableKey` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  disableKeyAsync(keyId) {
    return this.#runAsync(() => PLANS.disableKey(keyId));
  }

  enableKey(keyId) {
    return this.#run(PLANS.enableKey(keyId));
  }

  /** `enableKey` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  enableKeyAsync(keyId) {
    return this.#runAsync(() => PLANS.enableKey(keyId));
  }

  setScopes(keyId, scopes) {
    return this.#run(PLANS.setScopes(keyId, scopes));
  }

  /** `setScopes` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  setScopesAsync(keyId, scopes) {
    return this.#runAsync(() => PLANS.setScopes(keyId, scopes));
  }

  /** Set the expiry (Date | ms), or clear it with `null`. */
  setExpiry(keyId, expiresAt) {
    return this.#run(PLANS.setExpiry(keyId, expiresAt));
  }

  /** `setExpiry` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  setExpiryAsync(keyId, expiresAt) {
    return this.#runAsync(() => PLANS.setExpiry(keyId, expiresAt));
  }

  /**
   * Mint a replacement key, `{ token, key, signingSecret }`; the old one keeps working for
   * `graceMs` (default 0). A signing key's replacement gets a new signing secret.
   */
  rotateKey(keyId, options) {
    return this.#run(PLANS.rotateKey(keyId, options));
  }

  /** `rotateKey` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  rotateKeyAsync(keyId, options) {
    return this.#runAsync(() => PLANS.rotateKey(keyId, options));
  }

  /** `{ keyId, lastUsedAt, granted, refused, hourly: [[Date, count], …] }`. */
  usage(keyId) {
    return this.#keyCall(native.kl_usage, keyId);
  }

  #keyCall(f, keyId) {
    str('keyId', keyId);
    check(f(this.#handle(), keyId, blen(keyId), outA));
    return takeJson(outA[0]);
  }

  // --------------------------------------------------------------------- routes

  addRoute(method, pattern, scope, options) {
    return this.#run(PLANS.addRoute(method, pattern, scope, options));
  }

  /** `addRoute` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  addRouteAsync(method, pattern, scope, options) {
    return this.#runAsync(() => PLANS.addRoute(method, pattern, scope, options));
  }

  removeRoute(method, pattern) {
    return this.#run(PLANS.removeRoute(method, pattern));
  }

  /** `removeRoute` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  removeRouteAsync(method, pattern) {
    return this.#runAsync(() => PLANS.removeRoute(method, pattern));
  }

  listRoutes() {
    check(native.kl_list_routes(this.#handle(), outA));
    return takeJson(outA[0]);
  }

  /** The rule that would decide `method path`, or null. */
  matchRoute(method, path) {
    str('method', method);
    str('path', path);
    check(native.kl_match_route(this.#handle(), method, blen(method), path, blen(path), outA));
    return takeJson(outA[0]);
  }

  // ---------------------------------------------------------------------- audit

  /** Audit entries, newest first: `{ keyId, accountId, action, since, limit }` filters. */
  audit(query) {
    const q = opts('query', query);
    const spec = {};
    if (q.keyId !== undefined && q.keyId !== null) spec.key_id = str('keyId', q.keyId);
    if (q.accountId !== undefined && q.accountId !== null) spec.account_id = str('accountId', q.accountId);
    if (q.action !== undefined && q.action !== null) spec.action = str('action', q.action);
    if (q.since !== undefined && q.since !== null) spec.since = toJsonInt(instant('since', q.since));
    if (q.limit !== undefined && q.limit !== null) spec.limit = toJsonInt(u64('limit', q.limit));
    const text = Object.keys(spec).length ? JSON.stringify(spec) : null;
    check(native.kl_audit(this.#handle(), text, text ? blen(text) : 0, outA));
    return takeJson(outA[0]);
  }

  // ----------------------------------------------------- rate limits and refills

  /**
   * Set (or replace) the rate limit `name` (1–64 characters of `[a-z0-9_:.-]`): `limit`
   * units per `durationMs` milliseconds, on one key (`{ keyId }`) or on an account, shared
   * by all its keys (`{ accountId }`): exactly one. `autoApply` (default true): checked by
   * every authorize; false: only when named in `authorize(..., { limits: [name] })`.
   * Returns `{ name, limit, durationMs, autoApply }`.
   */
  setRatelimit(name, limit, durationMs, options) {
    return this.#run(PLANS.setRatelimit(name, limit, durationMs, options));
  }

  /** `setRatelimit` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  setRatelimitAsync(name, limit, durationMs, options) {
    return this.#runAsync(() => PLANS.setRatelimit(name, limit, durationMs, options));
  }

  /** Remove the rate limit `name` of `{ keyId }` or `{ accountId }`; returns it. */
  removeRatelimit(name, options) {
    return this.#run(PLANS.removeRatelimit(name, options));
  }

  /** `removeRatelimit` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  removeRatelimitAsync(name, options) {
    return this.#runAsync(() => PLANS.removeRatelimit(name, options));
  }

  /** The rate limits of `{ keyId }` or `{ accountId }`, by name. */
  ratelimits(options) {
    const [kind, id] = ownerArg(opts('options', options));
    check(native.kl_ratelimits(this.#handle(), kind, id, blen(id), outA));
    return takeJson(outA[0]);
  }

  /**
   * A quota that refills: at the first call after each period boundary (00:00 UTC daily,
   * or on `day` 1–28 of the month, default 1) the account's credits are set to `amount`
   * (not added). `interval` is `'daily'` or `'monthly'`. Returns the account, with
   * `refill: { amount, interval, day }`.
   */
  setRefill(accountId, amount, interval, options) {
    return this.#run(PLANS.setRefill(accountId, amount, interval, options));
  }

  /** `setRefill` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  setRefillAsync(accountId, amount, interval, options) {
    return this.#runAsync(() => PLANS.setRefill(accountId, amount, interval, options));
  }

  /** Remove the account's refill plan (its credits stay); returns the account. */
  clearRefill(accountId) {
    return this.#run(PLANS.clearRefill(accountId));
  }

  /** `clearRefill` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  clearRefillAsync(accountId) {
    return this.#runAsync(() => PLANS.clearRefill(accountId));
  }

  // ------------------------------------------------------------- master key

  /** Whether this handle holds a master key (given, derived, or from KEYLEDGER_MASTER_KEY). */
  get hasMasterKey() {
    const out = [false];
    check(native.kl_has_master_key(this.#handle(), out));
    return out[0] === true;
  }

  /** A signing key's secret, for an admin who lost it (audited; needs the master key). */
  revealSigningSecret(keyId) {
    str('keyId', keyId);
    check(native.kl_reveal_signing_secret(this.#handle(), keyId, blen(keyId), outA));
    return native.takeSecret(outA[0]);
  }

  /**
   * Re-encrypt every signing secret under `newMasterKey` (base64 or a 32-byte Buffer), all
   * or nothing, and use it from now on; other processes must reopen with it. Returns how
   * many secrets were re-encrypted.
   */
  rekey(newMasterKey) {
    return this.#run(PLANS.rekey(newMasterKey));
  }

  /** `rekey` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  rekeyAsync(newMasterKey) {
    return this.#runAsync(() => PLANS.rekey(newMasterKey));
  }

  /** `rekey` to a key derived from a new passphrase (argon2id, fresh salt). */
  rekeyPassphrase(passphrase) {
    return this.#run(PLANS.rekeyPassphrase(passphrase));
  }

  /** `rekeyPassphrase` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  rekeyPassphraseAsync(passphrase) {
    return this.#runAsync(() => PLANS.rekeyPassphrase(passphrase));
  }

  /** This handle's counters: `{ argon2Runs, readTxns, commits, throttled, cacheMode }`. */
  stats() {
    check(native.kl_vault_stats(this.#handle(), outA));
    return takeJson(outA[0]);
  }

  /**
   * Change the vault's argon2id parameters `{ m_kib, t, p }` for new hashes, audited as
   * `argon2_params_changed`; hashes are rehashed only towards stronger parameters. The
   * open option `argon2` applies only to a vault that open creates.
   */
  setArgon2Params(params) {
    return this.#run(PLANS.setArgon2Params(params));
  }

  /** `setArgon2Params` on a libuv worker thread: a Promise of the same result (see `createKeyAsync`). */
  setArgon2ParamsAsync(params) {
    return this.#runAsync(() => PLANS.setArgon2Params(params));
  }
}

/** authorizeHttp's request: its string fields valid Unicode (Buffers go as they are). */
function httpRequestArg(request) {
  if (request === null || typeof request !== 'object') return request;
  for (const k of ['method', 'target', 'authorization', 'apiKey', 'signature', 'idempotencyKey', 'body']) {
    const v = request[k];
    if (typeof v === 'string' && !wellFormed(v)) throw notUnicode(`request.${k}`);
    if (Array.isArray(v) && typeof v[0] === 'string' && !wellFormed(v[0])) throw notUnicode(`request.${k}`);
  }
  return request;
}

/** authorizeHttp's options: `scope` and `limits` valid Unicode. */
function httpOptionsArg(o) {
  if (typeof o.scope === 'string' && !wellFormed(o.scope)) throw notUnicode('scope');
  if (Array.isArray(o.limits)) {
    for (const n of o.limits) if (typeof n === 'string' && !wellFormed(n)) throw notUnicode('limit name');
  }
  return o;
}

/** `{ token, key, signingSecret }` from the three out-parameters (secrets wiped in C). */
function takeNewKey(tokenOut, secretOut, keyOut) {
  const token = native.takeSecret(tokenOut[0]);
  const signingSecret = native.takeSecret(secretOut[0]);
  return { token, key: takeJson(keyOut[0]), signingSecret };
}

/** A master key in: its base64 text, or exactly 32 bytes (sent to C as base64). */
function masterKeyArg(name, v) {
  if (typeof v === 'string') return str(name, v);
  if (v instanceof Uint8Array) {
    if (v.length !== 32) throw invalid(`${name} must be 32 bytes or their base64 (got ${v.length} bytes)`);
    return Buffer.from(v.buffer, v.byteOffset, v.length).toString('base64');
  }
  throw new TypeError(`keyledger: ${name} must be a base64 string or a 32-byte Buffer, got ${describe(v)}`);
}

/** `{ keyId }` or `{ accountId }` → [owner kind, id]; the core checks "exactly one". */
function ownerArg(o) {
  const keyId = optStr('keyId', o.keyId);
  const accountId = optStr('accountId', o.accountId);
  const kind = [0];
  check(native.kl_limit_owner(keyId, keyId === null ? 0 : blen(keyId), accountId,
    accountId === null ? 0 : blen(accountId), kind));
  return [kind[0], kind[0] === C.KL_OWNER_KEY ? keyId : accountId];
}

function bool(name, v) {
  if (typeof v !== 'boolean') throw new TypeError(`keyledger: ${name} must be a boolean, got ${describe(v)}`);
  return v;
}

function toJsonInt(v) {
  if (typeof v === 'bigint') throw invalid('value is beyond Number.MAX_SAFE_INTEGER');
  return v;
}

/** The kl_authorize_opts struct with every option at its default. */
function authorizeOptsStruct() {
  return {
    size: native.KL_AUTHORIZE_OPTS_SIZE,
    cost: 0,
    has_cost: 0,
    idempotency_key: null,
    idempotency_key_len: 0,
    signature: null,
    signature_len: 0,
    body: null,
    body_len: 0,
    now_ms: 0,
    limits_json: null,
    limits_json_len: 0,
    limit_cost: 0,
    has_limit_cost: 0,
    refuse_replay: 0,
    query: null,
    query_len: 0,
    case_insensitive: 0,
    error_body: null,
    hold: 0,
    hold_ttl_ms: 0,
  };
}

/** The kl_authorize_opts struct, or null for all defaults (the hot path). */
function authorizeOpts(o) {
  const { cost, idempotencyKey, now, signature, body, limits, limitCost, onReplay, query, caseInsensitive, hold, holdTtlMs } = o;
  if (onReplay !== undefined && onReplay !== null && onReplay !== 'grant' && onReplay !== 'refuse') {
    throw invalid(`onReplay must be 'grant' or 'refuse', got ${describe(onReplay)}`);
  }
  if (
    (caseInsensitive === undefined || caseInsensitive === null || caseInsensitive === false) &&
    (limits === undefined || limits === null) &&
    (limitCost === undefined || limitCost === null) &&
    (cost === undefined || cost === null) &&
    (idempotencyKey === undefined || idempotencyKey === null) &&
    (now === undefined || now === null) &&
    (signature === undefined || signature === null) &&
    (body === undefined || body === null) &&
    (query === undefined || query === null) &&
    (hold === undefined || hold === null) &&
    (holdTtlMs === undefined || holdTtlMs === null)
  ) {
    return null;
  }
  const s = authorizeOptsStruct();
  s.refuse_replay = onReplay === 'refuse' ? 1 : 0;
  if (caseInsensitive !== undefined && caseInsensitive !== null) {
    s.case_insensitive = bool('caseInsensitive', caseInsensitive) ? 1 : 0;
  }
  if (cost !== undefined && cost !== null) {
    s.cost = u64('cost', cost);
    s.has_cost = 1;
  }
  if (idempotencyKey !== undefined && idempotencyKey !== null) {
    s.idempotency_key = str('idempotencyKey', idempotencyKey);
    s.idempotency_key_len = blen(idempotencyKey);
  }
  if (signature !== undefined && signature !== null) {
    s.signature = str('signature', signature);
    s.signature_len = blen(signature);
  }
  if (body !== undefined && body !== null) {
    let b = body;
    if (typeof b === 'string') b = Buffer.from(str('body', b), 'utf8');
    else if (!(b instanceof Uint8Array)) throw new TypeError('keyledger: body must be a Buffer, Uint8Array or string');
    s.body = b.length ? b : null;
    s.body_len = b.length;
  }
  if (limits !== undefined && limits !== null) {
    if (!Array.isArray(limits) || limits.some((n) => typeof n !== 'string')) {
      throw new TypeError(`keyledger: limits must be an array of limit names, got ${describe(limits)}`);
    }
    for (const n of limits) str('limit name', n);
    s.limits_json = JSON.stringify(limits);
    s.limits_json_len = blen(s.limits_json);
  }
  if (query !== undefined && query !== null) {
    s.query = str('query', query);
    s.query_len = blen(query);
  }
  if (limitCost !== undefined && limitCost !== null) {
    s.limit_cost = u64('limitCost', limitCost);
    s.has_limit_cost = 1;
  }
  if (now !== undefined && now !== null) {
    s.now_ms = instant('now', now);
    if (s.now_ms === 0) s.now_ms = 1; // 0 would mean "the vault's clock"
  }
  // Holds: 0 in the struct means "no hold", so a hold of 0 is refused here, as the core does.
  if (hold !== undefined && hold !== null) {
    const n = u64('hold', hold);
    if (n === 0 || n === 0n) throw invalid('hold must be at least 1 credit');
    s.hold = n;
  }
  if (holdTtlMs !== undefined && holdTtlMs !== null) {
    if (hold === undefined || hold === null) throw invalid('holdTtlMs is only valid with hold');
    const ttl = u64('holdTtlMs', holdTtlMs);
    if (ttl === 0 || ttl === 0n) throw invalid('holdTtlMs must be at least 1 ms');
    s.hold_ttl_ms = ttl;
  }
  return s;
}

// ---------------------------------------------------------------------- helpers

/** Shape and checksum only (no vault): for secret scanners, log filters, typo checks. */
function looksLikeKey(token) {
  if (typeof token !== 'string' || !wellFormed(token)) return false;
  return native.kl_looks_like_key(token, blen(token));
}

/** What logs may show for a token: `"<prefix>_<key_id>_…"` (`"<key_id>:…"` for a colon-style token). */
function redact(token) {
  str('token', token);
  check(native.kl_redact(token, blen(token), outA));
  return native.takeString(outA[0]);
}

/** The version of the loaded libkeyledger. */
function version() {
  return native.kl_version();
}

// ------------------------------------------------------------ signing helpers

/** Bytes in: a Buffer/Uint8Array as is, a string as UTF-8. */
function bytesArg(name, v) {
  if (typeof v === 'string') return Buffer.from(str(name, v), 'utf8');
  if (v instanceof Uint8Array) return v;
  throw new TypeError(`keyledger: ${name} must be a Buffer, Uint8Array or string, got ${describe(v)}`);
}

/** A body: like bytesArg, and null/undefined is empty. */
function bodyArg(v) {
  return v === undefined || v === null ? Buffer.alloc(0) : bytesArg('body', v);
}

/** A fresh random master key as base64 (for `masterKey` or KEYLEDGER_MASTER_KEY). */
function generateMasterKey() {
  check(native.kl_generate_master_key(outA));
  return native.takeSecret(outA[0]);
}

/**
 * The `X-KeyLedger-Signature` header (format 2) a client sends to a signing key:
 * `t=<unix seconds>,v2=<hex HMAC-SHA256>` over `"keyledger-signature-v2\n" + t + "\n" +
 * METHOD + "\n" + target + "\n" + hex(SHA-256(body))`, keyed with the signing secret's
 * text. `path` is the request target as sent: the path with its query string
 * (`/send?to=A`); `body` (Buffer | string | null) the exact bytes sent; `t` a Date or unix
 * milliseconds (default now; truncated to whole seconds).
 */
function signRequest(secret, method, path, body, t) {
  str('secret', secret);
  str('method', method);
  str('path', path);
  const b = bodyArg(body);
  const ms = t === undefined || t === null ? Date.now() : instant('t', t);
  const seconds = Math.floor(Number(ms) / 1000);
  check(native.kl_sign_request(secret, blen(secret), seconds, method, blen(method), path, blen(path),
    b.length ? b : null, b.length, outA));
  return native.takeString(outA[0]);
}

/**
 * Webhook signature: lowercase hex HMAC-SHA256 of `body` under `secret` (both Buffer or
 * string), byte for byte `crypto.createHmac('sha256', secret).update(body).digest('hex')`.
 * An empty secret is refused (`invalid_argument`).
 */
function signWebhook(secret, body) {
  const k = bytesArg('secret', secret);
  const b = bodyArg(body);
  if (k.length === 0) throw invalid('secret must not be empty');
  check(native.kl_sign_webhook(k, k.length, b.length ? b : null, b.length, outA));
  return native.takeString(outA[0]);
}

/**
 * Whether `signatureHex` is the webhook signature of `body` under `secret`, compared in
 * constant time. Anything malformed (not a string, not hex, wrong length, empty secret) is
 * `false`, never an exception.
 */
function verifyWebhook(body, signatureHex, secret) {
  if (typeof signatureHex !== 'string' || !wellFormed(signatureHex)) return false;
  let b;
  let k;
  try {
    b = bodyArg(body);
    k = bytesArg('secret', secret);
  } catch {
    return false;
  }
  if (k.length === 0) return false;
  return native.kl_verify_webhook(b.length ? b : null, b.length, signatureHex, blen(signatureHex), k, k.length);
}

module.exports = {
  Vault,
  KeyLedgerError,
  looksLikeKey,
  redact,
  version,
  generateMasterKey,
  signRequest,
  signWebhook,
  verifyWebhook,
  libraryPath: native.libraryPath,
};
