/*
 * mk_cbor.c - strict CBOR subset reader, validator and writer. See mk_cbor.h.
 */
#include "mk_cbor.h"

#include <string.h>

/* ---------------------------------------------------------------- UTF-8 */

int mk_utf8_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    if (p == NULL) {
        return len == 0;
    }
    while (i < len) {
        uint8_t c = p[i];
        uint8_t lo = 0x80, hi = 0xBF;
        size_t cont, k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            cont = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cont = 2;
            if (c == 0xE0) {
                lo = 0xA0;
            } else if (c == 0xED) {
                hi = 0x9F; /* no surrogates */
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            cont = 3;
            if (c == 0xF0) {
                lo = 0x90;
            } else if (c == 0xF4) {
                hi = 0x8F;
            }
        } else {
            return 0;
        }
        if (len - i - 1u < cont) {
            return 0;
        }
        if (p[i + 1] < lo || p[i + 1] > hi) {
            return 0;
        }
        for (k = 2; k <= cont; k++) {
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) {
                return 0;
            }
        }
        i += cont + 1u;
    }
    return 1;
}

/* ---------------------------------------------------------------- item heads */

/* Parse the head of the item at *pos: major type, additional info and argument. Rejects tags, major 7
 * other than false/true/null, reserved and indefinite additional info (CBOR_INVALID), truncation
 * (CBOR_INVALID) and non-shortest arguments (CBOR_NONCANONICAL). On success advances *pos past the head. */
static int parse_head(const uint8_t *buf, size_t len, size_t *pos, unsigned *major, uint64_t *arg)
{
    size_t p = *pos;
    uint8_t ib, ai;
    uint64_t v;
    size_t n, k;
    if (p >= len) {
        return -MK_ERR_CBOR_INVALID;
    }
    ib = buf[p++];
    *major = (unsigned)(ib >> 5);
    ai = (uint8_t)(ib & 0x1Fu);
    if (*major == 6u) {
        return -MK_ERR_CBOR_INVALID; /* tags */
    }
    if (*major == 7u) {
        if (ai < 20u || ai > 22u) {
            return -MK_ERR_CBOR_INVALID; /* only false, true, null */
        }
        *arg = ai;
        *pos = p;
        return 0;
    }
    if (ai < 24u) {
        *arg = ai;
        *pos = p;
        return 0;
    }
    if (ai > 27u) {
        return -MK_ERR_CBOR_INVALID; /* reserved, indefinite */
    }
    n = (size_t)1u << (ai - 24u);
    if (len - p < n) {
        return -MK_ERR_CBOR_INVALID;
    }
    v = 0;
    for (k = 0; k < n; k++) {
        v = (v << 8) | buf[p + k];
    }
    if ((ai == 24u && v < 24u) || (ai == 25u && v <= 0xFFu) || (ai == 26u && v <= 0xFFFFu) ||
        (ai == 27u && v <= 0xFFFFFFFFu)) {
        return -MK_ERR_CBOR_NONCANONICAL;
    }
    *arg = v;
    *pos = p + n;
    return 0;
}

/* Parse one item's head and, for strings, its content (bounds, UTF-8). For arrays and maps *arg is the
 * number of contained items (2 per map pair), checked against the bytes left. */
static int parse_item(const uint8_t *buf, size_t len, size_t *pos, unsigned *major, uint64_t *arg)
{
    size_t p = *pos;
    int rc = parse_head(buf, len, &p, major, arg);
    if (rc != 0) {
        return rc;
    }
    switch (*major) {
    case 2u:
    case 3u:
        if (*arg > (uint64_t)(len - p)) {
            return -MK_ERR_CBOR_INVALID;
        }
        if (*major == 3u && !mk_utf8_valid(buf + p, (size_t)*arg)) {
            return -MK_ERR_CBOR_INVALID;
        }
        p += (size_t)*arg;
        break;
    case 4u:
        if (*arg > (uint64_t)(len - p)) {
            return -MK_ERR_CBOR_INVALID; /* every item takes at least one byte */
        }
        break;
    case 5u:
        if (*arg > (uint64_t)((len - p) / 2u)) {
            return -MK_ERR_CBOR_INVALID;
        }
        *arg *= 2u;
        break;
    default:
        break;
    }
    *pos = p;
    return 0;
}

/* ---------------------------------------------------------------- validator */

typedef struct {
    uint64_t left;     /* items still to come in this container */
    uint64_t last_key;
    uint8_t is_map;
    uint8_t have_key;
} cbor_level;

int mk_cbor_validate(const uint8_t *buf, size_t len, unsigned max_depth)
{
    cbor_level stack[MK_CBOR_MAX_DEPTH];
    size_t depth = 0, pos = 0;
    if (buf == NULL) {
        return -MK_ERR_CBOR_INVALID;
    }
    if (max_depth > MK_CBOR_MAX_DEPTH) {
        max_depth = MK_CBOR_MAX_DEPTH;
    }
    for (;;) {
        unsigned major = 0;
        uint64_t arg = 0;
        int rc;
        cbor_level *top = depth > 0 ? &stack[depth - 1] : NULL;
        int is_key = top != NULL && top->is_map && (top->left % 2u) == 0u;
        rc = parse_item(buf, len, &pos, &major, &arg);
        if (rc != 0) {
            return rc;
        }
        if (is_key) {
            if (major != 0u) {
                return -MK_ERR_CBOR_INVALID;
            }
            if (top->have_key && arg <= top->last_key) {
                return -MK_ERR_CBOR_NONCANONICAL;
            }
            top->last_key = arg;
            top->have_key = 1;
        }
        if ((major == 4u || major == 5u)) {
            if (depth >= max_depth) {
                return -MK_ERR_CBOR_INVALID; /* nested too deep */
            }
            if (arg > 0u) {
                stack[depth].left = arg;
                stack[depth].is_map = (uint8_t)(major == 5u);
                stack[depth].have_key = 0;
                stack[depth].last_key = 0;
                depth++;
                continue;
            }
        }
        /* one item complete: close every container it completes */
        while (depth > 0) {
            if (--stack[depth - 1].left > 0u) {
                break;
            }
            depth--;
        }
        if (depth == 0) {
            break;
        }
    }
    return pos == len ? 0 : -MK_ERR_CBOR_INVALID; /* trailing bytes */
}

/* ---------------------------------------------------------------- reader */

void mk_cbor_reader_init(mk_cbor_reader *r, const uint8_t *buf, size_t len)
{
    r->buf = buf;
    r->len = buf != NULL ? len : 0;
    r->pos = 0;
}

int mk_cbor_at_end(const mk_cbor_reader *r)
{
    return r->pos >= r->len;
}

int mk_cbor_peek(const mk_cbor_reader *r)
{
    size_t pos = r->pos;
    unsigned major = 0;
    uint64_t arg = 0;
    int rc = parse_head(r->buf, r->len, &pos, &major, &arg);
    if (rc != 0) {
        return rc;
    }
    if (major == 7u) {
        return arg == 22u ? MK_CBOR_NULL : MK_CBOR_BOOL;
    }
    return (int)major;
}

/* Read one item that must be of major type `want`; commits the cursor only on success. */
static int read_kind(mk_cbor_reader *r, unsigned want, uint64_t *arg, size_t *content)
{
    size_t pos = r->pos;
    size_t head_end;
    unsigned major = 0;
    int rc = parse_head(r->buf, r->len, &pos, &major, arg);
    if (rc != 0) {
        return rc;
    }
    if (major != want) {
        return -MK_ERR_WRONG_TYPE;
    }
    head_end = pos;
    pos = r->pos;
    rc = parse_item(r->buf, r->len, &pos, &major, arg);
    if (rc != 0) {
        return rc;
    }
    if (content != NULL) {
        *content = head_end;
    }
    r->pos = pos;
    return 0;
}

int mk_cbor_read_uint(mk_cbor_reader *r, uint64_t *value)
{
    uint64_t v = 0;
    int rc = read_kind(r, 0u, &v, NULL);
    if (rc == 0 && value != NULL) {
        *value = v;
    }
    return rc;
}

int mk_cbor_read_nint(mk_cbor_reader *r, uint64_t *n)
{
    uint64_t v = 0;
    int rc = read_kind(r, 1u, &v, NULL);
    if (rc == 0 && n != NULL) {
        *n = v;
    }
    return rc;
}

int mk_cbor_read_int(mk_cbor_reader *r, int64_t *value)
{
    size_t save = r->pos;
    uint64_t v = 0;
    int kind = mk_cbor_peek(r);
    int rc;
    if (kind < 0) {
        return kind;
    }
    if (kind == MK_CBOR_UINT) {
        rc = mk_cbor_read_uint(r, &v);
        if (rc == 0 && v > (uint64_t)INT64_MAX) {
            r->pos = save;
            return -MK_ERR_CBOR_INVALID;
        }
        if (rc == 0 && value != NULL) {
            *value = (int64_t)v;
        }
        return rc;
    }
    if (kind == MK_CBOR_NINT) {
        rc = mk_cbor_read_nint(r, &v);
        if (rc == 0 && v > (uint64_t)INT64_MAX) {
            r->pos = save;
            return -MK_ERR_CBOR_INVALID;
        }
        if (rc == 0 && value != NULL) {
            *value = -1 - (int64_t)v;
        }
        return rc;
    }
    return -MK_ERR_WRONG_TYPE;
}

int mk_cbor_read_bstr(mk_cbor_reader *r, const uint8_t **data, size_t *len)
{
    uint64_t n = 0;
    size_t start = 0;
    int rc = read_kind(r, 2u, &n, &start);
    if (rc == 0) {
        if (data != NULL) {
            *data = r->buf + start;
        }
        if (len != NULL) {
            *len = (size_t)n;
        }
    }
    return rc;
}

int mk_cbor_read_tstr(mk_cbor_reader *r, const char **text, size_t *len)
{
    uint64_t n = 0;
    size_t start = 0;
    int rc = read_kind(r, 3u, &n, &start);
    if (rc == 0) {
        if (text != NULL) {
            *text = (const char *)(r->buf + start);
        }
        if (len != NULL) {
            *len = (size_t)n;
        }
    }
    return rc;
}

int mk_cbor_read_array(mk_cbor_reader *r, size_t *count)
{
    uint64_t n = 0;
    int rc = read_kind(r, 4u, &n, NULL);
    if (rc == 0 && count != NULL) {
        *count = (size_t)n;
    }
    return rc;
}

int mk_cbor_read_map(mk_cbor_reader *r, size_t *count)
{
    uint64_t n = 0;
    int rc = read_kind(r, 5u, &n, NULL);
    if (rc == 0 && count != NULL) {
        *count = (size_t)(n / 2u);
    }
    return rc;
}

int mk_cbor_read_bool(mk_cbor_reader *r, int *value)
{
    if (r->pos >= r->len) {
        return -MK_ERR_CBOR_INVALID;
    }
    if (r->buf[r->pos] != 0xF4u && r->buf[r->pos] != 0xF5u) {
        return mk_cbor_peek(r) < 0 ? mk_cbor_peek(r) : -MK_ERR_WRONG_TYPE;
    }
    if (value != NULL) {
        *value = r->buf[r->pos] == 0xF5u;
    }
    r->pos++;
    return 0;
}

int mk_cbor_read_null(mk_cbor_reader *r)
{
    if (r->pos >= r->len) {
        return -MK_ERR_CBOR_INVALID;
    }
    if (r->buf[r->pos] != 0xF6u) {
        return mk_cbor_peek(r) < 0 ? mk_cbor_peek(r) : -MK_ERR_WRONG_TYPE;
    }
    r->pos++;
    return 0;
}

int mk_cbor_skip(mk_cbor_reader *r)
{
    /* Items still to skip; every item takes at least one byte, so this never exceeds r->len + 1. */
    uint64_t pending = 1;
    size_t pos = r->pos;
    while (pending > 0u) {
        unsigned major = 0;
        uint64_t arg = 0;
        int rc = parse_item(r->buf, r->len, &pos, &major, &arg);
        if (rc != 0) {
            return rc;
        }
        pending--;
        if (major == 4u || major == 5u) {
            pending += arg;
        }
    }
    r->pos = pos;
    return 0;
}

/* ---------------------------------------------------------------- writer */

void mk_cbor_writer_init(mk_cbor_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = buf != NULL ? cap : 0;
    w->len = 0;
    w->err = 0;
}

static int put_bytes(mk_cbor_writer *w, const uint8_t *p, size_t n)
{
    if (w->err != 0) {
        return w->err;
    }
    if (n > w->cap - w->len) {
        w->err = -MK_ERR_TOO_LARGE;
        return w->err;
    }
    if (n > 0) {
        memcpy(w->buf + w->len, p, n);
        w->len += n;
    }
    return 0;
}

static int put_head(mk_cbor_writer *w, unsigned major, uint64_t v)
{
    uint8_t h[9];
    size_t n, k;
    uint8_t ib = (uint8_t)(major << 5);
    if (v < 24u) {
        h[0] = (uint8_t)(ib | v);
        return put_bytes(w, h, 1);
    }
    if (v <= 0xFFu) {
        h[0] = (uint8_t)(ib | 24u);
        n = 1;
    } else if (v <= 0xFFFFu) {
        h[0] = (uint8_t)(ib | 25u);
        n = 2;
    } else if (v <= 0xFFFFFFFFu) {
        h[0] = (uint8_t)(ib | 26u);
        n = 4;
    } else {
        h[0] = (uint8_t)(ib | 27u);
        n = 8;
    }
    for (k = 0; k < n; k++) {
        h[1 + k] = (uint8_t)(v >> (8u * (n - 1u - k)));
    }
    return put_bytes(w, h, n + 1u);
}

static int fail(mk_cbor_writer *w, int err)
{
    if (w->err == 0) {
        w->err = err;
    }
    return w->err;
}

int mk_cbor_write_uint(mk_cbor_writer *w, uint64_t value)
{
    return put_head(w, 0u, value);
}

int mk_cbor_write_nint(mk_cbor_writer *w, uint64_t n)
{
    return put_head(w, 1u, n);
}

int mk_cbor_write_int(mk_cbor_writer *w, int64_t value)
{
    if (value >= 0) {
        return put_head(w, 0u, (uint64_t)value);
    }
    /* -1 - value without overflow: ~value as unsigned */
    return put_head(w, 1u, ~(uint64_t)value);
}

int mk_cbor_write_bstr(mk_cbor_writer *w, const uint8_t *data, size_t len)
{
    int rc;
    if (data == NULL && len > 0) {
        return fail(w, -MK_ERR_CBOR_INVALID);
    }
    rc = put_head(w, 2u, len);
    return rc != 0 ? rc : put_bytes(w, data, len);
}

int mk_cbor_write_tstr(mk_cbor_writer *w, const char *text, size_t len)
{
    int rc;
    if ((text == NULL && len > 0) || !mk_utf8_valid((const uint8_t *)text, len)) {
        return fail(w, -MK_ERR_CBOR_INVALID);
    }
    rc = put_head(w, 3u, len);
    return rc != 0 ? rc : put_bytes(w, (const uint8_t *)text, len);
}

int mk_cbor_write_array(mk_cbor_writer *w, size_t count)
{
    return put_head(w, 4u, count);
}

int mk_cbor_write_map(mk_cbor_writer *w, size_t count)
{
    return put_head(w, 5u, count);
}

int mk_cbor_write_bool(mk_cbor_writer *w, int value)
{
    uint8_t b = value ? 0xF5u : 0xF4u;
    return put_bytes(w, &b, 1);
}

int mk_cbor_write_null(mk_cbor_writer *w)
{
    uint8_t b = 0xF6u;
    return put_bytes(w, &b, 1);
}
