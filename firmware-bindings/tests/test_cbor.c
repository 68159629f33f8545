/*
 * test_cbor.c - unit tests of mk_cbor (reader, validator, writer, UTF-8) and the shared vectors
 * firmware-bindings/vectors/cbor.hex (accepted, re-encode to the same bytes) and cbor-bad.hex (rejected with
 * the named error). Usage: test_cbor VECTOR_DIR. Exit status 0 when every check passes.
 */
#include "mk_cbor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_test_vectors.h"



/* ---------------------------------------------------------------- re-encoding walker */

/* Copy one item from reader to writer using only the public reader/writer API. */
#include "mk_test_cbor.h"

/* ---------------------------------------------------------------- vector cases */

static void good_case(const char *name, int kind, int err)
{
    int rc = mk_cbor_validate(va, va_len, MK_CBOR_MAX_DEPTH);
    (void)err;
    CHECK(kind == 0, "cbor/%s: malformed line", name);
    CHECK(rc == 0, "cbor/%s: validate rc=%d", name, rc);
    CHECK(reencode_equal(va, va_len), "cbor/%s: re-encode differs", name);
    {
        mk_cbor_reader r;
        mk_cbor_reader_init(&r, va, va_len);
        CHECK(mk_cbor_skip(&r) == 0 && mk_cbor_at_end(&r), "cbor/%s: skip", name);
    }
}

static void bad_case(const char *name, int kind, int err)
{
    int rc = mk_cbor_validate(va, va_len, MK_CBOR_MAX_DEPTH);
    CHECK(kind == 2 && rc == err, "cbor-bad/%s: validate rc=%d want %d", name, rc, err);
}

/* ---------------------------------------------------------------- unit tests */

static void test_writer_reader(void)
{
    uint8_t buf[256];
    mk_cbor_writer w;
    mk_cbor_reader r;
    uint64_t u = 0;
    int64_t i64 = 0;
    const uint8_t *b = NULL;
    const char *t = NULL;
    size_t n = 0;
    int v = -1;
    static const uint8_t want[] = {0xa6, 0x01, 0x18, 0x18, 0x02, 0x39, 0x01, 0x00, 0x03, 0x42, 0xde, 0xad, 0x04,
                                   0x62, 0xc3, 0xbc, 0x05, 0x82, 0xf5, 0xf6, 0x19, 0x01, 0x00, 0x3b, 0x7f, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const uint8_t db[] = {0xde, 0xad};
    mk_cbor_writer_init(&w, buf, sizeof buf);
    mk_cbor_write_map(&w, 6);
    mk_cbor_write_uint(&w, 1); mk_cbor_write_uint(&w, 24);
    mk_cbor_write_uint(&w, 2); mk_cbor_write_int(&w, -257);
    mk_cbor_write_uint(&w, 3); mk_cbor_write_bstr(&w, db, 2);
    mk_cbor_write_uint(&w, 4); mk_cbor_write_tstr(&w, "\xc3\xbc", 2);
    mk_cbor_write_uint(&w, 5); mk_cbor_write_array(&w, 2); mk_cbor_write_bool(&w, 1); mk_cbor_write_null(&w);
    mk_cbor_write_uint(&w, 256);
    CHECK(mk_cbor_write_int(&w, INT64_MIN) == 0, "int64 min");
    CHECK(w.err == 0 && w.len == sizeof want && memcmp(buf, want, sizeof want) == 0, "writer bytes len=%zu", w.len);
    CHECK(mk_cbor_validate(buf, w.len, 8) == 0, "validate");

    mk_cbor_reader_init(&r, buf, w.len);
    CHECK(mk_cbor_read_array(&r, &n) == -MK_ERR_WRONG_TYPE && r.pos == 0, "wrong type keeps cursor");
    CHECK(mk_cbor_read_map(&r, &n) == 0 && n == 6, "map");
    CHECK(mk_cbor_read_uint(&r, &u) == 0 && u == 1, "k1");
    CHECK(mk_cbor_read_uint(&r, &u) == 0 && u == 24, "v1");
    CHECK(mk_cbor_read_uint(&r, &u) == 0 && u == 2, "k2");
    CHECK(mk_cbor_read_uint(&r, &u) == -MK_ERR_WRONG_TYPE, "nint as uint");
    CHECK(mk_cbor_read_int(&r, &i64) == 0 && i64 == -257, "v2");
    CHECK(mk_cbor_read_uint(&r, &u) == 0 && u == 3, "k3");
    CHECK(mk_cbor_read_bstr(&r, &b, &n) == 0 && n == 2 && b == buf + 10, "bstr points into input");
    CHECK(mk_cbor_read_uint(&r, &u) == 0 && u == 4, "k4");
    CHECK(mk_cbor_read_tstr(&r, &t, &n) == 0 && n == 2 && memcmp(t, "\xc3\xbc", 2) == 0, "tstr");
    CHECK(mk_cbor_read_uint(&r, &u) == 0 && u == 5, "k5");
    CHECK(mk_cbor_read_array(&r, &n) == 0 && n == 2, "array");
    CHECK(mk_cbor_read_null(&r) == -MK_ERR_WRONG_TYPE, "true as null");
    CHECK(mk_cbor_read_bool(&r, &v) == 0 && v == 1, "bool");
    CHECK(mk_cbor_read_bool(&r, &v) == -MK_ERR_WRONG_TYPE, "null as bool");
    CHECK(mk_cbor_read_null(&r) == 0, "null");
    CHECK(mk_cbor_read_uint(&r, &u) == 0 && u == 256, "k6");
    CHECK(mk_cbor_read_int(&r, &i64) == 0 && i64 == INT64_MIN, "int64 min read");
    CHECK(mk_cbor_at_end(&r) && mk_cbor_read_uint(&r, &u) == -MK_ERR_CBOR_INVALID, "end");

    /* -2^64 does not fit int64 but reads as nint */
    {
        static const uint8_t m[] = {0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        mk_cbor_reader_init(&r, m, sizeof m);
        CHECK(mk_cbor_read_int(&r, &i64) == -MK_ERR_CBOR_INVALID && r.pos == 0, "int64 range");
        CHECK(mk_cbor_read_nint(&r, &u) == 0 && u == UINT64_MAX, "nint max");
    }
    /* the reader rejects non-shortest heads and bad UTF-8 item by item */
    {
        static const uint8_t m[] = {0x18, 0x05};
        static const uint8_t s[] = {0x62, 0xc0, 0xaf};
        mk_cbor_reader_init(&r, m, sizeof m);
        CHECK(mk_cbor_read_uint(&r, &u) == -MK_ERR_CBOR_NONCANONICAL, "reader shortest");
        mk_cbor_reader_init(&r, s, sizeof s);
        CHECK(mk_cbor_read_tstr(&r, &t, &n) == -MK_ERR_CBOR_INVALID, "reader utf8");
    }
    /* writer: sticky overflow, shortest boundaries, invalid UTF-8 refused */
    {
        static const uint64_t vals[] = {0, 23, 24, 255, 256, 65535, 65536, 0xFFFFFFFFu, 0x100000000u, UINT64_MAX};
        static const size_t lens[] = {1, 1, 2, 2, 3, 3, 5, 5, 9, 9};
        size_t k;
        for (k = 0; k < sizeof vals / sizeof vals[0]; k++) {
            mk_cbor_writer_init(&w, buf, sizeof buf);
            CHECK(mk_cbor_write_uint(&w, vals[k]) == 0 && w.len == lens[k], "uint len k=%zu", k);
            CHECK(mk_cbor_validate(buf, w.len, 0) == 0, "uint valid k=%zu", k);
            mk_cbor_writer_init(&w, buf, lens[k] - 1);
            CHECK(mk_cbor_write_uint(&w, vals[k]) == -MK_ERR_TOO_LARGE, "uint overflow k=%zu", k);
            CHECK(mk_cbor_write_null(&w) == -MK_ERR_TOO_LARGE, "sticky k=%zu", k);
        }
        mk_cbor_writer_init(&w, buf, sizeof buf);
        CHECK(mk_cbor_write_tstr(&w, "\xed\xa0\x80", 3) == -MK_ERR_CBOR_INVALID && w.len == 0, "surrogate refused");
    }
}

static void test_validate(void)
{
    uint8_t buf[32];
    size_t d;
    static const uint8_t unordered_inner_ok[] = {0xa2, 0x01, 0xa1, 0x05, 0x00, 0x02, 0x00};
    CHECK(mk_cbor_validate(unordered_inner_ok, sizeof unordered_inner_ok, 8) == 0, "nested map keys independent");
    CHECK(mk_cbor_validate(buf, 0, 8) == -MK_ERR_CBOR_INVALID, "empty");
    /* depth: n nested arrays around 0 need max_depth >= n */
    for (d = 0; d <= 10; d++) {
        memset(buf, 0x81, d);
        buf[d] = 0x00;
        CHECK(mk_cbor_validate(buf, d + 1, 8) == (d <= 8 ? 0 : -MK_ERR_CBOR_INVALID), "depth %zu", d);
        CHECK(mk_cbor_validate(buf, d + 1, 3) == (d <= 3 ? 0 : -MK_ERR_CBOR_INVALID), "depth %zu max 3", d);
        CHECK(mk_cbor_validate(buf, d + 1, 100) == (d <= 8 ? 0 : -MK_ERR_CBOR_INVALID), "depth %zu clamp", d);
    }
    CHECK(mk_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4) == 1, "U+10FFFF");
    CHECK(mk_utf8_valid((const uint8_t *)"\xef\xbf\xbf", 3) == 1, "U+FFFF");
    CHECK(mk_utf8_valid((const uint8_t *)"\xe0\x9f\xbf", 3) == 0, "overlong 3");
    CHECK(mk_utf8_valid((const uint8_t *)"\xf0\x8f\xbf\xbf", 4) == 0, "overlong 4");
    CHECK(mk_utf8_valid((const uint8_t *)"\xc1\xbf", 2) == 0, "overlong 2");
    CHECK(mk_utf8_valid((const uint8_t *)"\xf5\x80\x80\x80", 4) == 0, "F5");
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "vectors";
    int n;
    test_writer_reader();
    test_validate();
    n = run_file(dir, "cbor.hex", good_case);
    n += run_file(dir, "cbor-bad.hex", bad_case);
    printf("test_cbor: %d vector cases, %d checks, %d failures\n", n, checks, failures);
    return failures == 0 ? 0 : 1;
}
