/*
 * Hot-path latency of kl_authorize from C (target: p50 ≤ 1.2 µs): a cached key, a free
 * route, cost 0. Prints the median and p99 of 200 batches of 1 000 calls.
 *
 *   cargo build --release --lib
 *   cc -O2 -std=c11 -Iinclude bench/c/hot_authorize.c -Ltarget/release -lkeyledger \
 *      -Wl,-rpath,$PWD/target/release -o target/hot_authorize
 *   target/hot_authorize /tmp/bench-vault.redb
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyledger.h"

#define BATCHES 200
#define PER_BATCH 1000

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void must(kl_status s, const char *what) {
    if (s != KL_OK) {
        fprintf(stderr, "%s: %s (%s)\n", what, kl_status_code(s), kl_last_error_message());
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/tmp/keyledger-c-bench.redb";
    remove(path);
    kl_vault *v = NULL;
    must(kl_vault_open(path, strlen(path), NULL, 0, &v), "open");
    char *json = NULL;
    must(kl_create_account(v, "acct_42", 7, 100, NULL, 0, &json), "account");
    kl_string_free(json);
    const char *pattern = "/api/v1/numbers/mine";
    must(kl_add_route(v, "GET", 3, pattern, strlen(pattern), "numbers:read", 12, 0, &json), "route");
    kl_string_free(json);
    const char *spec = "{\"account_id\":\"acct_42\",\"name\":\"bench\",\"scopes\":[\"numbers:read\"],\"prefix\":\"dial_live\"}";
    char *token = NULL, *key = NULL;
    must(kl_create_key(v, spec, strlen(spec), &token, &key), "key");
    kl_string_free(key);
    size_t tlen = strlen(token);
    kl_grant g = KL_GRANT_INIT;
    must(kl_authorize(v, token, tlen, "GET", 3, pattern, strlen(pattern), NULL, &g), "warm-up");
    static double per_call[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int i = 0; i < PER_BATCH; i++) {
            if (kl_authorize(v, token, tlen, "GET", 3, pattern, strlen(pattern), NULL, &g) != KL_OK) {
                fprintf(stderr, "refused: %s\n", kl_last_error_message());
                return 1;
            }
        }
        per_call[b] = (now_ns() - t0) / PER_BATCH;
    }
    qsort(per_call, BATCHES, sizeof per_call[0], cmp);
    printf("kl_authorize hot path: median %.0f ns, p99 %.0f ns (%d batches of %d calls)\n",
           per_call[BATCHES / 2], per_call[BATCHES * 99 / 100], BATCHES, PER_BATCH);
    kl_secret_free(token);
    kl_vault_free(v);
    remove(path);
    return 0;
}
