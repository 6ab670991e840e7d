/*
 * C tests of the keyledger ABI (include/keyledger.h), run by tests/c_abi.rs:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -Iinclude tests/c/test_keyledger.c \
 *      -Ltarget/debug -lkeyledger -lpthread -Wl,-rpath,target/debug -o test_keyledger
 *   ./test_keyledger /tmp/some/dir/vault.redb
 *
 * Prints one line per failed check and a final "c_abi: N passed, M failed"; exits non-zero
 * on any failure. Every string and token it receives is freed, so valgrind reports no leak.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyledger.h"

static int passed;
static int failed;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (cond) {                                                                      \
            passed++;                                                                    \
        } else {                                                                         \
            failed++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__,     \
                    #cond, kl_last_error_message());                                     \
        }                                                                                \
    } while (0)

/* A string literal as (pointer, length). */
#define S(lit) (lit), (sizeof(lit) - 1)
/* A NUL-terminated string as (pointer, length). */
#define Z(str) (str), strlen(str)

/* Out-parameters are preset to this and must be left alone by a failing call. */
static char sentinel_byte;
#define SENTINEL (&sentinel_byte)

static const char *OPTIONS = "{\"argon2\":{\"m_kib\":8,\"t\":1,\"p\":1},\"actor\":\"c-test\"}";

static int contains(const char *haystack, const char *needle) {
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* Copy the string value of "field" in a flat JSON document into buf. */
static int json_str(const char *json, const char *field, char *buf, size_t size) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":\"", field);
    const char *p = json ? strstr(json, key) : NULL;
    if (p == NULL) return 0;
    p += strlen(key);
    const char *end = strchr(p, '"');
    if (end == NULL || (size_t)(end - p) >= size) return 0;
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    return 1;
}

/* A refusal: its status, HTTP status, code string, message and JSON body. */
static void expect_error(kl_status got, kl_status want, uint16_t http, const char *code,
                         const char *body_needle) {
    CHECK(got == want);
    if (got != want) fprintf(stderr, "  got %u, want %u (%s)\n", got, want, code);
    CHECK(kl_status_http(got) == http);
    CHECK(strcmp(kl_status_code(got), code) == 0);
    const char *message = kl_last_error_message();
    CHECK(message != NULL && message[0] != '\0');
    char *body = SENTINEL;
    CHECK(kl_last_error_body(&body) == KL_OK);
    if (body == SENTINEL) body = NULL;
    char error_field[96];
    snprintf(error_field, sizeof error_field, "\"error\":\"%s\"", code);
    CHECK(contains(body, error_field));
    CHECK(contains(body, "\"success\":false"));
    if (body_needle != NULL) {
        CHECK(contains(body, body_needle));
        if (!contains(body, body_needle)) fprintf(stderr, "  body: %s\n", body ? body : "NULL");
    }
    kl_string_free(body);
}

static void expect_invalid(kl_status got) {
    CHECK(got == KL_INVALID_ARGUMENT);
    CHECK(kl_status_http(got) == 400);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t credits_of(kl_vault *v, const char *account) {
    char *json = NULL;
    kl_status st = kl_balance(v, Z(account), &json);
    CHECK(st == KL_OK);
    const char *p = json ? strstr(json, "\"credits\":") : NULL;
    uint64_t credits = p ? strtoull(p + strlen("\"credits\":"), NULL, 10) : UINT64_MAX;
    kl_string_free(json);
    return credits;
}

/* ------------------------------------------------------------------ threads */

#define THREADS 4
#define CHARGED_PER_THREAD 5
#define FREE_PER_THREAD 50

struct worker {
    kl_vault *vault;
    const char *token;
    int ok;
    int own_error_seen;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    w->ok = 0;
    for (int i = 0; i < FREE_PER_THREAD; i++) {
        kl_grant g;
        if (kl_authorize_scope(w->vault, Z(w->token), S("sms:send"), NULL, &g) == KL_OK &&
            g.charged == 0)
            w->ok++;
    }
    for (int i = 0; i < CHARGED_PER_THREAD; i++) {
        kl_grant g;
        if (kl_authorize(w->vault, Z(w->token), S("POST"), S("/api/v1/messaging/send"), NULL,
                         &g) == KL_OK &&
            g.charged == 1)
            w->ok++;
    }
    /* The last error is per thread: a refusal here is seen here, with its own message. */
    kl_grant g;
    if (kl_authorize(w->vault, S("kl_live_nope"), S("POST"), S("/api/v1/messaging/send"),
                     NULL, &g) == KL_INVALID_API_KEY &&
        strstr(kl_last_error_message(), "invalid API key") != NULL)
        w->own_error_seen = 1;
    return NULL;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s VAULT_PATH\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    kl_status st;
    char *json = NULL;
    char *token = NULL;
    char *key_json = NULL;

    /* ---- statics */
    CHECK(strlen(kl_version()) > 0);
    CHECK(strcmp(kl_status_code(KL_OK), "ok") == 0);
    CHECK(kl_status_http(KL_OK) == 200);
    CHECK(strcmp(kl_status_code(12345), "invalid_argument") == 0);
    CHECK(kl_status_http(12345) == 400);
    CHECK(strcmp(kl_status_code(KL_INVALID_SIGNATURE), "invalid_signature") == 0);
    CHECK(kl_status_http(KL_INVALID_SIGNATURE) == 401);
    CHECK(strcmp(kl_status_code(KL_RATE_LIMITED), "rate_limited") == 0);
    CHECK(kl_status_http(KL_RATE_LIMITED) == 429);
    CHECK(strcmp(kl_status_code(KL_VAULT_CLOSED), "vault_closed") == 0);
    CHECK(strcmp(kl_status_code(KL_PANIC), "panic") == 0);
    CHECK(kl_status_http(KL_PANIC) == 500);

    /* ---- open */
    kl_vault *v = (kl_vault *)SENTINEL;
    expect_invalid(kl_vault_open(NULL, 0, NULL, 0, &v));
    CHECK(v == (kl_vault *)SENTINEL);
    expect_invalid(kl_vault_open(Z(path), S("{\"bogus\":1}"), &v));
    CHECK(v == (kl_vault *)SENTINEL);
    CHECK(contains(kl_last_error_message(), "bogus"));
    expect_invalid(kl_vault_open(Z(path), S("{\"durability\":\"eventual\"}"), &v));
    expect_invalid(kl_vault_open(Z(path), Z(OPTIONS), NULL));
    v = NULL;
    st = kl_vault_open(Z(path), Z(OPTIONS), &v);
    CHECK(st == KL_OK);
    CHECK(v != NULL);
    if (v == NULL) {
        printf("c_abi: %d passed, %d failed\n", passed, failed);
        return 1;
    }
    /* Success clears the last error. */
    CHECK(kl_last_error_message()[0] == '\0');
    json = SENTINEL;
    CHECK(kl_last_error_body(&json) == KL_NOT_FOUND);
    CHECK(json == SENTINEL);

    /* ---- accounts and routes */
    st = kl_create_account(v, S("acct_42"), 3, S("{\"plan\":\"pro\"}"), &json);
    CHECK(st == KL_OK);
    CHECK(contains(json, "\"id\":\"acct_42\""));
    CHECK(contains(json, "\"credits\":3"));
    CHECK(contains(json, "\"plan\":\"pro\""));
    kl_string_free(json);

    json = SENTINEL;
    st = kl_create_account(v, S("acct_42"), 3, NULL, 0, &json);
    expect_error(st, KL_ALREADY_EXISTS, 409, "already_exists", NULL);
    CHECK(json == SENTINEL);
    expect_invalid(kl_create_account(v, S("acct_bad"), 0, S("[1,2]"), &json));
    expect_invalid(kl_create_account(v, S("acct_bad"), 0, S("{not json"), &json));

    st = kl_add_route(v, S("POST"), S("/api/v1/messaging/send"), S("sms:send"), 1, &json);
    CHECK(st == KL_OK);
    CHECK(contains(json, "\"scope\":\"sms:send\""));
    CHECK(contains(json, "\"cost\":1"));
    kl_string_free(json);
    st = kl_add_route(v, S("GET"), S("/api/v1/numbers/mine"), S("numbers:read"), 0, &json);
    CHECK(st == KL_OK);
    kl_string_free(json);
    st = kl_add_route(v, S("GET"), S("/tmp/*"), S("tmp:read"), 0, &json);
    CHECK(st == KL_OK);
    kl_string_free(json);
    json = SENTINEL;
    st = kl_add_route(v, S("GET"), S("/tmp/*"), S("tmp:read"), 0, &json);
    expect_error(st, KL_ALREADY_EXISTS, 409, "already_exists", NULL);
    CHECK(json == SENTINEL);

    /* ---- keys */
    token = SENTINEL;
    key_json = SENTINEL;
    st = kl_create_key(v, S("{\"account_id\":\"acct_42\",\"name\":\"server\",\"scopes\":[\"sms:send\"],\"prefix\":\"dial_live\",\"metadata\":{\"env\":\"test\"}}"),
                       &token, &key_json);
    CHECK(st == KL_OK);
    CHECK(token != SENTINEL && key_json != SENTINEL);
    if (st != KL_OK) {
        printf("c_abi: %d passed, %d failed\n", passed, failed);
        return 1;
    }
    char key_id[16] = "";
    CHECK(json_str(key_json, "key_id", key_id, sizeof key_id));
    CHECK(strlen(key_id) == 8);
    CHECK(contains(key_json, "\"prefix\":\"dial_live\""));
    CHECK(!contains(key_json, token));
    CHECK(strncmp(token, "dial_live_", 10) == 0);
    CHECK(kl_looks_like_key(Z(token)));
    CHECK(!kl_looks_like_key(S("dial_live_nope")));
    CHECK(!kl_looks_like_key(NULL, 0));
    CHECK(!kl_looks_like_key(S("\xff\xfe")));
    char *redacted = NULL;
    CHECK(kl_redact(Z(token), &redacted) == KL_OK);
    char expected_redacted[64];
    snprintf(expected_redacted, sizeof expected_redacted, "dial_live_%s_\xe2\x80\xa6", key_id);
    CHECK(redacted != NULL && strcmp(redacted, expected_redacted) == 0);
    kl_string_free(redacted);
    kl_string_free(key_json);
    expect_invalid(kl_create_key(v, S("{\"account_id\":\"acct_42\",\"name\":\"x\",\"scopes\":[],\"colour\":\"red\"}"), &token, &key_json));
    {
        char *t2 = SENTINEL, *k2 = SENTINEL;
        st = kl_create_key(v, S("{\"account_id\":\"nobody\",\"name\":\"x\",\"scopes\":[\"a\"]}"), &t2, &k2);
        expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
        CHECK(t2 == SENTINEL && k2 == SENTINEL);
    }

    /* ---- the happy path */
    kl_grant g;
    memset(&g, 0xAB, sizeof g);
    st = kl_authorize(v, Z(token), S("POST"), S("/api/v1/messaging/send"), NULL, &g);
    CHECK(st == KL_OK);
    CHECK(strcmp(g.account_id, "acct_42") == 0);
    CHECK(strcmp(g.key_id, key_id) == 0);
    CHECK(strcmp(g.prefix, "dial_live") == 0);
    CHECK(strcmp(g.key_name, "server") == 0);
    CHECK(g.auth_method == KL_AUTH_APIKEY);
    CHECK(g.charged == 1);
    CHECK(g.credits == 2);
    CHECK(g.total_credits == 3);
    CHECK(!g.replayed);
    CHECK(credits_of(v, "acct_42") == 2);
    CHECK(kl_last_error_message()[0] == '\0');

    /* Scope target, cost 0 by default. */
    st = kl_authorize_scope(v, Z(token), S("sms:send"), NULL, &g);
    CHECK(st == KL_OK);
    CHECK(g.charged == 0 && g.credits == 2);

    /* JSON variants carry everything. */
    json = NULL;
    st = kl_authorize_json(v, Z(token), S("POST"), S("/api/v1/messaging/send?x=1"), NULL, &json);
    CHECK(st == KL_OK);
    CHECK(contains(json, "\"scopes\":[\"sms:send\"]"));
    CHECK(contains(json, "\"auth_method\":\"apikey\""));
    CHECK(contains(json, "\"credits\":1"));
    kl_string_free(json);
    json = NULL;
    st = kl_authorize_scope_json(v, Z(token), S("sms:send"), NULL, &json);
    CHECK(st == KL_OK);
    CHECK(contains(json, "\"charged\":0"));
    kl_string_free(json);

    /* Idempotency: the repeat is replayed and charges nothing. */
    CHECK(kl_top_up(v, S("acct_42"), 10, S("invoice-1"), &json) == KL_OK);
    CHECK(contains(json, "\"credits\":11"));
    kl_string_free(json);
    kl_authorize_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.idempotency_key = "req-1";
    opts.idempotency_key_len = 5;
    st = kl_authorize(v, Z(token), S("POST"), S("/api/v1/messaging/send"), &opts, &g);
    CHECK(st == KL_OK && g.charged == 1 && g.credits == 10 && !g.replayed);
    st = kl_authorize(v, Z(token), S("POST"), S("/api/v1/messaging/send"), &opts, &g);
    CHECK(st == KL_OK && g.replayed);
    CHECK(credits_of(v, "acct_42") == 10);

    /* An explicit cost. */
    memset(&opts, 0, sizeof opts);
    opts.has_cost = 1;
    opts.cost = 4;
    st = kl_authorize(v, Z(token), S("POST"), S("/api/v1/messaging/send"), &opts, &g);
    CHECK(st == KL_OK && g.charged == 4 && g.credits == 6);

    /* ---- every refusal, with its status, HTTP status, code and body */
    kl_grant untouched;
    memset(&g, 0xAB, sizeof g);
    memcpy(&untouched, &g, sizeof g);

    st = kl_authorize(v, S("dial_live_nope"), S("POST"), S("/api/v1/messaging/send"), NULL, &g);
    expect_error(st, KL_INVALID_API_KEY, 401, "invalid_api_key", NULL);
    CHECK(memcmp(&g, &untouched, sizeof g) == 0);

    /* Same shape, wrong secret: still invalid_api_key, and the message names no secret. */
    {
        char wrong[128];
        snprintf(wrong, sizeof wrong, "%s", token);
        size_t n = strlen(wrong);
        wrong[n - 10] = wrong[n - 10] == 'A' ? 'B' : 'A';
        st = kl_authorize(v, Z(wrong), S("POST"), S("/api/v1/messaging/send"), NULL, &g);
        expect_error(st, KL_INVALID_API_KEY, 401, "invalid_api_key", NULL);
        CHECK(!contains(kl_last_error_message(), wrong));
        CHECK(!contains(kl_last_error_message(), token));
    }

    st = kl_authorize(v, Z(token), S("GET"), S("/nowhere"), NULL, &g);
    expect_error(st, KL_ROUTE_NOT_ALLOWED, 403, "route_not_allowed", NULL);
    CHECK(memcmp(&g, &untouched, sizeof g) == 0);

    st = kl_authorize(v, Z(token), S("GET"), S("/api/v1/numbers/mine"), NULL, &g);
    expect_error(st, KL_MISSING_SCOPE, 403, "missing_scope", "\"required\":\"numbers:read\"");
    CHECK(memcmp(&g, &untouched, sizeof g) == 0);

    memset(&opts, 0, sizeof opts);
    opts.has_cost = 1;
    opts.cost = 100;
    st = kl_authorize(v, Z(token), S("POST"), S("/api/v1/messaging/send"), &opts, &g);
    expect_error(st, KL_INSUFFICIENT_CREDITS, 402, "insufficient_credits", "\"credits\":6");
    expect_error(st, KL_INSUFFICIENT_CREDITS, 402, "insufficient_credits", "\"required\":100");
    CHECK(memcmp(&g, &untouched, sizeof g) == 0);
    CHECK(credits_of(v, "acct_42") == 6);

    json = SENTINEL;
    st = kl_debit(v, S("acct_42"), 7, NULL, 0, &json);
    expect_error(st, KL_INSUFFICIENT_CREDITS, 402, "insufficient_credits", "\"required\":7");
    CHECK(json == SENTINEL);
    st = kl_debit(v, S("acct_42"), 1, S("dash-1"), &json);
    CHECK(st == KL_OK && contains(json, "\"credits\":5"));
    kl_string_free(json);
    expect_invalid(kl_debit(v, S("acct_42"), 0, NULL, 0, &json));
    expect_invalid(kl_top_up(v, S("acct_42"), 0, NULL, 0, &json));

    CHECK(kl_disable_key(v, Z(key_id), &json) == KL_OK);
    CHECK(contains(json, "\"disabled\":true"));
    kl_string_free(json);
    st = kl_authorize(v, Z(token), S("POST"), S("/api/v1/messaging/send"), NULL, &g);
    expect_error(st, KL_API_KEY_INACTIVE, 401, "api_key_inactive", NULL);
    CHECK(kl_enable_key(v, Z(key_id), &json) == KL_OK);
    kl_string_free(json);

    int64_t expiry = now_ms() + 3600 * 1000;
    CHECK(kl_set_expiry(v, Z(key_id), 1, expiry, &json) == KL_OK);
    kl_string_free(json);
    memset(&opts, 0, sizeof opts);
    opts.now_ms = expiry + 1;
    st = kl_authorize_scope(v, Z(token), S("sms:send"), &opts, &g);
    expect_error(st, KL_API_KEY_EXPIRED, 401, "api_key_expired", NULL);
    CHECK(kl_set_expiry(v, Z(key_id), 0, 0, &json) == KL_OK);
    CHECK(contains(json, "\"expires_at\":null"));
    kl_string_free(json);
    st = kl_authorize_scope(v, Z(token), S("sms:send"), &opts, &g);
    CHECK(st == KL_OK);

    json = SENTINEL;
    st = kl_account(v, S("nobody"), &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    CHECK(json == SENTINEL);

    /* ---- management reads */
    CHECK(kl_account(v, S("acct_42"), &json) == KL_OK && contains(json, "\"total_credits\":13"));
    kl_string_free(json);
    CHECK(kl_list_accounts(v, &json) == KL_OK && contains(json, "acct_42") && json[0] == '[');
    kl_string_free(json);
    CHECK(kl_key(v, Z(key_id), &json) == KL_OK && contains(json, key_id));
    kl_string_free(json);
    CHECK(kl_list_keys(v, NULL, 0, &json) == KL_OK && contains(json, key_id));
    kl_string_free(json);
    CHECK(kl_list_keys(v, S("acct_42"), &json) == KL_OK && contains(json, key_id));
    kl_string_free(json);
    CHECK(kl_list_routes(v, &json) == KL_OK && contains(json, "/api/v1/messaging/send"));
    kl_string_free(json);
    CHECK(kl_match_route(v, S("GET"), S("/tmp/a/b"), &json) == KL_OK && contains(json, "tmp:read"));
    kl_string_free(json);
    CHECK(kl_match_route(v, S("DELETE"), S("/x"), &json) == KL_OK && json && strcmp(json, "null") == 0);
    kl_string_free(json);
    CHECK(kl_remove_route(v, S("GET"), S("/tmp/*"), &json) == KL_OK && contains(json, "tmp:read"));
    kl_string_free(json);
    json = SENTINEL;
    st = kl_remove_route(v, S("GET"), S("/tmp/*"), &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    CHECK(json == SENTINEL);
    CHECK(kl_whoami(v, Z(token), &json) == KL_OK && contains(json, "\"account_id\":\"acct_42\""));
    kl_string_free(json);
    st = kl_whoami(v, S("dial_live_nope"), &json);
    expect_error(st, KL_INVALID_API_KEY, 401, "invalid_api_key", NULL);
    CHECK(kl_vault_flush(v) == KL_OK);
    CHECK(kl_usage(v, Z(key_id), &json) == KL_OK && contains(json, "\"granted\":"));
    kl_string_free(json);
    CHECK(kl_audit(v, NULL, 0, &json) == KL_OK && json && json[0] == '[');
    CHECK(contains(json, "\"actor\":\"c-test\""));
    CHECK(!contains(json, token));
    kl_string_free(json);
    CHECK(kl_audit(v, S("{\"account_id\":\"acct_42\",\"action\":\"key_created\",\"limit\":5}"), &json) == KL_OK);
    CHECK(contains(json, "key_created") && !contains(json, "credits_added"));
    kl_string_free(json);
    expect_invalid(kl_audit(v, S("{\"colour\":1}"), &json));
    expect_invalid(kl_audit(v, S("{\"limit\":-1}"), &json));
    CHECK(kl_set_scopes(v, Z(key_id), S("[\"sms:send\",\"numbers:read\"]"), &json) == KL_OK);
    CHECK(contains(json, "numbers:read"));
    kl_string_free(json);
    CHECK(kl_authorize(v, Z(token), S("GET"), S("/api/v1/numbers/mine"), NULL, &g) == KL_OK);
    expect_invalid(kl_set_scopes(v, Z(key_id), S("\"sms:send\""), &json));

    /* Operator keys: every scope, never charged. */
    {
        char *op = NULL, *op_json = NULL;
        st = kl_create_key(v, S("{\"account_id\":\"acct_42\",\"name\":\"admin\",\"scopes\":[],\"operator\":true}"), &op, &op_json);
        CHECK(st == KL_OK);
        if (st == KL_OK) {
            st = kl_authorize(v, Z(op), S("POST"), S("/api/v1/messaging/send"), NULL, &g);
            CHECK(st == KL_OK && g.auth_method == KL_AUTH_OPERATOR && g.charged == 0);
            CHECK(strncmp(op, "kl_live_", 8) == 0);
        }
        kl_secret_free(op);
        kl_string_free(op_json);
    }

    /* ---- NULL pointers: KL_INVALID_ARGUMENT, out-parameters untouched */
    {
        char *o = SENTINEL, *o2 = SENTINEL;
        kl_grant gg;
        memset(&gg, 0xCD, sizeof gg);
        kl_grant gg0;
        memcpy(&gg0, &gg, sizeof gg);
#define NULL_CASE(call)                                                                  \
    do {                                                                                 \
        expect_invalid(call);                                                            \
        CHECK(o == SENTINEL && o2 == SENTINEL);                                          \
        CHECK(memcmp(&gg, &gg0, sizeof gg) == 0);                                        \
        CHECK(contains(kl_last_error_message(), "NULL"));                                \
    } while (0)
        NULL_CASE(kl_authorize(NULL, Z(token), S("POST"), S("/p"), NULL, &gg));
        NULL_CASE(kl_authorize(v, NULL, 0, S("POST"), S("/p"), NULL, &gg));
        NULL_CASE(kl_authorize(v, Z(token), NULL, 0, S("/p"), NULL, &gg));
        NULL_CASE(kl_authorize(v, Z(token), S("POST"), NULL, 0, NULL, &gg));
        NULL_CASE(kl_authorize(v, Z(token), S("POST"), S("/p"), NULL, NULL));
        NULL_CASE(kl_authorize(v, NULL, 5, S("POST"), S("/p"), NULL, &gg));
        NULL_CASE(kl_authorize_scope(NULL, Z(token), S("sms:send"), NULL, &gg));
        NULL_CASE(kl_authorize_scope(v, NULL, 0, S("sms:send"), NULL, &gg));
        NULL_CASE(kl_authorize_scope(v, Z(token), NULL, 0, NULL, &gg));
        NULL_CASE(kl_authorize_scope(v, Z(token), S("sms:send"), NULL, NULL));
        NULL_CASE(kl_authorize_json(NULL, Z(token), S("POST"), S("/p"), NULL, &o));
        NULL_CASE(kl_authorize_json(v, NULL, 0, S("POST"), S("/p"), NULL, &o));
        NULL_CASE(kl_authorize_json(v, Z(token), NULL, 0, S("/p"), NULL, &o));
        NULL_CASE(kl_authorize_json(v, Z(token), S("POST"), NULL, 0, NULL, &o));
        NULL_CASE(kl_authorize_json(v, Z(token), S("POST"), S("/p"), NULL, NULL));
        NULL_CASE(kl_authorize_scope_json(NULL, Z(token), S("sms:send"), NULL, &o));
        NULL_CASE(kl_authorize_scope_json(v, NULL, 0, S("sms:send"), NULL, &o));
        NULL_CASE(kl_authorize_scope_json(v, Z(token), NULL, 0, NULL, &o));
        NULL_CASE(kl_authorize_scope_json(v, Z(token), S("sms:send"), NULL, NULL));
        {
            kl_authorize_opts bad;
            memset(&bad, 0, sizeof bad);
            bad.idempotency_key_len = 3; /* NULL with a length */
            NULL_CASE(kl_authorize(v, Z(token), S("POST"), S("/p"), &bad, &gg));
        }
        NULL_CASE(kl_vault_flush(NULL));
        NULL_CASE(kl_vault_close(NULL));
        NULL_CASE(kl_create_account(NULL, S("a"), 0, NULL, 0, &o));
        NULL_CASE(kl_create_account(v, NULL, 0, 0, NULL, 0, &o));
        NULL_CASE(kl_create_account(v, S("acct_null"), 0, NULL, 0, NULL));
        NULL_CASE(kl_account(NULL, S("acct_42"), &o));
        NULL_CASE(kl_account(v, NULL, 0, &o));
        NULL_CASE(kl_account(v, S("acct_42"), NULL));
        NULL_CASE(kl_list_accounts(NULL, &o));
        NULL_CASE(kl_list_accounts(v, NULL));
        NULL_CASE(kl_top_up(NULL, S("acct_42"), 1, NULL, 0, &o));
        NULL_CASE(kl_top_up(v, NULL, 0, 1, NULL, 0, &o));
        NULL_CASE(kl_top_up(v, S("acct_42"), 1, NULL, 0, NULL));
        NULL_CASE(kl_debit(NULL, S("acct_42"), 1, NULL, 0, &o));
        NULL_CASE(kl_debit(v, NULL, 0, 1, NULL, 0, &o));
        NULL_CASE(kl_debit(v, S("acct_42"), 1, NULL, 0, NULL));
        NULL_CASE(kl_balance(NULL, S("acct_42"), &o));
        NULL_CASE(kl_balance(v, NULL, 0, &o));
        NULL_CASE(kl_balance(v, S("acct_42"), NULL));
        NULL_CASE(kl_create_key(NULL, S("{}"), &o, &o2));
        NULL_CASE(kl_create_key(v, NULL, 0, &o, &o2));
        NULL_CASE(kl_create_key(v, S("{\"account_id\":\"acct_42\",\"name\":\"n\",\"scopes\":[\"a\"]}"), NULL, &o2));
        NULL_CASE(kl_create_key(v, S("{\"account_id\":\"acct_42\",\"name\":\"n\",\"scopes\":[\"a\"]}"), &o, NULL));
        NULL_CASE(kl_key(NULL, Z(key_id), &o));
        NULL_CASE(kl_key(v, NULL, 0, &o));
        NULL_CASE(kl_key(v, Z(key_id), NULL));
        NULL_CASE(kl_list_keys(NULL, NULL, 0, &o));
        NULL_CASE(kl_list_keys(v, NULL, 0, NULL));
        NULL_CASE(kl_revoke_key(NULL, Z(key_id), &o));
        NULL_CASE(kl_revoke_key(v, NULL, 0, &o));
        NULL_CASE(kl_revoke_key(v, Z(key_id), NULL));
        NULL_CASE(kl_disable_key(NULL, Z(key_id), &o));
        NULL_CASE(kl_disable_key(v, NULL, 0, &o));
        NULL_CASE(kl_disable_key(v, Z(key_id), NULL));
        NULL_CASE(kl_enable_key(NULL, Z(key_id), &o));
        NULL_CASE(kl_enable_key(v, NULL, 0, &o));
        NULL_CASE(kl_enable_key(v, Z(key_id), NULL));
        NULL_CASE(kl_set_scopes(NULL, Z(key_id), S("[]"), &o));
        NULL_CASE(kl_set_scopes(v, NULL, 0, S("[]"), &o));
        NULL_CASE(kl_set_scopes(v, Z(key_id), NULL, 0, &o));
        NULL_CASE(kl_set_scopes(v, Z(key_id), S("[]"), NULL));
        NULL_CASE(kl_set_expiry(NULL, Z(key_id), 0, 0, &o));
        NULL_CASE(kl_set_expiry(v, NULL, 0, 0, 0, &o));
        NULL_CASE(kl_set_expiry(v, Z(key_id), 0, 0, NULL));
        NULL_CASE(kl_rotate_key(NULL, Z(key_id), 0, &o, &o2));
        NULL_CASE(kl_rotate_key(v, NULL, 0, 0, &o, &o2));
        NULL_CASE(kl_rotate_key(v, Z(key_id), 0, NULL, &o2));
        NULL_CASE(kl_rotate_key(v, Z(key_id), 0, &o, NULL));
        NULL_CASE(kl_add_route(NULL, S("GET"), S("/n"), S("n:read"), 0, &o));
        NULL_CASE(kl_add_route(v, NULL, 0, S("/n"), S("n:read"), 0, &o));
        NULL_CASE(kl_add_route(v, S("GET"), NULL, 0, S("n:read"), 0, &o));
        NULL_CASE(kl_add_route(v, S("GET"), S("/n"), NULL, 0, 0, &o));
        NULL_CASE(kl_add_route(v, S("GET"), S("/n"), S("n:read"), 0, NULL));
        NULL_CASE(kl_remove_route(NULL, S("GET"), S("/n"), &o));
        NULL_CASE(kl_remove_route(v, NULL, 0, S("/n"), &o));
        NULL_CASE(kl_remove_route(v, S("GET"), NULL, 0, &o));
        NULL_CASE(kl_remove_route(v, S("GET"), S("/n"), NULL));
        NULL_CASE(kl_list_routes(NULL, &o));
        NULL_CASE(kl_list_routes(v, NULL));
        NULL_CASE(kl_match_route(NULL, S("GET"), S("/n"), &o));
        NULL_CASE(kl_match_route(v, NULL, 0, S("/n"), &o));
        NULL_CASE(kl_match_route(v, S("GET"), NULL, 0, &o));
        NULL_CASE(kl_match_route(v, S("GET"), S("/n"), NULL));
        NULL_CASE(kl_audit(NULL, NULL, 0, &o));
        NULL_CASE(kl_audit(v, NULL, 0, NULL));
        NULL_CASE(kl_usage(NULL, Z(key_id), &o));
        NULL_CASE(kl_usage(v, NULL, 0, &o));
        NULL_CASE(kl_usage(v, Z(key_id), NULL));
        NULL_CASE(kl_whoami(NULL, Z(token), &o));
        NULL_CASE(kl_whoami(v, NULL, 0, &o));
        NULL_CASE(kl_whoami(v, Z(token), NULL));
        NULL_CASE(kl_redact(NULL, 0, &o));
        NULL_CASE(kl_redact(Z(token), NULL));
        NULL_CASE(kl_vault_open(NULL, 0, NULL, 0, (kl_vault **)&o));
        NULL_CASE(kl_vault_open(Z(path), NULL, 0, NULL));
        CHECK(kl_last_error_body(NULL) == KL_INVALID_ARGUMENT);
#undef NULL_CASE
        /* None of the NULL calls changed anything. */
        CHECK(credits_of(v, "acct_42") == 5);
    }

    /* ---- invalid UTF-8, oversized input, a 10 KB token */
    {
        char *o = SENTINEL;
        expect_invalid(kl_account(v, S("\xff\xfe"), &o));
        CHECK(o == SENTINEL);
        CHECK(contains(kl_last_error_message(), "UTF-8"));
        expect_invalid(kl_authorize(v, S("\xff\xfe"), S("POST"), S("/api/v1/messaging/send"), NULL, &g));
        expect_invalid(kl_authorize(v, Z(token), S("POST"), S("/api/\xff"), NULL, &g));
        expect_invalid(kl_create_key(v, S("{\"account_id\":\"\xff\"}"), &o, &o));
        expect_invalid(kl_redact(S("\xc3\x28"), &o));
        CHECK(o == SENTINEL);

        size_t big_len = (size_t)KL_MAX_INPUT_LEN + 1;
        char *big = malloc(big_len);
        CHECK(big != NULL);
        if (big != NULL) {
            memset(big, 'a', big_len);
            expect_invalid(kl_authorize(v, big, big_len, S("POST"), S("/api/v1/messaging/send"), NULL, &g));
            CHECK(contains(kl_last_error_message(), "longer than"));
            expect_invalid(kl_create_account(v, big, big_len, 0, NULL, 0, &o));
            expect_invalid(kl_audit(v, big, big_len, &o));
            expect_invalid(kl_redact(big, big_len, &o));
            CHECK(!kl_looks_like_key(big, big_len));
            CHECK(o == SENTINEL);
            free(big);
        }

        char ten_kb[10 * 1024];
        memset(ten_kb, 'k', sizeof ten_kb);
        memcpy(ten_kb, "dial_live_", 10);
        st = kl_authorize(v, ten_kb, sizeof ten_kb, S("POST"), S("/api/v1/messaging/send"), NULL, &g);
        expect_error(st, KL_INVALID_API_KEY, 401, "invalid_api_key", NULL);
        CHECK(!contains(kl_last_error_message(), "kkkkkkkk"));
    }

    /* ---- several threads authorizing on one handle */
    {
        CHECK(kl_top_up(v, S("acct_42"), 1000, NULL, 0, &json) == KL_OK);
        kl_string_free(json);
        uint64_t before = credits_of(v, "acct_42");
        pthread_t threads[THREADS];
        struct worker workers[THREADS];
        for (int i = 0; i < THREADS; i++) {
            workers[i].vault = v;
            workers[i].token = token;
            workers[i].ok = 0;
            workers[i].own_error_seen = 0;
            CHECK(pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(threads[i], NULL);
            CHECK(workers[i].ok == FREE_PER_THREAD + CHARGED_PER_THREAD);
            CHECK(workers[i].own_error_seen);
        }
        CHECK(credits_of(v, "acct_42") == before - THREADS * CHARGED_PER_THREAD);
        /* Another thread's refusal did not become this thread's last error. */
        CHECK(kl_last_error_message()[0] == '\0');
    }

    /* ---- rotation and revocation */
    {
        char *new_token = SENTINEL, *new_json = SENTINEL;
        st = kl_rotate_key(v, Z(key_id), 0, &new_token, &new_json);
        CHECK(st == KL_OK);
        if (st == KL_OK) {
            char new_id[16] = "";
            CHECK(json_str(new_json, "key_id", new_id, sizeof new_id));
            CHECK(strcmp(new_id, key_id) != 0);
            CHECK(contains(new_json, "\"rotated_from\""));
            CHECK(kl_authorize_scope(v, Z(new_token), S("sms:send"), NULL, &g) == KL_OK);
            CHECK(strcmp(g.key_id, new_id) == 0);
            st = kl_authorize_scope(v, Z(token), S("sms:send"), NULL, &g);
            CHECK(st == KL_API_KEY_EXPIRED || st == KL_INVALID_API_KEY);
            CHECK(kl_revoke_key(v, Z(new_id), &json) == KL_OK);
            CHECK(contains(json, "\"revoked_at\":") && !contains(json, "\"revoked_at\":null"));
            kl_string_free(json);
            st = kl_authorize_scope(v, Z(new_token), S("sms:send"), NULL, &g);
            expect_error(st, KL_INVALID_API_KEY, 401, "invalid_api_key", NULL);
            kl_secret_free(new_token);
            kl_string_free(new_json);
        }
        json = SENTINEL;
        st = kl_rotate_key(v, S("zzzzzzzz"), 0, &new_token, &json);
        expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    }

    /* ---- close: later calls are an error, not a crash */
    CHECK(kl_vault_close(v) == KL_OK);
    memset(&g, 0xAB, sizeof g);
    st = kl_authorize(v, Z(token), S("POST"), S("/api/v1/messaging/send"), NULL, &g);
    expect_error(st, KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    CHECK(memcmp(&g, &untouched, sizeof g) == 0);
    json = SENTINEL;
    st = kl_account(v, S("acct_42"), &json);
    expect_error(st, KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    CHECK(json == SENTINEL);
    st = kl_create_key(v, S("{\"account_id\":\"acct_42\",\"name\":\"n\",\"scopes\":[\"a\"]}"), &json, &json);
    expect_error(st, KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    expect_error(kl_vault_flush(v), KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    CHECK(kl_vault_close(v) == KL_OK);
    kl_vault_free(v);

    /* The data survived: reopen and read it. */
    v = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v != NULL) {
        CHECK(credits_of(v, "acct_42") == 1005 - THREADS * CHARGED_PER_THREAD);
        kl_vault_free(v); /* without close: free closes */
    }

    /* ---- no-op frees */
    kl_vault_free(NULL);
    kl_string_free(NULL);
    kl_secret_free(NULL);
    CHECK(1);

    kl_secret_free(token);

    printf("c_abi: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
