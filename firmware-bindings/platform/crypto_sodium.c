/*
 * crypto_sodium.c - mk_crypto.h on the host build with libsodium (>= 1.0.18): SHA-512, Ed25519 group operations
 * on raw scalars, raw-scalar Ed25519 signing by the RFC 8032 equations, ChaCha20-Poly1305 (IETF) for MKBOX1 boxes
 * (docs/enrollment.md), and mk_wipe. The unclamped X25519 ladder and the Edwards -> Montgomery map are the
 * portable src/mk_x25519.c (which also defines mk_scalar_check and mk_x25519_agree). Randomness always comes from
 * the caller's platform RNG (mk_platform.rng_fill), never from libsodium directly, so a port or a test controls it.
 * libsodium is initialised lazily (sodium_init() is idempotent and thread-safe).
 */
#include "mk_crypto.h"

#include <sodium.h>
#include <string.h>

#include "../src/mk_x25519.h"

/* C99 has no _Static_assert: a negative array size fails the build instead. */
typedef char mk_assert_sha512_state_fits[(sizeof(crypto_hash_sha512_state) <= sizeof(mk_sha512)) ? 1 : -1];
typedef char mk_assert_sha512_len[(crypto_hash_sha512_BYTES == MK_SHA512_LEN) ? 1 : -1];
typedef char mk_assert_sig_len[(crypto_sign_ed25519_BYTES == MK_SIG_LEN) ? 1 : -1];
typedef char mk_assert_scalar_len[(crypto_core_ed25519_SCALARBYTES == MK_SCALAR_LEN) ? 1 : -1];
typedef char mk_assert_aead_key[(crypto_aead_chacha20poly1305_ietf_KEYBYTES == 32) ? 1 : -1];
typedef char mk_assert_aead_nonce[(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12) ? 1 : -1];
typedef char mk_assert_aead_tag[(crypto_aead_chacha20poly1305_ietf_ABYTES == 16) ? 1 : -1];

static const char NONCE_DOMAIN[] = "meshkit-ed25519-nonce-v1";
static const char BOX_DOMAIN[] = "meshkit-box-v1";
#define MK_RANDOM_SCALAR_ATTEMPTS 128 /* each attempt succeeds with probability > 1/2 */

static int sodium_ready(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

void mk_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0) sodium_memzero(p, n);
}

/* ------------------------------------------------------------------------------------------------ SHA-512 */

/* The opaque struct is copied to and from a real crypto_hash_sha512_state (no type punning, any alignment). */
void mk_sha512_init(mk_sha512 *h)
{
    crypto_hash_sha512_state st;
    (void)sodium_ready();
    memset(h, 0, sizeof *h);
    crypto_hash_sha512_init(&st);
    memcpy(h->opaque, &st, sizeof st);
    sodium_memzero(&st, sizeof st);
}

void mk_sha512_update(mk_sha512 *h, const uint8_t *data, size_t len)
{
    crypto_hash_sha512_state st;
    if (len == 0) return;
    memcpy(&st, h->opaque, sizeof st);
    crypto_hash_sha512_update(&st, data, (unsigned long long)len);
    memcpy(h->opaque, &st, sizeof st);
    sodium_memzero(&st, sizeof st);
}

void mk_sha512_final(mk_sha512 *h, uint8_t out[MK_SHA512_LEN])
{
    crypto_hash_sha512_state st;
    memcpy(&st, h->opaque, sizeof st);
    crypto_hash_sha512_final(&st, out);
    sodium_memzero(&st, sizeof st);
    sodium_memzero(h, sizeof *h);
}

void mk_sha512_oneshot(uint8_t out[MK_SHA512_LEN], const uint8_t *data, size_t len)
{
    mk_sha512 h;
    mk_sha512_init(&h);
    mk_sha512_update(&h, data, len);
    mk_sha512_final(&h, out);
}

/* ------------------------------------------------------------------------------------------------ scalars */

int mk_scalar_random(const mk_platform *platform, uint8_t s[MK_SCALAR_LEN])
{
    int attempt;
    if (platform == NULL || platform->rng_fill == NULL || s == NULL) return -1;
    /* crypto_core_ed25519_scalar_random's method, on the platform RNG: 253 random bits, rejected unless 0 < s < L */
    for (attempt = 0; attempt < MK_RANDOM_SCALAR_ATTEMPTS; attempt++) {
        if (platform->rng_fill(platform->ctx, s, MK_SCALAR_LEN) != 0) break;
        s[MK_SCALAR_LEN - 1] &= 0x1f;
        if (mk_scalar_check(s) == 0) return 0;
    }
    mk_wipe(s, MK_SCALAR_LEN);
    return -1;
}

int mk_scalar_add(uint8_t out[MK_SCALAR_LEN], const uint8_t a[MK_SCALAR_LEN], const uint8_t b[MK_SCALAR_LEN])
{
    uint8_t sum[MK_SCALAR_LEN];
    int rc;
    if (out == NULL || mk_scalar_check(a) != 0 || mk_scalar_check(b) != 0 || sodium_ready() != 0) return -1;
    crypto_core_ed25519_scalar_add(sum, a, b); /* (a + b) mod L */
    rc = sodium_is_zero(sum, sizeof sum) ? -1 : 0;
    memcpy(out, sum, sizeof sum); /* after reading a and b, so out may alias either */
    mk_wipe(sum, sizeof sum);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ public keys */

int mk_ed25519_public(uint8_t pub[MK_ED_PUB_LEN], const uint8_t s[MK_SCALAR_LEN])
{
    if (pub == NULL || mk_scalar_check(s) != 0 || sodium_ready() != 0) return -1;
    return crypto_scalarmult_ed25519_base_noclamp(pub, s) == 0 ? 0 : -1;
}

int mk_x25519_public(uint8_t pub[MK_X_PUB_LEN], const uint8_t s[MK_SCALAR_LEN])
{
    uint8_t ed[MK_ED_PUB_LEN];
    int rc;
    if (pub == NULL) return -1;
    rc = mk_ed25519_public(ed, s);
    if (rc == 0) rc = mk_x25519_extended_from_ed25519(pub, ed);
    mk_wipe(ed, sizeof ed);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ Ed25519 */

static const uint8_t empty_message[1] = {0};

int mk_ed25519_sign(const mk_platform *platform, uint8_t sig[MK_SIG_LEN], const uint8_t s[MK_SCALAR_LEN],
                    const uint8_t pub[MK_ED_PUB_LEN], const uint8_t *msg, size_t len)
{
    uint8_t rnd[32], own_pub[MK_ED_PUB_LEN], wide[64], r[32], k[32], ks[32];
    mk_sha512 h;
    int rc = -1;

    if (platform == NULL || platform->rng_fill == NULL || sig == NULL || pub == NULL || (msg == NULL && len > 0))
        return -1;
    if (msg == NULL) msg = empty_message;
    /* pub must belong to s: signing under a wrong A would give an invalid signature */
    if (mk_ed25519_public(own_pub, s) != 0 || sodium_memcmp(own_pub, pub, MK_ED_PUB_LEN) != 0) return -1;
    if (platform->rng_fill(platform->ctx, rnd, sizeof rnd) != 0) goto done;

    /* prefix = SHA-512("meshkit-ed25519-nonce-v1" || s || rnd)[0..32], kept in wide[0..32] */
    mk_sha512_init(&h);
    mk_sha512_update(&h, (const uint8_t *)NONCE_DOMAIN, sizeof NONCE_DOMAIN - 1);
    mk_sha512_update(&h, s, MK_SCALAR_LEN);
    mk_sha512_update(&h, rnd, sizeof rnd);
    mk_sha512_final(&h, wide);
    /* r = SHA-512(prefix || msg) mod L */
    mk_sha512_init(&h);
    mk_sha512_update(&h, wide, 32);
    mk_sha512_update(&h, msg, len);
    mk_sha512_final(&h, wide);
    crypto_core_ed25519_scalar_reduce(r, wide);
    /* R = r*B (fails only for r = 0) */
    if (crypto_scalarmult_ed25519_base_noclamp(sig, r) != 0) goto done;
    /* k = SHA-512(R || A || msg) mod L; S = (r + k*s) mod L */
    mk_sha512_init(&h);
    mk_sha512_update(&h, sig, 32);
    mk_sha512_update(&h, pub, MK_ED_PUB_LEN);
    mk_sha512_update(&h, msg, len);
    mk_sha512_final(&h, wide);
    crypto_core_ed25519_scalar_reduce(k, wide);
    crypto_core_ed25519_scalar_mul(ks, k, s);
    crypto_core_ed25519_scalar_add(sig + 32, r, ks);
    rc = 0;
done:
    mk_wipe(rnd, sizeof rnd);
    mk_wipe(wide, sizeof wide);
    mk_wipe(r, sizeof r);
    mk_wipe(k, sizeof k);
    mk_wipe(ks, sizeof ks);
    mk_wipe(&h, sizeof h);
    if (rc != 0) mk_wipe(sig, MK_SIG_LEN);
    return rc;
}

int mk_ed25519_verify(const uint8_t sig[MK_SIG_LEN], const uint8_t pub[MK_ED_PUB_LEN], const uint8_t *msg,
                      size_t len)
{
    if (sig == NULL || pub == NULL || (msg == NULL && len > 0) || sodium_ready() != 0) return -1;
    if (msg == NULL) msg = empty_message;
    return crypto_sign_ed25519_verify_detached(sig, msg, (unsigned long long)len, pub) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------------ MKBOX1 */

/* okm = SHA-512("meshkit-box-v1" || 0x00 || label || 0x00 || shared || epk || R) */
static void box_kdf(uint8_t okm[MK_SHA512_LEN], const char *label, size_t label_len, const uint8_t shared[32],
                    const uint8_t epk[32], const uint8_t recipient_u[32])
{
    static const uint8_t zero = 0;
    mk_sha512 h;
    mk_sha512_init(&h);
    mk_sha512_update(&h, (const uint8_t *)BOX_DOMAIN, sizeof BOX_DOMAIN - 1);
    mk_sha512_update(&h, &zero, 1);
    mk_sha512_update(&h, (const uint8_t *)label, label_len);
    mk_sha512_update(&h, &zero, 1);
    mk_sha512_update(&h, shared, 32);
    mk_sha512_update(&h, epk, 32);
    mk_sha512_update(&h, recipient_u, 32);
    mk_sha512_final(&h, okm);
}

int mk_box_open(uint8_t *out, size_t cap, size_t *out_len, const uint8_t s[MK_SCALAR_LEN],
                const uint8_t my_u[MK_X_U_LEN], const char *label, const uint8_t *box, size_t box_len)
{
    uint8_t shared[MK_X_U_LEN], okm[MK_SHA512_LEN];
    size_t pt_len, label_len;
    int rc = -1;

    if (out_len != NULL) *out_len = 0;
    if (out == NULL || out_len == NULL || my_u == NULL || label == NULL || box == NULL || sodium_ready() != 0)
        return -1;
    if (box_len < MK_BOX_OVERHEAD) goto done;
    pt_len = box_len - MK_BOX_OVERHEAD;
    if (pt_len > cap) goto done;
    label_len = strlen(label);
    if (mk_x25519_agree(shared, s, box) != 0) goto done; /* invalid scalar or small-order epk */
    box_kdf(okm, label, label_len, shared, box, my_u);
    mk_wipe(shared, sizeof shared);
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, box + 32, (unsigned long long)pt_len,
                                                           box + 32 + pt_len, (const uint8_t *)label,
                                                           (unsigned long long)label_len, okm + 32, okm) != 0)
        goto done;
    *out_len = pt_len;
    rc = 0;
done:
    mk_wipe(shared, sizeof shared);
    mk_wipe(okm, sizeof okm);
    if (rc != 0) mk_wipe(out, cap);
    return rc;
}

int mk_box_seal(const mk_platform *platform, uint8_t *out, size_t cap, size_t *out_len,
                const uint8_t recipient_u[MK_X_U_LEN], const char *label, const uint8_t *msg, size_t len)
{
    uint8_t e[32], shared[32], okm[MK_SHA512_LEN];
    size_t label_len;
    int rc = -1;

    if (out_len != NULL) *out_len = 0;
    if (platform == NULL || platform->rng_fill == NULL || out == NULL || out_len == NULL || recipient_u == NULL ||
        label == NULL || (msg == NULL && len > 0) || sodium_ready() != 0)
        return -1;
    if (msg == NULL) msg = empty_message;
    if (len > cap || cap - len < MK_BOX_OVERHEAD) return -1;
    label_len = strlen(label);
    /* a standard X25519 ephemeral key (clamped), as node:crypto would make it */
    if (platform->rng_fill(platform->ctx, e, sizeof e) != 0) goto done;
    if (crypto_scalarmult_curve25519_base(out, e) != 0) goto done;
    if (crypto_scalarmult_curve25519(shared, e, recipient_u) != 0) goto done; /* all-zero: small-order recipient */
    box_kdf(okm, label, label_len, shared, out, recipient_u);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(out + 32, out + 32 + len, NULL, msg, (unsigned long long)len,
                                                       (const uint8_t *)label, (unsigned long long)label_len, NULL,
                                                       okm + 32, okm);
    *out_len = len + MK_BOX_OVERHEAD;
    rc = 0;
done:
    mk_wipe(e, sizeof e);
    mk_wipe(shared, sizeof shared);
    mk_wipe(okm, sizeof okm);
    if (rc != 0) mk_wipe(out, cap);
    return rc;
}
