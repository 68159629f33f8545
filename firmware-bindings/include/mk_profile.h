/*
 * mk_profile.h - what the device needs to present its keys (portable C99; docs/enrollment.md):
 * base64url, key identifiers (UDF) and the self-signed Device Profile (JWS General JSON).
 *
 * Key UDF: SHA-512 content-digest UDF (mesh-udf-15; implementation digest §2.1) with content type
 * application/pkix-keyinfo of the RFC 8410 SPKI DER, presented at 140 bits: 28 Base32 characters in 7 groups of
 * 4 joined by '-' (34 characters), the same string as keyId() of src/core/keys.ts.
 *
 * Caller buffers, no malloc; signing through mk_ed25519_sign (mk_crypto.h).
 */
#ifndef MK_PROFILE_H
#define MK_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "mk_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Length of base64url (no padding) of n bytes. */
#define MK_B64U_LEN(n) ((((size_t)(n)) * 4u + 2u) / 3u)
/* Characters of a 140-bit UDF string (28 + 6 dashes), without the NUL. */
#define MK_KEY_UDF_LEN 34u
/* Characters of an ISO 8601 time "YYYY-MM-DDTHH:MM:SS.000Z", without the NUL. */
#define MK_ISO_TIME_LEN 24u
/* Latest Unix time with a four-digit year (9999-12-31T23:59:59Z). */
#define MK_TIME_MAX 253402300799ull
/* A Device Profile JWS of identity strings of at most 64 bytes each always fits in this many bytes, and its
 * payload JSON in MK_PROFILE_SCRATCH_MAX. */
#define MK_PROFILE_MAX 2300u
#define MK_PROFILE_SCRATCH_MAX 1600u

/* base64url without padding of in[0..len) into out (capacity cap; no NUL written). Returns the number of
 * characters, or 0 when cap < MK_B64U_LEN(len) (and len > 0). */
size_t mk_b64u_encode(char *out, size_t cap, const uint8_t *in, size_t len);

/* SHA-512 content-digest UDF of data under content_type (ASCII, NUL-terminated) at bits of precision (a multiple of
 * 20 in 100..440, type byte included), with the compression rule (type 96..100 by the trailing zero bits of the
 * TCDV). Writes the dashed string and a NUL to out. Returns its length, or -1 for bad bits or a too small cap. */
int mk_udf_sha512(char *out, size_t cap, const char *content_type, const uint8_t *data, size_t len, unsigned bits);

/* Key UDFs (140 bits, application/pkix-keyinfo of the RFC 8410 SPKI). out gets MK_KEY_UDF_LEN chars + NUL. */
void mk_key_udf_ed25519(char out[MK_KEY_UDF_LEN + 1], const uint8_t pub[32]);
void mk_key_udf_x25519(char out[MK_KEY_UDF_LEN + 1], const uint8_t u[32]);

/* "YYYY-MM-DDTHH:MM:SS.000Z" (UTC) of Unix seconds t <= MK_TIME_MAX, and a NUL. -1 if t is larger. */
int mk_iso_time(char out[MK_ISO_TIME_LEN + 1], uint64_t t);

/* The public keys and identity a Device Profile describes. */
typedef struct mk_profile_input {
    const uint8_t *sig_pub;  /* Ed25519, 32 bytes */
    const uint8_t *enc_u;    /* X25519 u, 32 bytes */
    const uint8_t *auth_u;   /* X25519 u, 32 bytes */
    const char *model;       /* UTF-8, NUL-terminated: Description = "<model> <serial>" (JSON-escaped) */
    const char *serial;
    uint64_t time;           /* Updated, Unix seconds <= MK_TIME_MAX */
} mk_profile_input;

/* Build the self-signed Device Profile of docs/enrollment.md into out (capacity cap), signed with sig_scalar
 * (whose public key is in->sig_pub). scratch (capacity scratch_cap) holds the payload JSON while signing and is
 * wiped afterwards. Returns 0; -MK_ERR_BAD_LENGTH for NULL pointers or a time > MK_TIME_MAX; -MK_ERR_TOO_LARGE
 * when out or scratch is too small; -MK_ERR_RNG when signing fails (invalid scalar or RNG failure). The
 * identifier is written to id (MK_KEY_UDF_LEN + NUL) when id is not NULL. */
int mk_device_profile(uint8_t *out, size_t cap, size_t *out_len, uint8_t *scratch, size_t scratch_cap,
                      const mk_platform *platform, const uint8_t sig_scalar[32], const mk_profile_input *in,
                      char *id);

#ifdef __cplusplus
}
#endif

#endif /* MK_PROFILE_H */
