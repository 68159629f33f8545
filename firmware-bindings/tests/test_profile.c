/*
 * test_profile.c - unit tests of mk_profile.h: base64url, ISO times, JSON escaping, content-digest and key UDFs
 * (published vectors of the implementation digest §2.5 / §2.10, and vectors/profile.hex made by the TypeScript core
 * with tools/profile-vectors.mjs), and the Device Profile JWS (rebuilt here from the template of
 * docs/enrollment.md, signature checked with libsodium). Usage: test_profile VECTORS_DIR.
 */
#include "mk_profile.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "meshkit_protocol.h"
#include "mk_crypto.h"

#include "mk_test_vectors.h"

static int rng(void *ctx, uint8_t *buf, size_t len)
{
    int *fail = (int *)ctx;
    if (*fail) return -1;
    randombytes_buf(buf, len);
    return 0;
}
static int no_read(void *ctx, uint8_t *b, size_t c, size_t *l) { (void)ctx, (void)b, (void)c, *l = 0; return 0; }
static int no_write(void *ctx, const uint8_t *b, size_t l) { (void)ctx, (void)b, (void)l; return -1; }
static uint64_t no_now(void *ctx) { (void)ctx; return 0; }

static int rng_fail;
static mk_platform P;

/* ---------------------------------------------------------------- vector file cases */

static size_t b64u_decode(uint8_t *out, size_t cap, const char *in, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    int bits = 0;
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        const char *at = strchr(A, in[i]);
        if (at == NULL || in[i] == '\0') return (size_t)-1;
        acc = acc << 6 | (uint32_t)(at - A);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap) return (size_t)-1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}


static void vector_case(const char *name, int kind, int err)
{
    char got[600], want[600];
    (void)err;
    CHECK(kind == 1 && vb_len < sizeof want, "%s: expected 'input = output'", name);
    if (kind != 1 || vb_len >= sizeof want) return;
    memcpy(want, vb, vb_len);
    want[vb_len] = '\0';
    got[0] = '\0';
    if (strncmp(name, "b64u-", 5) == 0) {
        size_t n = mk_b64u_encode(got, sizeof got, va, va_len);
        got[n] = '\0';
        CHECK(n == MK_B64U_LEN(va_len), "%s: length %zu", name, n);
        if (va_len > 0) CHECK(mk_b64u_encode(got, MK_B64U_LEN(va_len) - 1, va, va_len) == 0, "%s: short cap", name);
        n = mk_b64u_encode(got, sizeof got, va, va_len);
        got[n] = '\0';
    } else if (strncmp(name, "time-", 5) == 0) {
        uint64_t t = 0;
        size_t i;
        for (i = 0; i < va_len; i++) t = t << 8 | va[i];
        CHECK(va_len == 8 && mk_iso_time(got, t) == 0, "%s: mk_iso_time", name);
    } else if (strncmp(name, "json-", 5) == 0) {
        /* the escaping is visible through the profile's Description: build one and find it in the payload */
        char model[128], serial[128];
        const uint8_t *nul = memchr(va, 0, va_len);
        size_t ml = nul == NULL ? 0 : (size_t)(nul - va);
        static uint8_t jws[MK_PROFILE_MAX], scratch[MK_PROFILE_SCRATCH_MAX];
        uint8_t s[32], pub[32], x[33];
        mk_profile_input in;
        size_t len = 0;
        CHECK(nul != NULL && ml < sizeof model && va_len - ml - 1 < sizeof serial, "%s: input", name);
        if (nul == NULL) return;
        memcpy(model, va, ml);
        model[ml] = '\0';
        memcpy(serial, va + ml + 1, va_len - ml - 1);
        serial[va_len - ml - 1] = '\0';
        CHECK(mk_scalar_random(&P, s) == 0 && mk_ed25519_public(pub, s) == 0 && mk_x25519_public(x, s) == 0,
              "%s: keys", name);
        in.sig_pub = pub, in.enc_u = x, in.auth_u = x, in.model = model, in.serial = serial, in.time = 1700000000;
        CHECK(mk_device_profile(jws, sizeof jws, &len, scratch, sizeof scratch, &P, s, &in, NULL) == 0, "%s: build",
              name);
        mk_wipe(s, sizeof s);
        {
            static uint8_t payload[MK_PROFILE_SCRATCH_MAX];
            char member[700];
            const char *p = (const char *)jws + 12, *end = strchr(p, '"');
            size_t n = end == NULL ? (size_t)-1 : b64u_decode(payload, sizeof payload - 1, p, (size_t)(end - p));
            int m = snprintf(member, sizeof member, "\"Description\":\"%s\",", want);
            CHECK(m > 0 && (size_t)m < sizeof member && n != (size_t)-1, "%s: payload", name);
            if (n == (size_t)-1) return;
            payload[n] = '\0';
            CHECK(strstr((const char *)payload, member) != NULL, "%s: payload lacks %s", name, member);
        }
        return;
    } else if (strncmp(name, "udf-", 4) == 0) {
        char ct[128];
        unsigned bits;
        size_t ctl;
        CHECK(va_len >= 3 && (size_t)va[2] + 3 <= va_len && va[2] < sizeof ct, "%s: input", name);
        if (va_len < 3 || (size_t)va[2] + 3 > va_len) return;
        bits = (unsigned)va[0] << 8 | va[1];
        ctl = va[2];
        memcpy(ct, va + 3, ctl);
        ct[ctl] = '\0';
        CHECK(mk_udf_sha512(got, sizeof got, ct, va + 3 + ctl, va_len - 3 - ctl, bits) == (int)vb_len, "%s: length",
              name);
    } else if (strncmp(name, "keyudf-ed-", 10) == 0) {
        char out[MK_KEY_UDF_LEN + 1];
        CHECK(va_len == 34, "%s: input", name);
        mk_key_udf_ed25519(out, va + 2);
        memcpy(got, out, sizeof out);
    } else if (strncmp(name, "keyudf-x-", 9) == 0) {
        char out[MK_KEY_UDF_LEN + 1];
        CHECK(va_len == 33, "%s: input", name);
        mk_key_udf_x25519(out, va + 1); /* "x" || u (32) */
        memcpy(got, out, sizeof out);
    } else {
        CHECK(0, "%s: unknown operation", name);
        return;
    }
    CHECK(strcmp(got, want) == 0, "%s: got %s want %s", name, got, want);
}

/* ---------------------------------------------------------------- published vectors */

static void test_published(void)
{
    static const char *const udfdata[][2] = {
        {"100", "MDDK-7N6A-727A-JZNO-STRX"},
        {"120", "MDDK-7N6A-727A-JZNO-STRX-XKS7"},
        {"140", "MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF"},
        {"200", "MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF-XI6O-ZSLU-2VOA"},
        {"260", "MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF-XI6O-ZSLU-2VOA-TZQ6-JMHP-TSXP"},
    };
    /* C1 (mesh-udf-15 §4.2), digest §2.5 */
    static const uint8_t c1[32] = {0xF5, 0x0E, 0xBA, 0xE4, 0xE7, 0x4A, 0xEE, 0x9B, 0x42, 0x32, 0xBE,
                                   0x7A, 0xCE, 0x8F, 0x4C, 0x74, 0xE4, 0x29, 0x02, 0x66, 0x97, 0x65,
                                   0xAE, 0x58, 0x8F, 0xF6, 0xA2, 0x35, 0x5B, 0x7B, 0xF6, 0xCA};
    static const uint8_t mesh_prefix[16] = {0x30, 0x2E, 0x30, 0x07, 0x06, 0x03, 0x2B, 0x65,
                                            0x70, 0x05, 0x00, 0x03, 0x23, 0x00, 0x04, 0x20};
    uint8_t der[48];
    char out[200], id[MK_KEY_UDF_LEN + 1];
    size_t i;
    for (i = 0; i < sizeof udfdata / sizeof udfdata[0]; i++) {
        unsigned bits = (unsigned)atoi(udfdata[i][0]);
        int n = mk_udf_sha512(out, sizeof out, "text/plain", (const uint8_t *)"UDF Data Value", 14, bits);
        CHECK(n == (int)strlen(udfdata[i][1]) && strcmp(out, udfdata[i][1]) == 0, "UDF Data Value at %u: %s", bits,
              out);
    }
    memcpy(der, mesh_prefix, 16);
    memcpy(der + 16, c1, 32);
    CHECK(mk_udf_sha512(out, sizeof out, "PKIXKey", der, 48, 140) == 34 &&
              strcmp(out, "MDBA-FZOD-HA65-JYAB-5VXE-U65V-LRHQ") == 0,
          "C1 published PKIXKey fingerprint: %s", out);
    CHECK(mk_udf_sha512(out, sizeof out, "application/pkix-keyinfo", der, 48, 140) == 34 &&
              strcmp(out, "MCSX-R2CY-EAE2-7N5W-6EVL-2TZR-O64B") == 0,
          "C1 mesh DER + pkix-keyinfo: %s", out);
    mk_key_udf_ed25519(id, c1);
    CHECK(strcmp(id, "MDTU-HKHV-AI44-SKG2-BYYP-QE7R-QMOS") == 0, "C1 RFC 8410 key UDF: %s", id);

    /* argument checks */
    CHECK(mk_udf_sha512(out, sizeof out, "text/plain", der, 1, 90) == -1, "bits 90");
    CHECK(mk_udf_sha512(out, sizeof out, "text/plain", der, 1, 130) == -1, "bits 130");
    CHECK(mk_udf_sha512(out, sizeof out, "text/plain", der, 1, 460) == -1, "bits 460");
    CHECK(mk_udf_sha512(out, 34, "text/plain", der, 1, 140) == -1, "cap 34 for 34 chars + NUL");
    CHECK(mk_udf_sha512(out, 35, "text/plain", der, 1, 140) == 34, "cap 35");
    CHECK(mk_udf_sha512(out, sizeof out, "text/plain", NULL, 1, 140) == -1, "NULL data");
    CHECK(mk_udf_sha512(out, sizeof out, "text/plain", NULL, 0, 140) == 34, "empty data");
    CHECK(mk_iso_time(out, MK_TIME_MAX) == 0 && strcmp(out, "9999-12-31T23:59:59.000Z") == 0, "last time: %s", out);
    CHECK(mk_iso_time(out, MK_TIME_MAX + 1) == -1, "time after 9999");
    CHECK(mk_b64u_encode(out, sizeof out, der, 0) == 0, "b64u of nothing");
}

/* ---------------------------------------------------------------- Device Profile */

/* Find "key":"value" after from in s; returns the value start and sets *n. */
static const char *member(const char *s, const char *key, size_t *n)
{
    char pat[64];
    const char *p, *e;
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    p = strstr(s, pat);
    if (p == NULL) return NULL;
    p += strlen(pat);
    e = strchr(p, '"');
    if (e == NULL) return NULL;
    *n = (size_t)(e - p);
    return p;
}

static void b64(char *out, size_t cap, const uint8_t *in, size_t n)
{
    size_t k = mk_b64u_encode(out, cap, in, n);
    out[k] = '\0';
}

static void test_device_profile(void)
{
    static uint8_t jws[MK_PROFILE_MAX + 1], scratch[MK_PROFILE_SCRATCH_MAX], payload[MK_PROFILE_SCRATCH_MAX];
    static char expect_p[MK_PROFILE_SCRATCH_MAX], signing[MK_PROFILE_MAX];
    uint8_t s[3][32], sig_pub[32], enc[33], auth[33], sig[64], zero[32];
    char sig_id[40], enc_id[40], auth_id[40], xs[3][48], expect_h[128], id[MK_KEY_UDF_LEN + 1];
    char model[MK_PROFILE_MAX], serial[80];
    mk_profile_input in;
    size_t len = 0, n, pn, hn, sn, i;
    const char *pv, *hv, *sv;
    int k;

    for (k = 0; k < 3; k++) CHECK(mk_scalar_random(&P, s[k]) == 0, "scalar %d", k);
    CHECK(mk_ed25519_public(sig_pub, s[0]) == 0 && mk_x25519_public(enc, s[1]) == 0 &&
              mk_x25519_public(auth, s[2]) == 0,
          "publics");
    in.sig_pub = sig_pub, in.enc_u = enc, in.auth_u = auth;
    in.model = "esp32s3-devkit", in.serial = "SN-000123", in.time = 1764288000; /* 2025-11-28T00:00:00Z */
    memset(jws, 0xEE, sizeof jws);
    CHECK(mk_device_profile(jws, MK_PROFILE_MAX, &len, scratch, sizeof scratch, &P, s[0], &in, id) == 0, "build");
    jws[len] = '\0';

    /* the template of docs/enrollment.md, filled in here */
    mk_key_udf_ed25519(sig_id, sig_pub);
    mk_key_udf_x25519(enc_id, enc);
    mk_key_udf_x25519(auth_id, auth);
    CHECK(strcmp(id, sig_id) == 0, "identifier returned");
    b64(xs[0], sizeof xs[0], sig_pub, 32);
    b64(xs[1], sizeof xs[1], enc, 32);
    b64(xs[2], sizeof xs[2], auth, 32);
    snprintf(expect_h, sizeof expect_h, "{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"cty\":\"DeviceProfile\"}", sig_id);
    snprintf(expect_p, sizeof expect_p,
             "{\"DeviceProfile\":{\"Identifier\":\"%s\",\"Names\":[],\"Updated\":\"2025-11-28T00:00:00.000Z\","
             "\"Sequence\":1,\"Description\":\"esp32s3-devkit SN-000123\","
             "\"DeviceSignatureKey\":{\"UDF\":\"%s\",\"PublicParameters\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}},"
             "\"DeviceAuthenticationKey\":{\"UDF\":\"%s\",\"PublicParameters\":{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"%s\"}},"
             "\"DeviceEncryptionKey\":{\"UDF\":\"%s\",\"PublicParameters\":{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"%s\"}}}}",
             sig_id, sig_id, xs[0], auth_id, xs[2], enc_id, xs[1]);
    CHECK(strncmp((const char *)jws, "{\"payload\":\"", 12) == 0, "JWS starts with payload");
    pv = member((const char *)jws, "payload", &pn);
    hv = member((const char *)jws, "protected", &hn);
    sv = member((const char *)jws, "signature", &sn);
    CHECK(pv != NULL && hv != NULL && sv != NULL, "JWS members");
    if (pv == NULL || hv == NULL || sv == NULL) return;
    n = b64u_decode(payload, sizeof payload - 1, pv, pn);
    CHECK(n == strlen(expect_p) && memcmp(payload, expect_p, n) == 0, "payload:\n%.*s\nwant\n%s", (int)n,
          (const char *)payload, expect_p);
    {
        uint8_t hdr[128];
        size_t hl = b64u_decode(hdr, sizeof hdr, hv, hn);
        CHECK(hl == strlen(expect_h) && memcmp(hdr, expect_h, hl) == 0, "protected header");
    }
    CHECK(b64u_decode(sig, sizeof sig, sv, sn) == 64 && sn == 86, "signature of 64 bytes");
    snprintf(signing, sizeof signing, "%.*s.%.*s", (int)hn, hv, (int)pn, pv);
    CHECK(crypto_sign_verify_detached(sig, (const unsigned char *)signing, strlen(signing), sig_pub) == 0,
          "libsodium verifies the profile signature");
    {
        char tail[400];
        snprintf(tail, sizeof tail, "\",\"signatures\":[{\"protected\":\"%.*s\",\"signature\":\"%.*s\"}]}", (int)hn, hv,
                 (int)sn, sv);
        CHECK(len == 12 + pn + strlen(tail) && strcmp((const char *)jws + 12 + pn, tail) == 0, "JWS layout: %s vs %s",
              (const char *)jws + 12 + pn, tail);
    }
    CHECK(jws[len] == '\0' && len < MK_PROFILE_MAX, "length %zu", len);

    /* worst case identity: 64 control characters each still fits MK_PROFILE_MAX / MK_PROFILE_SCRATCH_MAX */
    memset(model, 0x01, 64);
    model[64] = '\0';
    memset(serial, 0x1f, 64);
    serial[64] = '\0';
    in.model = model, in.serial = serial, in.time = MK_TIME_MAX;
    CHECK(mk_device_profile(jws, MK_PROFILE_MAX, &len, scratch, MK_PROFILE_SCRATCH_MAX, &P, s[0], &in, NULL) == 0,
          "worst-case identity fits (%zu bytes)", len);

    /* failures */
    in.model = "m", in.serial = "s", in.time = 0;
    CHECK(mk_device_profile(jws, 600, &len, scratch, sizeof scratch, &P, s[0], &in, NULL) == -MK_ERR_TOO_LARGE,
          "small out");
    for (i = 0; i < 600; i++) CHECK(jws[i] == 0, "out wiped after failure");
    CHECK(mk_device_profile(jws, sizeof jws, &len, scratch, 300, &P, s[0], &in, NULL) == -MK_ERR_TOO_LARGE,
          "small scratch");
    in.time = MK_TIME_MAX + 1;
    CHECK(mk_device_profile(jws, sizeof jws, &len, scratch, sizeof scratch, &P, s[0], &in, NULL) ==
              -MK_ERR_BAD_LENGTH,
          "time after 9999");
    in.time = 0;
    memset(zero, 0, sizeof zero);
    CHECK(mk_device_profile(jws, sizeof jws, &len, scratch, sizeof scratch, &P, zero, &in, NULL) == -MK_ERR_RNG,
          "zero scalar cannot sign");
    rng_fail = 1;
    CHECK(mk_device_profile(jws, sizeof jws, &len, scratch, sizeof scratch, &P, s[0], &in, NULL) == -MK_ERR_RNG,
          "RNG failure");
    rng_fail = 0;
    in.model = NULL;
    CHECK(mk_device_profile(jws, sizeof jws, &len, scratch, sizeof scratch, &P, s[0], &in, NULL) ==
              -MK_ERR_BAD_LENGTH,
          "NULL model");
    mk_wipe(s, sizeof s);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "vectors";
    int cases;
    if (sodium_init() < 0) return 2;
    memset(&P, 0, sizeof P);
    P.ctx = &rng_fail;
    P.rng_fill = rng;
    P.flash_read = no_read;
    P.flash_write = no_write;
    P.now_ms = no_now;
    test_published();
    test_device_profile();
    cases = run_file(dir, "profile.hex", vector_case);
    CHECK(cases >= 60, "profile.hex cases: %d", cases);
    printf("test_profile: %d vector cases, %d checks, %d failures\n", cases, checks, failures);
    return failures == 0 ? 0 : 1;
}
