/*
 * mk_x25519.h - portable Curve25519 pieces behind mk_crypto.h (private to firmware-bindings; src/mk_x25519.c):
 * the unclamped Montgomery ladder, the cofactor lift of a raw scalar, and the Edwards -> Montgomery map that
 * gives the extended X25519 public key (u || sign byte) of an Ed25519 point. No secrets are kept between calls.
 */
#ifndef MK_X25519_H
#define MK_X25519_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out = u(k * P) by the RFC 7748 section 5 ladder over all 256 bits of k (little-endian, NOT clamped), where
 * u(P) = u (bit 255 ignored, values >= p taken mod p). Constant time in k (conditional swaps, no secret
 * branches or indices). Returns 0, or -1 when the result is zero (out is then all zero). */
int mk_x25519_ladder(uint8_t out[32], const uint8_t k[32], const uint8_t u[32]);

/* out = s + j*L, j in 0..7 the smallest with out = 0 (mod 8), for a canonical scalar s < L (fits in 256 bits).
 * Constant time in s. */
void mk_x25519_lift(uint8_t out[32], const uint8_t s[32]);

/* The extended X25519 public key of the Ed25519 point with RFC 8032 encoding ed (RFC 7748 section 4.1 map:
 * u = (1 + y) / (1 - y), v = sqrt(-486664) * u / x with the root that takes the Ed25519 base point to
 * (9, RFC 7748 v)): out = u (32, little-endian) || 0x80 if v is odd else 0x00. Variable time (public input).
 * Returns 0, or -1 if ed is not a canonical encoding of a curve point, or is the identity / the point (0, -1). */
int mk_x25519_extended_from_ed25519(uint8_t out[33], const uint8_t ed[32]);

#ifdef __cplusplus
}
#endif

#endif /* MK_X25519_H */
