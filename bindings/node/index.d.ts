// Type definitions of the keyledger Node.js binding.

/** A u64 amount in: a safe non-negative integer Number, or a BigInt below 2^64. */
export type Amount = number | bigint;
/** A u64 amount out: a Number, or a BigInt when it exceeds Number.MAX_SAFE_INTEGER. */
export type AmountOut = number | bigint;
/** A point in time in: a Date or unix milliseconds. */
export type Instant = Date | number;

export interface VaultOptions {
  /** One process only: a second opener gets `vault_locked`; cheaper reads and commits. */
  exclusive?: boolean;
  /** `'eventual'` (debits made durable within ~100 ms) requires `exclusive: true`. */
  durability?: 'immediate' | 'eventual';
  /** argon2id parameters for new hashes (default m_kib 19456, t 2, p 1). */
  argon2?: { m_kib?: number; t?: number; p?: number; mKib?: number };
  /** Verified-secret cache size (default 100 000). */
  cacheCapacity?: number;
  cache_capacity?: number;
  /** Recorded as the actor of this handle's audit entries. */
  actor?: string;
  /** How often usage counters are flushed (default 1000 ms). */
  flushIntervalMs?: number;
  flush_interval_ms?: number;
  /**
   * The master key that seals signing secrets: base64 of 32 bytes, or the 32
   * bytes. Without it or `masterPassphrase`, `KEYLEDGER_MASTER_KEY` is read; a vault
   * without signing keys needs none.
   */
  masterKey?: string | Uint8Array;
  master_key?: string | Uint8Array;
  /** Derive the master key from a passphrase (argon2id, salt stored in the vault). */
  masterPassphrase?: string;
  master_passphrase?: string;
  /** How far a request signature's `t=` may be from now, each side (default 300 000 ms). */
  signatureWindowMs?: number;
  signature_window_ms?: number;
  /**
   * Accept each request signature once, across every process opening the vault (one
   * durable write per signed call); a replay is `invalid_signature`. Default false.
   */
  singleUseSignatures?: boolean;
  single_use_signatures?: boolean;
  /** Failed-secret throttle per key_id (default burst 10, 1 per second). */
  throttle?: { burst?: number; perSecond?: number; per_second?: number };
}

/** The state of one rate limit applied to a granted call. */
export interface RateLimitStatus {
  name: string;
  /** Units allowed per window. */
  max: AmountOut;
  /** Units left in the window after this call. */
  remaining: AmountOut;
  /** Unix milliseconds at which the window is full again. */
  resetMs: number;
}

/** A rate limit definition on a key or an account. */
export interface RateLimit {
  /** 1–64 characters of `[a-z0-9_:.-]`. */
  name: string;
  /** Units allowed per window. */
  limit: AmountOut;
  /** The window, in milliseconds. */
  durationMs: AmountOut;
  /** Checked by every authorize (else only when named in `limits`). */
  autoApply: boolean;
}

/** Whose rate limit: one key, or an account (shared by all its keys). Exactly one. */
export type LimitOwner = { keyId: string; accountId?: undefined } | { accountId: string; keyId?: undefined };

/** An account's refill plan: credits are set to `amount` at each period boundary. */
export interface Refill {
  amount: AmountOut;
  interval: 'daily' | 'monthly';
  /** Day of the month (1–28) for monthly refills; 1 for daily ones. */
  day: number;
}

export interface Grant {
  accountId: string;
  keyId: string;
  keyName: string;
  prefix: string;
  authMethod: 'apikey' | 'operator';
  /** The key's scopes: only with `full: true`, else null. */
  scopes: string[] | null;
  charged: AmountOut;
  /** Credits left after this call. */
  credits: AmountOut;
  totalCredits: AmountOut;
  replayed: boolean;
  /** Each applied rate limit: only with `full: true`, else null. */
  ratelimits: RateLimitStatus[] | null;
  /**
   * The tightest applied rate limit (fewest units left), or null when none applied: what
   * the `RateLimit-*` headers report. Always present (the fast path reads it from `kl_grant`).
   */
  ratelimit: RateLimitStatus | null;
  /** The hold this call made (`hold` option): settle it with `settle`; null otherwise. */
  holdId: string | null;
}

export interface FullGrant extends Grant {
  scopes: string[];
  ratelimits: RateLimitStatus[];
}

interface AuthorizeCommon {
  /** Credits to charge instead of the route's cost (0 for a scope). */
  cost?: Amount;
  /** 1–255 bytes, per account: a repeat within 24 h replays the first grant, charging nothing. */
  idempotencyKey?: string;
  /** The request time (default: now); for tests and replays. */
  now?: Instant;
  /** `t=<unix seconds>,v2=<hex>` for keys that require signing (`signRequest`); `v1=` is refused. */
  signature?: string;
  /**
   * The request's query string exactly as sent, without the `?` (`'to=A'` for
   * `/send?to=A`): a signature covers `path?query`. Routes only; leave it out when the
   * route's path carries its own query.
   */
  query?: string;
  /** The request body, for signatures. */
  body?: Buffer | Uint8Array | string;
  /** Rate limits to apply besides the auto-applied ones, by name (an unknown name is `invalid_argument`). */
  limits?: string[];
  /** The call's weight against every applied rate limit (default 1). */
  limitCost?: Amount;
  /**
   * A repeat of `idempotencyKey` (same request within 24 h): `'grant'` (default) returns
   * the first grant with `replayed: true`; `'refuse'` throws `duplicate_request` (409,
   * body `charged`, `first_at`). Nothing is charged either way.
   */
  onReplay?: 'grant' | 'refuse';
  /** Also return `scopes` and `ratelimits` (the JSON variant of the C call; slower). */
  full?: boolean;
  /**
   * Reserve this many credits instead of charging the cost (at least 1; not with `cost`):
   * the grant's `holdId` names the hold, to `settle` or `release`.
   */
  hold?: Amount;
  /** The hold's TTL in ms (default 15 minutes, at most 30 days). Only with `hold`. */
  holdTtlMs?: Amount;
}

/** What an HTTP gate read off a request, for `authorizeHttp` (header values as received). */
export interface HttpRequest {
  method: string;
  /** The request target as received (path and query, or absolute-form), never decoded. */
  target: string | Buffer;
  authorization?: string | Buffer | null;
  apiKey?: string | Buffer | null;
  signature?: string | Buffer | null;
  idempotencyKey?: string | Buffer | null;
  /** The body of a signed request. */
  body?: string | Buffer | null;
  /** The gate stopped reading the body past `maxBody`. */
  bodyTooLarge?: boolean;
}

/** Options of `authorizeHttp`. */
export interface HttpOptions {
  cost?: Amount;
  scope?: string;
  limits?: string[];
  limitCost?: Amount;
  /** A repeated idempotency key: 'refuse' (default) answers 409, 'pass' the replayed grant. */
  replay?: 'refuse' | 'pass';
  caseInsensitive?: boolean;
  /** The largest body checked for a signature (default 1 MiB; more is 413). */
  maxBody?: number;
  now?: Date | number;
  full?: boolean;
}

/** The gate's answer: send `status`, `headers` and `body`, or run the app with `grant`. */
export interface HttpOutcome {
  status: number;
  /** Lowercase names; on a grant, the `ratelimit-*` headers to add. */
  headers: Array<[string, string]>;
  /** The refusal's JSON body ('' for a grant). */
  body: string;
  grant: Grant | null;
}

/** Options of `authorizeRequest`: those of `authorize` without `route`/`scope`, plus `caseInsensitive`. */
export interface AuthorizeRequestOptions extends AuthorizeCommon {
  /**
   * Match the rules' literal segments regardless of ASCII case, as a case-insensitive
   * router routes (Express by default). Default false: byte for byte.
   */
  caseInsensitive?: boolean;
  route?: undefined;
  scope?: undefined;
}

export type AuthorizeOptions =
  | (AuthorizeCommon & { route: [method: string, path: string]; scope?: undefined })
  | (AuthorizeCommon & { scope: string; route?: undefined });

export interface Account {
  id: string;
  credits: AmountOut;
  totalCredits: AmountOut;
  createdAt: Date;
  /** Exactly as stored (keys are not camel-cased). */
  metadata: Record<string, unknown>;
  /** The refill plan, if any. */
  refill: Refill | null;
}

export interface Balance {
  accountId: string;
  /** Everything the account owns, held credits included. */
  credits: AmountOut;
  totalCredits: AmountOut;
  /** Credits reserved by active holds. */
  held: AmountOut;
  /** Credits a call can spend now (`credits - held`). */
  available: AmountOut;
}

/** Credits reserved until settled, released or expired (`Vault.hold`). */
export interface Hold {
  holdId: string;
  accountId: string;
  keyId: string | null;
  amount: AmountOut;
  charged: AmountOut;
  state: 'active' | 'settled' | 'released' | 'expired';
  createdAt: Date;
  expiresAt: Date;
  finishedAt: Date | null;
  replayed: boolean;
}

export interface KeyInfo {
  keyId: string;
  /** `''` for a colon-style key. */
  prefix: string;
  style: 'prefixed' | 'colon';
  accountId: string;
  name: string;
  scopes: string[];
  operator: boolean;
  createdAt: Date;
  expiresAt: Date | null;
  disabled: boolean;
  revokedAt: Date | null;
  signing: boolean;
  rotatedFrom: string | null;
  metadata: Record<string, unknown>;
  lastUsedAt: Date | null;
}

export interface NewKey {
  /** The secret token: shown once, never retrievable again. */
  token: string;
  key: KeyInfo;
  /**
   * A signing key's signing secret (64 hex characters; `null` for other keys): what the
   * client signs requests with (`signRequest`). Recoverable with `revealSigningSecret`.
   */
  signingSecret: string | null;
}

export interface VaultStats {
  /** argon2 verifications run by this handle. */
  argon2Runs: AmountOut;
  /** Read transactions opened. */
  readTxns: AmountOut;
  /** Write transactions committed. */
  commits: AmountOut;
  /** Failed secret checks refused by the throttle without running argon2. */
  throttled: AmountOut;
  /** How caches are validated. */
  cacheMode: 'shared' | 'private' | 'disabled';
}

export interface WhoAmI {
  accountId: string;
  keyId: string;
  keyName: string;
  authMethod: 'apikey' | 'operator';
  scopes: string[];
  credits: AmountOut;
  totalCredits: AmountOut;
}

export interface RouteRule {
  method: string;
  pattern: string;
  scope: string;
  cost: AmountOut;
}

export interface AuditEntry {
  seq: number;
  time: Date;
  action: string;
  keyId: string | null;
  accountId: string | null;
  actor: string | null;
  /** Exactly as stored (snake_case keys, times as unix ms). */
  details: Record<string, unknown>;
}

export interface Usage {
  keyId: string;
  lastUsedAt: Date | null;
  granted: number;
  refused: number;
  /** [hour start, calls] pairs. */
  hourly: Array<[Date, number]>;
}

export interface CreateKeyOptions {
  /** Default `'kl_live'`. */
  prefix?: string;
  /** `'prefixed'` (default) or `'colon'`: `<keyId>:<secret>`, no prefix, no checksum. */
  style?: 'prefixed' | 'colon';
  expiresAt?: Instant;
  /** Milliseconds from now. */
  expiresIn?: number;
  operator?: boolean;
  signing?: boolean;
  metadata?: Record<string, unknown>;
}

export interface AuditQuery {
  keyId?: string;
  accountId?: string;
  action?: string;
  since?: Instant;
  /** Default 100, at most 10 000. */
  limit?: number;
}

export type ErrorCode =
  | 'invalid_api_key'
  | 'api_key_inactive'
  | 'api_key_expired'
  | 'invalid_signature'
  | 'missing_scope'
  | 'route_not_allowed'
  | 'insufficient_credits'
  | 'rate_limited'
  | 'too_many_attempts'
  | 'idempotency_conflict'
  | 'duplicate_request'
  | 'ambiguous_path'
  | 'not_found'
  | 'already_exists'
  | 'invalid_argument'
  | 'wrong_master_key'
  | 'storage'
  | 'vault_locked'
  | 'vault_closed'
  | 'panic';

/** Every refusal and failed call. */
export class KeyLedgerError extends Error {
  name: 'KeyLedgerError';
  /** The HTTP status to answer with (401, 402, 403, 429, 400, 404, 409, 500). */
  status: number;
  code: ErrorCode;
  /** The JSON body to answer with, e.g. `{ success: false, error: 'missing_scope', required: 'sms:send', message }`. */
  body: { success: false; error: ErrorCode; message: string; [field: string]: unknown };
  /** The numeric `kl_status` of the C ABI. */
  klStatus: number;
}

export class Vault {
  constructor(path: string, options?: VaultOptions);
  static open(path: string, options?: VaultOptions): Vault;
  readonly path: string;
  readonly closed: boolean;

  authorize(token: string, options: AuthorizeOptions & { full: true }): FullGrant;
  authorize(token: string, options: AuthorizeOptions): Grant;
  /**
   * `authorize` off the event loop: answered inline when that cannot block (a key already
   * verified in this process, a call that writes nothing, a refusal that needs no argon2);
   * a call that needs argon2 (a cold key, a forged token) or a commit runs on a libuv
   * worker thread. Rejects with the KeyLedgerError of the refusal (decided on a worker,
   * its body holds `success`, `error` and `message` only).
   */
  authorizeAsync(token: string, options: AuthorizeOptions & { full: true }): Promise<FullGrant>;
  authorizeAsync(token: string, options: AuthorizeOptions): Promise<Grant>;
  /**
   * The HTTP gate: `target` is the raw request target as received (`/a%20b?x=1` or
   * absolute-form `http://host/a`), decoded once by keyledger. An ambiguous target (encoded
   * `/ ? # \` or NUL, dot segments in any encoding, empty segments a wildcard or parameter
   * would swallow) is refused with `ambiguous_path` (400). HEAD is matched and charged like GET.
   */
  authorizeRequest(token: string, method: string, target: string, options: AuthorizeRequestOptions & { full: true }): FullGrant;
  authorizeRequest(token: string, method: string, target: string, options?: AuthorizeRequestOptions): Grant;
  /** The whole HTTP gate (what the Express middleware runs): never throws a refusal. */
  authorizeHttp(request: HttpRequest, options?: HttpOptions): HttpOutcome;
  /**
   * `authorizeHttp` off the event loop (what the Express middleware runs): inline when it
   * cannot block, else (argon2, a commit) on a libuv worker thread. Refusals resolve with
   * their status and body; only a failed call rejects.
   */
  authorizeHttpAsync(request: HttpRequest, options?: HttpOptions): Promise<HttpOutcome>;
  whoami(token: string): WhoAmI;

  createAccount(id: string, options?: { credits?: Amount; metadata?: Record<string, unknown> }): Account;
  /** `createAccount` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  createAccountAsync(id: string, options?: { credits?: Amount; metadata?: Record<string, unknown> }): Promise<Account>;
  account(id: string): Account;
  listAccounts(): Account[];
  topUp(id: string, amount: Amount, options?: { reference?: string }): Balance;
  /** `topUp` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  topUpAsync(id: string, amount: Amount, options?: { reference?: string }): Promise<Balance>;
  debit(id: string, amount: Amount, options?: { idempotencyKey?: string }): Balance;
  /** `debit` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  debitAsync(id: string, amount: Amount, options?: { idempotencyKey?: string }): Promise<Balance>;
  balance(id: string): Balance;
  // Holds.
  hold(accountId: string, amount: Amount, options?: { ttlMs?: Amount; idempotencyKey?: string }): Hold;
  holdAsync(accountId: string, amount: Amount, options?: { ttlMs?: Amount; idempotencyKey?: string }): Promise<Hold>;
  settle(holdId: string, actual: Amount, options?: { allowOver?: boolean; idempotencyKey?: string }): Hold;
  settleAsync(holdId: string, actual: Amount, options?: { allowOver?: boolean; idempotencyKey?: string }): Promise<Hold>;
  release(holdId: string): Hold;
  releaseAsync(holdId: string): Promise<Hold>;
  listHolds(accountId?: string): Hold[];

  createKey(accountId: string, name: string, scopes: string[], options?: CreateKeyOptions): NewKey;
  /**
   * `createKey` on a libuv worker thread: the event loop keeps turning while argon2 hashes
   * the secret. Every management call that writes has such an `…Async` twin. A refusal
   * decided on the worker carries `status`, `code` and a minimal body.
   */
  createKeyAsync(accountId: string, name: string, scopes: string[], options?: CreateKeyOptions): Promise<NewKey>;
  key(keyId: string): KeyInfo;
  listKeys(accountId?: string | null): KeyInfo[];
  revokeKey(keyId: string): KeyInfo;
  /** `revokeKey` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  revokeKeyAsync(keyId: string): Promise<KeyInfo>;
  disableKey(keyId: string): KeyInfo;
  /** `disableKey` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  disableKeyAsync(keyId: string): Promise<KeyInfo>;
  enableKey(keyId: string): KeyInfo;
  /** `enableKey` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  enableKeyAsync(keyId: string): Promise<KeyInfo>;
  setScopes(keyId: string, scopes: string[]): KeyInfo;
  /** `setScopes` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  setScopesAsync(keyId: string, scopes: string[]): Promise<KeyInfo>;
  /** `null` clears the expiry. */
  setExpiry(keyId: string, expiresAt: Instant | null): KeyInfo;
  /** `setExpiry` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  setExpiryAsync(keyId: string, expiresAt: Instant | null): Promise<KeyInfo>;
  rotateKey(keyId: string, options?: { graceMs?: number }): NewKey;
  /** `rotateKey` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  rotateKeyAsync(keyId: string, options?: { graceMs?: number }): Promise<NewKey>;
  usage(keyId: string): Usage;

  addRoute(method: string, pattern: string, scope: string, options?: { cost?: Amount }): RouteRule;
  /** `addRoute` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  addRouteAsync(method: string, pattern: string, scope: string, options?: { cost?: Amount }): Promise<RouteRule>;
  removeRoute(method: string, pattern: string): RouteRule;
  /** `removeRoute` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  removeRouteAsync(method: string, pattern: string): Promise<RouteRule>;
  listRoutes(): RouteRule[];
  matchRoute(method: string, path: string): RouteRule | null;

  audit(query?: AuditQuery): AuditEntry[];

  /**
   * Set (or replace) a rate limit: `limit` units per `durationMs` on a key or an account.
   * `autoApply` (default true): checked by every authorize; false: only when named in `limits`.
   */
  setRatelimit(name: string, limit: Amount, durationMs: Amount, options: LimitOwner & { autoApply?: boolean }): RateLimit;
  /** `setRatelimit` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  setRatelimitAsync(name: string, limit: Amount, durationMs: Amount, options: LimitOwner & { autoApply?: boolean }): Promise<RateLimit>;
  /** Remove a rate limit; returns it (`not_found` if absent). */
  removeRatelimit(name: string, owner: LimitOwner): RateLimit;
  /** `removeRatelimit` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  removeRatelimitAsync(name: string, owner: LimitOwner): Promise<RateLimit>;
  /** The rate limits of a key or an account, by name. */
  ratelimits(owner: LimitOwner): RateLimit[];
  /**
   * A quota that refills: at the first call after each boundary (00:00 UTC daily, or on
   * `day` 1–28 of the month, default 1) the credits are set to `amount`.
   */
  setRefill(accountId: string, amount: Amount, interval: 'daily' | 'monthly', options?: { day?: number }): Account;
  /** `setRefill` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  setRefillAsync(accountId: string, amount: Amount, interval: 'daily' | 'monthly', options?: { day?: number }): Promise<Account>;
  /** Remove the refill plan (credits stay as they are). */
  clearRefill(accountId: string): Account;
  /** `clearRefill` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  clearRefillAsync(accountId: string): Promise<Account>;

  /** Whether this handle holds a master key. */
  readonly hasMasterKey: boolean;
  /** A signing key's secret, for an admin who lost it (audited; needs the master key). */
  revealSigningSecret(keyId: string): string;
  /** Re-encrypt every signing secret under a new master key; returns how many. */
  rekey(newMasterKey: string | Uint8Array): number;
  /** `rekey` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  rekeyAsync(newMasterKey: string | Uint8Array): Promise<number>;
  /** `rekey` to a key derived from a new passphrase. */
  rekeyPassphrase(passphrase: string): number;
  /** `rekeyPassphrase` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  rekeyPassphraseAsync(passphrase: string): Promise<number>;
  /** This handle's counters. */
  stats(): VaultStats;
  /** Change the argon2id parameters for new hashes (audited; only ever rehashes upwards). */
  setArgon2Params(params: { m_kib: number; t: number; p: number }): void;
  /** `setArgon2Params` on a libuv worker thread: the event loop stays free during argon2 or the commit. */
  setArgon2ParamsAsync(params: { m_kib: number; t: number; p: number }): Promise<void>;

  flush(): void;
  /** Flush, close and free the handle (the reliable path; the finalizer is a fallback). */
  close(): void;
}

/** Shape and checksum only, no vault access. */
export function looksLikeKey(token: unknown): boolean;
/** `"<prefix>_<key_id>_…"`: what logs may show. */
export function redact(token: string): string;
/** The version of the loaded libkeyledger. */
export function version(): string;
/** The path of the loaded shared library. */
export const libraryPath: string;

/** A fresh random master key as base64 (for `masterKey` or `KEYLEDGER_MASTER_KEY`). */
export function generateMasterKey(): string;
/**
 * The `X-KeyLedger-Signature` value (format 2) for a request to a signing key:
 * `t=<unix seconds>,v2=<hex HMAC-SHA256>` over `"keyledger-signature-v2\n" + t + "\n" +
 * METHOD + "\n" + target + "\n" + hex(SHA-256(body))`. `path` is the request target as
 * sent, with its query string (`/send?to=A`); `t` a Date or unix milliseconds (default now).
 */
export function signRequest(
  secret: string,
  method: string,
  path: string,
  body?: Buffer | Uint8Array | string | null,
  t?: Instant,
): string;
/** Lowercase hex HMAC-SHA256 of `body` under `secret` (same as node:crypto's createHmac). */
export function signWebhook(secret: Buffer | Uint8Array | string, body: Buffer | Uint8Array | string | null): string;
/** Constant-time check of a webhook signature; anything malformed is `false`. */
export function verifyWebhook(
  body: Buffer | Uint8Array | string | null,
  signatureHex: unknown,
  secret: Buffer | Uint8Array | string,
): boolean;
