'use strict';
// The C ABI of keyledger (include/keyledger.h), declared with koffi.
//
// Strings go in as (JS string, UTF-8 byte length): koffi encodes the string to UTF-8
// exactly as Buffer.byteLength counts it (lone surrogates become U+FFFD in both).
// Strings come out as `char **` declared here as `void **`, so we get the pointer, copy
// the text (cString below) and free it with kl_string_free / kl_secret_free.

const koffi = require('koffi');

// Lookup order: lib/locate.js ($KEYLEDGER_LIB, the packaged prebuilt, the repository's target/).
const { findLibrary } = require('./locate');

const libraryPath = findLibrary();
const lib = koffi.load(libraryPath);

// Types ------------------------------------------------------------------------------

koffi.opaque('kl_vault');

// The kl_grant layout, defined once: sizes from the header (lib/constants.js), offsets
// from koffi; index.js decodes grants through GRANT_LAYOUT only.
const {
  KL_ACCOUNT_ID_SIZE, KL_KEY_ID_SIZE, KL_PREFIX_SIZE, KL_KEY_NAME_SIZE, KL_RATELIMIT_NAME_SIZE,
  KL_HOLD_ID_SIZE,
} = require('./constants');

// Both structs start with `size` (the growth path of the C ABI): the struct's size as
// declared here, so a newer library reads/writes only the fields this binding knows.
const kl_grant = koffi.struct('kl_grant', {
  size: 'uint32_t',
  account_id: koffi.array('char', KL_ACCOUNT_ID_SIZE, 'String'),
  key_id: koffi.array('char', KL_KEY_ID_SIZE, 'String'),
  prefix: koffi.array('char', KL_PREFIX_SIZE, 'String'),
  key_name: koffi.array('char', KL_KEY_NAME_SIZE, 'String'),
  auth_method: 'uint32_t',
  charged: 'uint64_t',
  credits: 'uint64_t',
  total_credits: 'uint64_t',
  replayed: 'bool',
  // Rate limits and refills: the tightest applied rate limit (fewest units left), if any.
  has_ratelimit: 'uint8_t',
  ratelimit_name: koffi.array('char', KL_RATELIMIT_NAME_SIZE, 'String'),
  ratelimit_limit: 'uint64_t',
  ratelimit_remaining: 'uint64_t',
  ratelimit_reset_ms: 'int64_t',
  // Holds: the hold an authorize with `hold` made (the library's layout, so size 0 fits).
  hold_id: koffi.array('char', KL_HOLD_ID_SIZE, 'String'),
});

const kl_authorize_opts = koffi.struct('kl_authorize_opts', {
  size: 'uint32_t',
  cost: 'uint64_t',
  has_cost: 'uint8_t',
  idempotency_key: 'const char *',
  idempotency_key_len: 'size_t',
  signature: 'const char *',
  signature_len: 'size_t',
  body: 'const uint8_t *',
  body_len: 'size_t',
  now_ms: 'int64_t',
  // Rate limits and refills: a JSON array of limit names to apply, and the call's weight.
  limits_json: 'const char *',
  limits_json_len: 'size_t',
  limit_cost: 'uint64_t',
  has_limit_cost: 'uint8_t',
  // Non-zero: a replayed idempotency key is refused with `duplicate_request` (409).
  refuse_replay: 'uint8_t',
  // The query string as sent (without '?'), covered by format-2 signatures.
  query: 'const char *',
  query_len: 'size_t',
  // kl_authorize_request only: non-zero matches the rules' literal segments ignoring
  // ASCII case (for routers that do, e.g. Express by default).
  case_insensitive: 'uint8_t',
  // On failure, a copy of the JSON body is written here (a `char **`, given as an 8-byte
  // Buffer): how a refusal decided on a libuv worker thread reaches the event loop whole.
  error_body: 'void *',
  // Holds: reserve this many credits instead of a cost (0: none), and its TTL (0: default).
  hold: 'uint64_t',
  hold_ttl_ms: 'uint64_t',
});

// The grant is decoded by hand from a reusable Buffer (faster than koffi's struct
// marshalling, and nothing is allocated on the C side anyway).
const GRANT_LAYOUT = {
  size: kl_grant.size,
  size_field: koffi.offsetof(kl_grant, 'size'),
  account_id: koffi.offsetof(kl_grant, 'account_id'),
  key_id: koffi.offsetof(kl_grant, 'key_id'),
  prefix: koffi.offsetof(kl_grant, 'prefix'),
  key_name: koffi.offsetof(kl_grant, 'key_name'),
  auth_method: koffi.offsetof(kl_grant, 'auth_method'),
  charged: koffi.offsetof(kl_grant, 'charged'),
  credits: koffi.offsetof(kl_grant, 'credits'),
  total_credits: koffi.offsetof(kl_grant, 'total_credits'),
  replayed: koffi.offsetof(kl_grant, 'replayed'),
  has_ratelimit: koffi.offsetof(kl_grant, 'has_ratelimit'),
  ratelimit_name: koffi.offsetof(kl_grant, 'ratelimit_name'),
  sizes: {
    account_id: KL_ACCOUNT_ID_SIZE,
    key_id: KL_KEY_ID_SIZE,
    prefix: KL_PREFIX_SIZE,
    key_name: KL_KEY_NAME_SIZE,
    ratelimit_name: KL_RATELIMIT_NAME_SIZE,
    hold_id: KL_HOLD_ID_SIZE,
  },
  ratelimit_limit: koffi.offsetof(kl_grant, 'ratelimit_limit'),
  ratelimit_remaining: koffi.offsetof(kl_grant, 'ratelimit_remaining'),
  ratelimit_reset_ms: koffi.offsetof(kl_grant, 'ratelimit_reset_ms'),
  hold_id: koffi.offsetof(kl_grant, 'hold_id'),
};

/** A zeroed grant buffer with its `size` field set (what kl_authorize* fill). */
function grantBuffer() {
  const buf = Buffer.alloc(GRANT_LAYOUT.size);
  buf.writeUInt32LE(GRANT_LAYOUT.size, GRANT_LAYOUT.size_field);
  return buf;
}

// Functions --------------------------------------------------------------------------

const S = 'const char *'; // a string in; always followed by its byte length
const V = 'kl_vault *';
const OUT = '_Out_ void **'; // a string out, freed by us

function fn(name, ret, args) {
  return lib.func(name, ret, args);
}

const native = {
  libraryPath,
  GRANT_LAYOUT,
  grantBuffer,
  kl_authorize_opts,
  KL_AUTHORIZE_OPTS_SIZE: kl_authorize_opts.size,

  kl_string_free: fn('kl_string_free', 'void', ['void *']),
  kl_secret_free: fn('kl_secret_free', 'void', ['void *']),
  kl_secret_free_n: fn('kl_secret_free_n', 'void', ['void *', 'size_t']),
  kl_version: fn('kl_version', 'const char *', []),
  kl_last_error_message: fn('kl_last_error_message', 'const char *', []),
  kl_last_error_body: fn('kl_last_error_body', 'uint32_t', [OUT]),
  kl_last_would_block: fn('kl_last_would_block', 'uint32_t', []),
  kl_status_http: fn('kl_status_http', 'uint16_t', ['uint32_t']),
  kl_status_code: fn('kl_status_code', 'const char *', ['uint32_t']),
  kl_looks_like_key: fn('kl_looks_like_key', 'bool', [S, 'size_t']),
  kl_redact: fn('kl_redact', 'uint32_t', [S, 'size_t', OUT]),

  kl_vault_open: fn('kl_vault_open', 'uint32_t', [S, 'size_t', S, 'size_t', '_Out_ kl_vault **']),
  kl_vault_flush: fn('kl_vault_flush', 'uint32_t', [V]),
  kl_vault_close: fn('kl_vault_close', 'uint32_t', [V]),
  kl_vault_free: fn('kl_vault_free', 'void', [V]),

  // The grant out-parameter is a plain pointer: we pass a Buffer of GRANT_LAYOUT.size.
  kl_authorize: fn('kl_authorize', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', S, 'size_t', 'kl_authorize_opts *', 'void *']),
  kl_authorize_scope: fn('kl_authorize_scope', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', 'kl_authorize_opts *', 'void *']),
  kl_authorize_json: fn('kl_authorize_json', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', S, 'size_t', 'kl_authorize_opts *', OUT]),
  kl_authorize_scope_json: fn('kl_authorize_scope_json', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', 'kl_authorize_opts *', OUT]),
  // The same calls, never blocking: KL_WOULD_BLOCK (nothing changed, out-parameters
  // untouched) when the call needs an argon2 run or a commit wait.
  kl_authorize_try: fn('kl_authorize_try', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', S, 'size_t', 'kl_authorize_opts *', 'void *']),
  kl_authorize_scope_try: fn('kl_authorize_scope_try', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', 'kl_authorize_opts *', 'void *']),
  kl_authorize_json_try: fn('kl_authorize_json_try', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', S, 'size_t', 'kl_authorize_opts *', OUT]),
  kl_authorize_scope_json_try: fn('kl_authorize_scope_json_try', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', 'kl_authorize_opts *', OUT]),
  // The HTTP gate: the raw request target as received (origin- or absolute-form), decoded
  // once by keyledger; an ambiguous target is refused (ambiguous_path, 400).
  kl_authorize_request: fn('kl_authorize_request', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', S, 'size_t', 'kl_authorize_opts *', 'void *']),
  kl_authorize_request_json: fn('kl_authorize_request_json', 'uint32_t',
    [V, S, 'size_t', S, 'size_t', S, 'size_t', 'kl_authorize_opts *', OUT]),
  // The whole HTTP gate (lib/http.js): target, 5 header/body byte buffers, options JSON.
  kl_authorize_http: fn('kl_authorize_http', 'uint32_t', [V, S, 'size_t', ...Array(6).fill(['const uint8_t *', 'size_t']).flat(),
    'uint8_t', S, 'size_t', '_Out_ uint16_t *', OUT, OUT, OUT]),

  kl_create_account: fn('kl_create_account', 'uint32_t', [V, S, 'size_t', 'uint64_t', S, 'size_t', OUT]),
  kl_account: fn('kl_account', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_list_accounts: fn('kl_list_accounts', 'uint32_t', [V, OUT]),
  kl_top_up: fn('kl_top_up', 'uint32_t', [V, S, 'size_t', 'uint64_t', S, 'size_t', OUT]),
  kl_debit: fn('kl_debit', 'uint32_t', [V, S, 'size_t', 'uint64_t', S, 'size_t', OUT]),
  kl_balance: fn('kl_balance', 'uint32_t', [V, S, 'size_t', OUT]),

  kl_create_key: fn('kl_create_key', 'uint32_t', [V, S, 'size_t', OUT, OUT]),
  kl_key: fn('kl_key', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_list_keys: fn('kl_list_keys', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_revoke_key: fn('kl_revoke_key', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_disable_key: fn('kl_disable_key', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_enable_key: fn('kl_enable_key', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_usage: fn('kl_usage', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_set_scopes: fn('kl_set_scopes', 'uint32_t', [V, S, 'size_t', S, 'size_t', OUT]),
  kl_set_expiry: fn('kl_set_expiry', 'uint32_t', [V, S, 'size_t', 'uint8_t', 'int64_t', OUT]),
  kl_rotate_key: fn('kl_rotate_key', 'uint32_t', [V, S, 'size_t', 'int64_t', OUT, OUT]),
  kl_whoami: fn('kl_whoami', 'uint32_t', [V, S, 'size_t', OUT]),

  kl_add_route: fn('kl_add_route', 'uint32_t', [V, S, 'size_t', S, 'size_t', S, 'size_t', 'uint64_t', OUT]),
  kl_remove_route: fn('kl_remove_route', 'uint32_t', [V, S, 'size_t', S, 'size_t', OUT]),
  kl_list_routes: fn('kl_list_routes', 'uint32_t', [V, OUT]),
  kl_match_route: fn('kl_match_route', 'uint32_t', [V, S, 'size_t', S, 'size_t', OUT]),
  kl_audit: fn('kl_audit', 'uint32_t', [V, S, 'size_t', OUT]),

  // Rate limits (owner kind KL_OWNER_KEY / KL_OWNER_ACCOUNT) and refills (KL_REFILL_*).
  kl_limit_owner: fn('kl_limit_owner', 'uint32_t', [S, 'size_t', S, 'size_t', '_Out_ uint32_t *']),
  kl_set_ratelimit: fn('kl_set_ratelimit', 'uint32_t',
    [V, 'uint32_t', S, 'size_t', S, 'size_t', 'uint64_t', 'uint64_t', 'uint8_t', OUT]),
  kl_remove_ratelimit: fn('kl_remove_ratelimit', 'uint32_t', [V, 'uint32_t', S, 'size_t', S, 'size_t', OUT]),
  kl_ratelimits: fn('kl_ratelimits', 'uint32_t', [V, 'uint32_t', S, 'size_t', OUT]),
  kl_set_refill: fn('kl_set_refill', 'uint32_t', [V, S, 'size_t', 'uint64_t', 'uint32_t', 'uint8_t', OUT]),
  kl_clear_refill: fn('kl_clear_refill', 'uint32_t', [V, S, 'size_t', OUT]),

  // Request signing: master key, signing secrets, signatures, webhooks; handle counters.
  kl_create_key_signing: fn('kl_create_key_signing', 'uint32_t', [V, S, 'size_t', OUT, OUT, OUT]),
  kl_rotate_key_signing: fn('kl_rotate_key_signing', 'uint32_t', [V, S, 'size_t', 'int64_t', OUT, OUT, OUT]),
  kl_reveal_signing_secret: fn('kl_reveal_signing_secret', 'uint32_t', [V, S, 'size_t', OUT]),
  kl_rekey: fn('kl_rekey', 'uint32_t', [V, S, 'size_t', '_Out_ uint64_t *']),
  kl_rekey_passphrase: fn('kl_rekey_passphrase', 'uint32_t', [V, S, 'size_t', '_Out_ uint64_t *']),
  kl_has_master_key: fn('kl_has_master_key', 'uint32_t', [V, '_Out_ bool *']),
  kl_vault_stats: fn('kl_vault_stats', 'uint32_t', [V, OUT]),
  kl_set_argon2_params: fn('kl_set_argon2_params', 'uint32_t', [V, 'uint32_t', 'uint32_t', 'uint32_t']),
  kl_generate_master_key: fn('kl_generate_master_key', 'uint32_t', [OUT]),
  kl_sign_request: fn('kl_sign_request', 'uint32_t',
    [S, 'size_t', 'int64_t', S, 'size_t', S, 'size_t', 'const uint8_t *', 'size_t', OUT]),
  kl_sign_webhook: fn('kl_sign_webhook', 'uint32_t', ['const uint8_t *', 'size_t', 'const uint8_t *', 'size_t', OUT]),
  kl_verify_webhook: fn('kl_verify_webhook', 'bool',
    ['const uint8_t *', 'size_t', S, 'size_t', 'const uint8_t *', 'size_t']),
};

// A C string's text, from its pointer. Not `koffi.decode(ptr, 'char', -1)`: koffi (3.3.4,
// the newest release) formats a type name for every such call into an arena it never
// frees, about 24 bytes a call, forever. Writing the pointer into an 8-byte Buffer and
// decoding that as `'str'` (a `const char *` read from memory) allocates nothing that
// outlives the call (test/memory.test.js).
const ptrSlot = Buffer.alloc(koffi.sizeof('void *'));
function cString(ptr) {
  koffi.encode(ptrSlot, 'void *', ptr);
  return koffi.decode(ptrSlot, 'str');
}
native.cString = cString;

/** Copy a keyledger-owned C string and free it. */
native.takeString = function takeString(ptr) {
  try {
    return cString(ptr);
  } finally {
    native.kl_string_free(ptr);
  }
};

/**
 * Copy a token (or signing secret, or master key) and wipe + free the C copy, with the
 * length it was returned with (kl_secret_free_n: no NUL scan at free time). NULL → null.
 */
native.takeSecret = function takeSecret(ptr) {
  if (ptr === null) return null;
  let text = null;
  try {
    text = cString(ptr);
  } finally {
    if (text === null) native.kl_secret_free(ptr);
    else native.kl_secret_free_n(ptr, Buffer.byteLength(text, 'utf8'));
  }
  return text;
};

/**
 * Free a vault handle when the calling thread exits, however it exits: a worker_threads
 * thread ended by `worker.terminate()` runs no JS at all (no 'exit' event, no
 * FinalizationRegistry callback), but its OS thread still runs the thread-exit
 * destructors libc keeps for it. So `kl_vault_free(handle)` is registered as one
 * (glibc's `__cxa_thread_atexit_impl`, the hook C++ `thread_local` destructors use;
 * libkeyledger is passed as the owning library, which keeps it loaded until then).
 * Returns true when registered; then the handle must never be freed by JS (only closed:
 * `kl_vault_close` releases the file, its lock and threads; the handle's small shell is
 * freed at thread exit). Null where unavailable (not Linux with glibc).
 */
native.freeAtThreadExit = (() => {
  if (process.platform !== 'linux') return null;
  try {
    const libc = koffi.load('libc.so.6');
    const dlopen = libc.func('dlopen', 'void *', ['const char *', 'int']);
    const dlsym = libc.func('dlsym', 'void *', ['void *', 'const char *']);
    const atThreadExit = libc.func('__cxa_thread_atexit_impl', 'int', ['void *', 'void *', 'void *']);
    const RTLD_NOW = 2;
    const RTLD_NOLOAD = 4;
    const self = dlopen(libraryPath, RTLD_NOW | RTLD_NOLOAD);
    const freeFn = self === null ? null : dlsym(self, 'kl_vault_free');
    if (freeFn === null) return null;
    return (handle) => atThreadExit(freeFn, handle, freeFn) === 0;
  } catch {
    return null;
  }
})();

// Holds: reserve, settle, release, list (JSON holds out).
native.kl_hold = fn('kl_hold', 'uint32_t', [V, S, 'size_t', 'uint64_t', 'uint64_t', S, 'size_t', OUT]);
native.kl_settle = fn('kl_settle', 'uint32_t', [V, S, 'size_t', 'uint64_t', 'uint8_t', S, 'size_t', OUT]);
native.kl_release = fn('kl_release', 'uint32_t', [V, S, 'size_t', OUT]);
native.kl_list_holds = fn('kl_list_holds', 'uint32_t', [V, S, 'size_t', OUT]);

module.exports = native;
