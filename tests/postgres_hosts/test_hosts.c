/*
 * C over a PostgreSQL URL: kl_vault_open("postgresql://…") does what a user does.
 * Run by tests/postgres_hosts/run against a libkeyledger built with the `postgres` feature:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -Iinclude tests/postgres_hosts/test_hosts.c \
 *      -L<dir> -lkeyledger -Wl,-rpath,<dir> -o test_hosts
 *   ./test_hosts 'postgresql://…' /path/to/keyledger
 *
 * argv[1] is a fresh database on the throwaway cluster, argv[2] the `keyledger` binary
 * built with the feature (the second process of the cross-process check). Prints one line
 * per failed check and "c_pg: N passed, M failed"; exits non-zero on any failure. Every
 * string it receives is freed, so it runs clean under valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

#define S(lit) (lit), (sizeof(lit) - 1)
#define Z(str) (str), strlen(str)

static const char *url;
static const char *cli;

static int contains(const char *haystack, const char *needle) {
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* The string value of "field" in a flat JSON document, into buf. */
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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static kl_vault *open_vault(const char *master) {
    char options[256];
    snprintf(options, sizeof options,
             "{\"argon2\":{\"m_kib\":8,\"t\":1,\"p\":1},\"actor\":\"c-pg\",\"master_key\":\"%s\"}",
             master);
    kl_vault *v = NULL;
    kl_status st = kl_vault_open(Z(url), Z(options), &v);
    CHECK(st == KL_OK && v != NULL);
    return v;
}

/* An account with `credits`, the route POST /v1/send (sms:send, cost 1) and a key; the
 * token and key_id into the buffers. */
static void seed(kl_vault *v, const char *account, uint64_t credits, char *token, size_t token_size,
                 char *key_id, size_t key_id_size) {
    char *json = NULL;
    CHECK(kl_create_account(v, Z(account), credits, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    json = NULL;
    kl_status st = kl_add_route(v, S("POST"), S("/v1/send"), S("sms:send"), 1, &json);
    CHECK(st == KL_OK || st == KL_ALREADY_EXISTS);
    kl_string_free(json);
    char spec[256];
    snprintf(spec, sizeof spec,
             "{\"account_id\":\"%s\",\"name\":\"server\",\"scopes\":[\"sms:send\"],\"prefix\":\"dial_live\"}",
             account);
    char *tok = NULL, *key = NULL;
    CHECK(kl_create_key(v, Z(spec), &tok, &key) == KL_OK);
    snprintf(token, token_size, "%s", tok ? tok : "");
    CHECK(json_str(key, "key_id", key_id, key_id_size));
    kl_secret_free(tok);
    kl_string_free(key);
}

static kl_status send(kl_vault *v, const char *token, struct kl_grant *g) {
    return kl_authorize(v, Z(token), S("POST"), S("/v1/send"), NULL, g);
}

static void grants_and_refusals(kl_vault *v) {
    char token[256], key_id[32];
    seed(v, "c_credits", 2, token, sizeof token, key_id, sizeof key_id);
    struct kl_grant g;
    memset(&g, 0, sizeof g);
    CHECK(send(v, token, &g) == KL_OK);
    CHECK(g.charged == 1 && g.credits == 1 && strcmp(g.key_id, key_id) == 0);
    CHECK(send(v, token, &g) == KL_OK && g.credits == 0);
    kl_status st = send(v, token, &g);
    CHECK(st == KL_INSUFFICIENT_CREDITS && kl_status_http(st) == 402);
    st = kl_authorize_scope(v, Z(token), S("admin:read"), NULL, &g);
    CHECK(st == KL_MISSING_SCOPE && kl_status_http(st) == 403);
    char *body = NULL;
    CHECK(kl_last_error_body(&body) == KL_OK && contains(body, "\"missing_scope\""));
    kl_string_free(body);

    char token2[256], key2[32];
    seed(v, "c_revoke", 5, token2, sizeof token2, key2, sizeof key2);
    CHECK(send(v, token2, &g) == KL_OK && g.charged == 1);
    char *json = NULL;
    CHECK(kl_revoke_key(v, Z(key2), &json) == KL_OK && json != NULL && !contains(json, "\"revoked_at\":null"));
    kl_string_free(json);
    st = send(v, token2, &g);
    CHECK(st == KL_INVALID_API_KEY && kl_status_http(st) == 401);
}

static void debits_and_audit(kl_vault *v) {
    char *json = NULL;
    CHECK(kl_create_account(v, S("c_debit"), 100, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    for (int i = 0; i < 10; i++) {
        char idem[32];
        snprintf(idem, sizeof idem, "job-%d", i);
        json = NULL;
        CHECK(kl_debit(v, S("c_debit"), 3, Z(idem), &json) == KL_OK);
        kl_string_free(json);
    }
    json = NULL;
    CHECK(kl_debit(v, S("c_debit"), 3, S("job-0"), &json) == KL_OK); /* a replay charges nothing */
    kl_string_free(json);
    json = NULL;
    CHECK(kl_debit(v, S("c_debit"), 71, NULL, 0, &json) == KL_INSUFFICIENT_CREDITS);
    json = NULL;
    CHECK(kl_balance(v, S("c_debit"), &json) == KL_OK && contains(json, "\"credits\":70"));
    kl_string_free(json);
    json = NULL;
    CHECK(kl_audit(v, S("{\"account_id\":\"c_debit\",\"action\":\"credits_debited\",\"limit\":1000}"), &json) == KL_OK);
    int n = 0;
    for (const char *p = json; p && (p = strstr(p, "\"credits_debited\"")) != NULL; p++) n++;
    CHECK(n == 10);
    CHECK(contains(json, "\"actor\":\"c-pg\""));
    kl_string_free(json);
}

static void signing(kl_vault *v, const char *master) {
    char *json = NULL;
    CHECK(kl_create_account(v, S("c_sign"), 10, NULL, 0, &json) == KL_OK);
    kl_string_free(json);
    char *tok = NULL, *secret = NULL, *key = NULL;
    CHECK(kl_create_key_signing(v, S("{\"account_id\":\"c_sign\",\"name\":\"signed\",\"scopes\":[\"sms:send\"],\"signing\":true}"),
                                &tok, &secret, &key) == KL_OK);
    char key_id[32] = "";
    CHECK(json_str(key, "key_id", key_id, sizeof key_id));
    CHECK(secret != NULL && strlen(secret) == 64);
    char *revealed = NULL;
    CHECK(kl_reveal_signing_secret(v, Z(key_id), &revealed) == KL_OK && revealed && secret &&
          strcmp(revealed, secret) == 0);
    kl_secret_free(revealed);
    /* Another handle with the same master key reads the same secret from the database. */
    kl_vault *other = open_vault(master);
    revealed = NULL;
    CHECK(other && kl_reveal_signing_secret(other, Z(key_id), &revealed) == KL_OK && revealed && secret &&
          strcmp(revealed, secret) == 0);
    kl_secret_free(revealed);
    kl_vault_free(other);

    static const char body[] = "{\"to\":\"+15550100\"}";
    int64_t t = (int64_t)time(NULL);
    char *sig = NULL;
    CHECK(kl_sign_request(secret ? secret : "", secret ? 64 : 0, t, S("POST"), S("/v1/send"),
                          (const uint8_t *)body, sizeof body - 1, &sig) == KL_OK);
    struct kl_authorize_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.signature = sig;
    opts.signature_len = sig ? strlen(sig) : 0;
    opts.body = (const uint8_t *)body;
    opts.body_len = sizeof body - 1;
    opts.now_ms = t * 1000;
    struct kl_grant g;
    memset(&g, 0, sizeof g);
    CHECK(tok && kl_authorize(v, Z(tok), S("POST"), S("/v1/send"), &opts, &g) == KL_OK && g.charged == 1);
    CHECK(tok && kl_authorize(v, Z(tok), S("POST"), S("/v1/send"), NULL, &g) == KL_INVALID_SIGNATURE);
    kl_string_free(sig);
    kl_secret_free(tok);
    kl_secret_free(secret);
    kl_string_free(key);
}

/* Run `keyledger --vault URL --json key revoke KEY_ID` as another process; its exit code. */
static int cli_revoke(const char *key_id) {
    pid_t pid = fork();
    if (pid == 0) {
        /* The CLI's JSON answer is not this test's output. */
        if (freopen("/dev/null", "w", stdout) == NULL) _exit(126);
        execl(cli, cli, "--vault", url, "--json", "key", "revoke", key_id, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void cross_process(kl_vault *v) {
    char token[256], key_id[32];
    seed(v, "c_cross", 1000, token, sizeof token, key_id, sizeof key_id);
    /* The cache serves nothing until the change listener has confirmed its position. */
    int shared = 0;
    double listening_by = now_s() + 10.0;
    while (!shared && now_s() < listening_by) {
        char *stats = NULL;
        if (kl_vault_stats(v, &stats) == KL_OK) shared = contains(stats, "\"shared\"");
        kl_string_free(stats);
        struct timespec ms = {0, 1000000};
        if (!shared) nanosleep(&ms, NULL);
    }
    CHECK(shared);
    struct kl_grant g;
    CHECK(send(v, token, &g) == KL_OK); /* the key is now in this process's cache */
    CHECK(cli_revoke(key_id) == 0);
    double deadline = now_s() + 10.0;
    kl_status st = KL_OK;
    while (now_s() < deadline) {
        st = send(v, token, &g);
        if (st != KL_OK) break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    CHECK(st == KL_INVALID_API_KEY); /* refused within 10 s of the other process's revoke */
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s POSTGRESQL_URL KEYLEDGER_CLI\n", argv[0]);
        return 2;
    }
    url = argv[1];
    cli = argv[2];
    char *master = NULL;
    CHECK(kl_generate_master_key(&master) == KL_OK);
    kl_vault *v = open_vault(master ? master : "");
    if (v != NULL) {
        grants_and_refusals(v);
        debits_and_audit(v);
        signing(v, master ? master : "");
        cross_process(v);
        CHECK(kl_vault_close(v) == KL_OK);
        kl_vault_free(v);
    }
    kl_secret_free(master);
    printf("c_pg: %d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
