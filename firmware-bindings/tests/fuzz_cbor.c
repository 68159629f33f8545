/*
 * fuzz_cbor.c - bounded deterministic fuzz run of the CBOR subset parser (fixed-seed xorshift64): random inputs
 * and mutations of the shared vectors. Asserts (under ASan + UBSan in `make test`) no crash, no out-of-bounds
 * access, and that every accepted input re-encodes through the reader and writer to exactly the same bytes.
 * Usage: fuzz_cbor VECTOR_DIR [ITERATIONS]
 */
#include "mk_cbor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_test_vectors.h"


/* ---------------------------------------------------------------- re-encoding walker */

/* Copy one item from reader to writer using only the public reader/writer API. */
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

/* ---------------------------------------------------------------- corpus and generator */

#define MAX_SEEDS 256
#define MAX_INPUT 9000
static uint8_t seeds[MAX_SEEDS][MAX_INPUT];
static size_t seed_len[MAX_SEEDS];
static int nseeds;

static void add_seed(const char *name, int kind, int err)
{
    (void)name; (void)err;
    if (nseeds < MAX_SEEDS && va_len <= MAX_INPUT) {
        memcpy(seeds[nseeds], va, va_len);
        seed_len[nseeds++] = va_len;
    }
    if (kind == 1 && nseeds < MAX_SEEDS && vb_len <= MAX_INPUT) {
        memcpy(seeds[nseeds], vb, vb_len);
        seed_len[nseeds++] = vb_len;
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

#define FAIL_HARD(...)                                                                                       \
    do {                                                                                                     \
        fprintf(stderr, "FUZZ FAIL %s:%d iteration %ld: ", __FILE__, __LINE__, iteration);                \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fputc('\n', stderr);                                                                                 \
        exit(1);                                                                                             \
    } while (0)

static long iteration;

/* Make a test input in buf (capacity MAX_INPUT): random bytes, or a seed with 1-4 mutations
 * (bit flips, byte overwrites with interesting values, truncation, insertion, deletion). Returns the length. */
static size_t make_input(uint8_t *buf)
{
    size_t len, k, muts;
    static const uint8_t interesting[] = {0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x5f, 0x7f, 0x80,
                                          0x9f, 0xa0, 0xbf, 0xc0, 0xf4, 0xf5, 0xf6, 0xf7, 0xfe, 0xff};
    if (nseeds == 0 || rnd() % 8 == 0) {
        len = (size_t)(rnd() % 700);
        for (k = 0; k < len; k++) buf[k] = (uint8_t)rnd();
        return len;
    }
    k = (size_t)(rnd() % (uint64_t)nseeds);
    len = seed_len[k];
    memcpy(buf, seeds[k], len);
    muts = 1 + (size_t)(rnd() % 4);
    while (muts-- > 0) {
        size_t pos = len > 0 ? (size_t)(rnd() % len) : 0;
        switch (rnd() % 6) {
        case 0: if (len > 0) buf[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 1: if (len > 0) buf[pos] = interesting[rnd() % sizeof interesting]; break;
        case 2: if (len > 0) len = (size_t)(rnd() % len); break;
        case 3:
            if (len < MAX_INPUT) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = (uint8_t)rnd();
                len++;
            }
            break;
        case 4:
            if (len > 0) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
            break;
        default: if (len > 0) buf[pos] = (uint8_t)rnd(); break;
        }
    }
    return len;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "vectors";
    long iterations = argc > 2 ? atol(argv[2]) : 200000;
    static uint8_t buf[MAX_INPUT];
    long accepted = 0;
    run_file(dir, "cbor.hex", add_seed);
    run_file(dir, "cbor-bad.hex", add_seed);
    if (failures != 0 || nseeds < 50) {
        fprintf(stderr, "FUZZ FAIL: could not load the seed vectors from %s (%d seeds)\n", dir, nseeds);
        return 1;
    }
    for (iteration = 0; iteration < iterations; iteration++) {
        size_t len = make_input(buf);
        /* exact-size heap copy so that ASan sees any read past the end */
        uint8_t *in = (uint8_t *)malloc(len > 0 ? len : 1);
        mk_cbor_reader r;
        int rc, skip_rc;
        if (in == NULL) FAIL_HARD("malloc");
        memcpy(in, buf, len);
        rc = mk_cbor_validate(in, len, (unsigned)(rnd() % 10));
        if (rc != 0 && rc != -MK_ERR_CBOR_INVALID && rc != -MK_ERR_CBOR_NONCANONICAL) FAIL_HARD("rc=%d", rc);
        mk_cbor_reader_init(&r, in, len);
        skip_rc = mk_cbor_skip(&r);
        if (mk_cbor_validate(in, len, MK_CBOR_MAX_DEPTH) == 0) {
            accepted++;
            if (!reencode_equal(in, len)) FAIL_HARD("accepted input does not re-encode to itself (len %zu)", len);
            if (skip_rc != 0 || !mk_cbor_at_end(&r)) FAIL_HARD("skip disagrees with validate");
        } else {
            /* the reader on rejected input must fail cleanly or stop inside the buffer */
            mk_cbor_writer w;
            mk_cbor_reader_init(&r, in, len);
            mk_cbor_writer_init(&w, out, sizeof out);
            (void)copy_item(&r, &w, 0);
            if (r.pos > len) FAIL_HARD("reader past end");
        }
        free(in);
    }
    printf("fuzz_cbor: %ld iterations, %d seeds, %ld accepted, 0 failures\n", iterations, nseeds, accepted);
    return 0;
}
