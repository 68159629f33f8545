/*
 * mk_crypto.h - the cryptography the meshkit device needs (portable C99 interface; docs/enrollment.md).
 *
 * Every key is a raw scalar: 32 bytes little-endian, 1 <= s < L (the Ed25519/X25519 group order), never clamped,
 * so that co-generation can add scalars (composite = (s + c) mod L). Ed25519 public keys are the RFC 8032 encoding
 * of s*B; X25519 public keys are "extended": u (32, little-endian) || 0x80 if v is odd else 0x00 (33 bytes).
 *
 * The host build (platform/crypto_sodium.c) uses libsodium for SHA-512, Ed25519 group operations, ChaCha20-Poly1305
 * and randomness, and src/mk_x25519.c (portable field arithmetic) for the unclamped Montgomery ladder and the
 * Edwards -> Montgomery map. A port to another MCU supplies the same functions (e.g. on a crypto accelerator).
 *
 * Return values: 0 on success, -1 on failure (invalid input, a zero result, a tag mismatch). No malloc.
 */
#ifndef MK_CRYPTO_H
#define MK_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "mk_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MK_SCALAR_LEN 32u
#define MK_ED_PUB_LEN 32u
#define MK_X_PUB_LEN 33u /* extended u || sign byte */
#define MK_X_U_LEN 32u
#define MK_SIG_LEN 64u
#define MK_SHA512_LEN 64u
#define MK_BOX_OVERHEAD 48u /* epk 32 + tag 16 */

/* Overwrite n bytes at p with zeros in a way the compiler keeps. */
void mk_wipe(void *p, size_t n);

/* SHA-512, one shot and incremental. */
typedef struct mk_sha512 {
    uint64_t opaque[32]; /* large enough for libsodium's crypto_hash_sha512_state (208 bytes) */
} mk_sha512;
void mk_sha512_init(mk_sha512 *h);
void mk_sha512_update(mk_sha512 *h, const uint8_t *data, size_t len);
void mk_sha512_final(mk_sha512 *h, uint8_t out[MK_SHA512_LEN]); /* wipes h */
void mk_sha512_oneshot(uint8_t out[MK_SHA512_LEN], const uint8_t *data, size_t len);

/* A uniformly random scalar 1 <= s < L from the platform RNG (253-bit candidates, rejection sampling). -1 if the
 * RNG fails or 128 candidates in a row are rejected (a broken RNG; s is then zero). */
int mk_scalar_random(const mk_platform *platform, uint8_t s[MK_SCALAR_LEN]);
/* 0 if s is canonical (< L) and not zero, else -1. */
int mk_scalar_check(const uint8_t s[MK_SCALAR_LEN]);
/* out = (a + b) mod L; -1 if a or b is not canonical (< L) or is zero, or the sum is zero (out is then zero).
 * out may alias a or b. */
int mk_scalar_add(uint8_t out[MK_SCALAR_LEN], const uint8_t a[MK_SCALAR_LEN], const uint8_t b[MK_SCALAR_LEN]);

/* Ed25519 public key s*B. -1 for an invalid scalar. */
int mk_ed25519_public(uint8_t pub[MK_ED_PUB_LEN], const uint8_t s[MK_SCALAR_LEN]);
/* X25519 extended public key (u || sign) of s*B. -1 for an invalid scalar. */
int mk_x25519_public(uint8_t pub[MK_X_PUB_LEN], const uint8_t s[MK_SCALAR_LEN]);

/* Ed25519 signature with a raw scalar (RFC 8032 equations, hedged secret nonce prefix from the platform RNG:
 * SHA-512("meshkit-ed25519-nonce-v1" || s || 32 random bytes)[0..32]). pub must be mk_ed25519_public(s).
 * -1 for an invalid scalar, a pub that is not mk_ed25519_public(s), or an RNG failure (sig is then wiped). */
int mk_ed25519_sign(const mk_platform *platform, uint8_t sig[MK_SIG_LEN], const uint8_t s[MK_SCALAR_LEN],
                    const uint8_t pub[MK_ED_PUB_LEN], const uint8_t *msg, size_t len);
/* 0 if sig is a valid Ed25519 signature of msg by pub (RFC 8032, libsodium's strict checks), else -1. */
int mk_ed25519_verify(const uint8_t sig[MK_SIG_LEN], const uint8_t pub[MK_ED_PUB_LEN], const uint8_t *msg,
                      size_t len);

/* X25519 agreement with a raw scalar: the unclamped ladder on s + j*L (smallest j with s + j*L = 0 mod 8).
 * peer is the 32-byte u (bit 255 ignored, RFC 7748). -1 for an invalid scalar or an all-zero shared secret (shared
 * is then all zero). */
int mk_x25519_agree(uint8_t shared[MK_X_U_LEN], const uint8_t s[MK_SCALAR_LEN], const uint8_t peer_u[MK_X_U_LEN]);

/* Open an MKBOX1 sealed box (docs/enrollment.md) addressed to the key (s, my_u) under label (ASCII, NUL-terminated).
 * Writes box_len - MK_BOX_OVERHEAD plaintext bytes to out. -1 if box_len < MK_BOX_OVERHEAD, cap is too small, the
 * agreement fails or the tag does not match (out is then wiped). */
int mk_box_open(uint8_t *out, size_t cap, size_t *out_len, const uint8_t s[MK_SCALAR_LEN],
                const uint8_t my_u[MK_X_U_LEN], const char *label, const uint8_t *box, size_t box_len);
/* Seal plaintext to recipient_u (for tests and a device that answers encrypted): out gets len + MK_BOX_OVERHEAD
 * bytes (epk = X25519 base of a clamped 32-byte ephemeral from the platform RNG). msg must not overlap out.
 * -1 if cap is too small, the RNG fails or the agreement is zero (out is then wiped). */
int mk_box_seal(const mk_platform *platform, uint8_t *out, size_t cap, size_t *out_len,
                const uint8_t recipient_u[MK_X_U_LEN], const char *label, const uint8_t *msg, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MK_CRYPTO_H */
