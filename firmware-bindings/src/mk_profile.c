/*
 * mk_profile.c - base64url, key UDFs and the self-signed Device Profile (see mk_profile.h). Portable C99.
 */
#include "mk_profile.h"

#include <string.h>

#include "meshkit_protocol.h"
#include "mk_crypto.h"

/* ---------------------------------------------------------------- base64url */

static const char B64U[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t mk_b64u_encode(char *out, size_t cap, const uint8_t *in, size_t len)
{
    size_t i, o = 0;
    if (len == 0) return 0;
    if (out == NULL || in == NULL || cap < MK_B64U_LEN(len)) return 0;
    for (i = 0; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64U[v >> 18 & 63];
        out[o++] = B64U[v >> 12 & 63];
        out[o++] = B64U[v >> 6 & 63];
        out[o++] = B64U[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64U[v >> 18 & 63];
        out[o++] = B64U[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64U[v >> 18 & 63];
        out[o++] = B64U[v >> 12 & 63];
        out[o++] = B64U[v >> 6 & 63];
    }
    return o;
}

/* ---------------------------------------------------------------- UDF */

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* Trailing zero bits of b[0..n) read as one big-endian number. */
static unsigned trailing_zero_bits(const uint8_t *b, size_t n)
{
    unsigned count = 0;
    while (n > 0) {
        uint8_t v = b[--n];
        if (v == 0) {
            count += 8;
            continue;
        }
        while ((v & 1u) == 0) {
            count++;
            v >>= 1;
        }
        break;
    }
    return count;
}

int mk_udf_sha512(char *out, size_t cap, const char *content_type, const uint8_t *data, size_t len, unsigned bits)
{
    mk_sha512 h;
    uint8_t inner[MK_SHA512_LEN], binary[1 + MK_SHA512_LEN];
    unsigned tz, chars, i, level, buffer = 0, nbits = 0;
    size_t index = 0, o = 0;
    if (out == NULL || content_type == NULL || (data == NULL && len != 0)) return -1;
    if (bits < 100 || bits > 440 || bits % 20 != 0) return -1;
    chars = bits / 5;
    if (cap < (size_t)chars + (chars - 1) / 4 + 1) return -1;
    mk_sha512_oneshot(inner, data, len);
    mk_sha512_init(&h);
    mk_sha512_update(&h, (const uint8_t *)content_type, strlen(content_type));
    mk_sha512_update(&h, (const uint8_t *)":", 1);
    mk_sha512_update(&h, inner, sizeof inner);
    mk_sha512_final(&h, binary + 1);
    tz = trailing_zero_bits(binary + 1, MK_SHA512_LEN);
    level = tz >= 50 ? 4u : tz >= 40 ? 3u : tz >= 30 ? 2u : tz >= 20 ? 1u : 0u;
    binary[0] = (uint8_t)(96u + level); /* SHA-2-512, compression changes only the type byte */
    for (i = 0; i < chars; i++) {
        if (nbits < 5) {
            buffer = (buffer << 8 | binary[index++]) & 0xFFFFu; /* bits <= 440 never reads past 65 bytes */
            nbits += 8;
        }
        if (i > 0 && i % 4 == 0) out[o++] = '-';
        out[o++] = B32[buffer >> (nbits - 5) & 31u];
        nbits -= 5;
    }
    out[o] = '\0';
    return (int)o;
}

static void key_udf(char out[MK_KEY_UDF_LEN + 1], uint8_t oid_last, const uint8_t key[32])
{
    uint8_t spki[44] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    spki[8] = oid_last;
    memcpy(spki + 12, key, 32);
    (void)mk_udf_sha512(out, MK_KEY_UDF_LEN + 1, "application/pkix-keyinfo", spki, sizeof spki, 140);
}

void mk_key_udf_ed25519(char out[MK_KEY_UDF_LEN + 1], const uint8_t pub[32]) { key_udf(out, 0x70, pub); }

void mk_key_udf_x25519(char out[MK_KEY_UDF_LEN + 1], const uint8_t u[32]) { key_udf(out, 0x6e, u); }

/* ---------------------------------------------------------------- time */

int mk_iso_time(char out[MK_ISO_TIME_LEN + 1], uint64_t t)
{
    /* days from civil (H. Hinnant), inverted: Unix days -> y-m-d */
    uint64_t days = t / 86400u, secs = t % 86400u;
    uint64_t z = days + 719468u, era = z / 146097u, doe = z - era * 146097u;
    uint64_t yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
    uint64_t y = yoe + era * 400u, doy = doe - (365u * yoe + yoe / 4u - yoe / 100u);
    uint64_t mp = (5u * doy + 2u) / 153u, d = doy - (153u * mp + 2u) / 5u + 1u;
    uint64_t m = mp < 10u ? mp + 3u : mp - 9u;
    uint64_t v[6];
    static const unsigned width[6] = {4, 2, 2, 2, 2, 2};
    static const char sep[6] = {'-', '-', 'T', ':', ':', '.'};
    size_t o = 0;
    int k;
    if (out == NULL) return -1;
    if (t > MK_TIME_MAX) return -1;
    if (m <= 2u) y++;
    v[0] = y, v[1] = m, v[2] = d, v[3] = secs / 3600u, v[4] = secs / 60u % 60u, v[5] = secs % 60u;
    for (k = 0; k < 6; k++) {
        unsigned w = width[k], j;
        uint64_t x = v[k];
        for (j = w; j > 0; j--) {
            out[o + j - 1] = (char)('0' + (int)(x % 10u));
            x /= 10u;
        }
        o += w;
        out[o++] = sep[k];
    }
    memcpy(out + o, "000Z", 5);
    return 0;
}

/* ---------------------------------------------------------------- JSON writer */

typedef struct sbuf {
    char *p;
    size_t cap, n;
    int err;
} sbuf;

static void s_raw(sbuf *s, const char *t, size_t n)
{
    if (s->err || n > s->cap - s->n) {
        s->err = 1;
        return;
    }
    memcpy(s->p + s->n, t, n);
    s->n += n;
}

static void s_cat(sbuf *s, const char *t) { s_raw(s, t, strlen(t)); }

/* JSON string content (no quotes) of UTF-8 text: '"', '\\' and controls escaped as JSON.stringify does. */
static void s_escaped(sbuf *s, const char *t)
{
    static const char hex[] = "0123456789abcdef";
    for (; *t != '\0'; t++) {
        unsigned char c = (unsigned char)*t;
        char e[6];
        if (c == '"' || c == '\\') {
            e[0] = '\\', e[1] = (char)c;
            s_raw(s, e, 2);
        } else if (c < 0x20) {
            e[0] = '\\';
            switch (c) {
            case '\b': e[1] = 'b'; break;
            case '\f': e[1] = 'f'; break;
            case '\n': e[1] = 'n'; break;
            case '\r': e[1] = 'r'; break;
            case '\t': e[1] = 't'; break;
            default:
                e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15u];
                s_raw(s, e, 6);
                continue;
            }
            s_raw(s, e, 2);
        } else {
            s_raw(s, (const char *)&c, 1);
        }
    }
}

static void s_b64u(sbuf *s, const uint8_t *in, size_t len)
{
    size_t need = MK_B64U_LEN(len);
    if (s->err || need > s->cap - s->n) {
        s->err = 1;
        return;
    }
    s->n += mk_b64u_encode(s->p + s->n, s->cap - s->n, in, len);
}

static void s_key(sbuf *s, const char *role, const char *crv, const char *udf, const uint8_t key[32])
{
    s_cat(s, ",\"");
    s_cat(s, role);
    s_cat(s, "\":{\"UDF\":\"");
    s_cat(s, udf);
    s_cat(s, "\",\"PublicParameters\":{\"kty\":\"OKP\",\"crv\":\"");
    s_cat(s, crv);
    s_cat(s, "\",\"x\":\"");
    s_b64u(s, key, 32);
    s_cat(s, "\"}}");
}

/* ---------------------------------------------------------------- Device Profile */

int mk_device_profile(uint8_t *out, size_t cap, size_t *out_len, uint8_t *scratch, size_t scratch_cap,
                      const mk_platform *platform, const uint8_t sig_scalar[32], const mk_profile_input *in,
                      char *id)
{
    char sig_udf[MK_KEY_UDF_LEN + 1], enc_udf[MK_KEY_UDF_LEN + 1], auth_udf[MK_KEY_UDF_LEN + 1];
    char when[MK_ISO_TIME_LEN + 1], header[96];
    uint8_t sig[MK_SIG_LEN];
    sbuf p, h, o;
    int rc = 0;

    if (out == NULL || out_len == NULL || scratch == NULL || platform == NULL || sig_scalar == NULL || in == NULL ||
        in->sig_pub == NULL || in->enc_u == NULL || in->auth_u == NULL || in->model == NULL || in->serial == NULL)
        return -MK_ERR_BAD_LENGTH;
    if (mk_iso_time(when, in->time) != 0) return -MK_ERR_BAD_LENGTH;
    mk_key_udf_ed25519(sig_udf, in->sig_pub);
    mk_key_udf_x25519(enc_udf, in->enc_u);
    mk_key_udf_x25519(auth_udf, in->auth_u);

    /* H = {"alg":"EdDSA","kid":"<sig UDF>","cty":"DeviceProfile"} */
    h.p = header, h.cap = sizeof header, h.n = 0, h.err = 0;
    s_cat(&h, "{\"alg\":\"EdDSA\",\"kid\":\"");
    s_cat(&h, sig_udf);
    s_cat(&h, "\",\"cty\":\"DeviceProfile\"}");

    /* P, in scratch */
    p.p = (char *)scratch, p.cap = scratch_cap, p.n = 0, p.err = 0;
    s_cat(&p, "{\"DeviceProfile\":{\"Identifier\":\"");
    s_cat(&p, sig_udf);
    s_cat(&p, "\",\"Names\":[],\"Updated\":\"");
    s_cat(&p, when);
    s_cat(&p, "\",\"Sequence\":1,\"Description\":\"");
    s_escaped(&p, in->model);
    s_cat(&p, " ");
    s_escaped(&p, in->serial);
    s_cat(&p, "\"");
    s_key(&p, "DeviceSignatureKey", "Ed25519", sig_udf, in->sig_pub);
    s_key(&p, "DeviceAuthenticationKey", "X25519", auth_udf, in->auth_u);
    s_key(&p, "DeviceEncryptionKey", "X25519", enc_udf, in->enc_u);
    s_cat(&p, "}}");

    /* signing input b64u(H) "." b64u(P), in out */
    o.p = (char *)out, o.cap = cap, o.n = 0, o.err = 0;
    if (!p.err && !h.err) {
        s_b64u(&o, (const uint8_t *)header, h.n);
        s_cat(&o, ".");
        s_b64u(&o, scratch, p.n);
    }
    if (p.err || h.err || o.err) {
        rc = -MK_ERR_TOO_LARGE;
    } else if (mk_ed25519_sign(platform, sig, sig_scalar, in->sig_pub, out, o.n) != 0) {
        rc = -MK_ERR_RNG;
    } else {
        /* the JWS, rewritten over the signing input */
        o.n = 0;
        s_cat(&o, "{\"payload\":\"");
        s_b64u(&o, scratch, p.n);
        s_cat(&o, "\",\"signatures\":[{\"protected\":\"");
        s_b64u(&o, (const uint8_t *)header, h.n);
        s_cat(&o, "\",\"signature\":\"");
        s_b64u(&o, sig, sizeof sig);
        s_cat(&o, "\"}]}");
        if (o.err) rc = -MK_ERR_TOO_LARGE;
    }
    mk_wipe(scratch, p.n);
    mk_wipe(sig, sizeof sig);
    if (rc != 0) {
        mk_wipe(out, cap);
        return rc;
    }
    *out_len = o.n;
    if (id != NULL) memcpy(id, sig_udf, sizeof sig_udf);
    return 0;
}
