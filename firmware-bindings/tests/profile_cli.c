/*
 * profile_cli.c - prints the Device Profile the C code builds, for test/device/firmware-profile.test.ts.
 * Test tool, not part of a firmware image. Secrets are read from stdin, never from argv.
 *
 * stdin, one item per line: signature scalar (64 hex), encryption scalar, authentication scalar (32 bytes
 * little-endian each), time (decimal Unix seconds), model (hex of its UTF-8), serial (hex of its UTF-8).
 * stdout, one item per line: the profile JWS, the signature public key (hex, 32), the encryption and
 * authentication public keys (hex, 33, extended), and the three key UDFs (signature, encryption, authentication).
 * Exit status 0, or 1 with a message on stderr.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_crypto.h"
#include "mk_hex.h"
#include "mk_profile.h"

static int rng(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    randombytes_buf(buf, len);
    return 0;
}
static int no_read(void *ctx, uint8_t *b, size_t c, size_t *l) { (void)ctx, (void)b, (void)c, *l = 0; return 0; }
static int no_write(void *ctx, const uint8_t *b, size_t l) { (void)ctx, (void)b, (void)l; return -1; }
static uint64_t no_now(void *ctx) { (void)ctx; return 0; }

static int read_line(char *buf, size_t cap)
{
    size_t n;
    if (fgets(buf, (int)cap, stdin) == NULL) return -1;
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
    return (int)n;
}

static void print_hex(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\n");
}

int main(void)
{
    static char line[512];
    static uint8_t jws[MK_PROFILE_MAX + 1], scratch[MK_PROFILE_SCRATCH_MAX];
    uint8_t s[3][32], sig[32], enc[33], auth[33], ident[2][65];
    char udf[3][MK_KEY_UDF_LEN + 1], *end;
    mk_platform p;
    mk_profile_input in;
    size_t n, len = 0;
    unsigned long long t;
    int i, rc = 1;

    if (sodium_init() < 0) return 1;
    memset(&p, 0, sizeof p);
    p.rng_fill = rng, p.flash_read = no_read, p.flash_write = no_write, p.now_ms = no_now;
    for (i = 0; i < 3; i++) {
        if (read_line(line, sizeof line) != 64 || mk_unhex(line, s[i], 32, &n) != 0) {
            fprintf(stderr, "profile_cli: scalar %d: expected 64 hex digits\n", i);
            goto done;
        }
    }
    if (read_line(line, sizeof line) <= 0) goto bad_time;
    t = strtoull(line, &end, 10);
    if (*end != '\0') goto bad_time;
    for (i = 0; i < 2; i++) {
        if (read_line(line, sizeof line) < 0 || mk_unhex(line, ident[i], 64, &n) != 0) {
            fprintf(stderr, "profile_cli: %s: expected hex of at most 64 bytes\n", i == 0 ? "model" : "serial");
            goto done;
        }
        ident[i][n] = 0;
    }
    if (mk_ed25519_public(sig, s[0]) != 0 || mk_x25519_public(enc, s[1]) != 0 || mk_x25519_public(auth, s[2]) != 0) {
        fprintf(stderr, "profile_cli: invalid scalar\n");
        goto done;
    }
    in.sig_pub = sig, in.enc_u = enc, in.auth_u = auth;
    in.model = (const char *)ident[0], in.serial = (const char *)ident[1], in.time = t;
    if (mk_device_profile(jws, MK_PROFILE_MAX, &len, scratch, sizeof scratch, &p, s[0], &in, NULL) != 0) {
        fprintf(stderr, "profile_cli: mk_device_profile failed\n");
        goto done;
    }
    jws[len] = 0;
    mk_key_udf_ed25519(udf[0], sig);
    mk_key_udf_x25519(udf[1], enc);
    mk_key_udf_x25519(udf[2], auth);
    printf("%s\n", (const char *)jws);
    print_hex(sig, 32);
    print_hex(enc, 33);
    print_hex(auth, 33);
    printf("%s\n%s\n%s\n", udf[0], udf[1], udf[2]);
    rc = 0;
    goto done;
bad_time:
    fprintf(stderr, "profile_cli: time: expected decimal Unix seconds\n");
done:
    mk_wipe(s, sizeof s);
    mk_wipe(line, sizeof line);
    return rc;
}
