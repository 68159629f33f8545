/*
 * test_frame.c - unit tests of mk_frame (CRC-32C, COBS, serial frames, streaming decoder, HID reports)
 * and the shared vectors firmware-bindings/vectors/{crc32c,cobs,frames,hid}.hex.
 * Usage: test_frame VECTOR_DIR. Exit status 0 when every check passes.
 */
#include "mk_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_test_vectors.h"


/* ---------------------------------------------------------------- vector cases */

static void crc_case(const char *name, int kind, int err)
{
    uint32_t want = 0;
    size_t k;
    (void)err;
    CHECK(kind == 1 && vb_len == 4, "crc32c/%s: malformed", name);
    for (k = 0; k < vb_len; k++) want = want << 8 | vb[k];
    CHECK(mk_crc32c(va, va_len) == want, "crc32c/%s: got %08lx want %08lx", name,
          (unsigned long)mk_crc32c(va, va_len), (unsigned long)want);
    if (va_len > 1) {
        uint32_t c = mk_crc32c_update(0, va, va_len / 3);
        c = mk_crc32c_update(c, va + va_len / 3, va_len - va_len / 3);
        CHECK(c == want, "crc32c/%s: incremental", name);
    }
}

static uint8_t out[65536];

static void cobs_case(const char *name, int kind, int err)
{
    size_t n = 0;
    int rc;
    if (kind == 1) {
        rc = mk_cobs_encode(va, va_len, out, sizeof out, &n);
        CHECK(rc == 0 && n == vb_len && memcmp(out, vb, n) == 0, "cobs/%s: encode rc=%d len=%zu", name, rc, n);
        CHECK(n <= MK_COBS_MAX_ENCODED(va_len), "cobs/%s: bound", name);
        rc = mk_cobs_decode(vb, vb_len, out, sizeof out, &n);
        CHECK(rc == 0 && n == va_len && memcmp(out, va, n) == 0, "cobs/%s: decode rc=%d", name, rc);
        /* exact-size buffers suffice; one byte less fails cleanly */
        rc = mk_cobs_encode(va, va_len, out, vb_len, &n);
        CHECK(rc == 0, "cobs/%s: exact cap", name);
        rc = mk_cobs_encode(va, va_len, out, vb_len - 1, &n);
        CHECK(rc == -MK_ERR_TOO_LARGE, "cobs/%s: short cap rc=%d", name, rc);
        if (va_len > 0) {
            rc = mk_cobs_decode(vb, vb_len, out, va_len - 1, &n);
            CHECK(rc == -MK_ERR_TOO_LARGE, "cobs/%s: short decode cap rc=%d", name, rc);
        }
    } else {
        rc = mk_cobs_decode(va, va_len, out, sizeof out, &n);
        CHECK(kind == 2 && rc == err, "cobs/%s: rc=%d want %d", name, rc, err);
    }
}

static uint8_t reasm[MK_MAX_MESSAGE];

/* Feed wire to a fresh decoder; counts messages and records the first error. */
static void feed(const uint8_t *wire, size_t len, int *messages, int *first_err, size_t *msg_len)
{
    mk_frame_decoder d;
    size_t pos = 0;
    *messages = 0;
    *first_err = 0;
    mk_frame_decoder_init(&d, reasm, sizeof reasm);
    while (pos < len) {
        size_t used = 0;
        int rc = mk_frame_decoder_push(&d, wire + pos, len - pos, &used);
        pos += used;
        if (rc == MK_FRAME_MESSAGE_READY) {
            (*messages)++;
            *msg_len = d.msg_len;
        } else if (rc < 0 && *first_err == 0) {
            *first_err = rc;
        }
        if (used == 0) break;
    }
}

static void frame_case(const char *name, int kind, int err)
{
    int messages = 0, first_err = 0;
    size_t n = 0, msg_len = 0;
    if (kind == 1) {
        int rc;
        CHECK(va_len >= 2, "frames/%s: malformed", name);
        rc = mk_message_encode(va[0], va[1], va + 2, va_len - 2, out, sizeof out, &n);
        CHECK(rc == 0 && n == vb_len && memcmp(out, vb, n) == 0, "frames/%s: encode rc=%d len=%zu want %zu", name, rc,
              n, vb_len);
        CHECK(n <= MK_MESSAGE_WIRE_MAX(va_len - 2), "frames/%s: wire bound", name);
        feed(vb, vb_len, &messages, &first_err, &msg_len);
        CHECK(messages == 1 && first_err == 0 && msg_len == va_len - 2 && memcmp(reasm, va + 2, msg_len) == 0,
              "frames/%s: decode messages=%d err=%d", name, messages, first_err);
    } else {
        feed(va, va_len, &messages, &first_err, &msg_len);
        CHECK(kind == 2 && messages == 0 && first_err == err, "frames/%s: messages=%d err=%d want %d", name, messages,
              first_err, err);
    }
}

static void hid_case(const char *name, int kind, int err)
{
    mk_hid_reassembler r;
    uint32_t cid;
    size_t pos, n = 0;
    int messages = 0, first_err = 0, rc;
    const uint8_t *reports = kind == 1 ? vb : va;
    size_t reports_len = kind == 1 ? vb_len : va_len;
    if (kind == 1) {
        CHECK(va_len >= 5, "hid/%s: malformed", name);
        cid = (uint32_t)va[0] << 24 | (uint32_t)va[1] << 16 | (uint32_t)va[2] << 8 | va[3];
        rc = mk_hid_encode(cid, va[4], va + 5, va_len - 5, out, sizeof out, &n);
        CHECK(rc == 0 && n == vb_len && memcmp(out, vb, n) == 0, "hid/%s: encode rc=%d len=%zu", name, rc, n);
        CHECK(n == MK_HID_REPORT_COUNT(va_len - 5) * MK_HID_REPORT_SIZE, "hid/%s: count", name);
    } else {
        cid = (uint32_t)va[0] << 24 | (uint32_t)va[1] << 16 | (uint32_t)va[2] << 8 | va[3];
    }
    mk_hid_reassembler_init(&r, reasm, sizeof reasm, cid);
    for (pos = 0; pos < reports_len; pos += MK_HID_REPORT_SIZE) {
        size_t len = reports_len - pos < MK_HID_REPORT_SIZE ? reports_len - pos : MK_HID_REPORT_SIZE;
        rc = mk_hid_reassembler_push(&r, reports + pos, len);
        if (rc == MK_FRAME_MESSAGE_READY) {
            messages++;
            if (kind == 1) {
                CHECK(pos + len == reports_len && r.msg_len == va_len - 5 && r.type == va[4] &&
                          memcmp(reasm, va + 5, r.msg_len) == 0,
                      "hid/%s: reassembled message differs", name);
            }
        } else if (rc < 0 && first_err == 0) {
            first_err = rc;
        }
    }
    if (kind == 1) {
        CHECK(messages == 1 && first_err == 0, "hid/%s: messages=%d err=%d", name, messages, first_err);
    } else {
        CHECK(kind == 2 && messages == 0 && first_err == err, "hid/%s: messages=%d err=%d want %d", name, messages,
              first_err, err);
    }
}

/* ---------------------------------------------------------------- unit tests */

static uint8_t msg[MK_MAX_MESSAGE + 1];
static uint8_t wire[MK_MESSAGE_WIRE_MAX(MK_MAX_MESSAGE)];

static void test_crc(void)
{
    const uint8_t check[] = "123456789";
    CHECK(mk_crc32c(check, 9) == 0xE3069283u, "check value");
    CHECK(mk_crc32c(NULL, 0) == 0, "empty");
    CHECK(mk_crc32c_update(mk_crc32c(check, 4), check + 4, 5) == 0xE3069283u, "incremental");
}

static void test_cobs(void)
{
    uint8_t raw[600], enc[700], dec[600];
    size_t n = 0, m = 0, len;
    /* every length 0..600 of zero-free, all-zero and mixed data round-trips within the bound */
    for (len = 0; len <= 600; len++) {
        size_t k;
        int pattern;
        for (pattern = 0; pattern < 3; pattern++) {
            for (k = 0; k < len; k++) raw[k] = (uint8_t)(pattern == 0 ? 1 + k % 255 : pattern == 1 ? 0 : (k * 7) % 5);
            CHECK(mk_cobs_encode(raw, len, enc, sizeof enc, &n) == 0, "encode len=%zu", len);
            CHECK(n <= MK_COBS_MAX_ENCODED(len) && memchr(enc, 0, n) == NULL, "bound/zero len=%zu", len);
            CHECK(mk_cobs_decode(enc, n, dec, sizeof dec, &m) == 0 && m == len && memcmp(dec, raw, len) == 0,
                  "decode len=%zu pattern=%d", len, pattern);
        }
    }
    /* the paper's trailing 0x01 after a final 254-byte block is accepted */
    memset(raw, 0x11, 254);
    CHECK(mk_cobs_encode(raw, 254, enc, sizeof enc, &n) == 0 && n == 255 && enc[0] == 0xFF, "254 run");
    enc[255] = 0x01;
    CHECK(mk_cobs_decode(enc, 256, dec, sizeof dec, &m) == 0 && m == 254 && memcmp(dec, raw, 254) == 0,
          "paper form");
    CHECK(mk_cobs_decode(enc, 0, dec, sizeof dec, &m) == -MK_ERR_BAD_LENGTH, "empty input");
}

static void test_frames(void)
{
    size_t len, n = 0, k;
    int messages, err;
    size_t got = 0;
    for (k = 0; k < sizeof msg; k++) msg[k] = (uint8_t)(k * 31 + 7);
    CHECK(mk_message_fragment_count(0) == 1 && mk_message_fragment_count(512) == 1 &&
              mk_message_fragment_count(513) == 2 && mk_message_fragment_count(4096) == 8 &&
              mk_message_fragment_count(4097) == 0,
          "fragment counts");
    CHECK(mk_message_encode(1, 1, msg, MK_MAX_MESSAGE + 1, wire, sizeof wire, &n) == -MK_ERR_TOO_LARGE, "4097");
    CHECK(mk_frame_encode(1, 1, 0, msg, 513, wire, sizeof wire, &n) == -MK_ERR_TOO_LARGE, "payload 513");
    CHECK(mk_frame_encode(1, 1, 8 << 1, msg, 1, wire, sizeof wire, &n) == -MK_ERR_FRAGMENT_ORDER, "index 8");
    for (len = 0; len <= MK_MAX_MESSAGE; len += (len < 1100 ? 1 : 97)) {
        int rc = mk_message_encode(9, (uint8_t)len, msg, len, wire, sizeof wire, &n);
        CHECK(rc == 0 && n <= MK_MESSAGE_WIRE_MAX(len), "encode len=%zu rc=%d", len, rc);
        CHECK(mk_message_encode(9, 1, msg, len, wire, n - 1, &n) == -MK_ERR_TOO_LARGE, "short out len=%zu", len);
        rc = mk_message_encode(9, (uint8_t)len, msg, len, wire, n, &n);
        feed(wire, n, &messages, &err, &got);
        CHECK(messages == 1 && err == 0 && got == len && memcmp(reasm, msg, len) == 0, "round trip len=%zu", len);
    }
    /* two messages back to back, byte by byte, with idle delimiters in between */
    {
        mk_frame_decoder d;
        size_t n1 = 0, n2 = 0, i;
        int ready = 0;
        wire[0] = 0;
        mk_message_encode(2, 5, msg, 700, wire + 1, sizeof wire - 1, &n1);
        wire[1 + n1] = 0;
        mk_message_encode(3, 6, msg + 1, 3, wire + 2 + n1, sizeof wire - 2 - n1, &n2);
        mk_frame_decoder_init(&d, reasm, sizeof reasm);
        for (i = 0; i < n1 + n2 + 2; i++) {
            int rc = mk_frame_decoder_byte(&d, wire[i]);
            CHECK(rc >= 0, "byte %zu rc=%d", i, rc);
            if (rc == MK_FRAME_MESSAGE_READY) {
                ready++;
                if (ready == 1) CHECK(d.type == 2 && d.seq == 5 && d.msg_len == 700 && !memcmp(reasm, msg, 700), "m1");
                if (ready == 2) CHECK(d.type == 3 && d.seq == 6 && d.msg_len == 3 && !memcmp(reasm, msg + 1, 3), "m2");
            }
        }
        CHECK(ready == 2, "two messages");
    }
    /* a reassembly buffer smaller than the message: TOO_LARGE, no overflow (ASan watches) */
    {
        mk_frame_decoder d;
        uint8_t small[600];
        size_t used = 0;
        mk_message_encode(2, 5, msg, 1000, wire, sizeof wire, &n);
        mk_frame_decoder_init(&d, small, sizeof small);
        CHECK(mk_frame_decoder_push(&d, wire, n, &used) == -MK_ERR_TOO_LARGE && used == n, "small buffer");
    }
    /* after an error the decoder resynchronises on the next frame */
    {
        mk_frame_decoder d;
        size_t used = 0, n2 = 0;
        mk_message_encode(4, 1, msg, 10, wire, sizeof wire, &n);
        wire[3] ^= 0x40;
        mk_message_encode(4, 2, msg, 10, wire + n, sizeof wire - n, &n2);
        mk_frame_decoder_init(&d, reasm, sizeof reasm);
        CHECK(mk_frame_decoder_push(&d, wire, n + n2, &used) == -MK_ERR_BAD_CRC && used == n, "corrupt first");
        CHECK(mk_frame_decoder_push(&d, wire + used, n + n2 - used, &used) == MK_FRAME_MESSAGE_READY && d.seq == 2,
              "second ok");
    }
}

static void test_hid(void)
{
    uint8_t reports[MK_HID_REPORT_COUNT(MK_MAX_MESSAGE) * MK_HID_REPORT_SIZE];
    mk_hid_reassembler r;
    size_t len, n = 0, i;
    for (len = 0; len <= MK_MAX_MESSAGE; len += (len < 300 ? 1 : 61)) {
        int ready = 0;
        CHECK(mk_hid_encode(0xA1B2C3D4u, 0x11, msg, len, reports, sizeof reports, &n) == 0, "encode %zu", len);
        mk_hid_reassembler_init(&r, reasm, sizeof reasm, 0xA1B2C3D4u);
        for (i = 0; i < n; i += MK_HID_REPORT_SIZE) {
            int rc = mk_hid_reassembler_push(&r, reports + i, MK_HID_REPORT_SIZE);
            CHECK(rc >= 0, "push len=%zu rc=%d", len, rc);
            if (rc == MK_FRAME_MESSAGE_READY) ready++;
        }
        CHECK(ready == 1 && r.msg_len == len && r.type == 0x11 && memcmp(reasm, msg, len) == 0, "hid len=%zu", len);
    }
    CHECK(mk_hid_encode(1, 0x80, msg, 1, reports, sizeof reports, &n) == -MK_ERR_BAD_LENGTH, "type 0x80");
    CHECK(mk_hid_encode(1, 1, msg, 4097, reports, sizeof reports, &n) == -MK_ERR_TOO_LARGE, "4097");
    /* other CID mid-message is ignored; the message completes */
    mk_hid_encode(7, 2, msg, 100, reports, sizeof reports, &n);
    mk_hid_reassembler_init(&r, reasm, sizeof reasm, 7);
    CHECK(mk_hid_reassembler_push(&r, reports, 64) == 0, "init");
    reports[3] = 8;
    CHECK(mk_hid_reassembler_push(&r, reports, 64) == -MK_ERR_BAD_CHANNEL, "other cid");
    CHECK(mk_hid_reassembler_push(&r, reports + 64, 64) == MK_FRAME_MESSAGE_READY, "completes");
    /* nonzero padding = more data than BCNT */
    mk_hid_encode(7, 2, msg, 10, reports, sizeof reports, &n);
    reports[63] = 1;
    CHECK(mk_hid_reassembler_push(&r, reports, 64) == -MK_ERR_BAD_LENGTH, "padding");
    /* a buffer smaller than BCNT */
    mk_hid_encode(7, 2, msg, 100, reports, sizeof reports, &n);
    mk_hid_reassembler_init(&r, reasm, 99, 7);
    CHECK(mk_hid_reassembler_push(&r, reports, 64) == -MK_ERR_TOO_LARGE, "cap");
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "vectors";
    int n;
    test_crc();
    test_cobs();
    test_frames();
    test_hid();
    n = run_file(dir, "crc32c.hex", crc_case);
    n += run_file(dir, "cobs.hex", cobs_case);
    n += run_file(dir, "frames.hex", frame_case);
    n += run_file(dir, "hid.hex", hid_case);
    printf("test_frame: %d vector cases, %d checks, %d failures\n", n, checks, failures);
    return failures == 0 ? 0 : 1;
}
