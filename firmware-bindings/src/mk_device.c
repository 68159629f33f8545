/*
 * mk_device.c - the meshkit device: message handlers and state machine (see mk_device.h for the order of checks).
 * Portable C99, no malloc, no printf (details are assembled by hand to keep the footprint small).
 */
#include "mk_device.h"

#include <string.h>

#include "mk_cbor.h"
#include "mk_crypto.h"
#include "mk_frame.h"
#include "mk_profile.h"

/* State blob, format 2 (all integers big-endian):
 *   0   4  magic "MKDS"          4   1  format = 2          5   1  state (0, 2..5)
 *   6   1  account length        7   1  device id length
 *   8   8  keygen time           16  8  cogen time
 *   24  96 base scalars (signature, encryption, authentication)
 *   120 96 composite scalars     216 32 cogen digest        248 32 install digest
 *   280 64 record digest         344 32 admin key           376 128 account (zero padded)
 *   504 64 device id (zero padded: the composite Device Profile identifier)
 *   568 2  config length n (<= MAX_CONFIG)                  570 n  config
 *   570+n 4 CRC-32C of every byte before it
 * A store never written (length 0) is a factory-fresh device. */
#define BLOB_FORMAT 2u
#define OFF_ACCOUNT_LEN 6u
#define OFF_DEVICE_ID_LEN 7u
#define OFF_KEYGEN_TIME 8u
#define OFF_COGEN_TIME 16u
#define OFF_BASE 24u
#define OFF_COMP 120u
#define OFF_COGEN_DIGEST 216u
#define OFF_INSTALL_DIGEST 248u
#define OFF_RECORD_DIGEST 280u
#define OFF_ADMIN_KEY 344u
#define OFF_ACCOUNT 376u
#define OFF_DEVICE_ID 504u
#define OFF_CONFIG_LEN 568u
#define OFF_CONFIG 570u
#define BLOB_MAX (OFF_CONFIG + MK_MAX_CONFIG + 4u)
#define DETAIL_MAX 96u
/* room kept at the start of the reply buffer for the CBOR fields before a Device Profile */
#define PROFILE_PREFIX 256u

typedef char blob_fits_platform_store[(BLOB_MAX <= MK_PLATFORM_STATE_MAX && BLOB_MAX <= MK_DEVICE_WORK) ? 1 : -1];
typedef char profile_fits_reply[(PROFILE_PREFIX + MK_PROFILE_MAX <= MK_DEVICE_REPLY_CACHE) ? 1 : -1];
typedef char scratch_fits_work[(MK_PROFILE_SCRATCH_MAX <= MK_DEVICE_WORK) ? 1 : -1];

/* ---------------------------------------------------------------- small helpers */

typedef struct detail_buf {
    char s[DETAIL_MAX];
    size_t n;
} detail_buf;

static void d_init(detail_buf *d) { d->n = 0; d->s[0] = '\0'; }

static void d_cat(detail_buf *d, const char *s)
{
    while (*s != '\0' && d->n + 1 < DETAIL_MAX) d->s[d->n++] = *s++;
    d->s[d->n] = '\0';
}

static void d_uint(detail_buf *d, uint64_t v)
{
    char tmp[21];
    size_t i = sizeof tmp - 1;
    tmp[i] = '\0';
    do {
        tmp[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u && i > 0);
    d_cat(d, tmp + i);
}

static const char *message_name(uint8_t type)
{
    switch (type) {
    case MK_MSG_HELLO: return "HELLO";
    case MK_MSG_BENCH_AUTH: return "BENCH_AUTH";
    case MK_MSG_KEYGEN: return "KEYGEN";
    case MK_MSG_COGEN: return "COGEN";
    case MK_MSG_INSTALL: return "INSTALL";
    case MK_MSG_COMMIT: return "COMMIT";
    case MK_MSG_RESET: return "RESET";
    default: return NULL;
    }
}

static int identity_ok(const char *s)
{
    size_t n;
    if (s == NULL) return 0;
    for (n = 0; n <= MK_DEVICE_IDENTITY_MAX && s[n] != '\0'; n++) {
    }
    return n <= MK_DEVICE_IDENTITY_MAX && mk_utf8_valid((const uint8_t *)s, n);
}

static int const_time_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t acc = 0;
    size_t i;
    for (i = 0; i < n; i++) acc |= (uint8_t)(a[i] ^ b[i]);
    return acc == 0;
}

/* ---------------------------------------------------------------- persistent state */

static void put_u64(uint8_t *p, uint64_t v)
{
    int i;
    for (i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    size_t i;
    for (i = 0; i < n; i++) acc |= p[i];
    return acc == 0;
}

/* Serialise the store into b (at least BLOB_MAX bytes) without the CRC; returns the length before the CRC. */
static size_t blob_encode(const mk_device_store *st, uint8_t *b)
{
    memset(b, 0, OFF_CONFIG);
    memcpy(b, "MKDS", 4);
    b[4] = BLOB_FORMAT;
    b[5] = st->state;
    b[OFF_ACCOUNT_LEN] = st->account_len;
    b[OFF_DEVICE_ID_LEN] = st->device_id_len;
    put_u64(b + OFF_KEYGEN_TIME, st->keygen_time);
    put_u64(b + OFF_COGEN_TIME, st->cogen_time);
    memcpy(b + OFF_BASE, st->base, sizeof st->base);
    memcpy(b + OFF_COMP, st->comp, sizeof st->comp);
    memcpy(b + OFF_COGEN_DIGEST, st->cogen_digest, 32);
    memcpy(b + OFF_INSTALL_DIGEST, st->install_digest, 32);
    memcpy(b + OFF_RECORD_DIGEST, st->record_digest, 64);
    memcpy(b + OFF_ADMIN_KEY, st->admin_key, 32);
    memcpy(b + OFF_ACCOUNT, st->account, st->account_len);
    memcpy(b + OFF_DEVICE_ID, st->device_id, st->device_id_len);
    b[OFF_CONFIG_LEN] = (uint8_t)(st->config_len >> 8);
    b[OFF_CONFIG_LEN + 1] = (uint8_t)st->config_len;
    memcpy(b + OFF_CONFIG, st->config, st->config_len);
    return OFF_CONFIG + st->config_len;
}

/* Check a whole blob (CRC included) and, only when it is valid, replace *st with it. 0 or -1. */
static int blob_decode(const uint8_t *b, size_t len, mk_device_store *st)
{
    size_t config_len, i;
    uint8_t state;
    uint32_t crc;
    if (len < OFF_CONFIG + 4u || len > BLOB_MAX || memcmp(b, "MKDS", 4) != 0 || b[4] != BLOB_FORMAT) return -1;
    config_len = (size_t)b[OFF_CONFIG_LEN] << 8 | b[OFF_CONFIG_LEN + 1];
    if (config_len > MK_MAX_CONFIG || len != OFF_CONFIG + config_len + 4u) return -1;
    crc = (uint32_t)b[len - 4] << 24 | (uint32_t)b[len - 3] << 16 | (uint32_t)b[len - 2] << 8 | b[len - 1];
    if (crc != mk_crc32c(b, len - 4)) return -1;
    state = b[5];
    if (state > MK_STATE_COMMITTED || state == MK_STATE_AUTHENTICATED) return -1;
    if (b[OFF_ACCOUNT_LEN] > MK_DEVICE_ACCOUNT_MAX || b[OFF_DEVICE_ID_LEN] > MK_DEVICE_ID_MAX) return -1;
    for (i = 0; i < 3; i++) {
        const uint8_t *base = b + OFF_BASE + 32u * i, *comp = b + OFF_COMP + 32u * i;
        if (state >= MK_STATE_KEYS_GENERATED ? mk_scalar_check(base) != 0 : !all_zero(base, 32)) return -1;
        if (state >= MK_STATE_COGENERATED ? mk_scalar_check(comp) != 0 : !all_zero(comp, 32)) return -1;
    }
    if (state >= MK_STATE_COGENERATED && b[OFF_DEVICE_ID_LEN] == 0) return -1;
    mk_wipe(st, sizeof *st);
    st->state = state;
    st->account_len = b[OFF_ACCOUNT_LEN];
    st->device_id_len = b[OFF_DEVICE_ID_LEN];
    st->keygen_time = get_u64(b + OFF_KEYGEN_TIME);
    st->cogen_time = get_u64(b + OFF_COGEN_TIME);
    memcpy(st->base, b + OFF_BASE, sizeof st->base);
    memcpy(st->comp, b + OFF_COMP, sizeof st->comp);
    memcpy(st->cogen_digest, b + OFF_COGEN_DIGEST, 32);
    memcpy(st->install_digest, b + OFF_INSTALL_DIGEST, 32);
    memcpy(st->record_digest, b + OFF_RECORD_DIGEST, 64);
    memcpy(st->admin_key, b + OFF_ADMIN_KEY, 32);
    memcpy(st->account, b + OFF_ACCOUNT, st->account_len);
    memcpy(st->device_id, b + OFF_DEVICE_ID, st->device_id_len);
    st->config_len = (uint16_t)config_len;
    memcpy(st->config, b + OFF_CONFIG, config_len);
    return 0;
}

static int load_state(mk_device *dev)
{
    size_t len = 0;
    int rc = 0;
    if (dev->platform.flash_read(dev->platform.ctx, dev->work, sizeof dev->work, &len) != 0 ||
        len > sizeof dev->work) {
        rc = -MK_ERR_FLASH;
    } else if (len == 0) {
        mk_wipe(&dev->store, sizeof dev->store);
        dev->store.state = MK_STATE_FACTORY;
    } else if (blob_decode(dev->work, len, &dev->store) != 0) {
        rc = -MK_ERR_FLASH;
    }
    mk_wipe(dev->work, sizeof dev->work);
    dev->state = dev->store.state;
    return rc;
}

/* Write the blob work[0..body) (plus its CRC) to flash and, once written, make it the state in RAM. The work
 * buffer is wiped either way. 0 or MK_ERR_FLASH (RAM and flash unchanged). */
static int commit_blob(mk_device *dev, size_t body, detail_buf *d, const char *name)
{
    uint32_t crc = mk_crc32c(dev->work, body);
    int rc = 0;
    dev->work[body] = (uint8_t)(crc >> 24);
    dev->work[body + 1] = (uint8_t)(crc >> 16);
    dev->work[body + 2] = (uint8_t)(crc >> 8);
    dev->work[body + 3] = (uint8_t)crc;
    if (dev->platform.flash_write(dev->platform.ctx, dev->work, body + 4) != 0 ||
        blob_decode(dev->work, body + 4, &dev->store) != 0) {
        d_cat(d, name);
        d_cat(d, ": flash write failed; state unchanged");
        rc = MK_ERR_FLASH;
    }
    dev->state = dev->store.state;
    mk_wipe(dev->work, sizeof dev->work);
    return rc;
}

/* ---------------------------------------------------------------- request fields */

typedef struct field_spec {
    uint64_t key;
    int kind; /* MK_CBOR_UINT, MK_CBOR_BSTR or MK_CBOR_TSTR */
    const char *name;
} field_spec;

typedef struct field_val {
    int present;
    uint64_t u;
    const uint8_t *p; /* bstr or tstr bytes */
    size_t n;
} field_val;

static int read_field(mk_cbor_reader *r, int kind, field_val *v)
{
    const char *t = NULL;
    int rc;
    if (kind == MK_CBOR_UINT) return mk_cbor_read_uint(r, &v->u);
    if (kind == MK_CBOR_BSTR) return mk_cbor_read_bstr(r, &v->p, &v->n);
    rc = mk_cbor_read_tstr(r, &t, &v->n);
    v->p = (const uint8_t *)t;
    return rc;
}

static const char *kind_name(int kind)
{
    return kind == MK_CBOR_UINT ? ": expected uint" : kind == MK_CBOR_BSTR ? ": expected bstr" : ": expected tstr";
}

/* Check msg is a subset-CBOR map holding every field of spec with its kind. Returns 0 or a positive status,
 * with the detail naming the message and field. */
static int parse_fields(const char *name, const uint8_t *msg, size_t len, const field_spec *spec, size_t nspec,
                        field_val *vals, detail_buf *d)
{
    mk_cbor_reader r;
    size_t pairs, i, j;
    int rc = mk_cbor_validate(msg, len, MK_CBOR_MAX_DEPTH);
    if (rc != 0) {
        d_cat(d, name);
        d_cat(d, rc == -MK_ERR_CBOR_NONCANONICAL ? ": CBOR not in canonical form" : ": not valid subset CBOR");
        return -rc;
    }
    mk_cbor_reader_init(&r, msg, len);
    if (mk_cbor_read_map(&r, &pairs) != 0) {
        d_cat(d, name);
        d_cat(d, ": message is not a map");
        return MK_ERR_WRONG_TYPE;
    }
    for (j = 0; j < nspec; j++) vals[j].present = 0;
    for (i = 0; i < pairs; i++) {
        uint64_t key = 0;
        if (mk_cbor_read_uint(&r, &key) != 0) return MK_ERR_CBOR_INVALID; /* cannot happen after validate */
        for (j = 0; j < nspec && spec[j].key != key; j++) {
        }
        if (j == nspec) {
            if (mk_cbor_skip(&r) != 0) return MK_ERR_CBOR_INVALID;
            continue;
        }
        if (read_field(&r, spec[j].kind, &vals[j]) != 0) {
            d_cat(d, name);
            d_cat(d, ".");
            d_cat(d, spec[j].name);
            d_cat(d, kind_name(spec[j].kind));
            return MK_ERR_WRONG_TYPE;
        }
        vals[j].present = 1;
    }
    for (j = 0; j < nspec; j++) {
        if (!vals[j].present) {
            d_cat(d, name);
            d_cat(d, ".");
            d_cat(d, spec[j].name);
            d_cat(d, ": missing");
            return MK_ERR_MISSING_FIELD;
        }
    }
    return 0;
}

/* A bstr field of exactly n bytes, else WRONG_TYPE naming it. */
static int need_len(const field_val *v, size_t n, const char *name, const char *field, detail_buf *d)
{
    if (v->n == n) return 0;
    d_cat(d, name);
    d_cat(d, ".");
    d_cat(d, field);
    d_cat(d, ": expected ");
    d_uint(d, n);
    d_cat(d, " bytes, got ");
    d_uint(d, v->n);
    return MK_ERR_WRONG_TYPE;
}

static const field_spec HELLO_FIELDS[] = {{MK_F_HELLO_VERSION, MK_CBOR_UINT, "version"}};
static const field_spec BENCH_AUTH_FIELDS[] = {{MK_F_BENCH_AUTH_CHALLENGE, MK_CBOR_BSTR, "challenge"},
                                               {MK_F_BENCH_AUTH_BENCH_KEY, MK_CBOR_BSTR, "bench_key"},
                                               {MK_F_BENCH_AUTH_SIGNATURE, MK_CBOR_BSTR, "signature"}};
static const field_spec KEYGEN_FIELDS[] = {{MK_F_KEYGEN_KEYS, MK_CBOR_UINT, "keys"},
                                           {MK_F_KEYGEN_TIME, MK_CBOR_UINT, "time"}};
static const field_spec COGEN_FIELDS[] = {{MK_F_COGEN_CONTRIBUTION, MK_CBOR_BSTR, "contribution"},
                                          {MK_F_COGEN_TIME, MK_CBOR_UINT, "time"}};
static const field_spec INSTALL_FIELDS[] = {{MK_F_INSTALL_CONNECTION, MK_CBOR_BSTR, "connection"},
                                            {MK_F_INSTALL_CONFIG, MK_CBOR_BSTR, "config"}};
static const field_spec COMMIT_FIELDS[] = {{MK_F_COMMIT_RECORD_DIGEST, MK_CBOR_BSTR, "record_digest"}};
static const field_spec RESET_FIELDS[] = {{MK_F_RESET_SERIAL, MK_CBOR_TSTR, "serial"}};
/* the plaintext of the contribution box and the connection (docs/enrollment.md) */
static const field_spec CONTRIBUTION_FIELDS[] = {
    {1, MK_CBOR_BSTR, "signature"},          {2, MK_CBOR_BSTR, "encryption"},
    {3, MK_CBOR_BSTR, "authentication"},     {4, MK_CBOR_BSTR, "expected_signature_key"},
    {5, MK_CBOR_BSTR, "expected_encryption_key"}, {6, MK_CBOR_BSTR, "expected_authentication_key"}};
static const field_spec CONNECTION_FIELDS[] = {{1, MK_CBOR_TSTR, "account"},
                                               {2, MK_CBOR_TSTR, "device"},
                                               {3, MK_CBOR_BSTR, "admin_key"},
                                               {4, MK_CBOR_UINT, "issued"},
                                               {5, MK_CBOR_BSTR, "signature"}};

#define MAX_FIELDS 6
static const char *const KEY_NAMES[3] = {"signature", "encryption", "authentication"};

/* ---------------------------------------------------------------- replies */

typedef struct reply {
    mk_cbor_writer w;
    uint8_t type;
} reply;

static int write_error(reply *rp, int code, const detail_buf *d)
{
    mk_cbor_writer_init(&rp->w, rp->w.buf, rp->w.cap);
    rp->type = MK_MSG_ERROR;
    mk_cbor_write_map(&rp->w, d->n > 0 ? 2u : 1u);
    mk_cbor_write_uint(&rp->w, MK_F_ERROR_CODE);
    mk_cbor_write_uint(&rp->w, (uint64_t)code);
    if (d->n > 0) {
        mk_cbor_write_uint(&rp->w, MK_F_ERROR_DETAIL);
        mk_cbor_write_tstr(&rp->w, d->s, d->n);
    }
    return rp->w.err;
}

static int write_info(mk_device *dev, reply *rp)
{
    mk_cbor_writer *w = &rp->w;
    rp->type = MK_MSG_INFO;
    mk_cbor_write_map(w, 6);
    mk_cbor_write_uint(w, MK_F_INFO_MODEL);
    mk_cbor_write_tstr(w, dev->id.model, strlen(dev->id.model));
    mk_cbor_write_uint(w, MK_F_INFO_SERIAL);
    mk_cbor_write_tstr(w, dev->id.serial, strlen(dev->id.serial));
    mk_cbor_write_uint(w, MK_F_INFO_FIRMWARE);
    mk_cbor_write_tstr(w, dev->id.firmware, strlen(dev->id.firmware));
    mk_cbor_write_uint(w, MK_F_INFO_CAPABILITIES);
    /* what this firmware does (Ed25519 signature keys, X25519 keys, co-generation) and the transports it is on */
    mk_cbor_write_uint(w, MK_CAP_ED25519 | MK_CAP_X25519 | MK_CAP_COGEN |
                              (dev->id.transports & (MK_CAP_SERIAL | MK_CAP_HID)));
    mk_cbor_write_uint(w, MK_F_INFO_STATE);
    mk_cbor_write_uint(w, mk_device_state(dev));
    mk_cbor_write_uint(w, MK_F_INFO_CHALLENGE);
    mk_cbor_write_bstr(w, dev->challenge, sizeof dev->challenge);
    return w->err;
}

static int write_state_reply(mk_device *dev, reply *rp, uint8_t type)
{
    rp->type = type;
    mk_cbor_write_map(&rp->w, 1);
    mk_cbor_write_uint(&rp->w, 1); /* BENCH_AUTH_OK.state and ACK.state are both key 1 */
    mk_cbor_write_uint(&rp->w, mk_device_state(dev));
    return rp->w.err;
}

/* The public keys of three scalars: Ed25519 (32) and two extended X25519 (33). 0 or -1. */
static int publics_of(uint8_t (*const s)[32], uint8_t sig[MK_ED_PUB_LEN], uint8_t enc[MK_X_PUB_LEN],
                      uint8_t auth[MK_X_PUB_LEN])
{
    if (mk_ed25519_public(sig, s[0]) != 0) return -1;
    if (mk_x25519_public(enc, s[1]) != 0) return -1;
    return mk_x25519_public(auth, s[2]);
}

/* PUBKEYS (proof_hash NULL) or PROOF of the keys (s[0..3)) with the Device Profile dated t. proof_hash is
 * SHA-512 of the contribution box. Returns 0 or a positive status. */
static int write_keys_reply(mk_device *dev, reply *rp, uint8_t (*const s)[32], uint64_t t,
                            const uint8_t *proof_hash, detail_buf *d)
{
    uint8_t sig[MK_ED_PUB_LEN], enc[MK_X_PUB_LEN], auth[MK_X_PUB_LEN], proof[MK_SIG_LEN];
    uint8_t *buf = rp->w.buf;
    mk_profile_input in;
    mk_cbor_writer pre;
    size_t plen = 0;
    int rc;

    if (publics_of(s, sig, enc, auth) != 0) {
        d_cat(d, "stored key invalid");
        return MK_ERR_FLASH;
    }
    in.sig_pub = sig, in.enc_u = enc, in.auth_u = auth;
    in.model = dev->id.model, in.serial = dev->id.serial, in.time = t;
    rc = mk_device_profile(buf + PROFILE_PREFIX, rp->w.cap - PROFILE_PREFIX, &plen, dev->work, sizeof dev->work,
                           &dev->platform, s[0], &in, NULL);
    if (rc != 0) {
        d_cat(d, rc == -MK_ERR_RNG ? "Device Profile: signing failed (random number generator)"
                                   : "Device Profile: does not fit");
        return -rc;
    }
    if (proof_hash != NULL) {
        /* "meshkit-cogen-proof-v1" || 0x00 || SHA-512(box) || sig' || enc' || auth' */
        static const char ctx[] = "meshkit-cogen-proof-v1";
        uint8_t m[sizeof ctx + MK_SHA512_LEN + MK_ED_PUB_LEN + 2 * MK_X_PUB_LEN];
        size_t o = 0;
        memcpy(m, ctx, sizeof ctx); /* the NUL is the 0x00 separator */
        o += sizeof ctx;
        memcpy(m + o, proof_hash, MK_SHA512_LEN);
        o += MK_SHA512_LEN;
        memcpy(m + o, sig, sizeof sig);
        o += sizeof sig;
        memcpy(m + o, enc, sizeof enc);
        o += sizeof enc;
        memcpy(m + o, auth, sizeof auth);
        o += sizeof auth;
        if (mk_ed25519_sign(&dev->platform, proof, s[0], sig, m, o) != 0) {
            d_cat(d, "PROOF: signing failed (random number generator)");
            return MK_ERR_RNG;
        }
    }
    /* the fields before the profile, written at the start; then the profile moved up behind them */
    mk_cbor_writer_init(&pre, buf, PROFILE_PREFIX);
    mk_cbor_write_map(&pre, proof_hash != NULL ? 5u : 4u);
    mk_cbor_write_uint(&pre, 1);
    mk_cbor_write_bstr(&pre, sig, sizeof sig);
    mk_cbor_write_uint(&pre, 2);
    mk_cbor_write_bstr(&pre, enc, sizeof enc);
    mk_cbor_write_uint(&pre, 3);
    mk_cbor_write_bstr(&pre, auth, sizeof auth);
    if (proof_hash != NULL) {
        mk_cbor_write_uint(&pre, MK_F_PROOF_PROOF);
        mk_cbor_write_bstr(&pre, proof, sizeof proof);
        mk_cbor_write_uint(&pre, MK_F_PROOF_DEVICE_PROFILE);
    } else {
        mk_cbor_write_uint(&pre, MK_F_PUBKEYS_DEVICE_PROFILE);
    }
    /* bstr header of plen (256 <= plen < 65536: a profile is never shorter) */
    if (pre.err != 0 || plen < 256u || plen > 0xFFFFu || pre.len + 3u > PROFILE_PREFIX) {
        d_cat(d, "reply does not fit");
        return MK_ERR_TOO_LARGE;
    }
    buf[pre.len++] = 0x59;
    buf[pre.len++] = (uint8_t)(plen >> 8);
    buf[pre.len++] = (uint8_t)plen;
    memmove(buf + pre.len, buf + PROFILE_PREFIX, plen);
    rp->w.len = pre.len + plen;
    rp->type = proof_hash != NULL ? MK_MSG_PROOF : MK_MSG_PUBKEYS;
    return 0;
}

/* ---------------------------------------------------------------- handlers */

static int time_ok(uint64_t t, const char *field, detail_buf *d)
{
    if (t <= MK_TIME_MAX) return 0;
    d_cat(d, field);
    d_cat(d, ": later than 9999-12-31T23:59:59Z");
    return MK_ERR_WRONG_TYPE;
}

static int handle_keygen(mk_device *dev, const field_val *v, reply *rp, detail_buf *d)
{
    const uint64_t all = MK_KEY_SIGNATURE | MK_KEY_ENCRYPTION | MK_KEY_AUTHENTICATION;
    int rc;
    if (v[0].u != all) {
        d_cat(d, "KEYGEN.keys: must be 7 (signature|encryption|authentication), got ");
        d_uint(d, v[0].u);
        return MK_ERR_WRONG_TYPE;
    }
    rc = time_ok(v[1].u, "KEYGEN.time", d);
    if (rc != 0) return rc;
    if (dev->store.state == MK_STATE_FACTORY) {
        uint8_t s[3][32];
        size_t body, i;
        for (i = 0; i < 3; i++) {
            if (mk_scalar_random(&dev->platform, s[i]) != 0) {
                mk_wipe(s, sizeof s);
                d_cat(d, "KEYGEN: random number generator failed");
                return MK_ERR_RNG;
            }
        }
        body = blob_encode(&dev->store, dev->work);
        dev->work[5] = MK_STATE_KEYS_GENERATED;
        put_u64(dev->work + OFF_KEYGEN_TIME, v[1].u);
        memcpy(dev->work + OFF_BASE, s, sizeof s);
        mk_wipe(s, sizeof s);
        rc = commit_blob(dev, body, d, "KEYGEN");
        if (rc != 0) return rc;
    }
    /* the same base keys in every later state; the profile is dated by this message's time (docs/enrollment.md) */
    return write_keys_reply(dev, rp, dev->store.base, v[1].u, NULL, d);
}

static int handle_cogen(mk_device *dev, const field_val *v, reply *rp, detail_buf *d)
{
    uint8_t box_hash[MK_SHA512_LEN], my_x[MK_X_PUB_LEN];
    uint8_t c[3][32], comp[3][32], expect_sig[MK_ED_PUB_LEN], expect_x[2][MK_X_PUB_LEN];
    uint8_t got_sig[MK_ED_PUB_LEN], got_x[2][MK_X_PUB_LEN];
    char id[MK_KEY_UDF_LEN + 1];
    field_val f[MAX_FIELDS];
    size_t pt_len = 0, i, body;
    int rc;

    rc = time_ok(v[1].u, "COGEN.time", d);
    if (rc != 0) return rc;
    mk_sha512_oneshot(box_hash, v[0].p, v[0].n);
    if (dev->store.state >= MK_STATE_COGENERATED) {
        if (!const_time_equal(box_hash, dev->store.cogen_digest, 32)) {
            d_cat(d, "COGEN: another contribution was already applied");
            return MK_ERR_BAD_STATE;
        }
        return write_keys_reply(dev, rp, dev->store.comp, v[1].u, box_hash, d);
    }
    /* KEYS_GENERATED: open the box with the base encryption key */
    if (v[0].n < MK_BOX_OVERHEAD || v[0].n - MK_BOX_OVERHEAD > sizeof dev->work) {
        d_cat(d, "COGEN.contribution: not a sealed box of a contribution (length ");
        d_uint(d, v[0].n);
        d_cat(d, ")");
        return MK_ERR_DECRYPT_FAILED;
    }
    if (mk_x25519_public(my_x, dev->store.base[1]) != 0 ||
        mk_box_open(dev->work, sizeof dev->work, &pt_len, dev->store.base[1], my_x, "contribution", v[0].p,
                    v[0].n) != 0) {
        d_cat(d, "COGEN.contribution: cannot be opened with the base encryption key");
        return MK_ERR_DECRYPT_FAILED;
    }
    rc = parse_fields("COGEN.contribution", dev->work, pt_len, CONTRIBUTION_FIELDS, 6, f, d);
    for (i = 0; rc == 0 && i < 6; i++)
        rc = need_len(&f[i], i < 4 ? 32u : 33u, "COGEN.contribution", CONTRIBUTION_FIELDS[i].name, d);
    if (rc != 0) {
        mk_wipe(dev->work, sizeof dev->work);
        return rc;
    }
    for (i = 0; i < 3; i++) memcpy(c[i], f[i].p, 32);
    memcpy(expect_sig, f[3].p, sizeof expect_sig);
    memcpy(expect_x[0], f[4].p, MK_X_PUB_LEN);
    memcpy(expect_x[1], f[5].p, MK_X_PUB_LEN);
    mk_wipe(dev->work, sizeof dev->work);

    for (i = 0; rc == 0 && i < 3; i++) {
        if (mk_scalar_check(c[i]) != 0) {
            d_cat(d, "COGEN.contribution.");
            d_cat(d, KEY_NAMES[i]);
            d_cat(d, ": not a scalar in [1, L)");
            rc = MK_ERR_COGEN_MISMATCH;
        } else if (mk_scalar_add(comp[i], dev->store.base[i], c[i]) != 0) {
            d_cat(d, "COGEN: composite ");
            d_cat(d, KEY_NAMES[i]);
            d_cat(d, " scalar is zero");
            rc = MK_ERR_COGEN_MISMATCH;
        }
    }
    mk_wipe(c, sizeof c);
    if (rc == 0 && publics_of(comp, got_sig, got_x[0], got_x[1]) != 0) {
        d_cat(d, "COGEN: composite key invalid");
        rc = MK_ERR_COGEN_MISMATCH;
    }
    if (rc == 0) {
        const char *bad = memcmp(got_sig, expect_sig, sizeof got_sig) != 0         ? KEY_NAMES[0]
                          : memcmp(got_x[0], expect_x[0], MK_X_PUB_LEN) != 0 ? KEY_NAMES[1]
                          : memcmp(got_x[1], expect_x[1], MK_X_PUB_LEN) != 0 ? KEY_NAMES[2]
                                                                             : NULL;
        if (bad != NULL) {
            d_cat(d, "COGEN: composite ");
            d_cat(d, bad);
            d_cat(d, " key differs from the expected key");
            rc = MK_ERR_COGEN_MISMATCH;
        }
    }
    if (rc != 0) {
        mk_wipe(comp, sizeof comp);
        return rc;
    }
    mk_key_udf_ed25519(id, got_sig);
    body = blob_encode(&dev->store, dev->work);
    dev->work[5] = MK_STATE_COGENERATED;
    put_u64(dev->work + OFF_COGEN_TIME, v[1].u);
    memcpy(dev->work + OFF_COMP, comp, sizeof comp);
    mk_wipe(comp, sizeof comp);
    memcpy(dev->work + OFF_COGEN_DIGEST, box_hash, 32);
    dev->work[OFF_DEVICE_ID_LEN] = MK_KEY_UDF_LEN;
    memcpy(dev->work + OFF_DEVICE_ID, id, MK_KEY_UDF_LEN);
    rc = commit_blob(dev, body, d, "COGEN");
    if (rc != 0) return rc;
    return write_keys_reply(dev, rp, dev->store.comp, v[1].u, box_hash, d);
}

static int handle_install(mk_device *dev, const field_val *v, reply *rp, detail_buf *d)
{
    static const char ctx[] = "meshkit-connection-v1";
    uint8_t digest[MK_SHA512_LEN], my_x[MK_X_PUB_LEN];
    uint8_t signed_msg[sizeof ctx + 1 + 3 + MK_DEVICE_ACCOUNT_MAX + 3 + MK_DEVICE_ID_MAX + 3 + 32 + 10];
    field_val f[MAX_FIELDS];
    mk_cbor_writer w;
    mk_sha512 h;
    size_t cfg_len = 0;
    int rc;

    mk_sha512_init(&h);
    mk_sha512_update(&h, v[0].p, v[0].n);
    mk_sha512_update(&h, v[1].p, v[1].n);
    mk_sha512_final(&h, digest);
    if (dev->store.state >= MK_STATE_INSTALLED) {
        if (!const_time_equal(digest, dev->store.install_digest, 32)) {
            d_cat(d, "INSTALL: another connection or configuration was already installed");
            return MK_ERR_BAD_STATE;
        }
        return write_state_reply(dev, rp, MK_MSG_ACK);
    }
    rc = parse_fields("INSTALL.connection", v[0].p, v[0].n, CONNECTION_FIELDS, 5, f, d);
    if (rc == 0 && f[0].n > MK_DEVICE_ACCOUNT_MAX) {
        d_cat(d, "INSTALL.connection.account: longer than 128 bytes");
        rc = MK_ERR_WRONG_TYPE;
    }
    if (rc == 0) rc = need_len(&f[2], 32, "INSTALL.connection", "admin_key", d);
    if (rc == 0) rc = need_len(&f[4], MK_SIG_LEN, "INSTALL.connection", "signature", d);
    if (rc != 0) return rc;
    if (f[1].n != dev->store.device_id_len || memcmp(f[1].p, dev->store.device_id, f[1].n) != 0) {
        char id[MK_DEVICE_ID_MAX + 1];
        memcpy(id, dev->store.device_id, dev->store.device_id_len);
        id[dev->store.device_id_len] = '\0';
        d_cat(d, "INSTALL.connection.device: names another device, not ");
        d_cat(d, id);
        return MK_ERR_WRONG_DEVICE;
    }
    /* "meshkit-connection-v1" || 0x00 || CBOR({1: account, 2: device, 3: admin_key, 4: issued}) */
    memcpy(signed_msg, ctx, sizeof ctx);
    mk_cbor_writer_init(&w, signed_msg + sizeof ctx, sizeof signed_msg - sizeof ctx);
    mk_cbor_write_map(&w, 4);
    mk_cbor_write_uint(&w, 1);
    mk_cbor_write_tstr(&w, (const char *)f[0].p, f[0].n);
    mk_cbor_write_uint(&w, 2);
    mk_cbor_write_tstr(&w, (const char *)f[1].p, f[1].n);
    mk_cbor_write_uint(&w, 3);
    mk_cbor_write_bstr(&w, f[2].p, f[2].n);
    mk_cbor_write_uint(&w, 4);
    mk_cbor_write_uint(&w, f[3].u);
    if (w.err != 0 || mk_ed25519_verify(f[4].p, f[2].p, signed_msg, sizeof ctx + w.len) != 0) {
        d_cat(d, "INSTALL.connection.signature: does not verify under admin_key");
        return MK_ERR_BAD_SIGNATURE;
    }
    if (v[1].n < MK_BOX_OVERHEAD) {
        d_cat(d, "INSTALL.config: shorter than a sealed box");
        return MK_ERR_DECRYPT_FAILED;
    }
    if (v[1].n - MK_BOX_OVERHEAD > MK_MAX_CONFIG) {
        d_cat(d, "INSTALL.config: ");
        d_uint(d, v[1].n - MK_BOX_OVERHEAD);
        d_cat(d, " bytes of configuration, at most 1024 (MAX_CONFIG)");
        return MK_ERR_TOO_LARGE;
    }
    if (mk_x25519_public(my_x, dev->store.comp[1]) != 0) {
        d_cat(d, "INSTALL: stored key invalid");
        return MK_ERR_FLASH;
    }
    /* decrypt straight into the new blob */
    (void)blob_encode(&dev->store, dev->work);
    if (mk_box_open(dev->work + OFF_CONFIG, MK_MAX_CONFIG, &cfg_len, dev->store.comp[1], my_x, "config", v[1].p,
                    v[1].n) != 0) {
        mk_wipe(dev->work, sizeof dev->work);
        d_cat(d, "INSTALL.config: cannot be opened with the composite encryption key");
        return MK_ERR_DECRYPT_FAILED;
    }
    dev->work[5] = MK_STATE_INSTALLED;
    dev->work[OFF_ACCOUNT_LEN] = (uint8_t)f[0].n;
    memset(dev->work + OFF_ACCOUNT, 0, MK_DEVICE_ACCOUNT_MAX);
    memcpy(dev->work + OFF_ACCOUNT, f[0].p, f[0].n);
    memcpy(dev->work + OFF_ADMIN_KEY, f[2].p, 32);
    memcpy(dev->work + OFF_INSTALL_DIGEST, digest, 32);
    dev->work[OFF_CONFIG_LEN] = (uint8_t)(cfg_len >> 8);
    dev->work[OFF_CONFIG_LEN + 1] = (uint8_t)cfg_len;
    rc = commit_blob(dev, OFF_CONFIG + cfg_len, d, "INSTALL");
    if (rc != 0) return rc;
    return write_state_reply(dev, rp, MK_MSG_ACK);
}

static int handle_commit(mk_device *dev, const field_val *v, reply *rp, detail_buf *d)
{
    static const char ctx[] = "meshkit-receipt-v1";
    uint8_t m[sizeof ctx + MK_SHA512_LEN], pub[MK_ED_PUB_LEN], sig[MK_SIG_LEN];
    int rc = need_len(&v[0], MK_SHA512_LEN, "COMMIT", "record_digest", d);
    if (rc != 0) return rc;
    if (dev->store.state == MK_STATE_COMMITTED) {
        if (!const_time_equal(v[0].p, dev->store.record_digest, MK_SHA512_LEN)) {
            d_cat(d, "COMMIT: committed over another record digest");
            return MK_ERR_BAD_STATE;
        }
    } else {
        size_t body = blob_encode(&dev->store, dev->work);
        dev->work[5] = MK_STATE_COMMITTED;
        memcpy(dev->work + OFF_RECORD_DIGEST, v[0].p, MK_SHA512_LEN);
        rc = commit_blob(dev, body, d, "COMMIT");
        if (rc != 0) return rc;
    }
    /* "meshkit-receipt-v1" || 0x00 || record_digest, by the composite signature key */
    memcpy(m, ctx, sizeof ctx);
    memcpy(m + sizeof ctx, dev->store.record_digest, MK_SHA512_LEN);
    if (mk_ed25519_public(pub, dev->store.comp[0]) != 0 ||
        mk_ed25519_sign(&dev->platform, sig, dev->store.comp[0], pub, m, sizeof m) != 0) {
        d_cat(d, "RECEIPT: signing failed (random number generator)");
        return MK_ERR_RNG;
    }
    rp->type = MK_MSG_RECEIPT;
    mk_cbor_write_map(&rp->w, 1);
    mk_cbor_write_uint(&rp->w, MK_F_RECEIPT_SIGNATURE);
    mk_cbor_write_bstr(&rp->w, sig, sizeof sig);
    return rp->w.err;
}

static int handle_reset(mk_device *dev, const field_val *v, reply *rp, detail_buf *d)
{
    size_t n = strlen(dev->id.serial);
    int rc;
    if (v[0].n != n || memcmp(v[0].p, dev->id.serial, n) != 0) {
        d_cat(d, "RESET.serial: not this device's serial number");
        return MK_ERR_WRONG_DEVICE;
    }
    /* a factory blob: every scalar, digest, the account and the config zero */
    memset(dev->work, 0, OFF_CONFIG);
    memcpy(dev->work, "MKDS", 4);
    dev->work[4] = BLOB_FORMAT;
    dev->work[5] = MK_STATE_FACTORY;
    rc = commit_blob(dev, OFF_CONFIG, d, "RESET");
    if (rc != 0) return rc;
    return write_state_reply(dev, rp, MK_MSG_ACK);
}

/* ---------------------------------------------------------------- dispatch */

/* Is the request allowed in this persistent state? The masks are generated from protocol.json ("states" of each
 * request; docs/protocol.md "Allowed states"). */
static int state_allows(uint8_t type, uint8_t state)
{
    uint32_t mask;
    switch (type) {
    case MK_MSG_HELLO: mask = MK_ALLOWED_HELLO; break;
    case MK_MSG_BENCH_AUTH: mask = MK_ALLOWED_BENCH_AUTH; break;
    case MK_MSG_KEYGEN: mask = MK_ALLOWED_KEYGEN; break;
    case MK_MSG_COGEN: mask = MK_ALLOWED_COGEN; break;
    case MK_MSG_INSTALL: mask = MK_ALLOWED_INSTALL; break;
    case MK_MSG_COMMIT: mask = MK_ALLOWED_COMMIT; break;
    case MK_MSG_RESET: mask = MK_ALLOWED_RESET; break;
    default: return 0;
    }
    return state < 32u && (mask & (1u << state)) != 0;
}

/* Does the request need BENCH_AUTH in this session (protocol.json "auth")? */
static int needs_auth(uint8_t type)
{
    switch (type) {
    case MK_MSG_HELLO: return MK_AUTH_HELLO;
    case MK_MSG_BENCH_AUTH: return MK_AUTH_BENCH_AUTH;
    case MK_MSG_KEYGEN: return MK_AUTH_KEYGEN;
    case MK_MSG_COGEN: return MK_AUTH_COGEN;
    case MK_MSG_INSTALL: return MK_AUTH_INSTALL;
    case MK_MSG_COMMIT: return MK_AUTH_COMMIT;
    case MK_MSG_RESET: return MK_AUTH_RESET;
    default: return 1;
    }
}

/* Produce the reply (positive status = ERROR reply with d). Returns 0 or a positive status. */
static int dispatch(mk_device *dev, uint8_t type, const uint8_t *msg, size_t len, reply *rp, detail_buf *d)
{
    const char *name = message_name(type);
    const field_spec *spec;
    size_t nspec;
    field_val v[MAX_FIELDS];
    int rc;

    if (name == NULL) {
        d_cat(d, "message type ");
        d_uint(d, type);
        d_cat(d, " is not a request this device handles");
        return MK_ERR_UNKNOWN_MESSAGE;
    }
    switch (type) {
    case MK_MSG_HELLO: spec = HELLO_FIELDS; nspec = 1; break;
    case MK_MSG_BENCH_AUTH: spec = BENCH_AUTH_FIELDS; nspec = 3; break;
    case MK_MSG_KEYGEN: spec = KEYGEN_FIELDS; nspec = 2; break;
    case MK_MSG_COGEN: spec = COGEN_FIELDS; nspec = 2; break;
    case MK_MSG_INSTALL: spec = INSTALL_FIELDS; nspec = 2; break;
    case MK_MSG_COMMIT: spec = COMMIT_FIELDS; nspec = 1; break;
    default: spec = RESET_FIELDS; nspec = 1; break;
    }
    rc = parse_fields(name, msg, len, spec, nspec, v, d);
    if (rc != 0) return rc;

    if (type == MK_MSG_HELLO) {
        if (v[0].u != MK_PROTOCOL_VERSION) {
            d_cat(d, "HELLO.version ");
            d_uint(d, v[0].u);
            d_cat(d, " not supported; this device speaks 1");
            return MK_ERR_BAD_VERSION;
        }
        if (dev->platform.rng_fill(dev->platform.ctx, dev->challenge, sizeof dev->challenge) != 0) {
            mk_device_end_session(dev);
            d_cat(d, "HELLO: random number generator failed");
            return MK_ERR_RNG;
        }
        dev->session = 1;
        dev->authenticated = 0;
        return write_info(dev, rp);
    }

    if (!dev->session) {
        d_cat(d, name);
        d_cat(d, ": no session; send HELLO first");
        return MK_ERR_BAD_STATE;
    }
    if (!state_allows(type, dev->state)) {
        d_cat(d, name);
        d_cat(d, ": not allowed in state ");
        d_uint(d, dev->state);
        return MK_ERR_BAD_STATE;
    }

    if (type == MK_MSG_BENCH_AUTH) {
        if (v[0].n != sizeof dev->challenge || !const_time_equal(v[0].p, dev->challenge, sizeof dev->challenge)) {
            d_cat(d, "BENCH_AUTH.challenge: not this session's challenge");
            return MK_ERR_BAD_SIGNATURE;
        }
        if (dev->platform.bench_verify == NULL ||
            dev->platform.bench_verify(dev->platform.ctx, v[1].p, v[1].n, dev->challenge, sizeof dev->challenge,
                                       v[2].p, v[2].n) != 0) {
            dev->authenticated = 0;
            d_cat(d, "BENCH_AUTH: bench key not trusted or signature invalid");
            return MK_ERR_BAD_SIGNATURE;
        }
        dev->authenticated = 1;
        return write_state_reply(dev, rp, MK_MSG_BENCH_AUTH_OK);
    }

    if (needs_auth(type) && !dev->authenticated) {
        d_cat(d, name);
        d_cat(d, ": BENCH_AUTH required first");
        return MK_ERR_NOT_AUTHENTICATED;
    }
    switch (type) {
    case MK_MSG_KEYGEN: return handle_keygen(dev, v, rp, d);
    case MK_MSG_COGEN: return handle_cogen(dev, v, rp, d);
    case MK_MSG_INSTALL: return handle_install(dev, v, rp, d);
    case MK_MSG_COMMIT: return handle_commit(dev, v, rp, d);
    default: return handle_reset(dev, v, rp, d);
    }
}

/* ---------------------------------------------------------------- public API */

int mk_device_init(mk_device *dev, const mk_platform *platform, const mk_device_identity *identity)
{
    if (dev == NULL || platform == NULL || identity == NULL) return -MK_ERR_BAD_LENGTH;
    memset(dev, 0, sizeof *dev);
    if (platform->rng_fill == NULL || platform->flash_read == NULL || platform->flash_write == NULL ||
        platform->now_ms == NULL)
        return -MK_ERR_BAD_LENGTH;
    if (!identity_ok(identity->model) || !identity_ok(identity->serial) || !identity_ok(identity->firmware))
        return -MK_ERR_BAD_LENGTH;
    dev->platform = *platform;
    dev->id = *identity;
    return load_state(dev);
}

uint8_t mk_device_state(const mk_device *dev)
{
    if (dev->state == MK_STATE_FACTORY && dev->authenticated) return MK_STATE_AUTHENTICATED;
    return dev->state;
}

void mk_device_end_session(mk_device *dev)
{
    dev->session = 0;
    dev->authenticated = 0;
    dev->have_last = 0;
    dev->last_reply_len = 0;
    memset(dev->challenge, 0, sizeof dev->challenge);
    memset(dev->last_reply, 0, sizeof dev->last_reply);
}

void mk_device_wipe(mk_device *dev)
{
    if (dev == NULL) return;
    mk_device_end_session(dev);
    mk_wipe(&dev->store, sizeof dev->store);
    mk_wipe(dev->work, sizeof dev->work);
}

int mk_device_handle(mk_device *dev, uint8_t type, uint8_t seq, const uint8_t *msg, size_t len, uint8_t *out,
                     size_t cap, uint8_t *out_type, size_t *out_len)
{
    reply rp;
    detail_buf d;
    uint32_t crc;
    int status;

    if (dev == NULL || out == NULL || out_type == NULL || out_len == NULL || (msg == NULL && len != 0))
        return -MK_ERR_BAD_LENGTH;
    if (len > MK_MAX_MESSAGE) len = MK_MAX_MESSAGE + 1u; /* cannot come from the decoders; parsed as invalid */
    crc = len <= MK_MAX_MESSAGE ? mk_crc32c(msg, len) : 0;

    /* 1. a retry of the previous request gets the previous reply */
    if (dev->have_last && dev->last_type == type && dev->last_seq == seq && dev->last_request_len == len &&
        dev->last_request_crc == crc) {
        if (cap < dev->last_reply_len) return -MK_ERR_TOO_LARGE;
        memcpy(out, dev->last_reply, dev->last_reply_len);
        *out_type = dev->last_reply_type;
        *out_len = dev->last_reply_len;
        return 0;
    }

    /* 2.-5. build the reply in the cache, then copy it out */
    mk_cbor_writer_init(&rp.w, dev->last_reply, sizeof dev->last_reply);
    rp.type = MK_MSG_ERROR;
    d_init(&d);
    if (len > MK_MAX_MESSAGE) {
        d_cat(&d, "message larger than MAX_MESSAGE");
        status = MK_ERR_TOO_LARGE;
    } else {
        status = dispatch(dev, type, msg, len, &rp, &d);
        mk_wipe(dev->work, sizeof dev->work);
    }
    if (status > 0) status = write_error(&rp, status, &d) != 0 ? -MK_ERR_TOO_LARGE : 0;
    if (status != 0) {
        dev->have_last = 0;
        return status;
    }
    dev->have_last = 1;
    dev->last_type = type;
    dev->last_seq = seq;
    dev->last_request_len = len;
    dev->last_request_crc = crc;
    dev->last_reply_type = rp.type;
    dev->last_reply_len = rp.w.len;
    if (cap < rp.w.len) return -MK_ERR_TOO_LARGE;
    memcpy(out, dev->last_reply, rp.w.len);
    *out_type = rp.type;
    *out_len = rp.w.len;
    return 0;
}
