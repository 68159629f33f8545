/*
 * crypto_cli.c - a small driver of mk_crypto.h for the TypeScript cross-checks (test/device/firmware-crypto.test.ts).
 * Secrets never travel in argv: it reads one request per line on stdin and answers one line on stdout,
 * "OK <hex> [<hex>]" or "ERR". Hex fields may be "-" for empty. Requests:
 *   pub S                -> OK ED25519_PUB X25519_EXTENDED_PUB
 *   sign S MSG           -> OK SIG              (pub computed from S; platform RNG = libsodium randombytes)
 *   seal U LABEL MSG     -> OK BOX              (LABEL is ASCII, no spaces)
 *   open S U LABEL BOX   -> OK PLAINTEXT
 *   agree S U            -> OK SHARED
 *   add A B              -> OK SUM
 * Test tool only (built with the sanitizers by `make build/crypto-cli`); not part of a firmware image.
 */
#include "mk_crypto.h"
#include "mk_hex.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define MAX_FIELD 8192

static char line[4 * MAX_FIELD + 256];
static uint8_t f1[MAX_FIELD], f2[MAX_FIELD], f3[MAX_FIELD], result[MAX_FIELD + 64];

static int cli_rng(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    randombytes_buf(buf, len);
    return 0;
}

static void put_hex(const uint8_t *p, size_t n)
{
    size_t i;
    putchar(' ');
    if (n == 0) putchar('-');
    for (i = 0; i < n; i++) printf("%02x", p[i]);
}

static int handle(char *req, const mk_platform *platform)
{
    char *cmd = strtok(req, " "), *a = strtok(NULL, " "), *b = strtok(NULL, " "), *c = strtok(NULL, " "),
         *d = strtok(NULL, " ");
    size_t l1 = 0, l2 = 0, l3 = 0, n = 0;
    if (cmd == NULL) return -1;
    if (strcmp(cmd, "pub") == 0) {
        uint8_t ed[MK_ED_PUB_LEN], x[MK_X_PUB_LEN];
        if (mk_unhex(a, f1, sizeof f1, &l1) != 0 || l1 != 32) return -1;
        if (mk_ed25519_public(ed, f1) != 0 || mk_x25519_public(x, f1) != 0) return -1;
        printf("OK");
        put_hex(ed, sizeof ed);
        put_hex(x, sizeof x);
    } else if (strcmp(cmd, "sign") == 0) {
        uint8_t ed[MK_ED_PUB_LEN], sig[MK_SIG_LEN];
        if (mk_unhex(a, f1, sizeof f1, &l1) != 0 || l1 != 32 || mk_unhex(b, f2, sizeof f2, &l2) != 0) return -1;
        if (mk_ed25519_public(ed, f1) != 0 || mk_ed25519_sign(platform, sig, f1, ed, f2, l2) != 0) return -1;
        printf("OK");
        put_hex(sig, sizeof sig);
    } else if (strcmp(cmd, "seal") == 0) {
        if (mk_unhex(a, f1, sizeof f1, &l1) != 0 || l1 != 32 || b == NULL || mk_unhex(c, f2, sizeof f2, &l2) != 0)
            return -1;
        if (mk_box_seal(platform, result, sizeof result, &n, f1, b, f2, l2) != 0) return -1;
        printf("OK");
        put_hex(result, n);
    } else if (strcmp(cmd, "open") == 0) {
        if (mk_unhex(a, f1, sizeof f1, &l1) != 0 || l1 != 32 || mk_unhex(b, f2, sizeof f2, &l2) != 0 || l2 != 32 ||
            c == NULL || mk_unhex(d, f3, sizeof f3, &l3) != 0)
            return -1;
        if (mk_box_open(result, sizeof result, &n, f1, f2, c, f3, l3) != 0) return -1;
        printf("OK");
        put_hex(result, n);
    } else if (strcmp(cmd, "agree") == 0) {
        uint8_t shared[MK_X_U_LEN];
        if (mk_unhex(a, f1, sizeof f1, &l1) != 0 || l1 != 32 || mk_unhex(b, f2, sizeof f2, &l2) != 0 || l2 != 32) return -1;
        if (mk_x25519_agree(shared, f1, f2) != 0) return -1;
        printf("OK");
        put_hex(shared, sizeof shared);
    } else if (strcmp(cmd, "add") == 0) {
        uint8_t sum[MK_SCALAR_LEN];
        if (mk_unhex(a, f1, sizeof f1, &l1) != 0 || l1 != 32 || mk_unhex(b, f2, sizeof f2, &l2) != 0 || l2 != 32) return -1;
        if (mk_scalar_add(sum, f1, f2) != 0) return -1;
        printf("OK");
        put_hex(sum, sizeof sum);
    } else {
        return -1;
    }
    putchar('\n');
    return 0;
}

int main(void)
{
    mk_platform platform;
    if (sodium_init() < 0) return 1;
    memset(&platform, 0, sizeof platform);
    platform.rng_fill = cli_rng;
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (handle(line, &platform) != 0) puts("ERR");
        fflush(stdout);
        mk_wipe(line, sizeof line);
        mk_wipe(f1, sizeof f1);
        mk_wipe(f2, sizeof f2);
        mk_wipe(f3, sizeof f3);
        mk_wipe(result, sizeof result);
    }
    return 0;
}
