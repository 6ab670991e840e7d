/* Hot kl_authorize through the C ABI (the "from C" target), built and run by bench/report:
 *
 *   cc -O2 -I include bench/c_hot.c -L target/release -lkeyledger -o target/c_hot
 *   target/c_hot /tmp/dir   # prints one JSON line
 *
 * Creates a vault in the given directory, verifies a key once (its one argon2), then
 * times 2000 batches of 100 kl_authorize calls; p50 is the median per-call time of a batch.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyledger.h"

#define CHECK(call)                                                               \
    do {                                                                          \
        kl_status s_ = (call);                                                    \
        if (s_ != KL_OK) {                                                        \
            fprintf(stderr, "%s failed: %d %s\n", #call, (int)s_, kl_last_error_message()); \
            return 1;                                                             \
        }                                                                         \
    } while (0)

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: c_hot DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/c_hot.redb", argv[1]);
    struct kl_vault *v = NULL;
    char *json = NULL, *token = NULL;
    CHECK(kl_vault_open(path, strlen(path), NULL, 0, &v));
    CHECK(kl_create_account(v, "acct_42", 7, 1000000, NULL, 0, &json));
    kl_string_free(json);
    CHECK(kl_add_route(v, "GET", 3, "/api/v1/numbers/mine", 20, "numbers:read", 12, 0, &json));
    kl_string_free(json);
    const char *spec = "{\"account_id\": \"acct_42\", \"name\": \"bench\", \"scopes\": [\"numbers:read\"], \"prefix\": \"dial_live\"}";
    CHECK(kl_create_key(v, spec, strlen(spec), &token, &json));
    kl_string_free(json);
    size_t tlen = strlen(token);
    struct kl_grant g = KL_GRANT_INIT;
    CHECK(kl_authorize(v, token, tlen, "GET", 3, "/api/v1/numbers/mine", 20, NULL, &g));
    for (int i = 0; i < 20000; i++) {
        CHECK(kl_authorize(v, token, tlen, "GET", 3, "/api/v1/numbers/mine", 20, NULL, &g));
    }
    enum { BATCHES = 2000, PER = 100 };
    static double t[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int i = 0; i < PER; i++) {
            CHECK(kl_authorize(v, token, tlen, "GET", 3, "/api/v1/numbers/mine", 20, NULL, &g));
        }
        t[b] = (now_ns() - t0) / PER;
    }
    qsort(t, BATCHES, sizeof t[0], cmp);
    printf("{\"bench\": \"c_hot\", \"p50_ns\": %.0f, \"p99_batch_ns\": %.0f}\n", t[BATCHES / 2],
           t[BATCHES * 99 / 100]);
    kl_secret_free(token);
    kl_vault_free(v);
    return 0;
}
