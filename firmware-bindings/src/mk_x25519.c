/*
 * mk_x25519.c - portable Curve25519 arithmetic for the meshkit device (C99, no malloc, no libraries):
 * the field GF(2^255 - 19), the unclamped Montgomery ladder used for raw-scalar X25519 agreement
 * (docs/enrollment.md "Keys and encodings"), the cofactor lift s' = s + j*L, the Edwards -> Montgomery map for
 * extended X25519 public keys, and the two mk_crypto.h functions that need nothing else (mk_scalar_check,
 * mk_x25519_agree). The TypeScript reference is src/core/cogen.ts (ladder, ecdhWithScalar, encodeExtended).
 *
 * The field representation and routines (16 signed 64-bit limbs of 16 bits; car25519, sel25519, pack25519,
 * unpack25519, A, Z, M, S, inv25519, pow2523, the constants D and I) follow TweetNaCl by Daniel J. Bernstein,
 * Bernard van Gastel, Wesley Janssen, Tanja Lange, Peter Schwabe and Sjaak Smetsers, which is in the public
 * domain (https://tweetnacl.cr.yp.to/). Changes: every shift of a possibly negative value is written with
 * unsigned arithmetic (defined behaviour in C99, clean under UBSan), the ladder is RFC 7748's over 256 bits,
 * and temporaries holding secrets are wiped with mk_wipe.
 *
 * Constant time: the ladder, the lift and mk_scalar_check have no branches or memory indices that depend on
 * secret data; the field operations are branch-free. The Edwards -> Montgomery map handles public data only.
 */
#include "mk_x25519.h"

#include <string.h>

#include "mk_crypto.h"

typedef int64_t gf[16];

static const gf gf0 = {0};
static const gf gf1 = {1};
static const gf a24 = {0xdb41, 1}; /* 121665 = (486662 - 2) / 4 */
/* Ed25519 d = -121665/121666 */
static const gf D = {0x78a3, 0x1359, 0x4dca, 0x75eb, 0xd8ab, 0x4141, 0x0a4d, 0x0070,
                     0xe898, 0x7779, 0x4079, 0x8cc7, 0xfe73, 0x2b6f, 0x6cee, 0x5203};
/* sqrt(-1) = 2^((p-1)/4) */
static const gf I = {0xa0b0, 0x4a0e, 0x1b27, 0xc4ee, 0xe478, 0xad2f, 0x1806, 0x2f43,
                     0xd7a7, 0x3dfb, 0x0099, 0x2b4d, 0xdf0b, 0x4fc1, 0x2480, 0x2b83};
/* The square root of -486664 that maps the Ed25519 base point to (9, v) with RFC 7748's v:
 * 0x70d9120b9f5ff9442d84f723fc03b0813a5e2c2eb482e57d3391fb5500ba81e7 (the other root gives -v). */
static const gf SQRT_M486664 = {0x81e7, 0x00ba, 0xfb55, 0x3391, 0xe57d, 0xb482, 0x2c2e, 0x3a5e,
                                0xb081, 0xfc03, 0xf723, 0x2d84, 0xf944, 0x9f5f, 0x120b, 0x70d9};

/* L = 2^252 + 27742317777372353535851937790883648493, little-endian */
static const uint8_t L_BYTES[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                    0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};

/* floor(v / 2^16) for any int64_t v, without shifting a negative value */
static int64_t shr16(int64_t v)
{
    return (int64_t)((((uint64_t)v + ((uint64_t)1 << 63)) >> 16) - ((uint64_t)1 << 47));
}

/* bit 16 of the two's complement representation of v */
static int64_t bit16(int64_t v)
{
    return (int64_t)(((uint64_t)v >> 16) & 1u);
}

static void set25519(gf r, const gf a)
{
    int i;
    for (i = 0; i < 16; i++) r[i] = a[i];
}

static void car25519(gf o)
{
    int i;
    for (i = 0; i < 16; i++) {
        int64_t c;
        o[i] += (int64_t)1 << 16;
        c = shr16(o[i]);
        if (i < 15) {
            o[i + 1] += c - 1;
        } else {
            o[0] += 38 * (c - 1);
        }
        o[i] -= c * 65536;
    }
}

/* swap p and q when b = 1, leave them when b = 0; b must be 0 or 1 */
static void sel25519(gf p, gf q, int64_t b)
{
    int i;
    int64_t c = ~(b - 1);
    for (i = 0; i < 16; i++) {
        int64_t t = c & (p[i] ^ q[i]);
        p[i] ^= t;
        q[i] ^= t;
    }
}

static void pack25519(uint8_t o[32], const gf n)
{
    int i, j;
    gf m, t;
    set25519(t, n);
    car25519(t);
    car25519(t);
    car25519(t);
    for (j = 0; j < 2; j++) {
        int64_t b;
        m[0] = t[0] - 0xffed;
        for (i = 1; i < 15; i++) {
            m[i] = t[i] - 0xffff - bit16(m[i - 1]);
            m[i - 1] &= 0xffff;
        }
        m[15] = t[15] - 0x7fff - bit16(m[14]);
        b = bit16(m[15]);
        m[14] &= 0xffff;
        sel25519(t, m, 1 - b);
    }
    for (i = 0; i < 16; i++) {
        o[2 * i] = (uint8_t)(t[i] & 0xff);
        o[2 * i + 1] = (uint8_t)((t[i] >> 8) & 0xff); /* t[i] is in [0, 2^16) here */
    }
    mk_wipe(m, sizeof m);
    mk_wipe(t, sizeof t);
}

static void unpack25519(gf o, const uint8_t n[32])
{
    int i;
    for (i = 0; i < 16; i++) o[i] = (int64_t)n[2 * i] + ((int64_t)n[2 * i + 1] << 8);
    o[15] &= 0x7fff;
}

static void A(gf o, const gf a, const gf b)
{
    int i;
    for (i = 0; i < 16; i++) o[i] = a[i] + b[i];
}

static void Z(gf o, const gf a, const gf b)
{
    int i;
    for (i = 0; i < 16; i++) o[i] = a[i] - b[i];
}

static void M(gf o, const gf a, const gf b)
{
    int64_t t[31];
    int i, j;
    for (i = 0; i < 31; i++) t[i] = 0;
    for (i = 0; i < 16; i++) {
        for (j = 0; j < 16; j++) t[i + j] += a[i] * b[j];
    }
    for (i = 0; i < 15; i++) t[i] += 38 * t[i + 16];
    for (i = 0; i < 16; i++) o[i] = t[i];
    car25519(o);
    car25519(o);
    mk_wipe(t, sizeof t);
}

static void S(gf o, const gf a)
{
    M(o, a, a);
}

static void inv25519(gf o, const gf i)
{
    gf c;
    int a;
    set25519(c, i);
    for (a = 253; a >= 0; a--) {
        S(c, c);
        if (a != 2 && a != 4) M(c, c, i); /* the exponent p - 2 is public */
    }
    set25519(o, c);
    mk_wipe(c, sizeof c);
}

static void pow2523(gf o, const gf i)
{
    gf c;
    int a;
    set25519(c, i);
    for (a = 250; a >= 0; a--) {
        S(c, c);
        if (a != 1) M(c, c, i);
    }
    set25519(o, c);
    mk_wipe(c, sizeof c);
}

/* public data only */
static int eq25519(const gf a, const gf b)
{
    uint8_t c[32], d[32];
    pack25519(c, a);
    pack25519(d, b);
    return memcmp(c, d, 32) == 0;
}

static int par25519(const gf a)
{
    uint8_t d[32];
    pack25519(d, a);
    return d[0] & 1;
}

/* ------------------------------------------------------------------------------------------------ ladder */

int mk_x25519_ladder(uint8_t out[32], const uint8_t k[32], const uint8_t u[32])
{
    uint8_t ub[32];
    gf x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb, t;
    int64_t swap = 0;
    int bit;
    unsigned acc = 0;
    size_t i;

    memcpy(ub, u, 32);
    ub[31] &= 0x7f; /* RFC 7748: ignore bit 255 */
    unpack25519(x1, ub);
    set25519(x2, gf1);
    set25519(z2, gf0);
    set25519(x3, x1);
    set25519(z3, gf1);
    for (bit = 255; bit >= 0; bit--) {
        int64_t kt = (int64_t)((k[bit >> 3] >> (bit & 7)) & 1);
        swap ^= kt;
        sel25519(x2, x3, swap);
        sel25519(z2, z3, swap);
        swap = kt;
        A(a, x2, z2);
        S(aa, a);
        Z(b, x2, z2);
        S(bb, b);
        Z(e, aa, bb);
        A(c, x3, z3);
        Z(d, x3, z3);
        M(da, d, a);
        M(cb, c, b);
        A(t, da, cb);
        S(x3, t);
        Z(t, da, cb);
        S(t, t);
        M(z3, x1, t);
        M(x2, aa, bb);
        M(t, e, a24);
        A(t, t, aa);
        M(z2, e, t);
    }
    sel25519(x2, x3, swap);
    sel25519(z2, z3, swap);
    inv25519(z2, z2); /* 0 -> 0, so a zero z2 gives a zero result */
    M(x2, x2, z2);
    pack25519(out, x2);
    for (i = 0; i < 32; i++) acc |= out[i];

    mk_wipe(ub, sizeof ub);
    mk_wipe(x1, sizeof x1);
    mk_wipe(x2, sizeof x2);
    mk_wipe(z2, sizeof z2);
    mk_wipe(x3, sizeof x3);
    mk_wipe(z3, sizeof z3);
    mk_wipe(a, sizeof a);
    mk_wipe(aa, sizeof aa);
    mk_wipe(b, sizeof b);
    mk_wipe(bb, sizeof bb);
    mk_wipe(e, sizeof e);
    mk_wipe(c, sizeof c);
    mk_wipe(d, sizeof d);
    mk_wipe(da, sizeof da);
    mk_wipe(cb, sizeof cb);
    mk_wipe(t, sizeof t);
    return acc == 0 ? -1 : 0;
}

void mk_x25519_lift(uint8_t out[32], const uint8_t s[32])
{
    /* L = 5 (mod 8) and 5 * 5 = 1 (mod 8), so j = -5s = 3s (mod 8) makes s + j*L = 0 (mod 8) */
    unsigned j = (3u * (unsigned)(s[0] & 7u)) & 7u;
    unsigned carry = 0;
    size_t i;
    for (i = 0; i < 32; i++) {
        unsigned v = (unsigned)s[i] + j * (unsigned)L_BYTES[i] + carry;
        out[i] = (uint8_t)(v & 0xffu);
        carry = v >> 8;
    }
    /* s < L < 2^253, so s + 7L < 2^256 and no carry is left */
}

/* -------------------------------------------------------------------------------- Edwards -> Montgomery */

int mk_x25519_extended_from_ed25519(uint8_t out[33], const uint8_t ed[32])
{
    uint8_t yb[32], check[32];
    gf y, x, num, den, den2, den4, den6, t, chk, one_plus, one_minus, u, v;
    int sign = ed[31] >> 7;

    memcpy(yb, ed, 32);
    yb[31] &= 0x7f;
    unpack25519(y, yb);
    pack25519(check, y);
    if (memcmp(check, yb, 32) != 0) return -1; /* y >= p: not canonical */

    /* x^2 = (y^2 - 1) / (d y^2 + 1), as TweetNaCl's unpackneg */
    S(num, y);
    M(den, num, D);
    Z(num, num, gf1);
    A(den, gf1, den);
    S(den2, den);
    S(den4, den2);
    M(den6, den4, den2);
    M(t, den6, num);
    M(t, t, den);
    pow2523(t, t);
    M(t, t, num);
    M(t, t, den);
    M(t, t, den);
    M(x, t, den);
    S(chk, x);
    M(chk, chk, den);
    if (!eq25519(chk, num)) M(x, x, I);
    S(chk, x);
    M(chk, chk, den);
    if (!eq25519(chk, num)) return -1; /* not on the curve */
    if (eq25519(x, gf0)) return -1;   /* x = 0: the identity (0, 1) or (0, -1), no affine Montgomery image */
    if (par25519(x) != sign) Z(x, gf0, x);

    /* u = (1 + y) / (1 - y); v = sqrt(-486664) * u / x */
    A(one_plus, gf1, y);
    Z(one_minus, gf1, y);
    inv25519(one_minus, one_minus);
    M(u, one_plus, one_minus);
    inv25519(t, x);
    M(v, u, t);
    M(v, v, SQRT_M486664);
    pack25519(out, u);
    out[32] = par25519(v) ? 0x80 : 0x00;
    return 0;
}

/* ------------------------------------------------------------------------------------ mk_crypto.h parts */

int mk_scalar_check(const uint8_t s[MK_SCALAR_LEN])
{
    /* s < L iff s - L borrows; s != 0 iff some byte is nonzero; no data-dependent branch */
    unsigned borrow = 0, nonzero = 0;
    size_t i;
    if (s == NULL) return -1;
    for (i = 0; i < 32; i++) {
        unsigned diff = (unsigned)s[i] - (unsigned)L_BYTES[i] - borrow;
        borrow = (diff >> 8) & 1u;
        nonzero |= s[i];
    }
    return (borrow & (unsigned)(nonzero != 0)) ? 0 : -1;
}

int mk_x25519_agree(uint8_t shared[MK_X_U_LEN], const uint8_t s[MK_SCALAR_LEN], const uint8_t peer_u[MK_X_U_LEN])
{
    uint8_t lifted[32];
    int rc;
    if (shared == NULL) return -1;
    if (peer_u == NULL || mk_scalar_check(s) != 0) {
        mk_wipe(shared, MK_X_U_LEN);
        return -1;
    }
    mk_x25519_lift(lifted, s);
    rc = mk_x25519_ladder(shared, lifted, peer_u);
    mk_wipe(lifted, sizeof lifted);
    if (rc != 0) mk_wipe(shared, MK_X_U_LEN);
    return rc;
}
