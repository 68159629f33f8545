/*
 * test_crypto.c - unit tests of mk_crypto.h (src/mk_x25519.c + platform/crypto_sodium.c) against the shared
 * vectors firmware-bindings/vectors/crypto.hex (written by tools/crypto-vectors.mjs from the TypeScript core and
 * node:crypto), plus interop checks against libsodium's standard X25519 / Ed25519 and the failure paths
 * (invalid scalars, a failing or stuck RNG, short buffers, tampered boxes).
 * Usage: test_crypto VECTOR_DIR. Exit status 0 when every check passes.
 */
#include "mk_crypto.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshkit_protocol.h"
#include "mk_test_vectors.h"

#include "../src/mk_x25519.h"

/* ---------------------------------------------------------------- test platform: controllable RNG */

enum { RNG_DETERMINISTIC, RNG_FAIL, RNG_ALL_FF, RNG_FAIL_AFTER };
typedef struct test_rng {
    int mode;
    uint64_t counter;
    unsigned calls, fail_after;
} test_rng;

static int rng_fill(void *ctx, uint8_t *buf, size_t len)
{
    test_rng *r = (test_rng *)ctx;
    r->calls++;
    if (r->mode == RNG_FAIL || (r->mode == RNG_FAIL_AFTER && r->calls > r->fail_after)) return -1;
    if (r->mode == RNG_ALL_FF) {
        memset(buf, 0xff, len);
        return 0;
    }
    while (len > 0) { /* SHA-512 of a counter */
        uint8_t block[64], ctr[8];
        size_t n = len < 64 ? len : 64, i;
        for (i = 0; i < 8; i++) ctr[i] = (uint8_t)(r->counter >> (8 * i));
        r->counter++;
        crypto_hash_sha512(block, ctr, sizeof ctr);
        memcpy(buf, block, n);
        buf += n;
        len -= n;
    }
    return 0;
}

static test_rng rng_state;
static mk_platform platform;

static void platform_reset(int mode)
{
    memset(&rng_state, 0, sizeof rng_state);
    rng_state.mode = mode;
    memset(&platform, 0, sizeof platform);
    platform.ctx = &rng_state;
    platform.rng_fill = rng_fill;
}

static int all_zero(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (p[i] != 0) return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- keys remembered from the vectors */

#define MAX_KEYS 64
static struct key {
    uint8_t s[32], ed[32], x[33];
    int has_ed, has_x;
} keys[MAX_KEYS];
static size_t n_keys;

static struct key *key_for(const uint8_t s[32])
{
    size_t i;
    for (i = 0; i < n_keys; i++) {
        if (memcmp(keys[i].s, s, 32) == 0) return &keys[i];
    }
    if (n_keys == MAX_KEYS) return NULL;
    memset(&keys[n_keys], 0, sizeof keys[n_keys]);
    memcpy(keys[n_keys].s, s, 32);
    return &keys[n_keys++];
}

static const uint8_t FIVE[32] = {5};

/* ---------------------------------------------------------------- vector cases */

static uint8_t out[4096], out2[4096];

static void sha512_case(const char *name, int kind)
{
    uint8_t d[64];
    mk_sha512 h;
    size_t third = va_len / 3;
    CHECK(kind == 1 && vb_len == 64, "%s: malformed", name);
    mk_sha512_oneshot(d, va, va_len);
    CHECK(memcmp(d, vb, 64) == 0, "%s: one-shot", name);
    mk_sha512_init(&h);
    mk_sha512_update(&h, va, third);
    mk_sha512_update(&h, va + third, 0);
    mk_sha512_update(&h, va + third, va_len - third);
    mk_sha512_final(&h, d);
    CHECK(memcmp(d, vb, 64) == 0, "%s: incremental", name);
    CHECK(all_zero((const uint8_t *)&h, sizeof h), "%s: final wipes the state", name);
}

static void edpub_case(const char *name, int kind)
{
    uint8_t pub[32], sig[64];
    static const uint8_t msg[] = "meshkit test message";
    struct key *k;
    CHECK(kind == 1 && va_len == 32 && vb_len == 32, "%s: malformed", name);
    CHECK(mk_scalar_check(va) == 0, "%s: scalar check", name);
    CHECK(mk_ed25519_public(pub, va) == 0 && memcmp(pub, vb, 32) == 0, "%s: public key", name);
    platform_reset(RNG_DETERMINISTIC);
    CHECK(mk_ed25519_sign(&platform, sig, va, vb, msg, sizeof msg) == 0, "%s: sign", name);
    CHECK(mk_ed25519_verify(sig, vb, msg, sizeof msg) == 0, "%s: own verify", name);
    CHECK(crypto_sign_ed25519_verify_detached(sig, msg, sizeof msg, vb) == 0, "%s: libsodium verify", name);
    CHECK(mk_ed25519_verify(sig, vb, msg, sizeof msg - 1) == -1, "%s: other message fails", name);
    k = key_for(va);
    if (k != NULL) {
        memcpy(k->ed, vb, 32);
        k->has_ed = 1;
    }
}

static void xpub_case(const char *name, int kind)
{
    uint8_t pub[33];
    struct key *k;
    CHECK(kind == 1 && va_len == 32 && vb_len == 33, "%s: malformed", name);
    memset(pub, 0xa5, sizeof pub);
    CHECK(mk_x25519_public(pub, va) == 0 && memcmp(pub, vb, 33) == 0, "%s: extended public key", name);
    k = key_for(va);
    if (k != NULL) {
        memcpy(k->x, vb, 33);
        k->has_x = 1;
    }
}

static void scalarbad_case(const char *name, int kind)
{
    uint8_t pub[33], shared[32], sig[64], sum[32], u[32];
    size_t n = 1;
    static const uint8_t box[64] = {9};
    CHECK(kind == 0 && va_len == 32, "%s: malformed", name);
    memset(u, 0, sizeof u);
    u[0] = 9;
    platform_reset(RNG_DETERMINISTIC);
    CHECK(mk_scalar_check(va) == -1, "%s: check", name);
    CHECK(mk_ed25519_public(pub, va) == -1, "%s: ed public", name);
    CHECK(mk_x25519_public(pub, va) == -1, "%s: x public", name);
    CHECK(mk_x25519_agree(shared, va, u) == -1 && all_zero(shared, 32), "%s: agree", name);
    memset(pub, 0, 32);
    CHECK(mk_ed25519_sign(&platform, sig, va, pub, u, sizeof u) == -1, "%s: sign", name);
    CHECK(mk_scalar_add(sum, va, FIVE) == -1, "%s: add a", name);
    CHECK(mk_scalar_add(sum, FIVE, va) == -1, "%s: add b", name);
    CHECK(mk_box_open(out, sizeof out, &n, va, u, "config", box, sizeof box) == -1 && n == 0, "%s: box open", name);
}

static void add_case(const char *name, int kind)
{
    uint8_t a[32], b[32], sum[32];
    CHECK(va_len == 64, "%s: malformed", name);
    memcpy(a, va, 32);
    memcpy(b, va + 32, 32);
    if (kind == 1) {
        CHECK(vb_len == 32, "%s: malformed", name);
        CHECK(mk_scalar_add(sum, a, b) == 0 && memcmp(sum, vb, 32) == 0, "%s: sum", name);
        CHECK(mk_scalar_add(sum, b, a) == 0 && memcmp(sum, vb, 32) == 0, "%s: commutes", name);
        CHECK(mk_scalar_add(a, a, b) == 0 && memcmp(a, vb, 32) == 0, "%s: out aliases a", name);
        memcpy(a, va, 32);
        CHECK(mk_scalar_add(b, a, b) == 0 && memcmp(b, vb, 32) == 0, "%s: out aliases b", name);
    } else {
        int valid = mk_scalar_check(a) == 0 && mk_scalar_check(b) == 0;
        memset(sum, 0xa5, sizeof sum);
        CHECK(mk_scalar_add(sum, a, b) == -1, "%s: must fail", name);
        if (valid) CHECK(all_zero(sum, 32), "%s: zero sum left in out", name);
    }
}

static void agree_case(const char *name, int kind)
{
    uint8_t shared[32];
    CHECK(va_len == 64, "%s: malformed", name);
    memset(shared, 0xa5, sizeof shared);
    if (kind == 1) {
        CHECK(vb_len == 32, "%s: malformed", name);
        CHECK(mk_x25519_agree(shared, va, va + 32) == 0 && memcmp(shared, vb, 32) == 0, "%s: shared secret", name);
    } else {
        CHECK(mk_x25519_agree(shared, va, va + 32) == -1, "%s: must fail", name);
        CHECK(all_zero(shared, 32), "%s: shared wiped", name);
    }
}

static void open_case(const char *name, int kind)
{
    char label[256];
    size_t label_len, box_len, n = 99, want;
    const uint8_t *s = va, *my_u = va + 32, *box;
    CHECK(va_len >= 65 && va_len >= (size_t)65 + va[64], "%s: malformed", name);
    if (va_len < 65 || va_len < (size_t)65 + va[64]) return;
    label_len = va[64];
    memcpy(label, va + 65, label_len);
    label[label_len] = 0;
    box = va + 65 + label_len;
    box_len = va_len - 65 - label_len;
    memset(out, 0xa5, sizeof out);
    if (kind == 1) {
        CHECK(vb_len >= 2 && vb_len == (size_t)2 + ((size_t)vb[0] << 8 | vb[1]), "%s: malformed", name);
        want = vb_len - 2;
        CHECK(mk_box_open(out, sizeof out, &n, s, my_u, label, box, box_len) == 0 && n == want &&
                  memcmp(out, vb + 2, want) == 0,
              "%s: open", name);
        CHECK(mk_box_open(out, want, &n, s, my_u, label, box, box_len) == 0 && n == want, "%s: exact cap", name);
        if (want > 0) {
            memset(out, 0xa5, want);
            CHECK(mk_box_open(out, want - 1, &n, s, my_u, label, box, box_len) == -1 && n == 0 &&
                      all_zero(out, want - 1),
                  "%s: short cap fails", name);
        }
    } else {
        CHECK(mk_box_open(out, sizeof out, &n, s, my_u, label, box, box_len) == -1, "%s: must fail", name);
        CHECK(n == 0 && all_zero(out, sizeof out), "%s: out wiped", name);
    }
}

static void verify_case(const char *name, int kind)
{
    CHECK(va_len >= 96, "%s: malformed", name);
    if (va_len < 96) return;
    if (kind == 1) {
        CHECK(vb_len == 1 && vb[0] == 1, "%s: malformed", name);
        CHECK(mk_ed25519_verify(va + 32, va, va + 96, va_len - 96) == 0, "%s: valid signature", name);
        if (va_len > 96) {
            va[va_len - 1] ^= 0x80;
            CHECK(mk_ed25519_verify(va + 32, va, va + 96, va_len - 96) == -1, "%s: altered message", name);
        }
    } else {
        CHECK(mk_ed25519_verify(va + 32, va, va + 96, va_len - 96) == -1, "%s: must fail", name);
    }
}

static void crypto_case(const char *name, int kind, int err)
{
    const char *dash = strchr(name, '-');
    size_t op = dash == NULL ? strlen(name) : (size_t)(dash - name);
    (void)err;
#define IS(word) (op == sizeof word - 1 && strncmp(name, word, op) == 0)
    if (IS("sha512")) {
        sha512_case(name, kind);
    } else if (IS("edpub")) {
        edpub_case(name, kind);
    } else if (IS("xpub")) {
        xpub_case(name, kind);
    } else if (IS("scalarbad")) {
        scalarbad_case(name, kind);
    } else if (IS("add") || IS("addbad")) {
        CHECK((kind == 1) == IS("add"), "%s: kind", name);
        add_case(name, kind);
    } else if (IS("agree") || IS("agreebad")) {
        CHECK((kind == 1) == IS("agree"), "%s: kind", name);
        agree_case(name, kind);
    } else if (IS("open") || IS("openbad")) {
        CHECK((kind == 1) == IS("open"), "%s: kind", name);
        open_case(name, kind);
    } else if (IS("verify") || IS("verifybad")) {
        CHECK((kind == 1) == IS("verify"), "%s: kind", name);
        verify_case(name, kind);
    } else {
        CHECK(0, "unknown vector operation in %s", name);
    }
#undef IS
}

/* ---------------------------------------------------------------- tests beyond the vectors */

/* keys from the vectors: agreement is symmetric, boxes sealed to one open with its scalar */
static void test_vector_keys(void)
{
    size_t i, used = 0;
    for (i = 0; i + 1 < n_keys; i++) {
        const struct key *a = &keys[i], *b = &keys[i + 1];
        uint8_t ab[32], ba[32], box[128], pt[80];
        size_t n = 0, m = 0;
        static const uint8_t msg[] = "co-generation contribution";
        if (!a->has_x || !b->has_x) continue;
        used++;
        CHECK(mk_x25519_agree(ab, a->s, b->x) == 0 && mk_x25519_agree(ba, b->s, a->x) == 0 && memcmp(ab, ba, 32) == 0,
              "key %zu: agreement symmetric", i);
        platform_reset(RNG_DETERMINISTIC);
        rng_state.counter = 1000 + i;
        CHECK(mk_box_seal(&platform, box, sizeof box, &n, a->x, "contribution", msg, sizeof msg) == 0 &&
                  n == sizeof msg + MK_BOX_OVERHEAD,
              "key %zu: seal", i);
        CHECK(mk_box_open(pt, sizeof pt, &m, a->s, a->x, "contribution", box, n) == 0 && m == sizeof msg &&
                  memcmp(pt, msg, m) == 0,
              "key %zu: open own box", i);
        CHECK(mk_box_open(pt, sizeof pt, &m, b->s, a->x, "contribution", box, n) == -1, "key %zu: other key fails", i);
        CHECK(mk_box_open(pt, sizeof pt, &m, a->s, a->x, "config", box, n) == -1, "key %zu: other label fails", i);
    }
    CHECK(used >= 10, "only %zu vector key pairs with X25519 publics", used);
}

static void test_sha512(void)
{
    /* FIPS 180-4 / NIST example values */
    static const char *empty_hex = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                                   "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
    static const char *abc_hex = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                                 "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    uint8_t want[64], d[64];
    size_t n;
    mk_sha512 h;
    CHECK(parse_hex(empty_hex, 128, want, &n) == 0, "hex");
    mk_sha512_oneshot(d, NULL, 0);
    CHECK(memcmp(d, want, 64) == 0, "SHA-512 of the empty string");
    CHECK(parse_hex(abc_hex, 128, want, &n) == 0, "hex");
    mk_sha512_init(&h);
    mk_sha512_update(&h, (const uint8_t *)"a", 1);
    mk_sha512_update(&h, (const uint8_t *)"b", 1);
    mk_sha512_update(&h, (const uint8_t *)"c", 1);
    mk_sha512_final(&h, d);
    CHECK(memcmp(d, want, 64) == 0, "SHA-512 of abc byte by byte");
}

static void test_random(void)
{
    uint8_t s[32], prev[32];
    int i, distinct = 1;
    platform_reset(RNG_DETERMINISTIC);
    memset(prev, 0, sizeof prev);
    for (i = 0; i < 200; i++) {
        CHECK(mk_scalar_random(&platform, s) == 0 && mk_scalar_check(s) == 0, "random scalar %d", i);
        if (memcmp(s, prev, 32) == 0) distinct = 0;
        memcpy(prev, s, 32);
    }
    CHECK(distinct, "random scalars repeat");
    CHECK(rng_state.calls > 200, "rejection sampling never rejected in 200 draws (calls=%u)", rng_state.calls);
    platform_reset(RNG_FAIL);
    memset(s, 0xa5, sizeof s);
    CHECK(mk_scalar_random(&platform, s) == -1 && all_zero(s, 32), "failing RNG");
    platform_reset(RNG_ALL_FF);
    memset(s, 0xa5, sizeof s);
    CHECK(mk_scalar_random(&platform, s) == -1 && all_zero(s, 32) && rng_state.calls == 128, "stuck RNG calls=%u",
          rng_state.calls);
    CHECK(mk_scalar_random(NULL, s) == -1, "no platform");
}

/* the lift keeps s mod L and clears the cofactor, for every residue mod 8 */
static void test_lift(void)
{
    uint8_t s[32], lifted[32], wide[64], back[32];
    int i;
    platform_reset(RNG_DETERMINISTIC);
    for (i = 0; i < 64; i++) {
        CHECK(mk_scalar_random(&platform, s) == 0, "random");
        s[0] = (uint8_t)((s[0] & 0xf8) | (i & 7));
        if (mk_scalar_check(s) != 0) continue;
        mk_x25519_lift(lifted, s);
        CHECK((lifted[0] & 7) == 0, "lift %d: multiple of 8", i);
        memset(wide, 0, sizeof wide);
        memcpy(wide, lifted, 32);
        crypto_core_ed25519_scalar_reduce(back, wide);
        CHECK(memcmp(back, s, 32) == 0, "lift %d: same scalar mod L", i);
    }
}

/* standard X25519 keys (libsodium, clamped) are raw scalars clamp(k) mod L for mk_crypto; both must agree */
static void test_x25519_interop(void)
{
    int i;
    platform_reset(RNG_DETERMINISTIC);
    for (i = 0; i < 32; i++) {
        uint8_t k[32], clamped[64], s[32], u_std[32], x[33], ed[32], u_map[32], peer_k[32], peer_u[32];
        uint8_t std_shared[32], mk_shared[32];
        rng_fill(&rng_state, k, 32);
        rng_fill(&rng_state, peer_k, 32);
        memset(clamped, 0, sizeof clamped);
        memcpy(clamped, k, 32);
        clamped[0] &= 248;
        clamped[31] = (uint8_t)((clamped[31] & 127) | 64);
        crypto_core_ed25519_scalar_reduce(s, clamped);
        CHECK(crypto_scalarmult_curve25519_base(u_std, k) == 0, "libsodium base");
        CHECK(mk_x25519_public(x, s) == 0 && memcmp(x, u_std, 32) == 0 && (x[32] == 0 || x[32] == 0x80),
              "interop %d: public u equals libsodium X25519", i);
        CHECK(mk_ed25519_public(ed, s) == 0 && crypto_sign_ed25519_pk_to_curve25519(u_map, ed) == 0 &&
                  memcmp(u_map, u_std, 32) == 0,
              "interop %d: libsodium's Edwards map agrees", i);
        CHECK(crypto_scalarmult_curve25519_base(peer_u, peer_k) == 0, "libsodium base");
        CHECK(crypto_scalarmult_curve25519(std_shared, peer_k, x) == 0, "libsodium agreement");
        CHECK(mk_x25519_agree(mk_shared, s, peer_u) == 0 && memcmp(mk_shared, std_shared, 32) == 0,
              "interop %d: raw-scalar agreement equals X25519(clamp(k_peer), u)", i);
        /* a peer u with bit 255 set is the same key */
        peer_u[31] |= 0x80;
        CHECK(mk_x25519_agree(mk_shared, s, peer_u) == 0 && memcmp(mk_shared, std_shared, 32) == 0,
              "interop %d: bit 255 ignored", i);
    }
}

/* Ed25519 key pairs from libsodium seeds: the scalar SHA-512(seed)[0..32] clamped, reduced mod L */
static void test_ed25519_interop(void)
{
    int i;
    platform_reset(RNG_DETERMINISTIC);
    for (i = 0; i < 16; i++) {
        uint8_t seed[32], pk[32], sk[64], h[64], s[32], pub[32], sig[64], sig2[64];
        uint8_t msg[40];
        rng_fill(&rng_state, seed, 32);
        rng_fill(&rng_state, msg, sizeof msg);
        crypto_sign_ed25519_seed_keypair(pk, sk, seed);
        crypto_hash_sha512(h, seed, 32);
        h[0] &= 248;
        h[31] = (uint8_t)((h[31] & 127) | 64);
        memset(h + 32, 0, 32);
        crypto_core_ed25519_scalar_reduce(s, h);
        CHECK(mk_ed25519_public(pub, s) == 0 && memcmp(pub, pk, 32) == 0, "ed interop %d: public key", i);
        CHECK(mk_ed25519_sign(&platform, sig, s, pub, msg, sizeof msg) == 0, "ed interop %d: sign", i);
        CHECK(crypto_sign_ed25519_verify_detached(sig, msg, sizeof msg, pk) == 0, "ed interop %d: libsodium verify",
              i);
        CHECK(mk_ed25519_sign(&platform, sig2, s, pub, msg, sizeof msg) == 0 && memcmp(sig, sig2, 64) != 0,
              "ed interop %d: hedged nonce gives a fresh signature", i);
        CHECK(mk_ed25519_verify(sig2, pk, msg, sizeof msg) == 0, "ed interop %d: verify second", i);
        CHECK(crypto_sign_ed25519_detached(sig, NULL, msg, sizeof msg, sk) == 0 &&
                  mk_ed25519_verify(sig, pk, msg, sizeof msg) == 0,
              "ed interop %d: verify a libsodium signature", i);
        sig[63] ^= 0x10;
        CHECK(mk_ed25519_verify(sig, pk, msg, sizeof msg) == -1, "ed interop %d: tampered signature", i);
    }
}

static void test_sign_failures(void)
{
    uint8_t s[32], pub[32], other[32], sig[64];
    static const uint8_t msg[] = "receipt";
    platform_reset(RNG_DETERMINISTIC);
    CHECK(mk_scalar_random(&platform, s) == 0 && mk_ed25519_public(pub, s) == 0, "key");
    CHECK(mk_ed25519_public(other, FIVE) == 0, "other key");
    memset(sig, 0xa5, sizeof sig);
    CHECK(mk_ed25519_sign(&platform, sig, s, other, msg, sizeof msg) == -1, "sign with a foreign public key fails");
    platform_reset(RNG_FAIL);
    memset(sig, 0xa5, sizeof sig);
    CHECK(mk_ed25519_sign(&platform, sig, s, pub, msg, sizeof msg) == -1 && all_zero(sig, 64),
          "sign with a failing RNG fails and wipes sig");
    CHECK(mk_ed25519_sign(NULL, sig, s, pub, msg, sizeof msg) == -1, "sign without platform");
    platform_reset(RNG_DETERMINISTIC);
    CHECK(mk_ed25519_sign(&platform, sig, s, pub, NULL, 0) == 0, "sign the empty message");
    CHECK(crypto_sign_ed25519_verify_detached(sig, msg, 0, pub) == 0 && mk_ed25519_verify(sig, pub, NULL, 0) == 0,
          "empty message verifies");
    CHECK(mk_ed25519_verify(sig, pub, msg, 1) == -1, "one byte is not the empty message");
    CHECK(mk_ed25519_sign(&platform, sig, s, pub, NULL, 3) == -1, "NULL message with a length");
}

static void test_box_failures(void)
{
    uint8_t s[32], x[33], box[256], pt[256], zero_u[32];
    static const uint8_t msg[] = "ssid=factory;psk=not-a-secret";
    size_t n = 0, m = 0;
    platform_reset(RNG_DETERMINISTIC);
    CHECK(mk_scalar_random(&platform, s) == 0 && mk_x25519_public(x, s) == 0, "key");
    CHECK(mk_box_seal(&platform, box, sizeof msg + MK_BOX_OVERHEAD - 1, &n, x, "config", msg, sizeof msg) == -1 &&
              n == 0,
          "seal: cap too small");
    CHECK(mk_box_seal(&platform, box, sizeof box, &n, x, "config", msg, sizeof msg) == 0, "seal");
    CHECK(mk_box_open(pt, sizeof msg - 1, &m, s, x, "config", box, n) == -1, "open: cap too small");
    CHECK(mk_box_open(pt, sizeof pt, &m, s, x, "config", box, n) == 0 && m == sizeof msg &&
              memcmp(pt, msg, m) == 0,
          "open");
    CHECK(mk_box_open(pt, sizeof pt, &m, s, x, "config", box, MK_BOX_OVERHEAD - 1) == -1, "open: shorter than overhead");
    CHECK(mk_box_open(pt, sizeof pt, &m, s, x, NULL, box, n) == -1, "open: no label");
    memset(zero_u, 0, sizeof zero_u);
    memset(box, 0xa5, sizeof box);
    CHECK(mk_box_seal(&platform, box, sizeof box, &n, zero_u, "config", msg, sizeof msg) == -1 &&
              all_zero(box, sizeof box),
          "seal to a small-order key fails and wipes out");
    platform_reset(RNG_FAIL);
    CHECK(mk_box_seal(&platform, box, sizeof box, &n, x, "config", msg, sizeof msg) == -1, "seal: failing RNG");
    platform_reset(RNG_DETERMINISTIC);
    CHECK(mk_box_seal(&platform, box, sizeof box, &n, x, "config", NULL, 0) == 0 && n == MK_BOX_OVERHEAD,
          "seal an empty message");
    CHECK(mk_box_open(pt, sizeof pt, &m, s, x, "config", box, n) == 0 && m == 0, "open an empty message");
}

static void test_wipe_and_map(void)
{
    uint8_t buf[37], ext[33];
    static const uint8_t identity[32] = {1};
    uint8_t noncanonical[32];
    memset(buf, 0x5a, sizeof buf);
    mk_wipe(buf, sizeof buf);
    CHECK(all_zero(buf, sizeof buf), "mk_wipe");
    mk_wipe(NULL, 0);
    CHECK(mk_x25519_extended_from_ed25519(ext, identity) == -1, "map: identity has no affine image");
    memset(noncanonical, 0xff, sizeof noncanonical);
    noncanonical[31] = 0x7f; /* y = 2^255 - 1 >= p */
    CHECK(mk_x25519_extended_from_ed25519(ext, noncanonical) == -1, "map: non-canonical y");
}

int main(int argc, char **argv)
{
    int n;
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTOR_DIR\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "FAIL sodium_init\n");
        return 1;
    }
    n = run_file(argv[1], "crypto.hex", crypto_case);
    CHECK(n >= 150, "only %d crypto vectors", n);
    test_vector_keys();
    test_sha512();
    test_random();
    test_lift();
    test_x25519_interop();
    test_ed25519_interop();
    test_sign_failures();
    test_box_failures();
    test_wipe_and_map();
    (void)out2;
    printf("test_crypto: %d vector cases, %d checks, %d failures\n", n, checks, failures);
    return failures == 0 ? 0 : 1;
}
