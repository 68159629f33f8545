/*
 * mk_cbor.h - the strict CBOR subset of the meshkit device protocol (RFC 8949), portable C99.
 *
 * Subset (docs/protocol-framing.md): major types 0, 1, 2, 3 (valid UTF-8), 4, 5 (keys unsigned integers,
 * strictly increasing), 7 (false, true, null only); definite lengths only; nesting at most 8; the shortest
 * encoding of every integer and length; exactly one top-level item (no trailing bytes).
 *
 * Reader: a cursor over a caller buffer. Each mk_cbor_read_* consumes one item of the expected kind or
 * returns an error and leaves the cursor where it was. Byte and text strings are returned as pointers into
 * the input (no copy). The reader checks shortest encodings and UTF-8 item by item but cannot see map key
 * order or nesting depth: run mk_cbor_validate on a message before reading it.
 * Writer: shortest encodings into a caller buffer; errors are sticky.
 *
 * No malloc, no recursion. 0 on success, a negated status code of meshkit_protocol.h on failure
 * ("MK_ERR_X" below means the return value -MK_ERR_X). A reader function called on a well-formed item
 * of another kind returns MK_ERR_WRONG_TYPE.
 */
#ifndef MK_CBOR_H
#define MK_CBOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "meshkit_protocol.h"

/* Kinds returned by mk_cbor_peek. */
#define MK_CBOR_UINT 0
#define MK_CBOR_NINT 1
#define MK_CBOR_BSTR 2
#define MK_CBOR_TSTR 3
#define MK_CBOR_ARRAY 4
#define MK_CBOR_MAP 5
#define MK_CBOR_BOOL 6
#define MK_CBOR_NULL 7

typedef struct mk_cbor_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
} mk_cbor_reader;

void mk_cbor_reader_init(mk_cbor_reader *r, const uint8_t *buf, size_t len);
/* 1 when every byte has been consumed, else 0. */
int mk_cbor_at_end(const mk_cbor_reader *r);
/* Kind (MK_CBOR_*) of the next item, or a negative error (end of input, outside the subset). */
int mk_cbor_peek(const mk_cbor_reader *r);

int mk_cbor_read_uint(mk_cbor_reader *r, uint64_t *value);
/* Major type 1: the encoded n of the value -1-n (covers -2^64 .. -1). */
int mk_cbor_read_nint(mk_cbor_reader *r, uint64_t *n);
/* Major type 0 or 1 within int64_t; MK_ERR_CBOR_INVALID if out of range. */
int mk_cbor_read_int(mk_cbor_reader *r, int64_t *value);
int mk_cbor_read_bstr(mk_cbor_reader *r, const uint8_t **data, size_t *len);
/* UTF-8 validated; not NUL-terminated. */
int mk_cbor_read_tstr(mk_cbor_reader *r, const char **text, size_t *len);
int mk_cbor_read_array(mk_cbor_reader *r, size_t *count);
/* count = number of key/value pairs. */
int mk_cbor_read_map(mk_cbor_reader *r, size_t *count);
int mk_cbor_read_bool(mk_cbor_reader *r, int *value);
int mk_cbor_read_null(mk_cbor_reader *r);
/* Skip one whole item (containers included, up to MK_CBOR_MAX_DEPTH levels). */
int mk_cbor_skip(mk_cbor_reader *r);

/* Check that buf[0..len) is exactly one item of the subset with nesting <= max_depth (clamped to
 * MK_CBOR_MAX_DEPTH; a scalar has depth 0, each enclosing array/map adds 1). Returns 0,
 * MK_ERR_CBOR_NONCANONICAL (non-shortest integer or length, map keys unordered or duplicated) or
 * MK_ERR_CBOR_INVALID (anything else). */
int mk_cbor_validate(const uint8_t *buf, size_t len, unsigned max_depth);

/* 1 if p[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF), else 0. */
int mk_utf8_valid(const uint8_t *p, size_t len);

typedef struct mk_cbor_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err; /* first error, sticky */
} mk_cbor_writer;

void mk_cbor_writer_init(mk_cbor_writer *w, uint8_t *buf, size_t cap);
/* Each returns 0 or the (sticky) error: MK_ERR_TOO_LARGE when the buffer is full, MK_ERR_CBOR_INVALID for
 * invalid UTF-8 or a NULL pointer with a non-zero length. */
int mk_cbor_write_uint(mk_cbor_writer *w, uint64_t value);
int mk_cbor_write_nint(mk_cbor_writer *w, uint64_t n); /* the value -1-n */
int mk_cbor_write_int(mk_cbor_writer *w, int64_t value);
int mk_cbor_write_bstr(mk_cbor_writer *w, const uint8_t *data, size_t len);
int mk_cbor_write_tstr(mk_cbor_writer *w, const char *text, size_t len);
int mk_cbor_write_array(mk_cbor_writer *w, size_t count);
int mk_cbor_write_map(mk_cbor_writer *w, size_t count);
int mk_cbor_write_bool(mk_cbor_writer *w, int value);
int mk_cbor_write_null(mk_cbor_writer *w);

#ifdef __cplusplus
}
#endif

#endif /* MK_CBOR_H */
