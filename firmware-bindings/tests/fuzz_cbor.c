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
#include "mk_test_cbor.h"

#include "mk_fuzz.h"

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
