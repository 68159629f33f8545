/*
 * fuzz_frame.c - bounded deterministic fuzz run of the frame, COBS and HID parsers (fixed-seed xorshift64):
 * random inputs and mutations of the shared vectors (frames, COBS, HID reports). Asserts (under ASan + UBSan in
 * `make test`) no crash, no out-of-bounds access, that every message the decoders accept re-encodes and decodes
 * to the same message, and that accepted COBS input decodes -> encodes -> decodes to the same bytes.
 * Usage: fuzz_frame VECTOR_DIR [ITERATIONS]
 */
#include "mk_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_test_vectors.h"




#include "mk_fuzz.h"

static uint8_t wire2[MK_MESSAGE_WIRE_MAX(MK_MAX_MESSAGE) + MK_HID_REPORT_COUNT(MK_MAX_MESSAGE) * MK_HID_REPORT_SIZE];
static uint8_t copy[MK_MAX_MESSAGE];

/* A message the serial decoder accepted: encode it again and decode that: the same message must come back. */
static void serial_roundtrip(uint8_t type, uint8_t seq, const uint8_t *msg, size_t len)
{
    mk_frame_decoder d;
    static uint8_t buf2[MK_MAX_MESSAGE];
    size_t n = 0, used = 0;
    int rc;
    memcpy(copy, msg, len);
    if (mk_message_encode(type, seq, copy, len, wire2, sizeof wire2, &n) != 0) FAIL_HARD("re-encode");
    mk_frame_decoder_init(&d, buf2, sizeof buf2);
    rc = mk_frame_decoder_push(&d, wire2, n, &used);
    if (rc != MK_FRAME_MESSAGE_READY || used != n || d.msg_len != len || d.type != type || d.seq != seq ||
        memcmp(buf2, copy, len) != 0)
        FAIL_HARD("serial round trip rc=%d", rc);
}

static void hid_roundtrip(uint32_t cid, uint8_t type, const uint8_t *msg, size_t len)
{
    mk_hid_reassembler r;
    static uint8_t buf2[MK_MAX_MESSAGE];
    size_t n = 0, i;
    int rc = 0;
    memcpy(copy, msg, len);
    if (mk_hid_encode(cid, type, copy, len, wire2, sizeof wire2, &n) != 0) FAIL_HARD("hid re-encode");
    mk_hid_reassembler_init(&r, buf2, sizeof buf2, cid);
    for (i = 0; i < n; i += MK_HID_REPORT_SIZE) rc = mk_hid_reassembler_push(&r, wire2 + i, MK_HID_REPORT_SIZE);
    if (rc != MK_FRAME_MESSAGE_READY || r.msg_len != len || r.type != type || memcmp(buf2, copy, len) != 0)
        FAIL_HARD("hid round trip");
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "vectors";
    long iterations = argc > 2 ? atol(argv[2]) : 200000;
    static uint8_t buf[MAX_INPUT], dec[MAX_INPUT], enc[MAX_INPUT + MAX_INPUT / 254 + 2], dec2[MAX_INPUT];
    static uint8_t reasm[MK_MAX_MESSAGE];
    long messages = 0, cobs_ok = 0, hid_messages = 0;
    run_file(dir, "frames.hex", add_seed);
    run_file(dir, "cobs.hex", add_seed);
    run_file(dir, "hid.hex", add_seed);
    if (failures != 0 || nseeds < 40) {
        fprintf(stderr, "FUZZ FAIL: could not load the seed vectors from %s (%d seeds)\n", dir, nseeds);
        return 1;
    }
    for (iteration = 0; iteration < iterations; iteration++) {
        size_t len = make_input(buf), pos, n = 0, m = 0;
        uint8_t *in = (uint8_t *)malloc(len > 0 ? len : 1);
        mk_frame_decoder d;
        mk_hid_reassembler h;
        /* a small reassembly buffer now and then, to exercise TOO_LARGE against the caller's capacity */
        size_t cap = rnd() % 4 == 0 ? (size_t)(rnd() % MK_MAX_MESSAGE) : MK_MAX_MESSAGE;
        uint8_t *rbuf = (uint8_t *)malloc(cap > 0 ? cap : 1);
        if (in == NULL || rbuf == NULL) FAIL_HARD("malloc");
        memcpy(in, buf, len);

        /* serial stream decoder */
        mk_frame_decoder_init(&d, rbuf, cap);
        pos = 0;
        while (pos < len) {
            size_t used = 0;
            int rc = mk_frame_decoder_push(&d, in + pos, len - pos, &used);
            if (used == 0 || used > len - pos) FAIL_HARD("consumed %zu", used);
            pos += used;
            if (rc == MK_FRAME_MESSAGE_READY) {
                messages++;
                if (d.msg_len > cap || d.msg_len > MK_MAX_MESSAGE) FAIL_HARD("message too long");
                serial_roundtrip(d.type, d.seq, rbuf, d.msg_len);
            } else if (rc != 0 && (rc > 0 || rc < -MK_ERR_BAD_CHANNEL)) {
                FAIL_HARD("unexpected rc %d", rc);
            }
        }

        /* COBS block decoder */
        if (mk_cobs_decode(in, len, dec, sizeof dec, &n) == 0) {
            cobs_ok++;
            if (mk_cobs_encode(dec, n, enc, sizeof enc, &m) != 0 || m > len) FAIL_HARD("cobs re-encode");
            if (mk_cobs_decode(enc, m, dec2, sizeof dec2, &m) != 0 || m != n || memcmp(dec, dec2, n) != 0)
                FAIL_HARD("cobs round trip");
        }

        /* HID reassembler on consecutive 64-byte chunks (the last may be short) */
        if (len >= 4) {
            uint32_t cid = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
            mk_hid_reassembler_init(&h, reasm, rnd() % 4 == 0 ? (size_t)(rnd() % sizeof reasm) : sizeof reasm, cid);
            for (pos = 0; pos < len; pos += MK_HID_REPORT_SIZE) {
                size_t chunk = len - pos < MK_HID_REPORT_SIZE ? len - pos : MK_HID_REPORT_SIZE;
                uint8_t *rep = (uint8_t *)malloc(chunk);
                int rc;
                if (rep == NULL) FAIL_HARD("malloc");
                memcpy(rep, in + pos, chunk);
                rc = mk_hid_reassembler_push(&h, rep, chunk);
                free(rep);
                if (rc == MK_FRAME_MESSAGE_READY) {
                    hid_messages++;
                    if (h.msg_len > h.cap) FAIL_HARD("hid message too long");
                    hid_roundtrip(cid, h.type, reasm, h.msg_len);
                }
            }
        }

        /* random messages always round-trip */
        if (iteration % 16 == 0) {
            size_t k, mlen = (size_t)(rnd() % (MK_MAX_MESSAGE + 1));
            for (k = 0; k < mlen; k++) copy[k] = (uint8_t)(rnd() % 3 == 0 ? 0 : rnd());
            memcpy(dec, copy, mlen);
            serial_roundtrip((uint8_t)rnd(), (uint8_t)rnd(), dec, mlen);
            hid_roundtrip((uint32_t)rnd(), (uint8_t)(rnd() & 0x7F), dec, mlen);
        }
        free(rbuf);
        free(in);
    }
    printf("fuzz_frame: %ld iterations, %d seeds, %ld serial messages, %ld COBS accepted, %ld HID messages, "
           "0 failures\n", iterations, nseeds, messages, cobs_ok, hid_messages);
    return 0;
}
