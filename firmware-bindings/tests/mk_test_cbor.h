/*
 * mk_test_cbor.h - shared by test_cbor.c and fuzz_cbor.c (test code only; included once per program):
 * copying a CBOR item through the reader into the writer, and the check that accepted input re-encodes to
 * exactly the same bytes.
 */
#ifndef MK_TEST_CBOR_H
#define MK_TEST_CBOR_H

#include <string.h>

#include "mk_cbor.h"

static int copy_item(mk_cbor_reader *r, mk_cbor_writer *w, int depth)
{
    int kind = mk_cbor_peek(r);
    uint64_t u = 0;
    size_t n = 0, i;
    const uint8_t *b = NULL;
    const char *t = NULL;
    int v = 0, rc;
    if (depth > 8) return -1;
    switch (kind) {
    case MK_CBOR_UINT: rc = mk_cbor_read_uint(r, &u); return rc ? rc : mk_cbor_write_uint(w, u);
    case MK_CBOR_NINT: rc = mk_cbor_read_nint(r, &u); return rc ? rc : mk_cbor_write_nint(w, u);
    case MK_CBOR_BSTR: rc = mk_cbor_read_bstr(r, &b, &n); return rc ? rc : mk_cbor_write_bstr(w, b, n);
    case MK_CBOR_TSTR: rc = mk_cbor_read_tstr(r, &t, &n); return rc ? rc : mk_cbor_write_tstr(w, t, n);
    case MK_CBOR_BOOL: rc = mk_cbor_read_bool(r, &v); return rc ? rc : mk_cbor_write_bool(w, v);
    case MK_CBOR_NULL: rc = mk_cbor_read_null(r); return rc ? rc : mk_cbor_write_null(w);
    case MK_CBOR_ARRAY:
    case MK_CBOR_MAP:
        rc = kind == MK_CBOR_ARRAY ? mk_cbor_read_array(r, &n) : mk_cbor_read_map(r, &n);
        if (rc) return rc;
        rc = kind == MK_CBOR_ARRAY ? mk_cbor_write_array(w, n) : mk_cbor_write_map(w, n);
        if (rc) return rc;
        for (i = 0; i < (kind == MK_CBOR_MAP ? 2 * n : n); i++) {
            rc = copy_item(r, w, depth + 1);
            if (rc) return rc;
        }
        return 0;
    default: return kind;
    }
}

static uint8_t out[65536];

/* Accepted input must re-encode to the same bytes. */
static int reencode_equal(const uint8_t *in, size_t len)
{
    mk_cbor_reader r;
    mk_cbor_writer w;
    mk_cbor_reader_init(&r, in, len);
    mk_cbor_writer_init(&w, out, sizeof out);
    if (copy_item(&r, &w, 0) != 0 || !mk_cbor_at_end(&r)) return 0;
    return w.len == len && memcmp(out, in, len) == 0;
}

#endif /* MK_TEST_CBOR_H */
