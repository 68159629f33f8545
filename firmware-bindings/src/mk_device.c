/*
 * mk_device.c - the meshkit device: message handlers and state machine (see mk_device.h for the order of checks).
 * Portable C99, no malloc, no printf (details are assembled by hand to keep the footprint small).
 */
#include "mk_device.h"

#include <string.h>

#include "mk_cbor.h"
#include "mk_frame.h"

/* State blob: magic "MKDS" | format 1 | state | 0 | 0 | CRC-32C of the 8 bytes before it (big-endian). */
#define BLOB_LEN 12u
#define BLOB_FORMAT 1u
#define DETAIL_MAX 96u

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

static int load_state(mk_device *dev)
{
    uint8_t blob[MK_PLATFORM_STATE_MAX];
    size_t len = 0;
    uint32_t crc;
    if (dev->platform.flash_read(dev->platform.ctx, blob, sizeof blob, &len) != 0 || len > sizeof blob)
        return -MK_ERR_FLASH;
    if (len == 0) {
        dev->state = MK_STATE_FACTORY;
        return 0;
    }
    if (len != BLOB_LEN || memcmp(blob, "MKDS", 4) != 0 || blob[4] != BLOB_FORMAT) return -MK_ERR_FLASH;
    crc = (uint32_t)blob[8] << 24 | (uint32_t)blob[9] << 16 | (uint32_t)blob[10] << 8 | blob[11];
    if (crc != mk_crc32c(blob, 8)) return -MK_ERR_FLASH;
    if (blob[5] > MK_STATE_COMMITTED || blob[5] == MK_STATE_AUTHENTICATED || blob[6] != 0 || blob[7] != 0)
        return -MK_ERR_FLASH;
    dev->state = blob[5];
    return 0;
}

/* ---------------------------------------------------------------- request fields */

typedef struct field_spec {
    uint64_t key;
    int kind; /* MK_CBOR_UINT or MK_CBOR_BSTR */
    const char *name;
} field_spec;

typedef struct field_val {
    int present;
    uint64_t u;
    const uint8_t *p;
    size_t n;
} field_val;

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
        rc = spec[j].kind == MK_CBOR_UINT ? mk_cbor_read_uint(&r, &vals[j].u)
                                          : mk_cbor_read_bstr(&r, &vals[j].p, &vals[j].n);
        if (rc != 0) {
            d_cat(d, name);
            d_cat(d, ".");
            d_cat(d, spec[j].name);
            d_cat(d, spec[j].kind == MK_CBOR_UINT ? ": expected uint" : ": expected bstr");
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

static const field_spec HELLO_FIELDS[] = {{MK_F_HELLO_VERSION, MK_CBOR_UINT, "version"}};
static const field_spec BENCH_AUTH_FIELDS[] = {{MK_F_BENCH_AUTH_CHALLENGE, MK_CBOR_BSTR, "challenge"},
                                               {MK_F_BENCH_AUTH_BENCH_KEY, MK_CBOR_BSTR, "bench_key"},
                                               {MK_F_BENCH_AUTH_SIGNATURE, MK_CBOR_BSTR, "signature"}};
static const field_spec KEYGEN_FIELDS[] = {{MK_F_KEYGEN_KEYS, MK_CBOR_UINT, "keys"}};
static const field_spec COGEN_FIELDS[] = {{MK_F_COGEN_CONTRIBUTION, MK_CBOR_BSTR, "contribution"}};
static const field_spec INSTALL_FIELDS[] = {{MK_F_INSTALL_CONNECTION, MK_CBOR_BSTR, "connection"},
                                            {MK_F_INSTALL_CONFIG, MK_CBOR_BSTR, "config"}};
static const field_spec COMMIT_FIELDS[] = {{MK_F_COMMIT_RECORD_DIGEST, MK_CBOR_BSTR, "record_digest"}};

#define MAX_FIELDS 3

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
    mk_cbor_write_uint(w, dev->id.transports & (MK_CAP_SERIAL | MK_CAP_HID));
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

/* ---------------------------------------------------------------- dispatch */

/* Is the request allowed in this persistent state (BENCH_AUTH and HELLO: always)? */
static int state_allows(uint8_t type, uint8_t state)
{
    switch (type) {
    case MK_MSG_KEYGEN: return state == MK_STATE_FACTORY || state == MK_STATE_KEYS_GENERATED;
    case MK_MSG_COGEN: return state == MK_STATE_KEYS_GENERATED || state == MK_STATE_COGENERATED;
    case MK_MSG_INSTALL: return state == MK_STATE_COGENERATED || state == MK_STATE_INSTALLED;
    case MK_MSG_COMMIT: return state == MK_STATE_INSTALLED || state == MK_STATE_COMMITTED;
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
    case MK_MSG_KEYGEN: spec = KEYGEN_FIELDS; nspec = 1; break;
    case MK_MSG_COGEN: spec = COGEN_FIELDS; nspec = 1; break;
    case MK_MSG_INSTALL: spec = INSTALL_FIELDS; nspec = 2; break;
    default: spec = COMMIT_FIELDS; nspec = 1; break;
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

    if (!dev->authenticated) {
        d_cat(d, name);
        d_cat(d, ": BENCH_AUTH required first");
        return MK_ERR_NOT_AUTHENTICATED;
    }
    d_cat(d, name);
    d_cat(d, " not implemented by this firmware");
    return MK_ERR_UNKNOWN_MESSAGE;
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
