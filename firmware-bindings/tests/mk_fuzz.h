/*
 * mk_fuzz.h - the bounded deterministic fuzz driver shared by fuzz_frame.c and fuzz_cbor.c (test code only;
 * included once per program, after mk_test_vectors.h): a seed corpus filled from the shared vectors, a
 * fixed-seed xorshift64 generator, and the input mutator.
 */
#ifndef MK_FUZZ_H
#define MK_FUZZ_H

#include <stdint.h>

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

#endif /* MK_FUZZ_H */
