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
#include <stddef.h>
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
        kl_grant g = KL_GRANT_INIT;
        if (kl_authorize_scope(w->vault, Z(w->token), S("sms:send"), NULL, &g) == KL_OK &&
            g.charged == 0)
            w->ok++;
    }
    for (int i = 0; i < CHARGED_PER_THREAD; i++) {
        kl_grant g = KL_GRANT_INIT;
        if (kl_authorize(w->vault, Z(w->token), S("POST"), S("/api/v1/messaging/send"), NULL,
                         &g) == KL_OK &&
            g.charged == 1)
            w->ok++;
    }
    /* The last error is per thread: a refusal here is seen here, with its own message. */
    kl_grant g = KL_GRANT_INIT;
    if (kl_authorize(w->vault, S("kl_live_nope"), S("POST"), S("/api/v1/messaging/send"),
                     NULL, &g) == KL_INVALID_API_KEY &&
        strstr(kl_last_error_message(), "invalid API key") != NULL)
        w->own_error_seen = 1;
    return NULL;
}

/* ------------------------------------------------------------------ signing */

static int is_lower_hex(const char *s, size_t n) {
    if (s == NULL || strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned int b = 0;
        sscanf(hex + 2 * i, "%2x", &b);
        out[i] = (uint8_t)b;
    }
}

/* RFC 4231 HMAC-SHA256 cases 1, 2, 3 and 6 (the same as tests/vectors/rfc4231.json). */
static void test_webhooks(void) {
    struct {
        uint8_t key[131];
        size_t key_len;
        uint8_t data[160];
        size_t data_len;
        const char *mac;
    } cases[4];
    memset(cases, 0, sizeof cases);
    memset(cases[0].key, 0x0b, 20);
    cases[0].key_len = 20;
    memcpy(cases[0].data, "Hi There", 8);
    cases[0].data_len = 8;
    cases[0].mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
    memcpy(cases[1].key, "Jefe", 4);
    cases[1].key_len = 4;
    memcpy(cases[1].data, "what do ya want for nothing?", 28);
    cases[1].data_len = 28;
    cases[1].mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    memset(cases[2].key, 0xaa, 20);
    cases[2].key_len = 20;
    memset(cases[2].data, 0xdd, 50);
    cases[2].data_len = 50;
    cases[2].mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";
    static const char long_data[] =
        "This is a test using a larger than block-size key and a larger than block-size data. "
        "The key needs to be hashed before being used by the HMAC algorithm.";
    memset(cases[3].key, 0xaa, 131);
    cases[3].key_len = 131;
    memcpy(cases[3].data, long_data, sizeof long_data - 1);
    cases[3].data_len = sizeof long_data - 1;
    cases[3].mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";

    for (int i = 0; i < 4; i++) {
        char *hex = NULL;
        CHECK(kl_sign_webhook(cases[i].key, cases[i].key_len, cases[i].data, cases[i].data_len,
                              &hex) == KL_OK);
        CHECK(hex != NULL && strcmp(hex, cases[i].mac) == 0);
        if (hex == NULL || strcmp(hex, cases[i].mac) != 0)
            fprintf(stderr, "  case %d: got %s\n", i, hex ? hex : "NULL");
        kl_string_free(hex);
        CHECK(kl_verify_webhook(cases[i].data, cases[i].data_len, Z(cases[i].mac),
                                cases[i].key, cases[i].key_len));
        char upper[65];
        for (int j = 0; j < 64; j++) {
            char c = cases[i].mac[j];
            upper[j] = (c >= 'a' && c <= 'f') ? (char)(c - 32) : c;
        }
        upper[64] = '\0';
        CHECK(kl_verify_webhook(cases[i].data, cases[i].data_len, Z(upper), cases[i].key,
                                cases[i].key_len));
        /* Another body, another secret, a cut signature: false. */
        CHECK(!kl_verify_webhook(cases[i].data, cases[i].data_len - 1, Z(cases[i].mac),
                                 cases[i].key, cases[i].key_len));
        CHECK(!kl_verify_webhook(cases[i].data, cases[i].data_len, Z(cases[i].mac),
                                 cases[i].key, cases[i].key_len - 1));
        CHECK(!kl_verify_webhook(cases[i].data, cases[i].data_len, cases[i].mac, 63,
                                 cases[i].key, cases[i].key_len));
    }
    /* A hex-decoded key gives the same (the vector file's encoding). */
    {
        uint8_t key[4];
        hex_to_bytes("4a656665", key, 4);
        CHECK(kl_verify_webhook((const uint8_t *)"what do ya want for nothing?", 28,
                                Z(cases[1].mac), key, 4));
    }

    /* An empty body may be NULL with length 0; a NULL secret is refused. */
    char *a = NULL, *b = NULL;
    CHECK(kl_sign_webhook((const uint8_t *)"k", 1, NULL, 0, &a) == KL_OK);
    CHECK(kl_sign_webhook((const uint8_t *)"k", 1, (const uint8_t *)"", 0, &b) == KL_OK);
    CHECK(a != NULL && b != NULL && strcmp(a, b) == 0 && is_lower_hex(a, 64));
    CHECK(kl_verify_webhook(NULL, 0, Z(a), (const uint8_t *)"k", 1));
    kl_string_free(b);
    char *o = SENTINEL;
    expect_invalid(kl_sign_webhook(NULL, 0, (const uint8_t *)"b", 1, &o));
    expect_invalid(kl_sign_webhook(NULL, 3, (const uint8_t *)"b", 1, &o));
    expect_invalid(kl_sign_webhook((const uint8_t *)"k", 1, NULL, 4, &o));
    expect_invalid(kl_sign_webhook((const uint8_t *)"k", 1, (const uint8_t *)"b", 1, NULL));
    CHECK(o == SENTINEL);
    /* Secrets and bodies are bytes: invalid UTF-8 is fine there. */
    CHECK(kl_sign_webhook((const uint8_t *)"\xff\xfe", 2, (const uint8_t *)"\xc3\x28", 2, &o) ==
          KL_OK);
    kl_string_free(o);
    /* verify never fails loudly: every malformed input is false. */
    CHECK(!kl_verify_webhook(NULL, 0, NULL, 0, NULL, 0));
    CHECK(!kl_verify_webhook(NULL, 0, Z(a), NULL, 0));
    CHECK(!kl_verify_webhook(NULL, 0, NULL, 0, (const uint8_t *)"k", 1));
    CHECK(!kl_verify_webhook(NULL, 5, Z(a), (const uint8_t *)"k", 1));
    CHECK(!kl_verify_webhook(NULL, 0, NULL, 64, (const uint8_t *)"k", 1));
    CHECK(!kl_verify_webhook(NULL, 0, Z(a), NULL, 1));
    CHECK(!kl_verify_webhook(NULL, 0, S("\xff\xfe"), (const uint8_t *)"k", 1));
    CHECK(!kl_verify_webhook(NULL, 0, S("zz"), (const uint8_t *)"k", 1));
    CHECK(!kl_verify_webhook(NULL, 0, S(""), (const uint8_t *)"k", 1));
    kl_string_free(a);
}

static kl_vault *open_signing(const char *path, const char *master_b64, kl_status *st) {
    char options[256];
    snprintf(options, sizeof options,
             "{\"argon2\":{\"m_kib\":8,\"t\":1,\"p\":1},\"master_key\":\"%s\","
             "\"signature_window_ms\":300000,\"throttle\":{\"burst\":5,\"per_second\":0.5}}",
             master_b64);
    kl_vault *v = NULL;
    *st = kl_vault_open(Z(path), Z(options), &v);
    return *st == KL_OK ? v : NULL;
}

static void test_signing(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.signing", base_path);
    kl_status st;
    char *json = NULL;

    /* ---- master keys */
    char *master = SENTINEL, *master2 = NULL;
    expect_invalid(kl_generate_master_key(NULL));
    CHECK(kl_generate_master_key(&master) == KL_OK);
    CHECK(master != SENTINEL && strlen(master) == 44 && master[43] == '=');
    CHECK(kl_generate_master_key(&master2) == KL_OK);
    CHECK(master2 != NULL && strcmp(master, master2) != 0);

    /* ---- bad open options */
    {
        kl_vault *bad = (kl_vault *)SENTINEL;
        expect_invalid(kl_vault_open(Z(path), S("{\"master_key\":\"c2hvcnQ=\"}"), &bad));
        CHECK(!contains(kl_last_error_message(), "c2hvcnQ"));
        expect_invalid(kl_vault_open(Z(path), S("{\"master_key\":\"not base64!!\"}"), &bad));
        CHECK(!contains(kl_last_error_message(), "base64!!"));
        expect_invalid(kl_vault_open(Z(path), S("{\"master_key\":42}"), &bad));
        char both[256];
        snprintf(both, sizeof both, "{\"master_key\":\"%s\",\"master_passphrase\":\"pw\"}", master);
        expect_invalid(kl_vault_open(Z(path), Z(both), &bad));
        CHECK(!contains(kl_last_error_message(), master));
        expect_invalid(kl_vault_open(Z(path), S("{\"signature_window_ms\":0}"), &bad));
        expect_invalid(kl_vault_open(Z(path), S("{\"throttle\":{\"per_second\":-1}}"), &bad));
        expect_invalid(kl_vault_open(Z(path), S("{\"throttle\":{\"rate\":1}}"), &bad));
        expect_invalid(kl_vault_open(Z(path), S("{\"master_passphrase\":\"\xff\"}"), &bad));
        CHECK(bad == (kl_vault *)SENTINEL);
    }

    kl_vault *v = open_signing(path, master, &st);
    CHECK(st == KL_OK && v != NULL);
    if (v == NULL) {
        kl_secret_free(master);
        kl_secret_free(master2);
        return;
    }
    bool has = false;
    CHECK(kl_has_master_key(v, &has) == KL_OK && has);
    CHECK(kl_vault_stats(v, &json) == KL_OK);
    CHECK(contains(json, "\"argon2_runs\":") && contains(json, "\"read_txns\":"));
    CHECK(contains(json, "\"commits\":") && contains(json, "\"throttled\":0"));
    CHECK(contains(json, "\"cache_mode\":\"shared\""));
    kl_string_free(json);

    CHECK(kl_create_account(v, S("acct_s"), 10, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    CHECK(kl_add_route(v, S("POST"), S("/v1/send"), S("sms:send"), 1, &json) == KL_OK);
    kl_string_free(json);

    /* ---- a signing key: token, secret and info, all three */
    char *token = SENTINEL, *secret = SENTINEL, *key_json = SENTINEL;
    st = kl_create_key_signing(
        v, S("{\"account_id\":\"acct_s\",\"name\":\"signed\",\"scopes\":[\"sms:send\"],\"signing\":true}"),
        &token, &secret, &key_json);
    CHECK(st == KL_OK);
    if (st != KL_OK) {
        kl_vault_free(v);
        kl_secret_free(master);
        kl_secret_free(master2);
        return;
    }
    CHECK(is_lower_hex(secret, 64));
    CHECK(contains(key_json, "\"signing\":true"));
    CHECK(!contains(key_json, secret));
    char key_id[16] = "";
    CHECK(json_str(key_json, "key_id", key_id, sizeof key_id));
    kl_string_free(key_json);

    /* A key that does not sign: the secret out-parameter is set to NULL. */
    {
        char *t = NULL, *s = SENTINEL, *k = NULL;
        st = kl_create_key_signing(v, S("{\"account_id\":\"acct_s\",\"name\":\"plain\",\"scopes\":[\"sms:send\"]}"),
                                   &t, &s, &k);
        CHECK(st == KL_OK && t != NULL && s == NULL && contains(k, "\"signing\":false"));
        /* It needs no signature. */
        kl_grant g = KL_GRANT_INIT;
        CHECK(kl_authorize(v, Z(t), S("POST"), S("/v1/send"), NULL, &g) == KL_OK && g.charged == 1);
        kl_secret_free(t);
        kl_string_free(k);
    }
    /* kl_create_key makes signing keys too; the secret is recoverable with reveal. */
    char other_id[16] = "";
    {
        char *t = NULL, *k = NULL;
        st = kl_create_key(v, S("{\"account_id\":\"acct_s\",\"name\":\"quiet\",\"scopes\":[\"sms:send\"],\"signing\":true}"),
                           &t, &k);
        CHECK(st == KL_OK && contains(k, "\"signing\":true"));
        CHECK(json_str(k, "key_id", other_id, sizeof other_id));
        char *s = NULL;
        CHECK(kl_reveal_signing_secret(v, Z(other_id), &s) == KL_OK && is_lower_hex(s, 64));
        kl_secret_free(s);
        kl_secret_free(t);
        kl_string_free(k);
    }

    /* ---- signed requests through kl_authorize_opts */
    static const char body[] = "{\"to\":\"+15550100\"}";
    int64_t t = now_ms() / 1000;
    char *header = SENTINEL;
    st = kl_sign_request(Z(secret), t, S("post"), S("/v1/send"), (const uint8_t *)body,
                         sizeof body - 1, &header);
    CHECK(st == KL_OK);
    char want_prefix[64];
    snprintf(want_prefix, sizeof want_prefix, "t=%lld,v2=", (long long)t);
    CHECK(header != SENTINEL && strncmp(header, want_prefix, strlen(want_prefix)) == 0);
    CHECK(is_lower_hex(header + strlen(want_prefix), 64));

    kl_authorize_opts opts = KL_AUTHORIZE_OPTS_INIT;
    opts.signature = header;
    opts.signature_len = strlen(header);
    opts.body = (const uint8_t *)body;
    opts.body_len = sizeof body - 1;
    kl_grant g = KL_GRANT_INIT;
    st = kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &opts, &g);
    CHECK(st == KL_OK && g.charged == 1 && strcmp(g.key_id, key_id) == 0);
    st = kl_authorize_json(v, Z(token), S("POST"), S("/v1/send"), &opts, &json);
    CHECK(st == KL_OK && contains(json, "\"charged\":1"));
    kl_string_free(json);
    st = kl_authorize_scope(v, Z(token), S("sms:send"), &opts, &g);
    expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
    /* Unsigned: refused, 401 invalid_signature, nothing charged. */
    uint64_t before = credits_of(v, "acct_s");
    st = kl_authorize(v, Z(token), S("POST"), S("/v1/send"), NULL, &g);
    expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
    /* Signed, another body. */
    opts.body = (const uint8_t *)"{}";
    opts.body_len = 2;
    st = kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &opts, &g);
    expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
    opts.body = (const uint8_t *)body;
    opts.body_len = sizeof body - 1;
    /* The window: 300 s each way, not 301. */
    opts.now_ms = (t + 301) * 1000;
    st = kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &opts, &g);
    expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
    opts.now_ms = (t - 301) * 1000;
    st = kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &opts, &g);
    expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
    CHECK(credits_of(v, "acct_s") == before);
    opts.now_ms = (t + 300) * 1000;
    CHECK(kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &opts, &g) == KL_OK);
    opts.now_ms = 0;
    /* Another key's secret signs nothing for this one. */
    {
        char *s2 = NULL, *h2 = NULL;
        CHECK(kl_reveal_signing_secret(v, Z(other_id), &s2) == KL_OK);
        CHECK(kl_sign_request(Z(s2), t, S("POST"), S("/v1/send"), (const uint8_t *)body,
                              sizeof body - 1, &h2) == KL_OK);
        kl_authorize_opts o2 = opts;
        o2.signature = h2;
        o2.signature_len = strlen(h2);
        st = kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &o2, &g);
        expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
        kl_secret_free(s2);
        kl_string_free(h2);
    }
    /* Format 2 covers the query string: given in opts->query (without the '?'). */
    {
        char *hq = NULL;
        CHECK(kl_sign_request(Z(secret), t, S("POST"), S("/v1/send?to=A"), (const uint8_t *)body,
                              sizeof body - 1, &hq) == KL_OK);
        kl_authorize_opts oq = opts;
        oq.signature = hq;
        oq.signature_len = strlen(hq);
        oq.query = "to=B";
        oq.query_len = 4;
        st = kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &oq, &g);
        expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
        oq.query = "to=A";
        CHECK(kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &oq, &g) == KL_OK);
        /* A query both in the path and in opts->query is invalid. */
        expect_invalid(kl_authorize(v, Z(token), S("POST"), S("/v1/send?to=A"), &oq, &g));
        kl_string_free(hq);
    }
    /* The published test vector (README.md). */
    {
        char *hv = NULL;
        CHECK(kl_sign_request(S("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
                              1767225600, S("POST"), S("/v1/send?to=%2B15551234&dry=1"),
                              (const uint8_t *)"{\"text\":\"hi\"}", 13, &hv) == KL_OK);
        CHECK(hv != NULL && strcmp(hv, "t=1767225600,v2=3d60d462cf2bf288d18fca6a42076fc1394ed7faccd63145e050c8396f5b6780") == 0);
        kl_string_free(hv);
    }
    /* A body-less request may pass NULL/0 for the body on both sides. */
    {
        char *h0 = NULL;
        CHECK(kl_sign_request(Z(secret), t, S("POST"), S("/v1/send"), NULL, 0, &h0) == KL_OK);
        kl_authorize_opts o0;
        memset(&o0, 0, sizeof o0);
        o0.signature = h0;
        o0.signature_len = strlen(h0);
        CHECK(kl_authorize(v, Z(token), S("POST"), S("/v1/send"), &o0, &g) == KL_OK);
        kl_string_free(h0);
    }

    /* ---- reveal: the same secret, audited */
    {
        char *s = SENTINEL;
        CHECK(kl_reveal_signing_secret(v, Z(key_id), &s) == KL_OK);
        CHECK(s != SENTINEL && strcmp(s, secret) == 0);
        kl_secret_free(s);
        CHECK(kl_audit(v, S("{\"action\":\"signing_secret_revealed\"}"), &json) == KL_OK);
        CHECK(contains(json, key_id) && !contains(json, secret));
        kl_string_free(json);
        s = SENTINEL;
        st = kl_reveal_signing_secret(v, S("zzzzzzzz"), &s);
        expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
        CHECK(s == SENTINEL);
    }

    /* ---- rotation mints a new signing secret */
    char *new_token = SENTINEL, *new_secret = SENTINEL, *new_json = SENTINEL;
    st = kl_rotate_key_signing(v, Z(key_id), 0, &new_token, &new_secret, &new_json);
    CHECK(st == KL_OK);
    char new_id[16] = "";
    if (st == KL_OK) {
        CHECK(is_lower_hex(new_secret, 64) && strcmp(new_secret, secret) != 0);
        CHECK(json_str(new_json, "key_id", new_id, sizeof new_id));
        char *h = NULL;
        CHECK(kl_sign_request(Z(new_secret), t, S("POST"), S("/v1/send"), (const uint8_t *)body,
                              sizeof body - 1, &h) == KL_OK);
        kl_authorize_opts o = opts;
        o.signature = h;
        o.signature_len = strlen(h);
        CHECK(kl_authorize(v, Z(new_token), S("POST"), S("/v1/send"), &o, &g) == KL_OK);
        /* The old key's signature does not sign for the new key. */
        st = kl_authorize(v, Z(new_token), S("POST"), S("/v1/send"), &opts, &g);
        expect_error(st, KL_INVALID_SIGNATURE, 401, "invalid_signature", NULL);
        kl_string_free(h);
        kl_string_free(new_json);
    } else {
        new_token = NULL;
        new_secret = NULL;
    }
    {
        char *a = SENTINEL, *b = SENTINEL, *c = SENTINEL;
        st = kl_rotate_key_signing(v, S("zzzzzzzz"), 0, &a, &b, &c);
        expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
        CHECK(a == SENTINEL && b == SENTINEL && c == SENTINEL);
    }

    /* ---- NULL, invalid UTF-8: KL_INVALID_ARGUMENT, out-parameters untouched */
    {
        char *o = SENTINEL, *o2 = SENTINEL, *o3 = SENTINEL;
        uint64_t n = 777;
        bool b = true;
#define NULL_CASE(call)                                                                  \
    do {                                                                                 \
        expect_invalid(call);                                                            \
        CHECK(o == SENTINEL && o2 == SENTINEL && o3 == SENTINEL && n == 777 && b);       \
    } while (0)
        const char *spec = "{\"account_id\":\"acct_s\",\"name\":\"n\",\"scopes\":[\"a\"],\"signing\":true}";
        NULL_CASE(kl_create_key_signing(NULL, Z(spec), &o, &o2, &o3));
        NULL_CASE(kl_create_key_signing(v, NULL, 0, &o, &o2, &o3));
        NULL_CASE(kl_create_key_signing(v, Z(spec), NULL, &o2, &o3));
        NULL_CASE(kl_create_key_signing(v, Z(spec), &o, NULL, &o3));
        NULL_CASE(kl_create_key_signing(v, Z(spec), &o, &o2, NULL));
        NULL_CASE(kl_create_key_signing(v, S("{\"account_id\":\"\xff\"}"), &o, &o2, &o3));
        NULL_CASE(kl_rotate_key_signing(NULL, Z(key_id), 0, &o, &o2, &o3));
        NULL_CASE(kl_rotate_key_signing(v, NULL, 0, 0, &o, &o2, &o3));
        NULL_CASE(kl_rotate_key_signing(v, Z(other_id), 0, NULL, &o2, &o3));
        NULL_CASE(kl_rotate_key_signing(v, Z(other_id), 0, &o, NULL, &o3));
        NULL_CASE(kl_rotate_key_signing(v, Z(other_id), 0, &o, &o2, NULL));
        NULL_CASE(kl_rotate_key_signing(v, S("\xff\xfe"), 0, &o, &o2, &o3));
        NULL_CASE(kl_reveal_signing_secret(NULL, Z(key_id), &o));
        NULL_CASE(kl_reveal_signing_secret(v, NULL, 0, &o));
        NULL_CASE(kl_reveal_signing_secret(v, Z(key_id), NULL));
        NULL_CASE(kl_reveal_signing_secret(v, S("\xff\xfe"), &o));
        NULL_CASE(kl_rekey(NULL, Z(master2), &n));
        NULL_CASE(kl_rekey(v, NULL, 0, &n));
        NULL_CASE(kl_rekey(v, Z(master2), NULL));
        NULL_CASE(kl_rekey(v, S("\xff\xfe"), &n));
        NULL_CASE(kl_rekey(v, S("not base64 of 32 bytes"), &n));
        NULL_CASE(kl_rekey(v, S("c2hvcnQ="), &n));
        NULL_CASE(kl_rekey_passphrase(NULL, S("pw"), &n));
        NULL_CASE(kl_rekey_passphrase(v, NULL, 0, &n));
        NULL_CASE(kl_rekey_passphrase(v, S("pw"), NULL));
        NULL_CASE(kl_rekey_passphrase(v, S("\xff"), &n));
        NULL_CASE(kl_has_master_key(NULL, &b));
        NULL_CASE(kl_has_master_key(v, NULL));
        NULL_CASE(kl_vault_stats(NULL, &o));
        NULL_CASE(kl_vault_stats(v, NULL));
        NULL_CASE(kl_sign_request(NULL, 0, t, S("POST"), S("/p"), NULL, 0, &o));
        NULL_CASE(kl_sign_request(Z(secret), t, NULL, 0, S("/p"), NULL, 0, &o));
        NULL_CASE(kl_sign_request(Z(secret), t, S("POST"), NULL, 0, NULL, 0, &o));
        NULL_CASE(kl_sign_request(Z(secret), t, S("POST"), S("/p"), NULL, 3, &o));
        NULL_CASE(kl_sign_request(Z(secret), t, S("POST"), S("/p"), NULL, 0, NULL));
        NULL_CASE(kl_sign_request(S("\xff\xfe"), t, S("POST"), S("/p"), NULL, 0, &o));
        NULL_CASE(kl_sign_request(Z(secret), t, S("P\xffST"), S("/p"), NULL, 0, &o));
        NULL_CASE(kl_sign_request(Z(secret), t, S("POST"), S("/\xc3\x28"), NULL, 0, &o));
#undef NULL_CASE
        /* A key that does not sign has nothing to reveal. */
        char *t2 = NULL, *k2 = NULL;
        CHECK(kl_create_key(v, S("{\"account_id\":\"acct_s\",\"name\":\"p\",\"scopes\":[\"a\"]}"), &t2, &k2) == KL_OK);
        char plain_id[16] = "";
        CHECK(json_str(k2, "key_id", plain_id, sizeof plain_id));
        expect_invalid(kl_reveal_signing_secret(v, Z(plain_id), &o));
        CHECK(o == SENTINEL);
        kl_secret_free(t2);
        kl_string_free(k2);
    }

    /* ---- rekey: every signing secret moves to the new master key */
    uint64_t count = 0;
    CHECK(kl_rekey(v, Z(master2), &count) == KL_OK);
    CHECK(count == 3); /* "signed" (rotated, still stored), its successor, "quiet" */
    {
        char *s = NULL;
        CHECK(kl_reveal_signing_secret(v, Z(key_id), &s) == KL_OK && s && strcmp(s, secret) == 0);
        kl_secret_free(s);
    }
    CHECK(kl_vault_close(v) == KL_OK);
    has = false;
    CHECK(kl_has_master_key(v, &has) == KL_OK && has);
    CHECK(kl_vault_stats(v, &json) == KL_OK && contains(json, "\"commits\":"));
    kl_string_free(json);
    char *o = SENTINEL;
    st = kl_reveal_signing_secret(v, Z(key_id), &o);
    expect_error(st, KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    CHECK(o == SENTINEL);
    kl_vault_free(v);

    /* The old master key no longer opens it; the new one does, with the same secrets. */
    kl_vault *old = open_signing(path, master, &st);
    expect_error(st, KL_WRONG_MASTER_KEY, 500, "wrong_master_key", NULL);
    CHECK(old == NULL);
    CHECK(!contains(kl_last_error_message(), master));
    kl_vault *nv = open_signing(path, master2, &st);
    CHECK(st == KL_OK && nv != NULL);
    if (nv != NULL) {
        char *s = NULL;
        CHECK(kl_reveal_signing_secret(nv, Z(new_id), &s) == KL_OK && s && new_secret &&
              strcmp(s, new_secret) == 0);
        kl_secret_free(s);
        kl_vault_free(nv);
    }

    kl_string_free(header);
    kl_secret_free(new_token);
    kl_secret_free_n(new_secret, 64);
    kl_secret_free(token);
    /* With its length, a secret is wiped whole even after the caller wrote a NUL into it. */
    secret[8] = '\0';
    kl_secret_free_n(secret, 64);
    kl_secret_free_n(NULL, 64);
    kl_secret_free_n(master, 44);
    kl_secret_free(master2);
}

/* ------------------------------------------------------------------ main */

/* ------------------------------------------------------------------ rate limits and refills */

/* Count the occurrences of needle in haystack. */
static int count_of(const char *haystack, const char *needle) {
    int n = 0;
    for (const char *p = haystack; p != NULL && (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* A new key of `account` with scope "x": its token (kl_secret_free) and key id. */
static char *new_key(kl_vault *v, const char *account, char key_id[16]) {
    char spec[256];
    snprintf(spec, sizeof spec, "{\"account_id\":\"%s\",\"name\":\"k\",\"scopes\":[\"x\"]}", account);
    char *token = NULL, *key_json = NULL;
    kl_status st = kl_create_key(v, Z(spec), &token, &key_json);
    CHECK(st == KL_OK);
    key_id[0] = '\0';
    CHECK(json_str(key_json, "key_id", key_id, 16));
    kl_string_free(key_json);
    return token;
}

/* Holds: reserve through kl_authorize (hold_id in the grant) and kl_hold, settle,
 * release, list, and the hold error codes. */
static void test_holds(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.holds", base_path);
    kl_vault *v = NULL;
    char *json = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    CHECK(kl_create_account(v, S("acct_h"), 100, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    char key_id[16];
    char *token = new_key(v, "acct_h", key_id);
    if (token == NULL) {
        kl_vault_free(v);
        return;
    }
    CHECK(strcmp(kl_status_code(KL_HOLD_NOT_FOUND), "hold_not_found") == 0);
    CHECK(kl_status_http(KL_HOLD_NOT_FOUND) == 404);
    CHECK(strcmp(kl_status_code(KL_HOLD_SETTLED), "hold_settled") == 0);
    CHECK(kl_status_http(KL_HOLD_SETTLED) == 409);

    /* ---- authorize with a hold: the grant carries its id */
    kl_authorize_opts o = KL_AUTHORIZE_OPTS_INIT;
    o.hold = 30;
    o.hold_ttl_ms = 60000;
    kl_grant g = KL_GRANT_INIT;
    CHECK(kl_authorize_scope(v, Z(token), S("x"), &o, &g) == KL_OK);
    CHECK(strncmp(g.hold_id, "hold_", 5) == 0 && strlen(g.hold_id) == 29);
    CHECK(g.charged == 0 && g.credits == 70);
    json = NULL;
    CHECK(kl_balance(v, S("acct_h"), &json) == KL_OK);
    CHECK(contains(json, "\"credits\":100") && contains(json, "\"held\":30") &&
          contains(json, "\"available\":70"));
    kl_string_free(json);
    json = NULL;
    CHECK(kl_settle(v, Z(g.hold_id), 12, 0, NULL, 0, &json) == KL_OK);
    CHECK(contains(json, "\"state\":\"settled\"") && contains(json, "\"charged\":12"));
    kl_string_free(json);
    json = SENTINEL;
    CHECK(kl_settle(v, Z(g.hold_id), 13, 0, NULL, 0, &json) == KL_HOLD_SETTLED);
    CHECK(json == SENTINEL);
    /* a hold and a cost together are refused, nothing reserved */
    o.has_cost = 1;
    o.cost = 1;
    CHECK(kl_authorize_scope(v, Z(token), S("x"), &o, &g) == KL_INVALID_ARGUMENT);

    /* ---- kl_hold, list, release */
    json = NULL;
    CHECK(kl_hold(v, S("acct_h"), 50, 60000, S("job-1"), &json) == KL_OK);
    char hold_id[64];
    CHECK(json_str(json, "hold_id", hold_id, sizeof hold_id));
    kl_string_free(json);
    json = NULL;
    CHECK(kl_hold(v, S("acct_h"), 50, 60000, S("job-1"), &json) == KL_OK);
    CHECK(contains(json, "\"replayed\":true") && contains(json, hold_id));
    kl_string_free(json);
    json = SENTINEL;
    CHECK(kl_hold(v, S("acct_h"), 1000, 60000, NULL, 0, &json) == KL_INSUFFICIENT_CREDITS);
    CHECK(json == SENTINEL);
    json = NULL;
    CHECK(kl_list_holds(v, S("acct_h"), &json) == KL_OK);
    CHECK(count_of(json, "\"hold_id\":") == 1 && contains(json, hold_id));
    kl_string_free(json);
    json = NULL;
    CHECK(kl_release(v, Z(hold_id), &json) == KL_OK);
    CHECK(contains(json, "\"state\":\"released\""));
    kl_string_free(json);
    json = NULL;
    CHECK(kl_balance(v, S("acct_h"), &json) == KL_OK);
    CHECK(contains(json, "\"credits\":88") && contains(json, "\"held\":0"));
    kl_string_free(json);
    json = SENTINEL;
    CHECK(kl_release(v, S("hold_0123456789abcdef01234567"), &json) == KL_HOLD_NOT_FOUND);
    CHECK(kl_release(v, S("nope"), &json) == KL_INVALID_ARGUMENT);
    CHECK(kl_release(v, NULL, 4, &json) == KL_INVALID_ARGUMENT);
    CHECK(json == SENTINEL);
    kl_secret_free(token);
    kl_vault_free(v);
}

static void test_ratelimits(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.limits", base_path);
    kl_vault *v = NULL;
    kl_status st;
    char *json = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    CHECK(kl_create_account(v, S("acct_rl"), 100, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    char key_id[16], key2_id[16];
    char *token = new_key(v, "acct_rl", key_id);
    char *token2 = new_key(v, "acct_rl", key2_id);
    if (token == NULL || token2 == NULL) {
        kl_secret_free(token);
        kl_secret_free(token2);
        kl_vault_free(v);
        return;
    }

    /* ---- set, list */
    json = NULL;
    st = kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("per_second"), 10, 1000, 1, &json);
    CHECK(st == KL_OK);
    CHECK(contains(json, "\"name\":\"per_second\""));
    CHECK(contains(json, "\"limit\":10"));
    CHECK(contains(json, "\"duration_ms\":1000"));
    CHECK(contains(json, "\"auto_apply\":true"));
    kl_string_free(json);
    json = NULL;
    CHECK(kl_ratelimits(v, KL_OWNER_KEY, Z(key_id), &json) == KL_OK);
    CHECK(json != NULL && json[0] == '[' && count_of(json, "\"name\":") == 1);
    CHECK(contains(json, "\"name\":\"per_second\""));
    kl_string_free(json);
    json = NULL;
    CHECK(kl_ratelimits(v, KL_OWNER_ACCOUNT, S("acct_rl"), &json) == KL_OK);
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    kl_string_free(json);

    /* ---- ten per second: the 11th call is refused (429), charging nothing */
    int64_t t0 = (now_ms() / 1000 + 60) * 1000; /* a whole second, a minute from now */
    kl_authorize_opts o;
    memset(&o, 0, sizeof o);
    o.now_ms = t0;
    o.has_cost = 1;
    o.cost = 1;
    kl_grant g = KL_GRANT_INIT;
    int in_order = 1;
    for (int i = 0; i < 10; i++) {
        memset(&g, 0xAB, sizeof g);
    g.size = (uint32_t)sizeof g;
        st = kl_authorize_scope(v, Z(token), S("x"), &o, &g);
        if (st != KL_OK || g.has_ratelimit != 1 || g.ratelimit_remaining != (uint64_t)(9 - i) ||
            g.ratelimit_limit != 10 || strcmp(g.ratelimit_name, "per_second") != 0 ||
            g.ratelimit_reset_ms <= t0 || g.ratelimit_reset_ms > t0 + 1000)
            in_order = 0;
    }
    CHECK(in_order);
    CHECK(g.credits == 90);
    kl_grant untouched;
    memset(&g, 0xAB, sizeof g);
    g.size = (uint32_t)sizeof g;
    memcpy(&untouched, &g, sizeof g);
    st = kl_authorize_scope(v, Z(token), S("x"), &o, &g);
    expect_error(st, KL_RATE_LIMITED, 429, "rate_limited", "\"limit\":\"per_second\"");
    CHECK(memcmp(&g, &untouched, sizeof g) == 0);
    {
        char *body = NULL;
        CHECK(kl_last_error_body(&body) == KL_OK);
        CHECK(contains(body, "\"max\":10"));
        CHECK(contains(body, "\"remaining\":0"));
        CHECK(contains(body, "\"retry_after\":1"));
        CHECK(contains(body, "\"reset_ms\":"));
        kl_string_free(body);
    }
    CHECK(credits_of(v, "acct_rl") == 90);
    /* The JSON variant is refused the same way; the other key has no limit of its own. */
    json = SENTINEL;
    st = kl_authorize_scope_json(v, Z(token), S("x"), &o, &json);
    expect_error(st, KL_RATE_LIMITED, 429, "rate_limited", "\"limit\":\"per_second\"");
    CHECK(json == SENTINEL);
    CHECK(kl_authorize_scope(v, Z(token2), S("x"), &o, &g) == KL_OK);
    CHECK(g.has_ratelimit == 0 && g.ratelimit_name[0] == '\0' && g.ratelimit_limit == 0 &&
          g.ratelimit_remaining == 0 && g.ratelimit_reset_ms == 0);
    /* A second later the window has room again. */
    o.now_ms = t0 + 1000;
    json = NULL;
    st = kl_authorize_scope_json(v, Z(token), S("x"), &o, &json);
    CHECK(st == KL_OK);
    CHECK(contains(json, "\"ratelimits\":[{\"name\":\"per_second\",\"max\":10,\"remaining\":9,"));
    kl_string_free(json);

    /* ---- remove */
    json = NULL;
    CHECK(kl_remove_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("per_second"), &json) == KL_OK);
    CHECK(contains(json, "\"name\":\"per_second\""));
    kl_string_free(json);
    json = SENTINEL;
    st = kl_remove_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("per_second"), &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    CHECK(json == SENTINEL);
    json = NULL;
    CHECK(kl_ratelimits(v, KL_OWNER_KEY, Z(key_id), &json) == KL_OK);
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    kl_string_free(json);
    CHECK(kl_authorize_scope(v, Z(token), S("x"), &o, &g) == KL_OK && g.has_ratelimit == 0);

    /* ---- an account limit applied by name, with a weight, shared by the account's keys */
    json = NULL;
    st = kl_set_ratelimit(v, KL_OWNER_ACCOUNT, S("acct_rl"), S("tokens"), 100, 60000, 0, &json);
    CHECK(st == KL_OK && contains(json, "\"auto_apply\":false"));
    kl_string_free(json);
    memset(&o, 0, sizeof o);
    o.now_ms = t0;
    CHECK(kl_authorize_scope(v, Z(token), S("x"), &o, &g) == KL_OK && g.has_ratelimit == 0);
    o.limits_json = "[\"tokens\"]";
    o.limits_json_len = strlen(o.limits_json);
    o.has_limit_cost = 1;
    o.limit_cost = 70;
    st = kl_authorize_scope(v, Z(token), S("x"), &o, &g);
    CHECK(st == KL_OK);
    CHECK(g.has_ratelimit == 1 && strcmp(g.ratelimit_name, "tokens") == 0);
    CHECK(g.ratelimit_limit == 100 && g.ratelimit_remaining == 30);
    o.limit_cost = 31;
    st = kl_authorize_scope(v, Z(token2), S("x"), &o, &g);
    expect_error(st, KL_RATE_LIMITED, 429, "rate_limited", "\"limit\":\"tokens\"");
    o.limit_cost = 30;
    st = kl_authorize_scope(v, Z(token2), S("x"), &o, &g);
    CHECK(st == KL_OK && g.ratelimit_remaining == 0);
    /* The tightest of several applied limits is the one with the fewest units left. */
    json = NULL;
    CHECK(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key2_id), S("burst"), 5, 1000, 1, &json) == KL_OK);
    kl_string_free(json);
    memset(&o, 0, sizeof o);
    o.now_ms = t0 + 2000;
    json = NULL;
    st = kl_authorize_scope_json(v, Z(token2), S("x"), &o, &json);
    CHECK(st == KL_OK && count_of(json, "\"name\":") == 1); /* "tokens" is not auto-applied */
    kl_string_free(json);
    o.limits_json = "[\"tokens\"]";
    o.limits_json_len = strlen(o.limits_json);
    o.now_ms = t0 + 60000; /* "tokens" has room again */
    st = kl_authorize_scope(v, Z(token2), S("x"), &o, &g);
    CHECK(st == KL_OK && g.has_ratelimit == 1);
    CHECK(strcmp(g.ratelimit_name, "burst") == 0 && g.ratelimit_remaining == 4 && g.ratelimit_limit == 5);
    /* Bad limit lists. */
    const char *bad_lists[] = {"[\"nope\"]", "not json", "[1]", "{\"tokens\":1}"};
    for (size_t i = 0; i < sizeof bad_lists / sizeof bad_lists[0]; i++) {
        o.limits_json = bad_lists[i];
        o.limits_json_len = strlen(bad_lists[i]);
        memset(&g, 0xAB, sizeof g);
    g.size = (uint32_t)sizeof g;
        expect_invalid(kl_authorize_scope(v, Z(token2), S("x"), &o, &g));
        CHECK(memcmp(&g, &untouched, sizeof g) == 0);
    }
    o.limits_json = NULL;
    o.limits_json_len = 3;
    expect_invalid(kl_authorize_scope(v, Z(token2), S("x"), &o, &g));
    o.limits_json = "[\"\xff\"]";
    o.limits_json_len = 5;
    expect_invalid(kl_authorize_scope(v, Z(token2), S("x"), &o, &g));

    /* ---- bad definitions and owners */
    json = SENTINEL;
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("x"), 0, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("x"), 1, 0, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("Bad"), 1, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S(""), 1, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, 7, Z(key_id), S("x"), 1, 1000, 1, &json));
    expect_invalid(kl_ratelimits(v, 2, S("acct_rl"), &json));
    expect_invalid(kl_remove_ratelimit(v, 2, S("acct_rl"), S("tokens"), &json));
    st = kl_set_ratelimit(v, KL_OWNER_ACCOUNT, S("nobody"), S("x"), 1, 1000, 1, &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    st = kl_set_ratelimit(v, KL_OWNER_KEY, S("zzzzzzzz"), S("x"), 1, 1000, 1, &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    st = kl_ratelimits(v, KL_OWNER_ACCOUNT, S("nobody"), &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    CHECK(json == SENTINEL);

    /* ---- NULL and invalid input on every new function: KL_INVALID_ARGUMENT, outs untouched */
    expect_invalid(kl_set_ratelimit(NULL, KL_OWNER_KEY, Z(key_id), S("x"), 1, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, NULL, 0, S("x"), 1, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), NULL, 0, 1, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), NULL, 4, 1, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("\xff"), 1, 1000, 1, &json));
    expect_invalid(kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("x"), 1, 1000, 1, NULL));
    expect_invalid(kl_remove_ratelimit(NULL, KL_OWNER_KEY, Z(key_id), S("x"), &json));
    expect_invalid(kl_remove_ratelimit(v, KL_OWNER_KEY, NULL, 0, S("x"), &json));
    expect_invalid(kl_remove_ratelimit(v, KL_OWNER_KEY, Z(key_id), NULL, 0, &json));
    expect_invalid(kl_remove_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("x"), NULL));
    expect_invalid(kl_ratelimits(NULL, KL_OWNER_KEY, Z(key_id), &json));
    expect_invalid(kl_ratelimits(v, KL_OWNER_KEY, NULL, 0, &json));
    expect_invalid(kl_ratelimits(v, KL_OWNER_KEY, S("\xfe\xff"), &json));
    expect_invalid(kl_ratelimits(v, KL_OWNER_KEY, Z(key_id), NULL));
    expect_invalid(kl_set_refill(NULL, S("acct_rl"), 1, KL_REFILL_DAILY, 1, &json));
    expect_invalid(kl_set_refill(v, NULL, 0, 1, KL_REFILL_DAILY, 1, &json));
    expect_invalid(kl_set_refill(v, S("acct_rl"), 1, KL_REFILL_DAILY, 1, NULL));
    expect_invalid(kl_clear_refill(NULL, S("acct_rl"), &json));
    expect_invalid(kl_clear_refill(v, NULL, 0, &json));
    expect_invalid(kl_clear_refill(v, S("acct_rl"), NULL));
    CHECK(json == SENTINEL);

    /* ---- refills: a daily quota, set (not added) at the first call after midnight UTC */
    json = NULL;
    CHECK(kl_create_account(v, S("acct_q"), 3, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    char q_id[16];
    char *qtoken = new_key(v, "acct_q", q_id);
    json = NULL;
    st = kl_set_refill(v, S("acct_q"), 50, KL_REFILL_DAILY, 0, &json);
    CHECK(st == KL_OK);
    CHECK(contains(json, "\"refill\":{\"amount\":50,\"interval\":\"daily\",\"day\":1}"));
    kl_string_free(json);
    memset(&o, 0, sizeof o);
    o.has_cost = 1;
    o.cost = 1;
    o.now_ms = 0; /* the vault's clock: before the boundary, no refill */
    CHECK(qtoken != NULL && kl_authorize_scope(v, Z(qtoken), S("x"), &o, &g) == KL_OK);
    CHECK(g.credits == 2);
    o.now_ms = now_ms() + 86400000; /* across the boundary */
    CHECK(qtoken != NULL && kl_authorize_scope(v, Z(qtoken), S("x"), &o, &g) == KL_OK);
    CHECK(g.charged == 1 && g.credits == 49);
    CHECK(qtoken != NULL && kl_authorize_scope(v, Z(qtoken), S("x"), &o, &g) == KL_OK);
    CHECK(g.credits == 48); /* once per period */
    json = NULL;
    CHECK(kl_audit(v, S("{\"action\":\"credits_refilled\"}"), &json) == KL_OK);
    CHECK(count_of(json, "\"action\":\"credits_refilled\"") == 1);
    kl_string_free(json);
    json = NULL;
    CHECK(kl_set_refill(v, S("acct_q"), 1000, KL_REFILL_MONTHLY, 15, &json) == KL_OK);
    CHECK(contains(json, "\"refill\":{\"amount\":1000,\"interval\":\"monthly\",\"day\":15}"));
    kl_string_free(json);
    json = SENTINEL;
    expect_invalid(kl_set_refill(v, S("acct_q"), 10, KL_REFILL_MONTHLY, 29, &json));
    expect_invalid(kl_set_refill(v, S("acct_q"), 10, KL_REFILL_MONTHLY, 0, &json));
    expect_invalid(kl_set_refill(v, S("acct_q"), 10, 2, 1, &json));
    st = kl_set_refill(v, S("nobody"), 10, KL_REFILL_DAILY, 1, &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    st = kl_clear_refill(v, S("nobody"), &json);
    expect_error(st, KL_NOT_FOUND, 404, "not_found", NULL);
    CHECK(json == SENTINEL);
    json = NULL;
    CHECK(kl_clear_refill(v, S("acct_q"), &json) == KL_OK);
    CHECK(contains(json, "\"refill\":null") && contains(json, "\"credits\":48"));
    kl_string_free(json);

    /* ---- a closed vault */
    CHECK(kl_vault_close(v) == KL_OK);
    json = SENTINEL;
    st = kl_set_ratelimit(v, KL_OWNER_KEY, Z(key_id), S("x"), 1, 1000, 1, &json);
    expect_error(st, KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    st = kl_ratelimits(v, KL_OWNER_KEY, Z(key_id), &json);
    expect_error(st, KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    st = kl_set_refill(v, S("acct_q"), 1, KL_REFILL_DAILY, 1, &json);
    expect_error(st, KL_VAULT_CLOSED, 500, "vault_closed", NULL);
    CHECK(json == SENTINEL);

    kl_secret_free(token);
    kl_secret_free(token2);
    kl_secret_free(qtoken);
    kl_vault_free(v);
}

/* Argon2 parameters change only through kl_set_argon2_params, audited; an opener's
 * "argon2" no longer rewrites an existing vault's. */
/* kl_authorize_http: the HTTP gate's answer (status, headers, body, grant); kl_limit_owner
 * and kl_http_credential: the host rules the core checks once. */
static void test_http_gate(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.http", base_path);
    kl_vault *v = NULL;
    char *json = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    CHECK(kl_create_account(v, S("acct_http"), 1, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    CHECK(kl_add_route(v, S("GET"), S("/x"), S("x"), 1, &json) == KL_OK);
    kl_string_free(json);
    char key_id[16];
    char *token = new_key(v, "acct_http", key_id);
    if (token == NULL) {
        kl_vault_free(v);
        return;
    }
    char auth[600];
    snprintf(auth, sizeof auth, "bearer  %s", token);
    uint16_t status = 0;
    char *headers = NULL, *body = NULL, *grant = NULL;
    kl_status st = kl_authorize_http(v, S("GET"), (const uint8_t *)"/x", 2,
                                     (const uint8_t *)auth, strlen(auth), NULL, 0, NULL, 0, NULL, 0,
                                     NULL, 0, 0, NULL, 0, &status, &headers, &body, &grant);
    CHECK(st == KL_OK && status == 200);
    CHECK(grant != NULL && contains(grant, "\"charged\":1"));
    CHECK(headers != NULL && strcmp(headers, "[]") == 0);
    CHECK(body != NULL && body[0] == '\0');
    kl_string_free(headers);
    kl_string_free(body);
    kl_string_free(grant);
    /* No credits left: 402 with the taxonomy body; a missing token: 401 + WWW-Authenticate. */
    st = kl_authorize_http(v, S("GET"), (const uint8_t *)"/x", 2, (const uint8_t *)auth,
                           strlen(auth), NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0, &status,
                           &headers, &body, &grant);
    CHECK(st == KL_OK && status == 402 && grant == NULL);
    CHECK(contains(body, "\"error\":\"insufficient_credits\""));
    kl_string_free(headers);
    kl_string_free(body);
    st = kl_authorize_http(v, S("GET"), (const uint8_t *)"/x", 2, NULL, 0, NULL, 0, NULL, 0, NULL,
                           0, NULL, 0, 0, S("{\"replay\":\"pass\"}"), &status, &headers, &body,
                           &grant);
    CHECK(st == KL_OK && status == 401 && grant == NULL);
    CHECK(contains(headers, "[\"www-authenticate\",\"Bearer\"]"));
    kl_string_free(headers);
    kl_string_free(body);
    expect_invalid(kl_authorize_http(v, S("GET"), NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL,
                                     0, 0, NULL, 0, &status, &headers, &body, &grant));
    expect_invalid(kl_authorize_http(v, S("GET"), (const uint8_t *)"/x", 2, NULL, 0, NULL, 0, NULL,
                                     0, NULL, 0, NULL, 0, 0, S("{\"replay\":\"maybe\"}"),
                                     &status, &headers, &body, &grant));

    char *got = NULL;
    CHECK(kl_http_credential((const uint8_t *)auth, strlen(auth), NULL, 0, &got) == KL_OK);
    CHECK(got != NULL && strcmp(got, token) == 0);
    kl_secret_free(got);
    got = NULL;
    CHECK(kl_http_credential((const uint8_t *)"Basic x", 7, NULL, 0, &got) == KL_INVALID_API_KEY);
    CHECK(got == NULL);

    uint32_t kind = 99;
    CHECK(kl_limit_owner(S("k1"), NULL, 0, &kind) == KL_OK && kind == KL_OWNER_KEY);
    CHECK(kl_limit_owner(NULL, 0, S("a1"), &kind) == KL_OK && kind == KL_OWNER_ACCOUNT);
    expect_invalid(kl_limit_owner(S("k1"), S("a1"), &kind));
    expect_invalid(kl_limit_owner(NULL, 0, NULL, 0, &kind));
    CHECK(contains(kl_last_error_message(), "exactly one of key_id and account_id"));
    kl_secret_free(token);
    kl_vault_free(v);
}

static void test_argon2_params(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.argon2", base_path);
    kl_vault *v = NULL;
    char *json = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    CHECK(kl_set_argon2_params(v, 16, 2, 1) == KL_OK);
    expect_invalid(kl_set_argon2_params(v, 16, 0, 1));
    expect_invalid(kl_set_argon2_params(v, 16, 2, 0));
    expect_invalid(kl_set_argon2_params(NULL, 16, 2, 1));
    CHECK(kl_audit(v, S("{\"action\":\"argon2_params_changed\"}"), &json) == KL_OK);
    CHECK(json != NULL && count_of(json, "argon2_params_changed") == 1);
    CHECK(json != NULL && contains(json, "\"to\":{\"m_kib\":16,\"p\":1,\"t\":2}"));
    kl_string_free(json);
    kl_vault_free(v);
    /* Reopening with the test options (m_kib 8) changes nothing and audits nothing. */
    v = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    json = NULL;
    CHECK(kl_audit(v, S("{\"action\":\"argon2_params_changed\"}"), &json) == KL_OK);
    CHECK(json != NULL && count_of(json, "argon2_params_changed") == 1);
    kl_string_free(json);
    kl_vault_free(v);
}

/* ------------------------------------------------------------------ non-blocking calls */

/* One kl_authorize_http call on `target` with `options`; frees what it returns. */
static kl_status http_try(kl_vault *v, const char *method, const char *target, const char *auth,
                          const char *options, uint16_t *status) {
    char *headers = SENTINEL, *body = SENTINEL, *grant = SENTINEL;
    *status = 0;
    kl_status st = kl_authorize_http(v, Z(method), (const uint8_t *)target, strlen(target),
                                     (const uint8_t *)auth, strlen(auth), NULL, 0, NULL, 0, NULL,
                                     0, NULL, 0, 0, Z(options), status, &headers, &body, &grant);
    if (st == KL_OK) {
        kl_string_free(headers);
        kl_string_free(body);
        kl_string_free(grant);
    } else {
        /* Out-parameters untouched. */
        CHECK(headers == SENTINEL && body == SENTINEL && grant == SENTINEL);
    }
    return st;
}

static void test_nonblocking(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.try", base_path);
    kl_vault *v = NULL;
    char *json = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    CHECK(kl_create_account(v, S("acct_try"), 5, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    CHECK(kl_add_route(v, S("GET"), S("/free"), S("x"), 0, &json) == KL_OK);
    kl_string_free(json);
    CHECK(kl_add_route(v, S("POST"), S("/paid"), S("x"), 1, &json) == KL_OK);
    kl_string_free(json);
    char key_id[16];
    char *token = new_key(v, "acct_try", key_id);
    if (token == NULL) {
        kl_vault_free(v);
        return;
    }
    CHECK(KL_WOULD_BLOCK == 3001);
    CHECK(strcmp(kl_status_code(KL_WOULD_BLOCK), "would_block") == 0);
    CHECK(kl_status_http(KL_WOULD_BLOCK) == 503);

    /* A key not yet verified here: would block on argon2, grant untouched, nothing used. */
    kl_grant g = KL_GRANT_INIT;
    memset(&g, 0x5a, sizeof g);
    kl_status st = kl_authorize_try(v, Z(token), S("GET"), S("/free"), NULL, &g);
    CHECK(st == KL_WOULD_BLOCK);
    CHECK(kl_last_would_block() == KL_NEEDS_ARGON2);
    CHECK(contains(kl_last_error_message(), "argon2"));
    char *body = NULL;
    CHECK(kl_last_error_body(&body) == KL_OK);
    CHECK(contains(body, "\"error\":\"would_block\"") && contains(body, "\"needs\":\"argon2\""));
    kl_string_free(body);
    CHECK(((unsigned char *)&g)[0] == 0x5a && g.charged == 0x5a5a5a5a5a5a5a5aULL);
    char *usage = NULL;
    char usage_key[32];
    snprintf(usage_key, sizeof usage_key, "%s", key_id);
    CHECK(kl_usage(v, Z(usage_key), &usage) == KL_OK);
    CHECK(contains(usage, "\"granted\":0") && contains(usage, "\"refused\":0"));
    kl_string_free(usage);
    CHECK(kl_last_would_block() == 0); /* the last call answered KL_OK */

    /* The blocking call verifies it; then a free call is decided inline. */
    CHECK(kl_authorize(v, Z(token), S("GET"), S("/free"), NULL, &g) == KL_OK);
    memset(&g, 0, sizeof g);
    CHECK(kl_authorize_try(v, Z(token), S("GET"), S("/free"), NULL, &g) == KL_OK);
    CHECK(g.credits == 5 && g.charged == 0 && strcmp(g.key_id, key_id) == 0);
    CHECK(kl_authorize_scope_try(v, Z(token), S("x"), NULL, &g) == KL_OK);
    CHECK(kl_authorize_request_try(v, Z(token), S("GET"), S("/free?a=1"), NULL, &g) == KL_OK);
    char *gj = NULL;
    CHECK(kl_authorize_json_try(v, Z(token), S("GET"), S("/free"), NULL, &gj) == KL_OK);
    CHECK(contains(gj, "\"credits\":5"));
    kl_string_free(gj);
    gj = NULL;
    CHECK(kl_authorize_scope_json_try(v, Z(token), S("x"), NULL, &gj) == KL_OK);
    kl_string_free(gj);
    gj = NULL;
    CHECK(kl_authorize_request_json_try(v, Z(token), S("GET"), S("/free"), NULL, &gj) == KL_OK);
    kl_string_free(gj);

    /* A debit would wait for a commit: nothing charged until the blocking call. */
    char *untouched = SENTINEL;
    st = kl_authorize_json_try(v, Z(token), S("POST"), S("/paid"), NULL, &untouched);
    CHECK(st == KL_WOULD_BLOCK && untouched == SENTINEL);
    CHECK(kl_last_would_block() == KL_NEEDS_COMMIT);
    kl_authorize_opts o;
    memset(&o, 0, sizeof o);
    o.idempotency_key = "idem-1";
    o.idempotency_key_len = 6;
    CHECK(kl_authorize_try(v, Z(token), S("GET"), S("/free"), &o, &g) == KL_WOULD_BLOCK);
    CHECK(kl_last_would_block() == KL_NEEDS_COMMIT);
    CHECK(credits_of(v, "acct_try") == 5);
    CHECK(kl_authorize(v, Z(token), S("POST"), S("/paid"), NULL, &g) == KL_OK && g.credits == 4);

    /* Refusals that need no argon2 are answered inline, with their own status. */
    expect_error(kl_authorize_try(v, S("garbage"), S("GET"), S("/free"), NULL, &g),
                 KL_INVALID_API_KEY, 401, "invalid_api_key", NULL);
    CHECK(kl_last_would_block() == 0);
    expect_error(kl_authorize_try(v, Z(token), S("GET"), S("/nowhere"), NULL, &g),
                 KL_ROUTE_NOT_ALLOWED, 403, "route_not_allowed", NULL);
    expect_invalid(kl_authorize_try(NULL, Z(token), S("GET"), S("/free"), NULL, &g));
    expect_invalid(kl_authorize_try(v, Z(token), S("GET"), S("/free"), NULL, NULL));

    /* The HTTP gate: "nonblocking": true. */
    char auth[600];
    snprintf(auth, sizeof auth, "Bearer %s", token);
    uint16_t status = 0;
    CHECK(http_try(v, "GET", "/free", auth, "{\"nonblocking\":true}", &status) == KL_OK);
    CHECK(status == 200);
    CHECK(http_try(v, "POST", "/paid", auth, "{\"nonblocking\":true}", &status) == KL_WOULD_BLOCK);
    CHECK(status == 0 && kl_last_would_block() == KL_NEEDS_COMMIT);
    CHECK(http_try(v, "GET", "/free", "Bearer nope", "{\"nonblocking\":true}", &status) == KL_OK);
    CHECK(status == 401);
    CHECK(credits_of(v, "acct_try") == 4);
    CHECK(http_try(v, "POST", "/paid", auth, "{\"nonblocking\":false}", &status) == KL_OK);
    CHECK(status == 200 && credits_of(v, "acct_try") == 3);
    char *token2 = new_key(v, "acct_try", key_id);
    if (token2 != NULL) {
        snprintf(auth, sizeof auth, "Bearer %s", token2);
        CHECK(http_try(v, "GET", "/free", auth, "{\"nonblocking\":true}", &status) == KL_WOULD_BLOCK);
        CHECK(kl_last_would_block() == KL_NEEDS_ARGON2);
        kl_secret_free(token2);
    }
    kl_secret_free(token);
    kl_vault_free(v);
}

/* The growth path of the public structs: `size` first, the library reads (options) or
 * writes (grants) only what fits in it; too small is KL_INVALID_ARGUMENT before any work. */
static void test_struct_sizes(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.sizes", base_path);
    kl_vault *v = NULL;
    char *json = NULL;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    CHECK(kl_create_account(v, S("acct_sz"), 100, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    char key_id[16];
    char *token = new_key(v, "acct_sz", key_id);
    if (token == NULL) {
        kl_vault_free(v);
        return;
    }

    /* The initializers set size to the struct's size and nothing else. */
    kl_authorize_opts o = KL_AUTHORIZE_OPTS_INIT;
    CHECK(o.size == sizeof(kl_authorize_opts) && o.cost == 0 && o.idempotency_key == NULL);
    kl_grant g = KL_GRANT_INIT;
    CHECK(g.size == sizeof(kl_grant) && g.charged == 0 && g.account_id[0] == 0);
    o.has_cost = 1;
    o.cost = 2;
    CHECK(kl_authorize_scope(v, Z(token), S("x"), &o, &g) == KL_OK);
    CHECK(g.size == sizeof(kl_grant) && g.charged == 2 && g.credits == 98);
    CHECK(strcmp(g.account_id, "acct_sz") == 0);

    /* size 0 is this library's layout: `= {0}` stays valid for both. */
    kl_authorize_opts z = {0};
    z.has_cost = 1;
    z.cost = 3;
    kl_grant gz = {0};
    CHECK(kl_authorize_scope(v, Z(token), S("x"), &z, &gz) == KL_OK);
    CHECK(gz.size == 0 && gz.charged == 3 && gz.credits == 95);

    /* Options smaller than the first layout: refused before any work, grant untouched. */
    kl_grant untouched;
    memset(&g, 0xAB, sizeof g);
    g.size = (uint32_t)sizeof g;
    memcpy(&untouched, &g, sizeof g);
    /* The last: one byte short of the first layout (its last field, case_insensitive, cut). */
    const uint32_t small_sizes[] = {1, 4, 8, (uint32_t)offsetof(kl_authorize_opts, case_insensitive)};
    for (size_t i = 0; i < sizeof small_sizes / sizeof small_sizes[0]; i++) {
        kl_authorize_opts s = o;
        s.size = small_sizes[i];
        kl_status st = kl_authorize_scope(v, Z(token), S("x"), &s, &g);
        expect_error(st, KL_INVALID_ARGUMENT, 400, "invalid_argument", "kl_authorize_opts->size");
        CHECK(memcmp(&g, &untouched, sizeof g) == 0);
        char *out = SENTINEL;
        st = kl_authorize_scope_json(v, Z(token), S("x"), &s, &out);
        CHECK(st == KL_INVALID_ARGUMENT && out == SENTINEL);
    }
    CHECK(credits_of(v, "acct_sz") == 95);

    /* A grant smaller than the first layout: refused before any work (nothing charged),
     * the struct untouched. */
    memset(&g, 0xAB, sizeof g);
    g.size = 16;
    memcpy(&untouched, &g, sizeof g);
    kl_status st = kl_authorize_scope(v, Z(token), S("x"), &o, &g);
    expect_error(st, KL_INVALID_ARGUMENT, 400, "invalid_argument", "kl_grant->size is 16");
    CHECK(memcmp(&g, &untouched, sizeof g) == 0);
    CHECK(credits_of(v, "acct_sz") == 95);

    /* A newer header's larger options: accepted when the unknown tail is zero, refused
     * (nothing charged) when it sets something this library does not know. */
    struct {
        kl_authorize_opts o;
        uint64_t newer_field;
    } big;
    memset(&big, 0, sizeof big);
    big.o = o;
    big.o.size = (uint32_t)sizeof big;
    g = (kl_grant)KL_GRANT_INIT;
    CHECK(kl_authorize_scope(v, Z(token), S("x"), &big.o, &g) == KL_OK && g.charged == 2);
    big.newer_field = 1;
    st = kl_authorize_scope(v, Z(token), S("x"), &big.o, &g);
    expect_error(st, KL_INVALID_ARGUMENT, 400, "invalid_argument", "does not know");
    CHECK(credits_of(v, "acct_sz") == 93);

    /* A newer header's larger grant: this library's fields are written, the rest kept. */
    struct {
        kl_grant g;
        uint64_t newer_field;
    } bigg;
    memset(&bigg, 0, sizeof bigg);
    bigg.g.size = (uint32_t)sizeof bigg;
    bigg.newer_field = 0x1122334455667788ULL;
    CHECK(kl_authorize_scope(v, Z(token), S("x"), NULL, &bigg.g) == KL_OK);
    CHECK(bigg.g.size == sizeof bigg && bigg.g.credits == 93 && bigg.newer_field == 0x1122334455667788ULL);
    CHECK(strcmp(bigg.g.key_id, key_id) == 0);

    /* error_body: a failed call copies its body there (for a caller on another thread);
     * untouched on success, and not read when `size` does not cover it. */
    {
        char *eb = SENTINEL;
        kl_authorize_opts e = KL_AUTHORIZE_OPTS_INIT;
        e.error_body = &eb;
        g = (kl_grant)KL_GRANT_INIT;
        CHECK(kl_authorize_scope(v, Z(token), S("x"), &e, &g) == KL_OK && eb == SENTINEL);
        e.has_cost = 1;
        e.cost = 1000;
        st = kl_authorize_scope(v, Z(token), S("x"), &e, &g);
        CHECK(st == KL_INSUFFICIENT_CREDITS && eb != SENTINEL);
        char *last = NULL;
        CHECK(kl_last_error_body(&last) == KL_OK);
        CHECK(eb != SENTINEL && last != NULL && strcmp(eb, last) == 0);
        CHECK(contains(eb, "\"required\":1000") && contains(eb, "\"credits\":93"));
        kl_string_free(last);
        if (eb != SENTINEL) kl_string_free(eb);
        /* The JSON variant and a would-block answer too. */
        eb = SENTINEL;
        char *out = SENTINEL;
        st = kl_authorize_scope_json(v, Z(token), S("x"), &e, &out);
        CHECK(st == KL_INSUFFICIENT_CREDITS && out == SENTINEL && contains(eb, "insufficient_credits"));
        if (eb != SENTINEL) kl_string_free(eb);
        eb = SENTINEL;
        e.cost = 1;
        st = kl_authorize_scope_try(v, Z(token), S("x"), &e, &g);
        CHECK(st == KL_WOULD_BLOCK && contains(eb, "\"needs\":\"commit\""));
        if (eb != SENTINEL) kl_string_free(eb);
        /* The first layout (0.2 without error_body): the field is not read. */
        eb = SENTINEL;
        e.cost = 1000;
        e.size = (uint32_t)offsetof(kl_authorize_opts, error_body);
        st = kl_authorize_scope(v, Z(token), S("x"), &e, &g);
        CHECK(st == KL_INSUFFICIENT_CREDITS && eb == SENTINEL);
        /* A refused size never writes it. */
        e.size = 4;
        st = kl_authorize_scope(v, Z(token), S("x"), &e, &g);
        CHECK(st == KL_INVALID_ARGUMENT && eb == SENTINEL);
    }

    kl_secret_free(token);
    CHECK(kl_vault_close(v) == KL_OK);
    kl_vault_free(v);
}

/* Events and usage reports: thresholds, the event log, a consumer's cursor, reports. */
static void test_events(const char *base_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s.events", base_path);
    kl_vault *v = NULL;
    char *json = NULL;
    uint64_t cursor = 99;
    CHECK(kl_vault_open(Z(path), Z(OPTIONS), &v) == KL_OK);
    if (v == NULL) return;
    CHECK(kl_create_account(v, S("acct_ev"), 10, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    CHECK(kl_set_alert(v, S("acct_ev"), 5, &json) == KL_OK && strcmp(json, "[5]") == 0);
    kl_string_free(json);
    expect_invalid(kl_set_alert(v, S("acct_ev"), 0, &json));
    CHECK(kl_set_alert(v, S("nobody"), 5, &json) == KL_NOT_FOUND);
    CHECK(kl_debit(v, S("acct_ev"), 6, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    CHECK(kl_events(v, 0, 10, &json) == KL_OK);
    CHECK(contains(json, "\"type\":\"balance_below\"") && contains(json, "\"threshold\":5"));
    kl_string_free(json);
    expect_invalid(kl_events(v, 0, 0, &json));
    CHECK(kl_ack_events(v, S("c-test"), 0, &cursor) == KL_OK && cursor == 0);
    CHECK(kl_ack_events(v, S("c-test"), 1, &cursor) == KL_OK && cursor == 1);
    expect_invalid(kl_ack_events(v, S("bad name"), 1, &cursor));
    expect_invalid(kl_ack_events(v, S("c-test"), 1, NULL));
    CHECK(kl_remove_alert(v, S("acct_ev"), 5, &json) == KL_OK);
    CHECK(contains(json, "\"removed\":true") && contains(json, "\"below\":[]"));
    kl_string_free(json);
    CHECK(kl_usage_report(v, S("acct_ev"), 0, 4102444800000LL, S("route"), &json) == KL_OK);
    CHECK(contains(json, "\"group\":\"(debit)\"") && contains(json, "\"charged\":6"));
    kl_string_free(json);
    expect_invalid(kl_usage_report(v, S("acct_ev"), 0, 1, S("hour"), &json));
    kl_vault_free(v);
}

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
    kl_grant g = KL_GRANT_INIT;
    memset(&g, 0xAB, sizeof g);
    g.size = (uint32_t)sizeof g;
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
    CHECK(g.has_ratelimit == 0 && g.ratelimit_name[0] == '\0'); /* no limit applied */
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
    g.size = (uint32_t)sizeof g;
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
    g.size = (uint32_t)sizeof g;
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

    test_webhooks();
    test_signing(path);
    test_ratelimits(path);
    test_argon2_params(path);
    test_http_gate(path);
    test_nonblocking(path);
    test_struct_sizes(path);
    test_events(path);
    test_holds(path);
    printf("c_abi: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
