/*
 * keyledger_nif.c: the Erlang/Elixir NIF over the keyledger C ABI (include/keyledger.h).
 *
 * - The vault is a NIF resource holding a kl_vault*. Its destructor (run when the last
 *   Erlang reference is garbage-collected) hands it to the closer thread, which calls
 *   kl_vault_free(): that closes the vault if KeyLedger.close/1 did not, off the
 *   schedulers. close/1 calls kl_vault_close(): the handle stays
 *   valid memory and later calls return KL_VAULT_CLOSED (2007) until the destructor runs.
 * - Strings in are iodata (binaries or iolists) passed as (pointer, length); nil is
 *   "absent" for optional ones. Any other type is badarg (ArgumentError in Elixir).
 * - Unsigned amounts: a non-integer is badarg; a negative or over-u64 integer is an
 *   {:error, invalid_argument} like every other host.
 * - Results: {:ok, term} or {:error, %{status: http, code: binary, message: binary,
 *   body: json_binary, kl_status: int}}. The last error is thread-local in the C ABI,
 *   so it is read right after the failing call, inside the same NIF call (hence on the
 *   same scheduler thread).
 * - authorize, authorize_request and authorize_http are normal NIFs that first make the
 *   C ABI's non-blocking call and reschedule only what would block: argon2 to a dirty CPU
 *   scheduler, a commit to a dirty IO one (see "where an authorize runs").
 * - Every other call that may run argon2 or commit (open, close, flush, whoami and every
 *   management call) runs on a dirty scheduler: IO-bound, except create_key, rotate_key
 *   and rekey_passphrase (an argon2 hash: CPU-bound). looks_like_key, redact,
 *   version, has_master_key, stats and generate_master_key are plain NIFs (no I/O,
 *   microseconds); the HMAC helpers (sign_request, sign_webhook, verify_webhook) run on
 *   dirty CPU schedulers because a body may be large.
 * - Every string keyledger returns is freed (kl_string_free); tokens, signing secrets and
 *   master keys are copied into a binary and then wiped and freed with kl_secret_free.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <erl_nif.h>

#include "keyledger.h"

typedef struct {
    kl_vault *v;
} vault_res;

static ErlNifResourceType *VAULT_RES;

static ERL_NIF_TERM A_OK, A_ERROR, A_NIL, A_TRUE, A_FALSE;
static ERL_NIF_TERM A_STATUS, A_CODE, A_MESSAGE, A_BODY, A_KL_STATUS;
static ERL_NIF_TERM A_ACCOUNT_ID, A_KEY_ID, A_KEY_NAME, A_PREFIX, A_AUTH_METHOD, A_CHARGED,
    A_CREDITS, A_TOTAL_CREDITS, A_REPLAYED, A_APIKEY, A_OPERATOR;
static ERL_NIF_TERM A_RATELIMIT, A_NAME, A_MAX, A_REMAINING, A_RESET_MS;
/* Struct keys and modules: results are %KeyLedger.Grant{} and %KeyLedger.Error{}. */
static ERL_NIF_TERM A_STRUCT, A_EXCEPTION, A_GRANT_MOD, A_ERROR_MOD, A_SCOPES, A_RATELIMITS;

/*
 * The closer: one thread of this library that frees dropped vaults.
 *
 * A resource's destructor runs on whichever thread drops the last reference, usually a
 * normal scheduler during a garbage collection. kl_vault_free() of a vault nobody closed
 * joins its flusher, commits the last usage counters and syncs: milliseconds of I/O that
 * would hold that scheduler. So the destructor only queues the handle, and this thread
 * frees it. unload() drains the queue and joins the thread.
 */
typedef struct closing {
    kl_vault *v;
    struct closing *next;
} closing;

static ErlNifMutex *closer_lock;
static ErlNifCond *closer_cond;
static ErlNifTid closer_tid;
static int closer_started, closer_stop;
static closing *closer_head, *closer_tail;
/* Vaults freed by the closer, and by a scheduler thread (when the closer could not take
 * one: out of memory). Read by closer_stats/0 for the tests. */
static uint64_t freed_by_closer, freed_inline;

static void *closer_main(void *arg) {
    (void)arg;
    enif_mutex_lock(closer_lock);
    for (;;) {
        while (closer_head == NULL && !closer_stop) enif_cond_wait(closer_cond, closer_lock);
        if (closer_head == NULL) break; /* stopping and drained */
        closing *c = closer_head;
        closer_head = c->next;
        if (closer_head == NULL) closer_tail = NULL;
        enif_mutex_unlock(closer_lock);
        kl_vault_free(c->v);
        enif_free(c);
        enif_mutex_lock(closer_lock);
        freed_by_closer++;
    }
    enif_mutex_unlock(closer_lock);
    return NULL;
}

static void vault_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    vault_res *r = (vault_res *)obj;
    if (r->v == NULL) return;
    closing *c = closer_started ? enif_alloc(sizeof *c) : NULL;
    if (c == NULL) {
        kl_vault_free(r->v); /* no closer: free here rather than leak the vault */
        r->v = NULL;
        enif_mutex_lock(closer_lock);
        freed_inline++;
        enif_mutex_unlock(closer_lock);
        return;
    }
    c->v = r->v;
    c->next = NULL;
    r->v = NULL;
    enif_mutex_lock(closer_lock);
    if (closer_tail) closer_tail->next = c;
    else closer_head = c;
    closer_tail = c;
    enif_cond_signal(closer_cond);
    enif_mutex_unlock(closer_lock);
}

static int closer_start(void) {
    if (closer_lock != NULL) return 0; /* already running (an upgrade of this instance) */
    closer_lock = enif_mutex_create("keyledger_closer");
    closer_cond = enif_cond_create("keyledger_closer");
    if (closer_lock == NULL || closer_cond == NULL) return 1;
    closer_stop = 0;
    if (enif_thread_create("keyledger_closer", &closer_tid, closer_main, NULL, NULL) != 0)
        return 1;
    closer_started = 1;
    return 0;
}

static void unload(ErlNifEnv *env, void *priv) {
    (void)env;
    (void)priv;
    if (!closer_started) return;
    enif_mutex_lock(closer_lock);
    closer_stop = 1;
    enif_cond_signal(closer_cond);
    enif_mutex_unlock(closer_lock);
    enif_thread_join(closer_tid, NULL);
    closer_started = 0;
    enif_cond_destroy(closer_cond);
    enif_mutex_destroy(closer_lock);
    closer_cond = NULL;
    closer_lock = NULL;
}

/* closer_stats() -> {freed_by_closer, freed_inline}: for the tests. */
static ERL_NIF_TERM nif_closer_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    (void)argv;
    enif_mutex_lock(closer_lock);
    uint64_t by_closer = freed_by_closer, inline_ = freed_inline;
    enif_mutex_unlock(closer_lock);
    return enif_make_tuple2(env, enif_make_uint64(env, by_closer),
                            enif_make_uint64(env, inline_));
}

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info) {
    (void)priv;
    (void)info;
    if (closer_start() != 0) return 1;
    VAULT_RES = enif_open_resource_type(env, NULL, "keyledger_vault", vault_dtor,
                                        ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    if (VAULT_RES == NULL) return 1;
#define ATOM(var, name) var = enif_make_atom(env, name)
    ATOM(A_OK, "ok");
    ATOM(A_ERROR, "error");
    ATOM(A_NIL, "nil");
    ATOM(A_TRUE, "true");
    ATOM(A_FALSE, "false");
    ATOM(A_STATUS, "status");
    ATOM(A_CODE, "code");
    ATOM(A_MESSAGE, "message");
    ATOM(A_BODY, "body");
    ATOM(A_KL_STATUS, "kl_status");
    ATOM(A_ACCOUNT_ID, "account_id");
    ATOM(A_KEY_ID, "key_id");
    ATOM(A_KEY_NAME, "key_name");
    ATOM(A_PREFIX, "prefix");
    ATOM(A_AUTH_METHOD, "auth_method");
    ATOM(A_CHARGED, "charged");
    ATOM(A_CREDITS, "credits");
    ATOM(A_TOTAL_CREDITS, "total_credits");
    ATOM(A_REPLAYED, "replayed");
    ATOM(A_APIKEY, "apikey");
    ATOM(A_OPERATOR, "operator");
    ATOM(A_RATELIMIT, "ratelimit");
    ATOM(A_NAME, "name");
    ATOM(A_MAX, "max");
    ATOM(A_REMAINING, "remaining");
    ATOM(A_RESET_MS, "reset_ms");
    ATOM(A_STRUCT, "__struct__");
    ATOM(A_EXCEPTION, "__exception__");
    ATOM(A_GRANT_MOD, "Elixir.KeyLedger.Grant");
    ATOM(A_ERROR_MOD, "Elixir.KeyLedger.Error");
    ATOM(A_SCOPES, "scopes");
    ATOM(A_RATELIMITS, "ratelimits");
#undef ATOM
    return 0;
}

static int upgrade(ErlNifEnv *env, void **priv, void **old_priv, ERL_NIF_TERM info) {
    (void)old_priv;
    return load(env, priv, info);
}

/* ---- terms in ---------------------------------------------------------------------- */

typedef struct {
    const char *ptr;
    size_t len;
} str_arg;

/* Required string: a binary or an iolist. */
static int get_str(ErlNifEnv *env, ERL_NIF_TERM t, str_arg *out) {
    ErlNifBinary b;
    if (enif_is_binary(env, t)) {
        if (!enif_inspect_binary(env, t, &b)) return 0;
    } else if (enif_is_list(env, t)) {
        if (!enif_inspect_iolist_as_binary(env, t, &b)) return 0;
    } else {
        return 0;
    }
    /* A non-NULL pointer even for the empty string: NULL means "absent" in the C ABI. */
    out->ptr = b.size ? (const char *)b.data : "";
    out->len = b.size;
    return 1;
}

/* Optional string: nil is absent (NULL, 0). */
static int get_opt_str(ErlNifEnv *env, ERL_NIF_TERM t, str_arg *out) {
    if (enif_is_identical(t, A_NIL)) {
        out->ptr = NULL;
        out->len = 0;
        return 1;
    }
    return get_str(env, t, out);
}

enum { ARG_OK = 0, ARG_BADARG = 1, ARG_INVALID = 2 };

/* An unsigned 64-bit amount: not an integer is badarg, out of range is invalid_argument. */
static int get_u64(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out) {
    ErlNifUInt64 u;
    if (enif_get_uint64(env, t, &u)) {
        *out = (uint64_t)u;
        return ARG_OK;
    }
    return enif_term_type(env, t) == ERL_NIF_TERM_TYPE_INTEGER ? ARG_INVALID : ARG_BADARG;
}

static int get_i64(ErlNifEnv *env, ERL_NIF_TERM t, int64_t *out) {
    ErlNifSInt64 i;
    if (enif_get_int64(env, t, &i)) {
        *out = (int64_t)i;
        return ARG_OK;
    }
    return enif_term_type(env, t) == ERL_NIF_TERM_TYPE_INTEGER ? ARG_INVALID : ARG_BADARG;
}

static int get_vault(ErlNifEnv *env, ERL_NIF_TERM t, vault_res **out) {
    return enif_get_resource(env, t, VAULT_RES, (void **)out);
}

/* ---- terms out --------------------------------------------------------------------- */

static ERL_NIF_TERM make_bin(ErlNifEnv *env, const char *s, size_t len) {
    ERL_NIF_TERM t;
    unsigned char *data = enif_make_new_binary(env, len, &t);
    if (len) memcpy(data, s, len);
    return t;
}

static ERL_NIF_TERM make_cstr(ErlNifEnv *env, const char *s) {
    return make_bin(env, s ? s : "", s ? strlen(s) : 0);
}

/* A JSON string keyledger returned: copied into a binary, then freed. */
static ERL_NIF_TERM take_json(ErlNifEnv *env, char *s) {
    ERL_NIF_TERM t = make_cstr(env, s);
    kl_string_free(s);
    return t;
}

/* A token keyledger returned: copied into a binary, then wiped and freed with the length
 * it was returned with (kl_secret_free_n: no NUL scan at free time). */
static ERL_NIF_TERM take_secret(ErlNifEnv *env, char *s) {
    size_t n = s ? strlen(s) : 0;
    ERL_NIF_TERM t = make_bin(env, s ? s : "", n);
    kl_secret_free_n(s, n);
    return t;
}

static ERL_NIF_TERM ok(ErlNifEnv *env, ERL_NIF_TERM t) {
    return enif_make_tuple2(env, A_OK, t);
}

static ERL_NIF_TERM error_map(ErlNifEnv *env, uint32_t st, ERL_NIF_TERM message,
                              ERL_NIF_TERM body) {
    /* %KeyLedger.Error{} (an exception struct: every field of its defexception). */
    ERL_NIF_TERM keys[7] = {A_STRUCT, A_EXCEPTION, A_STATUS, A_CODE, A_MESSAGE, A_BODY,
                            A_KL_STATUS};
    ERL_NIF_TERM vals[7] = {A_ERROR_MOD,
                            A_TRUE,
                            enif_make_uint(env, kl_status_http(st)),
                            make_cstr(env, kl_status_code(st)),
                            message,
                            body,
                            enif_make_uint(env, st)};
    ERL_NIF_TERM map;
    if (!enif_make_map_from_arrays(env, keys, vals, 7, &map)) return enif_make_badarg(env);
    return enif_make_tuple2(env, A_ERROR, map);
}

/* The error of the kl_ call that just failed on this thread. */
static ERL_NIF_TERM kl_error(ErlNifEnv *env, kl_status st) {
    ERL_NIF_TERM message = make_cstr(env, kl_last_error_message());
    char *body = NULL;
    ERL_NIF_TERM body_t;
    if (kl_last_error_body(&body) == KL_OK && body != NULL) {
        body_t = take_json(env, body);
    } else {
        char buf[160];
        int n = snprintf(buf, sizeof buf, "{\"success\":false,\"error\":\"%s\"}",
                         kl_status_code(st));
        body_t = make_bin(env, buf, n > 0 ? (size_t)n : 0);
    }
    return error_map(env, (uint32_t)st, message, body_t);
}

/* An invalid_argument found on this side of the boundary (a negative amount, ...). */
static ERL_NIF_TERM invalid_arg(ErlNifEnv *env, const char *what) {
    char msg[160], body[320];
    int m = snprintf(msg, sizeof msg, "invalid argument: %s", what);
    int b = snprintf(body, sizeof body,
                     "{\"success\":false,\"error\":\"invalid_argument\",\"message\":\"%s\"}",
                     msg);
    return error_map(env, KL_INVALID_ARGUMENT, make_bin(env, msg, m > 0 ? (size_t)m : 0),
                     make_bin(env, body, b > 0 ? (size_t)b : 0));
}

#define RESULT_JSON(call)                                                                \
    do {                                                                                 \
        char *out_json = NULL;                                                           \
        kl_status st_ = (call);                                                          \
        if (st_ != KL_OK) return kl_error(env, st_);                                     \
        return ok(env, take_json(env, out_json));                                        \
    } while (0)

#define VAULT(i)                                                                         \
    vault_res *r;                                                                        \
    if (!get_vault(env, argv[i], &r)) return enif_make_badarg(env)

#define STR(i, name)                                                                     \
    str_arg name;                                                                        \
    if (!get_str(env, argv[i], &name)) return enif_make_badarg(env)

#define OPT_STR(i, name)                                                                 \
    str_arg name;                                                                        \
    if (!get_opt_str(env, argv[i], &name)) return enif_make_badarg(env)

#define U64(i, name, what)                                                               \
    uint64_t name;                                                                       \
    switch (get_u64(env, argv[i], &name)) {                                              \
    case ARG_OK: break;                                                                  \
    case ARG_INVALID: return invalid_arg(env, what " must be between 0 and 2^64-1");    \
    default: return enif_make_badarg(env);                                               \
    }

#define I64(i, name, what)                                                               \
    int64_t name;                                                                        \
    switch (get_i64(env, argv[i], &name)) {                                              \
    case ARG_OK: break;                                                                  \
    case ARG_INVALID: return invalid_arg(env, what " is out of the 64-bit range");      \
    default: return enif_make_badarg(env);                                               \
    }

/* ---- open / close ------------------------------------------------------------------ */

/* open(path, options_json | nil) */
static ERL_NIF_TERM nif_open(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    STR(0, path);
    OPT_STR(1, options);
    kl_vault *v = NULL;
    kl_status st = kl_vault_open(path.ptr, path.len, options.ptr, options.len, &v);
    if (st != KL_OK) return kl_error(env, st);
    vault_res *r = enif_alloc_resource(VAULT_RES, sizeof(vault_res));
    if (r == NULL) {
        kl_vault_free(v);
        return enif_raise_exception(env, enif_make_atom(env, "enomem"));
    }
    r->v = v;
    ERL_NIF_TERM t = enif_make_resource(env, r);
    enif_release_resource(r); /* the term owns it now; the GC runs the destructor */
    return ok(env, t);
}

static ERL_NIF_TERM nif_close(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    kl_status st = kl_vault_close(r->v);
    if (st != KL_OK) return kl_error(env, st);
    return A_OK;
}

static ERL_NIF_TERM nif_flush(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    kl_status st = kl_vault_flush(r->v);
    if (st != KL_OK) return kl_error(env, st);
    return A_OK;
}

/* ---- authorize --------------------------------------------------------------------- */

/* ---- where an authorize runs --------------------------------------------------------
 *
 * An authorize NIF is a normal NIF. It first makes the non-blocking call of the C ABI
 * (kl_authorize_try, kl_authorize_http with "nonblocking": true) right there: a key
 * already verified in this process on a call that writes nothing, and every refusal that
 * needs no argon2, are answered in microseconds without leaving the scheduler. Only a call
 * that would block is rescheduled (enif_schedule_nif) with the same arguments: to a dirty
 * CPU scheduler when it needs argon2, to a dirty IO scheduler when it needs a commit. So
 * argon2 never occupies the dirty IO schedulers (file I/O of the whole VM runs there) and a
 * warm authorize never queues behind a cold one.
 *
 * The inline attempt is made only when every argument is a binary (read in place) and
 * they total at most INLINE_MAX_BYTES (a signed body is hashed): an iolist would be
 * flattened, a large body hashed, on the normal scheduler. Such a call goes to a dirty CPU
 * scheduler, which makes the non-blocking call there and moves on to dirty IO if a commit
 * is all it needs.
 */
enum { RUN_TRY = 0, RUN_BLOCK = 1 };
#define INLINE_MAX_BYTES (64 * 1024)

/* What a non-blocking call that answered KL_WOULD_BLOCK needs (argon2 when unsaid). */
static ERL_NIF_TERM would_block_of(uint32_t *would_block) {
    uint32_t needs = kl_last_would_block();
    *would_block = needs == KL_NEEDS_COMMIT ? KL_NEEDS_COMMIT : KL_NEEDS_ARGON2;
    return A_NIL;
}

static int inline_ok(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    size_t total = 0;
    for (int i = 1; i < argc; i++) {
        ErlNifBinary b;
        if (enif_is_binary(env, argv[i])) {
            if (!enif_inspect_binary(env, argv[i], &b)) return 0;
            total += b.size;
            if (total > INLINE_MAX_BYTES) return 0;
        } else if (enif_is_list(env, argv[i]) && !enif_is_empty_list(env, argv[i])) {
            return 0;
        }
    }
    return 1;
}

/*
 * The four stages of an authorize NIF `name` over `impl(env, argv, run, &needs)`:
 *   nif_name          normal scheduler: non-blocking call; would block -> cpu_block/io
 *   name_cpu_try      dirty CPU: non-blocking call; needs a commit -> io; argon2 -> here
 *   name_cpu_block    dirty CPU: the blocking call (argon2, then any commit)
 *   name_io           dirty IO: the blocking call (a commit)
 */
#define STAGED(name, impl)                                                               \
    static ERL_NIF_TERM name##_io(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) { \
        (void)argc;                                                                      \
        uint32_t needs = 0;                                                              \
        return impl(env, argv, RUN_BLOCK, &needs);                                       \
    }                                                                                    \
    static ERL_NIF_TERM name##_cpu_block(ErlNifEnv *env, int argc,                       \
                                         const ERL_NIF_TERM argv[]) {                    \
        (void)argc;                                                                      \
        uint32_t needs = 0;                                                              \
        return impl(env, argv, RUN_BLOCK, &needs);                                       \
    }                                                                                    \
    static ERL_NIF_TERM name##_cpu_try(ErlNifEnv *env, int argc,                         \
                                       const ERL_NIF_TERM argv[]) {                      \
        uint32_t needs = 0;                                                              \
        ERL_NIF_TERM t = impl(env, argv, RUN_TRY, &needs);                               \
        if (needs == 0) return t;                                                        \
        if (needs == KL_NEEDS_COMMIT)                                                    \
            return enif_schedule_nif(env, #name, ERL_NIF_DIRTY_JOB_IO_BOUND, name##_io,  \
                                     argc, argv);                                        \
        return impl(env, argv, RUN_BLOCK, &needs);                                       \
    }                                                                                    \
    static ERL_NIF_TERM nif_##name(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) { \
        if (!inline_ok(env, argc, argv))                                                 \
            return enif_schedule_nif(env, #name, ERL_NIF_DIRTY_JOB_CPU_BOUND,            \
                                     name##_cpu_try, argc, argv);                        \
        uint32_t needs = 0;                                                              \
        ERL_NIF_TERM t = impl(env, argv, RUN_TRY, &needs);                               \
        if (needs == 0) return t;                                                        \
        if (needs == KL_NEEDS_COMMIT)                                                    \
            return enif_schedule_nif(env, #name, ERL_NIF_DIRTY_JOB_IO_BOUND, name##_io,  \
                                     argc, argv);                                        \
        return enif_schedule_nif(env, #name, ERL_NIF_DIRTY_JOB_CPU_BOUND,                \
                                 name##_cpu_block, argc, argv);                          \
    }

/* The tightest applied rate limit of a grant: %{name, max, remaining, reset_ms} or nil. */
static ERL_NIF_TERM ratelimit_map(ErlNifEnv *env, const kl_grant *g) {
    if (!g->has_ratelimit) return A_NIL;
    ERL_NIF_TERM keys[4] = {A_NAME, A_MAX, A_REMAINING, A_RESET_MS};
    ERL_NIF_TERM vals[4] = {
        make_cstr(env, g->ratelimit_name),
        enif_make_uint64(env, g->ratelimit_limit),
        enif_make_uint64(env, g->ratelimit_remaining),
        enif_make_int64(env, g->ratelimit_reset_ms),
    };
    ERL_NIF_TERM map;
    if (!enif_make_map_from_arrays(env, keys, vals, 4, &map)) return A_NIL;
    return map;
}

/* %KeyLedger.Grant{}: every field of its defstruct (scopes and ratelimits only with
 * full: true, which goes through JSON instead). */
static ERL_NIF_TERM grant_map(ErlNifEnv *env, const kl_grant *g) {
    ERL_NIF_TERM keys[13] = {A_STRUCT,      A_ACCOUNT_ID, A_KEY_ID,   A_KEY_NAME,      A_PREFIX,
                             A_AUTH_METHOD, A_CHARGED,    A_CREDITS,  A_TOTAL_CREDITS, A_REPLAYED,
                             A_RATELIMIT,   A_SCOPES,     A_RATELIMITS};
    ERL_NIF_TERM vals[13] = {
        A_GRANT_MOD,
        make_cstr(env, g->account_id),
        make_cstr(env, g->key_id),
        make_cstr(env, g->key_name),
        make_cstr(env, g->prefix),
        g->auth_method == KL_AUTH_OPERATOR ? A_OPERATOR : A_APIKEY,
        enif_make_uint64(env, g->charged),
        enif_make_uint64(env, g->credits),
        enif_make_uint64(env, g->total_credits),
        g->replayed ? A_TRUE : A_FALSE,
        ratelimit_map(env, g),
        A_NIL,
        A_NIL,
    };
    ERL_NIF_TERM map;
    if (!enif_make_map_from_arrays(env, keys, vals, 13, &map)) return enif_make_badarg(env);
    return map;
}

/*
 * The options both authorize NIFs take at argv[4..11]: cost | nil, idempotency_key | nil,
 * signature | nil, body | nil, now_ms, full_json?, limits_json | nil, limit_cost | nil.
 * Fills `*o` (pointers into terms of `env`, valid for this NIF call) and `*full`; on bad
 * input returns the error term and leaves `*done` 0.
 */
static ERL_NIF_TERM read_authorize_opts(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                                        kl_authorize_opts *o, int *full, int *done) {
    *done = 0;
    /* All zero, and so is any field a later header adds (a `size` of 0 means the layout
     * this NIF was compiled against): every kl_grant / kl_authorize_opts here starts
     * zero-initialized. */
    memset(o, 0, sizeof *o);
    if (!enif_is_identical(argv[4], A_NIL)) {
        U64(4, cost, "cost");
        o->cost = cost;
        o->has_cost = 1;
    }
    OPT_STR(5, idem);
    OPT_STR(6, sig);
    OPT_STR(7, body);
    I64(8, now_ms, "now");
    if (enif_is_identical(argv[9], A_TRUE)) *full = 1;
    else if (enif_is_identical(argv[9], A_FALSE)) *full = 0;
    else return enif_make_badarg(env);
    OPT_STR(10, limits);
    if (!enif_is_identical(argv[11], A_NIL)) {
        U64(11, limit_cost, "limit_cost");
        o->limit_cost = limit_cost;
        o->has_limit_cost = 1;
    }
    o->limits_json = limits.ptr;
    o->limits_json_len = limits.len;
    o->idempotency_key = idem.ptr;
    o->idempotency_key_len = idem.len;
    o->signature = sig.ptr;
    o->signature_len = sig.len;
    o->body = (const uint8_t *)body.ptr;
    o->body_len = body.len;
    o->now_ms = now_ms;
    *done = 1;
    return A_NIL;
}

/* A boolean argument: 1 or 0, or -1 when `t` is not a boolean. */
static int get_bool(ERL_NIF_TERM t) {
    if (enif_is_identical(t, A_TRUE)) return 1;
    if (enif_is_identical(t, A_FALSE)) return 0;
    return -1;
}

/*
 * authorize(vault, token, method | nil, path | scope, cost | nil, idempotency_key | nil,
 *           signature | nil, body | nil, now_ms, full_json?, limits_json | nil,
 *           limit_cost | nil, refuse_replay?, query | nil)
 *
 * method nil: a scope authorization (kl_authorize_scope*). full_json? false: the grant
 * map is built here from kl_grant (no allocation in keyledger); true: the JSON grant
 * (with scopes and rate limits) is returned as {:ok, {:json, binary}}.
 */
static ERL_NIF_TERM authorize_impl(ErlNifEnv *env, const ERL_NIF_TERM argv[], int run,
                                   uint32_t *would_block) {
    VAULT(0);
    STR(1, token);
    OPT_STR(2, method);
    STR(3, target);
    kl_authorize_opts o = {0};
    int full = 0, done = 0;
    ERL_NIF_TERM err = read_authorize_opts(env, argv, &o, &full, &done);
    if (!done) return err;
    /* refuse_replay?: true refuses a replayed idempotency key (duplicate_request). */
    int refuse_replay = get_bool(argv[12]);
    if (refuse_replay < 0) return enif_make_badarg(env);
    o.refuse_replay = (uint8_t)refuse_replay;
    OPT_STR(13, query);
    o.query = query.ptr;
    o.query_len = query.len;

    kl_status st;
    if (full) {
        char *json = NULL;
        if (method.ptr == NULL)
            st = run == RUN_TRY ? kl_authorize_scope_json_try(r->v, token.ptr, token.len,
                                                               target.ptr, target.len, &o, &json)
                                : kl_authorize_scope_json(r->v, token.ptr, token.len,
                                                          target.ptr, target.len, &o, &json);
        else
            st = run == RUN_TRY
                     ? kl_authorize_json_try(r->v, token.ptr, token.len, method.ptr, method.len,
                                             target.ptr, target.len, &o, &json)
                     : kl_authorize_json(r->v, token.ptr, token.len, method.ptr, method.len,
                                         target.ptr, target.len, &o, &json);
        if (st == KL_WOULD_BLOCK) return would_block_of(would_block);
        if (st != KL_OK) return kl_error(env, st);
        return ok(env, enif_make_tuple2(env, enif_make_atom(env, "json"), take_json(env, json)));
    }
    kl_grant g = {0};
    if (method.ptr == NULL)
        st = run == RUN_TRY
                 ? kl_authorize_scope_try(r->v, token.ptr, token.len, target.ptr, target.len, &o, &g)
                 : kl_authorize_scope(r->v, token.ptr, token.len, target.ptr, target.len, &o, &g);
    else
        st = run == RUN_TRY ? kl_authorize_try(r->v, token.ptr, token.len, method.ptr, method.len,
                                               target.ptr, target.len, &o, &g)
                            : kl_authorize(r->v, token.ptr, token.len, method.ptr, method.len,
                                           target.ptr, target.len, &o, &g);
    if (st == KL_WOULD_BLOCK) return would_block_of(would_block);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, grant_map(env, &g));
}

STAGED(authorize, authorize_impl)

/*
 * authorize_request(vault, token, method, target, cost | nil, idempotency_key | nil,
 *                   signature | nil, body | nil, now_ms, full_json?, limits_json | nil,
 *                   limit_cost | nil, case_insensitive?, refuse_replay?)
 *
 * The HTTP gate (kl_authorize_request*): `target` is the raw request target as received,
 * decoded once by keyledger (ambiguous targets: KL_AMBIGUOUS_PATH). Results and
 * scheduling as authorize.
 */
static ERL_NIF_TERM authorize_request_impl(ErlNifEnv *env, const ERL_NIF_TERM argv[], int run,
                                           uint32_t *would_block) {
    VAULT(0);
    STR(1, token);
    STR(2, method);
    STR(3, target);
    kl_authorize_opts o = {0};
    int full = 0, done = 0;
    ERL_NIF_TERM err = read_authorize_opts(env, argv, &o, &full, &done);
    if (!done) return err;
    int insensitive = get_bool(argv[12]);
    /* refuse_replay?: true refuses a replayed idempotency key (duplicate_request). */
    int refuse_replay = get_bool(argv[13]);
    if (insensitive < 0 || refuse_replay < 0) return enif_make_badarg(env);
    o.case_insensitive = (uint8_t)insensitive;
    o.refuse_replay = (uint8_t)refuse_replay;

    kl_status st;
    if (full) {
        char *json = NULL;
        st = run == RUN_TRY
                 ? kl_authorize_request_json_try(r->v, token.ptr, token.len, method.ptr,
                                                 method.len, target.ptr, target.len, &o, &json)
                 : kl_authorize_request_json(r->v, token.ptr, token.len, method.ptr, method.len,
                                             target.ptr, target.len, &o, &json);
        if (st == KL_WOULD_BLOCK) return would_block_of(would_block);
        if (st != KL_OK) return kl_error(env, st);
        return ok(env, enif_make_tuple2(env, enif_make_atom(env, "json"), take_json(env, json)));
    }
    kl_grant g = {0};
    st = run == RUN_TRY ? kl_authorize_request_try(r->v, token.ptr, token.len, method.ptr,
                                                   method.len, target.ptr, target.len, &o, &g)
                        : kl_authorize_request(r->v, token.ptr, token.len, method.ptr, method.len,
                                               target.ptr, target.len, &o, &g);
    if (st == KL_WOULD_BLOCK) return would_block_of(would_block);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, grant_map(env, &g));
}

STAGED(authorize_request, authorize_request_impl)

/* A header value or body as bytes: nil is absent; a binary or an iolist. */
#define OPT_BYTES(i, name) OPT_STR(i, name)

/*
 * authorize_http(vault, method, target, authorization | nil, api_key | nil,
 *                signature | nil, idempotency_key | nil, body | nil, body_too_large?,
 *                options_json)
 *
 * The whole HTTP gate (kl_authorize_http): {:ok, {status, headers_json, body,
 * grant_json | nil}} for every decided request, granted or refused; {:error, map} only for
 * bad arguments. Scheduled like authorize.
 */
static ERL_NIF_TERM authorize_http_impl(ErlNifEnv *env, const ERL_NIF_TERM argv[], int run,
                                        uint32_t *would_block) {
    VAULT(0);
    STR(1, method);
    STR(2, target);
    OPT_BYTES(3, authorization);
    OPT_BYTES(4, api_key);
    OPT_BYTES(5, signature);
    OPT_BYTES(6, idempotency_key);
    OPT_BYTES(7, body);
    int too_large = get_bool(argv[8]);
    if (too_large < 0) return enif_make_badarg(env);
    STR(9, options);
    /* The non-blocking run adds "nonblocking":true to the options object (built by
     * KeyLedger.authorize_http/3, so an object without that field). */
    char *try_options = NULL;
    size_t try_len = 0;
    if (run == RUN_TRY) {
        static const char field[] = "{\"nonblocking\":true";
        size_t i = 0;
        while (i < options.len && (options.ptr[i] == ' ' || options.ptr[i] == '\n')) i++;
        if (i == options.len || options.ptr[i] != '{')
            return would_block_of(would_block); /* not an object: the blocking run says so */
        size_t rest = options.len - i - 1; /* after the '{' */
        int empty = 1;
        for (size_t j = i + 1; j < options.len; j++)
            if (options.ptr[j] != ' ' && options.ptr[j] != '\n' && options.ptr[j] != '}') {
                empty = 0;
                break;
            }
        try_len = sizeof field - 1 + (empty ? 0 : 1) + rest;
        try_options = enif_alloc(try_len);
        if (try_options == NULL) return would_block_of(would_block);
        memcpy(try_options, field, sizeof field - 1);
        size_t at = sizeof field - 1;
        if (!empty) try_options[at++] = ',';
        memcpy(try_options + at, options.ptr + i + 1, rest);
    }
    uint16_t status = 0;
    char *headers = NULL, *out_body = NULL, *grant = NULL;
    kl_status st = kl_authorize_http(
        r->v, method.ptr, method.len, (const uint8_t *)target.ptr, target.len,
        (const uint8_t *)authorization.ptr, authorization.len, (const uint8_t *)api_key.ptr,
        api_key.len, (const uint8_t *)signature.ptr, signature.len,
        (const uint8_t *)idempotency_key.ptr, idempotency_key.len, (const uint8_t *)body.ptr,
        body.len, (uint8_t)too_large, try_options ? try_options : options.ptr,
        try_options ? try_len : options.len, &status, &headers, &out_body, &grant);
    if (try_options) enif_free(try_options);
    if (st == KL_WOULD_BLOCK) return would_block_of(would_block);
    if (st != KL_OK) return kl_error(env, st);
    ERL_NIF_TERM g = grant == NULL ? A_NIL : take_json(env, grant);
    return ok(env, enif_make_tuple4(env, enif_make_uint(env, status), take_json(env, headers),
                                    take_json(env, out_body), g));
}

STAGED(authorize_http, authorize_http_impl)

/* http_credential(authorization | nil, api_key | nil): the token, by the gate's grammar. */
static ERL_NIF_TERM nif_http_credential(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    OPT_BYTES(0, authorization);
    OPT_BYTES(1, api_key);
    char *token = NULL;
    kl_status st = kl_http_credential((const uint8_t *)authorization.ptr, authorization.len,
                                      (const uint8_t *)api_key.ptr, api_key.len, &token);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, take_secret(env, token));
}

/* limit_owner(key_id | nil, account_id | nil): {:ok, owner_kind}; exactly one, checked by
 * the core (kl_limit_owner). */
static ERL_NIF_TERM nif_limit_owner(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    OPT_STR(0, key_id);
    OPT_STR(1, account_id);
    uint32_t kind = 0;
    kl_status st = kl_limit_owner(key_id.ptr, key_id.len, account_id.ptr, account_id.len, &kind);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, enif_make_uint(env, kind));
}

/* ---- management -------------------------------------------------------------------- */

typedef kl_status (*fn_v)(const kl_vault *, char **);
typedef kl_status (*fn_vs)(const kl_vault *, const char *, size_t, char **);

/* (vault) -> json */
static ERL_NIF_TERM call_v(ErlNifEnv *env, const ERL_NIF_TERM argv[], fn_v f) {
    VAULT(0);
    RESULT_JSON(f(r->v, &out_json));
}

/* (vault, string) -> json; optional: nil allowed */
static ERL_NIF_TERM call_vs(ErlNifEnv *env, const ERL_NIF_TERM argv[], fn_vs f, int optional) {
    VAULT(0);
    str_arg s;
    if (!(optional ? get_opt_str(env, argv[1], &s) : get_str(env, argv[1], &s)))
        return enif_make_badarg(env);
    RESULT_JSON(f(r->v, s.ptr, s.len, &out_json));
}

#define NIF_V(name, fn)                                                                  \
    static ERL_NIF_TERM nif_##name(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) { \
        (void)argc;                                                                      \
        return call_v(env, argv, fn);                                                    \
    }
#define NIF_VS(name, fn, optional)                                                       \
    static ERL_NIF_TERM nif_##name(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) { \
        (void)argc;                                                                      \
        return call_vs(env, argv, fn, optional);                                         \
    }

NIF_V(list_accounts, kl_list_accounts)
NIF_V(list_routes, kl_list_routes)
NIF_VS(account, kl_account, 0)
NIF_VS(balance, kl_balance, 0)
NIF_VS(key, kl_key, 0)
NIF_VS(revoke_key, kl_revoke_key, 0)
NIF_VS(disable_key, kl_disable_key, 0)
NIF_VS(enable_key, kl_enable_key, 0)
NIF_VS(usage, kl_usage, 0)
NIF_VS(whoami, kl_whoami, 0)
NIF_VS(list_keys, kl_list_keys, 1)
NIF_VS(audit, kl_audit, 1)

typedef kl_status (*fn_vsuo)(const kl_vault *, const char *, size_t, uint64_t, const char *,
                             size_t, char **);

/* (vault, id, amount, optional string) -> json */
static ERL_NIF_TERM call_vsuo(ErlNifEnv *env, const ERL_NIF_TERM argv[], fn_vsuo f) {
    VAULT(0);
    STR(1, id);
    U64(2, amount, "amount");
    OPT_STR(3, extra);
    RESULT_JSON(f(r->v, id.ptr, id.len, amount, extra.ptr, extra.len, &out_json));
}

static ERL_NIF_TERM nif_create_account(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    return call_vsuo(env, argv, kl_create_account);
}
static ERL_NIF_TERM nif_top_up(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    return call_vsuo(env, argv, kl_top_up);
}
static ERL_NIF_TERM nif_debit(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    return call_vsuo(env, argv, kl_debit);
}

/* Holds: (vault, account, amount, ttl_ms, idempotency_key | nil) -> hold json */
static ERL_NIF_TERM nif_hold(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, id);
    U64(2, amount, "amount");
    U64(3, ttl_ms, "ttl");
    OPT_STR(4, key);
    RESULT_JSON(kl_hold(r->v, id.ptr, id.len, amount, ttl_ms, key.ptr, key.len, &out_json));
}

/* (vault, hold_id, actual, allow_over?, idempotency_key | nil) -> hold json */
static ERL_NIF_TERM nif_settle(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, id);
    U64(2, actual, "actual");
    int allow_over = get_bool(argv[3]);
    if (allow_over < 0) return enif_make_badarg(env);
    OPT_STR(4, key);
    RESULT_JSON(kl_settle(r->v, id.ptr, id.len, actual, (uint8_t)allow_over, key.ptr, key.len,
                          &out_json));
}

NIF_VS(release, kl_release, 0)
NIF_VS(list_holds, kl_list_holds, 1)

/* A new key's three results: {token, signing_secret | nil, key_json}, all freed here. */
static ERL_NIF_TERM new_key(ErlNifEnv *env, char *token, char *secret, char *key_json) {
    ERL_NIF_TERM t = take_secret(env, token);
    ERL_NIF_TERM s = secret == NULL ? A_NIL : take_secret(env, secret);
    return ok(env, enif_make_tuple3(env, t, s, take_json(env, key_json)));
}

/* create_key(vault, spec_json) -> {token, signing_secret | nil, key_json} */
static ERL_NIF_TERM nif_create_key(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, spec);
    char *token = NULL, *secret = NULL, *key_json = NULL;
    kl_status st = kl_create_key_signing(r->v, spec.ptr, spec.len, &token, &secret, &key_json);
    if (st != KL_OK) return kl_error(env, st);
    return new_key(env, token, secret, key_json);
}

/* rotate_key(vault, key_id, grace_ms) -> {token, signing_secret | nil, key_json} */
static ERL_NIF_TERM nif_rotate_key(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, key_id);
    I64(2, grace_ms, "grace");
    if (grace_ms < 0) return invalid_arg(env, "grace must not be negative");
    char *token = NULL, *secret = NULL, *key_json = NULL;
    kl_status st = kl_rotate_key_signing(r->v, key_id.ptr, key_id.len, grace_ms, &token, &secret,
                                         &key_json);
    if (st != KL_OK) return kl_error(env, st);
    return new_key(env, token, secret, key_json);
}

/* set_scopes(vault, key_id, scopes_json) */
static ERL_NIF_TERM nif_set_scopes(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, key_id);
    STR(2, scopes);
    RESULT_JSON(kl_set_scopes(r->v, key_id.ptr, key_id.len, scopes.ptr, scopes.len, &out_json));
}

/* set_expiry(vault, key_id, expires_at_ms | nil) */
static ERL_NIF_TERM nif_set_expiry(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, key_id);
    uint8_t has = 0;
    int64_t at = 0;
    if (!enif_is_identical(argv[2], A_NIL)) {
        I64(2, v, "expires_at");
        has = 1;
        at = v;
    }
    RESULT_JSON(kl_set_expiry(r->v, key_id.ptr, key_id.len, has, at, &out_json));
}

/* add_route(vault, method, pattern, scope, cost) */
static ERL_NIF_TERM nif_add_route(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, method);
    STR(2, pattern);
    STR(3, scope);
    U64(4, cost, "cost");
    RESULT_JSON(kl_add_route(r->v, method.ptr, method.len, pattern.ptr, pattern.len, scope.ptr,
                             scope.len, cost, &out_json));
}

/* remove_route(vault, method, pattern) */
static ERL_NIF_TERM nif_remove_route(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, method);
    STR(2, pattern);
    RESULT_JSON(kl_remove_route(r->v, method.ptr, method.len, pattern.ptr, pattern.len,
                                &out_json));
}

/* match_route(vault, method, path) */
static ERL_NIF_TERM nif_match_route(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, method);
    STR(2, path);
    RESULT_JSON(kl_match_route(r->v, method.ptr, method.len, path.ptr, path.len, &out_json));
}

/* ---- rate limits and refills ----------------------------------------------- */

/* A small unsigned integer argument (an owner kind, an interval, a day): badarg unless an
 * integer; a negative or over-32-bit one is invalid_argument, and so is any value the C
 * ABI does not know (an owner kind other than 0/1, ...). */
#define UINT_ARG(i, name, what)                                                          \
    unsigned name;                                                                       \
    if (!enif_get_uint(env, argv[i], &name)) {                                           \
        if (enif_term_type(env, argv[i]) == ERL_NIF_TERM_TYPE_INTEGER)                   \
            return invalid_arg(env, what " is out of range");                            \
        return enif_make_badarg(env);                                                    \
    }

/* set_ratelimit(vault, owner_kind, owner_id, name, limit, duration_ms, auto_apply?) */
static ERL_NIF_TERM nif_set_ratelimit(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    UINT_ARG(1, kind, "owner kind");
    STR(2, owner);
    STR(3, name);
    U64(4, limit, "limit");
    U64(5, duration_ms, "duration");
    uint8_t auto_apply;
    if (enif_is_identical(argv[6], A_TRUE)) auto_apply = 1;
    else if (enif_is_identical(argv[6], A_FALSE)) auto_apply = 0;
    else return enif_make_badarg(env);
    RESULT_JSON(kl_set_ratelimit(r->v, kind, owner.ptr, owner.len, name.ptr, name.len, limit,
                                 duration_ms, auto_apply, &out_json));
}

/* remove_ratelimit(vault, owner_kind, owner_id, name) */
static ERL_NIF_TERM nif_remove_ratelimit(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    UINT_ARG(1, kind, "owner kind");
    STR(2, owner);
    STR(3, name);
    RESULT_JSON(kl_remove_ratelimit(r->v, kind, owner.ptr, owner.len, name.ptr, name.len,
                                    &out_json));
}

/* ratelimits(vault, owner_kind, owner_id) */
static ERL_NIF_TERM nif_ratelimits(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    UINT_ARG(1, kind, "owner kind");
    STR(2, owner);
    RESULT_JSON(kl_ratelimits(r->v, kind, owner.ptr, owner.len, &out_json));
}

/* set_refill(vault, account_id, amount, interval, day) */
static ERL_NIF_TERM nif_set_refill(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, id);
    U64(2, amount, "amount");
    UINT_ARG(3, interval, "interval");
    UINT_ARG(4, day, "day");
    if (day > 255) return invalid_arg(env, "day must be between 1 and 28");
    RESULT_JSON(kl_set_refill(r->v, id.ptr, id.len, amount, interval, (uint8_t)day, &out_json));
}

NIF_VS(clear_refill, kl_clear_refill, 0)

/* ---- master key and signing secrets --------------------------------------- */

/* reveal_signing_secret(vault, key_id) -> secret */
static ERL_NIF_TERM nif_reveal_signing_secret(ErlNifEnv *env, int argc,
                                              const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, key_id);
    char *secret = NULL;
    kl_status st = kl_reveal_signing_secret(r->v, key_id.ptr, key_id.len, &secret);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, take_secret(env, secret));
}

/* rekey(vault, new_master_key_b64) / rekey_passphrase(vault, passphrase) -> count */
static ERL_NIF_TERM nif_rekey(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, key);
    uint64_t n = 0;
    kl_status st = kl_rekey(r->v, key.ptr, key.len, &n);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, enif_make_uint64(env, n));
}

static ERL_NIF_TERM nif_rekey_passphrase(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    STR(1, passphrase);
    uint64_t n = 0;
    kl_status st = kl_rekey_passphrase(r->v, passphrase.ptr, passphrase.len, &n);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, enif_make_uint64(env, n));
}

static ERL_NIF_TERM nif_has_master_key(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    bool has = false;
    kl_status st = kl_has_master_key(r->v, &has);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, has ? A_TRUE : A_FALSE);
}

NIF_V(stats, kl_vault_stats)

/* set_argon2_params(vault, m_kib, t, p): audited; a commit, so on a dirty IO scheduler. */
static ERL_NIF_TERM nif_set_argon2_params(ErlNifEnv *env, int argc,
                                          const ERL_NIF_TERM argv[]) {
    (void)argc;
    VAULT(0);
    UINT_ARG(1, m_kib, "m_kib");
    UINT_ARG(2, t, "t");
    UINT_ARG(3, p, "p");
    kl_status st = kl_set_argon2_params(r->v, m_kib, t, p);
    if (st != KL_OK) return kl_error(env, st);
    return A_OK;
}

static ERL_NIF_TERM nif_generate_master_key(ErlNifEnv *env, int argc,
                                            const ERL_NIF_TERM argv[]) {
    (void)argc;
    (void)argv;
    char *b64 = NULL;
    kl_status st = kl_generate_master_key(&b64);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, take_secret(env, b64));
}

/* sign_request(secret, t_seconds, method, path, body) -> header */
static ERL_NIF_TERM nif_sign_request(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    STR(0, secret);
    I64(1, t, "t");
    STR(2, method);
    STR(3, path);
    STR(4, body);
    char *header = NULL;
    kl_status st = kl_sign_request(secret.ptr, secret.len, t, method.ptr, method.len, path.ptr,
                                   path.len, (const uint8_t *)body.ptr, body.len, &header);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, take_json(env, header));
}

/* sign_webhook(secret, body) -> hex (both any bytes) */
static ERL_NIF_TERM nif_sign_webhook(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    STR(0, secret);
    STR(1, body);
    char *hex = NULL;
    kl_status st = kl_sign_webhook((const uint8_t *)secret.ptr, secret.len,
                                   (const uint8_t *)body.ptr, body.len, &hex);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, take_json(env, hex));
}

/* verify_webhook(body, signature_hex, secret) -> boolean */
static ERL_NIF_TERM nif_verify_webhook(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    STR(0, body);
    STR(1, sig);
    STR(2, secret);
    return kl_verify_webhook((const uint8_t *)body.ptr, body.len, sig.ptr, sig.len,
                             (const uint8_t *)secret.ptr, secret.len)
               ? A_TRUE
               : A_FALSE;
}

/* ---- no vault ---------------------------------------------------------------------- */

static ERL_NIF_TERM nif_looks_like_key(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    STR(0, token);
    return kl_looks_like_key(token.ptr, token.len) ? A_TRUE : A_FALSE;
}

static ERL_NIF_TERM nif_redact(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    STR(0, token);
    char *out_json = NULL;
    kl_status st = kl_redact(token.ptr, token.len, &out_json);
    if (st != KL_OK) return kl_error(env, st);
    return ok(env, take_json(env, out_json));
}

static ERL_NIF_TERM nif_version(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    (void)argv;
    return make_cstr(env, kl_version());
}

#define IO ERL_NIF_DIRTY_JOB_IO_BOUND
#define CPU ERL_NIF_DIRTY_JOB_CPU_BOUND

static ErlNifFunc nif_funcs[] = {
    {"open", 2, nif_open, IO},
    {"close", 1, nif_close, IO},
    {"flush", 1, nif_flush, IO},
    /* normal NIFs: a non-blocking attempt inline, then dirty CPU (argon2) or IO (commit) */
    {"authorize", 14, nif_authorize, 0},
    {"authorize_request", 14, nif_authorize_request, 0},
    {"authorize_http", 10, nif_authorize_http, 0},
    {"http_credential", 2, nif_http_credential, 0},
    {"limit_owner", 2, nif_limit_owner, 0},
    {"whoami", 2, nif_whoami, IO},
    {"create_account", 4, nif_create_account, IO},
    {"account", 2, nif_account, IO},
    {"list_accounts", 1, nif_list_accounts, IO},
    {"top_up", 4, nif_top_up, IO},
    {"debit", 4, nif_debit, IO},
    {"balance", 2, nif_balance, IO},
    {"create_key", 2, nif_create_key, CPU},
    {"key", 2, nif_key, IO},
    {"list_keys", 2, nif_list_keys, IO},
    {"revoke_key", 2, nif_revoke_key, IO},
    {"disable_key", 2, nif_disable_key, IO},
    {"enable_key", 2, nif_enable_key, IO},
    {"set_scopes", 3, nif_set_scopes, IO},
    {"set_expiry", 3, nif_set_expiry, IO},
    {"rotate_key", 3, nif_rotate_key, CPU},
    {"usage", 2, nif_usage, IO},
    {"add_route", 5, nif_add_route, IO},
    {"remove_route", 3, nif_remove_route, IO},
    {"list_routes", 1, nif_list_routes, IO},
    {"match_route", 3, nif_match_route, IO},
    {"audit", 2, nif_audit, IO},
    {"set_ratelimit", 7, nif_set_ratelimit, IO},
    {"remove_ratelimit", 4, nif_remove_ratelimit, IO},
    {"ratelimits", 3, nif_ratelimits, IO},
    {"set_refill", 5, nif_set_refill, IO},
    {"clear_refill", 2, nif_clear_refill, IO},
    {"reveal_signing_secret", 2, nif_reveal_signing_secret, IO},
    {"rekey", 2, nif_rekey, IO},
    {"rekey_passphrase", 2, nif_rekey_passphrase, CPU},
    {"has_master_key", 1, nif_has_master_key, 0},
    {"stats", 1, nif_stats, 0},
    {"set_argon2_params", 4, nif_set_argon2_params, IO},
    {"generate_master_key", 0, nif_generate_master_key, 0},
    /* HMAC over a body of any size: dirty CPU, so a large body never blocks a scheduler. */
    {"sign_request", 5, nif_sign_request, CPU},
    {"sign_webhook", 2, nif_sign_webhook, CPU},
    {"verify_webhook", 3, nif_verify_webhook, CPU},
    {"looks_like_key", 1, nif_looks_like_key, 0},
    /* Holds. */
    {"hold", 5, nif_hold, IO},
    {"settle", 5, nif_settle, IO},
    {"release", 2, nif_release, IO},
    {"list_holds", 2, nif_list_holds, IO},
    {"redact", 1, nif_redact, 0},
    {"version", 0, nif_version, 0},
    {"closer_stats", 0, nif_closer_stats, 0},
};

ERL_NIF_INIT(Elixir.KeyLedger.Nif, nif_funcs, load, NULL, upgrade, unload)
