/*
 * test_device.c - unit tests of mk_device (handlers, state machine, order of checks, idempotent retries) on a
 * fake in-memory platform, and of the host platform layer (platform/host.c: file-backed state blob, Ed25519
 * BENCH_AUTH with libsodium). Usage: test_device TMPDIR. Exit status 0 when every check passes.
 */
#define _POSIX_C_SOURCE 200809L
#include "mk_device.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mk_cbor.h"
#include "mk_frame.h"
#include "mk_platform_host.h"

#include "mk_check.h"

/* ---------------------------------------------------------------- fake platform */

typedef struct fake {
    uint8_t flash[MK_PLATFORM_STATE_MAX];
    size_t flash_len;
    int flash_fail;
    int rng_fail;
    unsigned rng_calls;
    uint8_t rng_next;
    int verify_result;
    unsigned verify_calls;
    uint64_t now;
} fake;

static int fake_rng(void *ctx, uint8_t *buf, size_t len)
{
    fake *f = (fake *)ctx;
    size_t i;
    f->rng_calls++;
    if (f->rng_fail) return -1;
    for (i = 0; i < len; i++) buf[i] = f->rng_next++;
    return 0;
}

static int fake_read(void *ctx, uint8_t *buf, size_t cap, size_t *len)
{
    fake *f = (fake *)ctx;
    if (f->flash_fail || f->flash_len > cap) return -1;
    memcpy(buf, f->flash, f->flash_len);
    *len = f->flash_len;
    return 0;
}

static int fake_write(void *ctx, const uint8_t *buf, size_t len)
{
    fake *f = (fake *)ctx;
    if (f->flash_fail || len > sizeof f->flash) return -1;
    memcpy(f->flash, buf, len);
    f->flash_len = len;
    return 0;
}

static uint64_t fake_now(void *ctx) { return ((fake *)ctx)->now++; }

static int fake_verify(void *ctx, const uint8_t *k, size_t kl, const uint8_t *c, size_t cl, const uint8_t *s,
                       size_t sl)
{
    fake *f = (fake *)ctx;
    (void)k, (void)kl, (void)c, (void)cl, (void)s, (void)sl;
    f->verify_calls++;
    return f->verify_result;
}

static fake F;
static mk_platform P;
static mk_device D;
static const mk_device_identity ID = {"esp32s3-devkit", "SN-000123", "1.2.3", MK_CAP_SERIAL};

static void fake_reset(void)
{
    memset(&F, 0, sizeof F);
    F.rng_next = 0x40;
    memset(&P, 0, sizeof P);
    P.ctx = &F;
    P.rng_fill = fake_rng;
    P.flash_read = fake_read;
    P.flash_write = fake_write;
    P.now_ms = fake_now;
    P.bench_verify = fake_verify;
}

static void make_blob(uint8_t *b, uint8_t state)
{
    uint32_t crc;
    memcpy(b, "MKDS", 4);
    b[4] = 1;
    b[5] = state;
    b[6] = b[7] = 0;
    crc = mk_crc32c(b, 8);
    b[8] = (uint8_t)(crc >> 24);
    b[9] = (uint8_t)(crc >> 16);
    b[10] = (uint8_t)(crc >> 8);
    b[11] = (uint8_t)crc;
}

/* ---------------------------------------------------------------- exchange helpers */

static uint8_t out[MK_DEVICE_REPLY_MAX];
static uint8_t out_type;
static size_t out_len;

static int call(uint8_t type, uint8_t seq, const uint8_t *msg, size_t len)
{
    int rc = mk_device_handle(&D, type, seq, msg, len, out, sizeof out, &out_type, &out_len);
    if (rc == 0) CHECK(mk_cbor_validate(out, out_len, MK_CBOR_MAX_DEPTH) == 0, "reply type %u is subset CBOR", out_type);
    return rc;
}

/* ERROR reply -> code (or -1), detail copied NUL-terminated into detail. */
static long error_code(char *detail, size_t cap)
{
    mk_cbor_reader r;
    size_t pairs, i, n;
    uint64_t key, code = 0;
    const char *t;
    detail[0] = '\0';
    if (out_type != MK_MSG_ERROR) return -1;
    mk_cbor_reader_init(&r, out, out_len);
    if (mk_cbor_read_map(&r, &pairs) != 0) return -1;
    for (i = 0; i < pairs; i++) {
        if (mk_cbor_read_uint(&r, &key) != 0) return -1;
        if (key == MK_F_ERROR_CODE) {
            if (mk_cbor_read_uint(&r, &code) != 0) return -1;
        } else if (key == MK_F_ERROR_DETAIL) {
            if (mk_cbor_read_tstr(&r, &t, &n) != 0 || n >= cap) return -1;
            memcpy(detail, t, n);
            detail[n] = '\0';
        } else {
            return -1;
        }
    }
    return (long)code;
}

static void expect_error(uint8_t type, const uint8_t *msg, size_t len, long want, const char *detail_part,
                         const char *what)
{
    static uint8_t seq = 100;
    char detail[128];
    long code;
    int rc = call(type, seq++, msg, len);
    code = error_code(detail, sizeof detail);
    CHECK(rc == 0 && code == want, "%s: rc=%d code=%ld want %ld (detail '%s')", what, rc, code, want, detail);
    if (detail_part != NULL)
        CHECK(strstr(detail, detail_part) != NULL, "%s: detail '%s' should contain '%s'", what, detail, detail_part);
}

typedef struct info {
    char model[80], serial[80], firmware[80];
    uint64_t caps, state;
    uint8_t challenge[32];
    size_t challenge_len;
    int fields;
} info;

static int parse_info(info *in)
{
    mk_cbor_reader r;
    size_t pairs, i, n;
    uint64_t key;
    const char *t;
    const uint8_t *b;
    memset(in, 0, sizeof *in);
    if (out_type != MK_MSG_INFO) return -1;
    mk_cbor_reader_init(&r, out, out_len);
    if (mk_cbor_read_map(&r, &pairs) != 0) return -1;
    for (i = 0; i < pairs; i++) {
        char *dst = NULL;
        if (mk_cbor_read_uint(&r, &key) != 0) return -1;
        in->fields++;
        switch (key) {
        case MK_F_INFO_MODEL: dst = in->model; break;
        case MK_F_INFO_SERIAL: dst = in->serial; break;
        case MK_F_INFO_FIRMWARE: dst = in->firmware; break;
        case MK_F_INFO_CAPABILITIES:
            if (mk_cbor_read_uint(&r, &in->caps) != 0) return -1;
            continue;
        case MK_F_INFO_STATE:
            if (mk_cbor_read_uint(&r, &in->state) != 0) return -1;
            continue;
        case MK_F_INFO_CHALLENGE:
            if (mk_cbor_read_bstr(&r, &b, &n) != 0 || n > 32) return -1;
            memcpy(in->challenge, b, n);
            in->challenge_len = n;
            continue;
        default: return -1;
        }
        if (mk_cbor_read_tstr(&r, &t, &n) != 0 || n >= 80) return -1;
        memcpy(dst, t, n);
        dst[n] = '\0';
    }
    return mk_cbor_at_end(&r) ? 0 : -1;
}

static const uint8_t HELLO_V1[] = {0xA1, 0x01, 0x01}; /* {1: 1} */

static void init_device(void)
{
    int rc = mk_device_init(&D, &P, &ID);
    CHECK(rc == 0, "init rc=%d", rc);
}

/* BENCH_AUTH {1: challenge, 2: key(32 x 0x11), 3: sig(64 x 0x22)} */
static size_t bench_auth_msg(uint8_t *buf, size_t cap, const uint8_t *challenge, size_t challenge_len)
{
    mk_cbor_writer w;
    uint8_t key[32], sig[64];
    memset(key, 0x11, sizeof key);
    memset(sig, 0x22, sizeof sig);
    mk_cbor_writer_init(&w, buf, cap);
    mk_cbor_write_map(&w, 3);
    mk_cbor_write_uint(&w, 1);
    mk_cbor_write_bstr(&w, challenge, challenge_len);
    mk_cbor_write_uint(&w, 2);
    mk_cbor_write_bstr(&w, key, sizeof key);
    mk_cbor_write_uint(&w, 3);
    mk_cbor_write_bstr(&w, sig, sizeof sig);
    return w.err == 0 ? w.len : 0;
}

/* ---------------------------------------------------------------- tests */

static void test_hello_info(void)
{
    info in, again;
    uint8_t first[MK_DEVICE_REPLY_MAX];
    size_t first_len;
    uint8_t i;
    fake_reset();
    init_device();
    CHECK(mk_device_state(&D) == MK_STATE_FACTORY, "fresh device is FACTORY");
    CHECK(call(MK_MSG_HELLO, 7, HELLO_V1, sizeof HELLO_V1) == 0, "HELLO handled");
    CHECK(parse_info(&in) == 0 && in.fields == 6, "INFO with 6 fields (type %u)", out_type);
    CHECK(strcmp(in.model, "esp32s3-devkit") == 0, "model '%s'", in.model);
    CHECK(strcmp(in.serial, "SN-000123") == 0, "serial '%s'", in.serial);
    CHECK(strcmp(in.firmware, "1.2.3") == 0, "firmware '%s'", in.firmware);
    CHECK(in.caps == MK_CAP_SERIAL, "capabilities %llu", (unsigned long long)in.caps);
    CHECK(in.state == MK_STATE_FACTORY, "state %llu", (unsigned long long)in.state);
    CHECK(in.challenge_len == 32, "challenge length %zu", in.challenge_len);
    for (i = 0; i < 32; i++) CHECK(in.challenge[i] == (uint8_t)(0x40 + i), "challenge from the platform RNG");
    CHECK(F.rng_calls == 1, "one RNG call");

    /* idempotent retry: same seq and bytes -> same reply, same challenge, no new randomness */
    memcpy(first, out, out_len);
    first_len = out_len;
    CHECK(call(MK_MSG_HELLO, 7, HELLO_V1, sizeof HELLO_V1) == 0, "HELLO retry");
    CHECK(out_len == first_len && memcmp(out, first, first_len) == 0 && out_type == MK_MSG_INFO, "retry: same bytes");
    CHECK(F.rng_calls == 1, "retry does not draw a new challenge");

    /* a new HELLO (new seq) opens a new session with a fresh challenge */
    CHECK(call(MK_MSG_HELLO, 8, HELLO_V1, sizeof HELLO_V1) == 0, "second HELLO");
    CHECK(parse_info(&again) == 0 && again.challenge_len == 32, "second INFO");
    CHECK(memcmp(again.challenge, in.challenge, 32) != 0, "fresh challenge per session");
    CHECK(F.rng_calls == 2, "one more RNG call");

    /* unknown keys are ignored */
    {
        static const uint8_t extra[] = {0xA2, 0x01, 0x01, 0x09, 0x63, 'a', 'b', 'c'};
        CHECK(call(MK_MSG_HELLO, 9, extra, sizeof extra) == 0 && out_type == MK_MSG_INFO, "HELLO with extra key");
    }
    /* the same seq with other bytes is a new request, not a retry */
    {
        static const uint8_t hello2[] = {0xA1, 0x01, 0x02};
        expect_error(MK_MSG_HELLO, hello2, sizeof hello2, MK_ERR_BAD_VERSION, "HELLO.version 2", "HELLO version 2");
    }
}

static void test_unknown(void)
{
    static const uint8_t empty_map[] = {0xA0};
    fake_reset();
    init_device();
    expect_error(0x55, empty_map, sizeof empty_map, MK_ERR_UNKNOWN_MESSAGE, "85", "type 0x55");
    expect_error(0x00, NULL, 0, MK_ERR_UNKNOWN_MESSAGE, NULL, "type 0");
    expect_error(MK_MSG_INFO, empty_map, sizeof empty_map, MK_ERR_UNKNOWN_MESSAGE, NULL, "INFO sent to the device");
    expect_error(MK_MSG_ERROR, empty_map, sizeof empty_map, MK_ERR_UNKNOWN_MESSAGE, NULL, "ERROR sent to device");
    expect_error(0xFF, empty_map, sizeof empty_map, MK_ERR_UNKNOWN_MESSAGE, NULL, "type 0xFF");
}

static void test_malformed(void)
{
    static const uint8_t truncated[] = {0xA1, 0x01};
    static const uint8_t trailing[] = {0xA1, 0x01, 0x01, 0x00};
    static const uint8_t noncanon[] = {0xA1, 0x01, 0x18, 0x01};
    static const uint8_t unordered[] = {0xA2, 0x02, 0x00, 0x01, 0x01};
    static const uint8_t tag[] = {0xC1, 0x00};
    static const uint8_t not_map[] = {0x01};
    static const uint8_t array[] = {0x81, 0x01};
    static const uint8_t version_text[] = {0xA1, 0x01, 0x61, '1'};
    static const uint8_t version_neg[] = {0xA1, 0x01, 0x20};
    static const uint8_t missing[] = {0xA1, 0x02, 0x01};
    static const uint8_t empty_map[] = {0xA0};
    static const uint8_t keygen_bstr[] = {0xA1, 0x01, 0x41, 0x07};
    static const uint8_t ba_uint[] = {0xA1, 0x01, 0x00};
    fake_reset();
    init_device();
    expect_error(MK_MSG_HELLO, NULL, 0, MK_ERR_CBOR_INVALID, "HELLO", "empty message");
    expect_error(MK_MSG_HELLO, truncated, sizeof truncated, MK_ERR_CBOR_INVALID, "HELLO", "truncated");
    expect_error(MK_MSG_HELLO, trailing, sizeof trailing, MK_ERR_CBOR_INVALID, "HELLO", "trailing byte");
    expect_error(MK_MSG_HELLO, tag, sizeof tag, MK_ERR_CBOR_INVALID, "HELLO", "tag");
    expect_error(MK_MSG_HELLO, noncanon, sizeof noncanon, MK_ERR_CBOR_NONCANONICAL, "HELLO", "non-shortest uint");
    expect_error(MK_MSG_HELLO, unordered, sizeof unordered, MK_ERR_CBOR_NONCANONICAL, "HELLO", "unordered keys");
    expect_error(MK_MSG_HELLO, not_map, sizeof not_map, MK_ERR_WRONG_TYPE, "HELLO: message is not a map", "uint");
    expect_error(MK_MSG_HELLO, array, sizeof array, MK_ERR_WRONG_TYPE, "not a map", "array");
    expect_error(MK_MSG_HELLO, version_text, sizeof version_text, MK_ERR_WRONG_TYPE, "HELLO.version: expected uint",
                 "version as text");
    expect_error(MK_MSG_HELLO, version_neg, sizeof version_neg, MK_ERR_WRONG_TYPE, "HELLO.version", "version -1");
    expect_error(MK_MSG_HELLO, missing, sizeof missing, MK_ERR_MISSING_FIELD, "HELLO.version: missing", "no version");
    expect_error(MK_MSG_HELLO, empty_map, sizeof empty_map, MK_ERR_MISSING_FIELD, "HELLO.version", "empty map");
    expect_error(MK_MSG_KEYGEN, keygen_bstr, sizeof keygen_bstr, MK_ERR_WRONG_TYPE, "KEYGEN.keys: expected uint",
                 "KEYGEN.keys bstr");
    expect_error(MK_MSG_BENCH_AUTH, ba_uint, sizeof ba_uint, MK_ERR_WRONG_TYPE, "BENCH_AUTH.challenge: expected bstr",
                 "BENCH_AUTH.challenge uint");
    expect_error(MK_MSG_INSTALL, empty_map, sizeof empty_map, MK_ERR_MISSING_FIELD, "INSTALL.connection", "INSTALL {}");
    CHECK(F.rng_calls == 0, "no session was opened by malformed requests");
}

static void test_states(void)
{
    static const uint8_t keygen[] = {0xA1, 0x01, 0x07};
    static const uint8_t cogen[] = {0xA1, 0x01, 0x41, 0x00};
    static const uint8_t commit[] = {0xA1, 0x01, 0x42, 0x01, 0x02};
    static const uint8_t install[] = {0xA2, 0x01, 0x40, 0x02, 0x40};
    uint8_t ba[200];
    size_t ba_len;
    info in;

    fake_reset();
    init_device();
    /* before HELLO: no session */
    ba_len = bench_auth_msg(ba, sizeof ba, D.challenge, 32);
    expect_error(MK_MSG_BENCH_AUTH, ba, ba_len, MK_ERR_BAD_STATE, "send HELLO first", "BENCH_AUTH before HELLO");
    expect_error(MK_MSG_KEYGEN, keygen, sizeof keygen, MK_ERR_BAD_STATE, "HELLO", "KEYGEN before HELLO");
    CHECK(F.verify_calls == 0, "no verification without a session");

    CHECK(call(MK_MSG_HELLO, 1, HELLO_V1, sizeof HELLO_V1) == 0 && parse_info(&in) == 0, "HELLO");
    /* FACTORY, not authenticated */
    expect_error(MK_MSG_KEYGEN, keygen, sizeof keygen, MK_ERR_NOT_AUTHENTICATED, "BENCH_AUTH required", "KEYGEN unauth");
    expect_error(MK_MSG_COGEN, cogen, sizeof cogen, MK_ERR_BAD_STATE, "COGEN: not allowed in state 0", "COGEN in FACTORY");
    expect_error(MK_MSG_INSTALL, install, sizeof install, MK_ERR_BAD_STATE, "INSTALL", "INSTALL in FACTORY");
    expect_error(MK_MSG_COMMIT, commit, sizeof commit, MK_ERR_BAD_STATE, "COMMIT", "COMMIT in FACTORY");

    /* BENCH_AUTH: wrong challenge, then the platform says no, then yes */
    {
        uint8_t wrong[32];
        memcpy(wrong, in.challenge, 32);
        wrong[31] ^= 1;
        ba_len = bench_auth_msg(ba, sizeof ba, wrong, 32);
        expect_error(MK_MSG_BENCH_AUTH, ba, ba_len, MK_ERR_BAD_SIGNATURE, "challenge", "wrong challenge");
        ba_len = bench_auth_msg(ba, sizeof ba, in.challenge, 31);
        expect_error(MK_MSG_BENCH_AUTH, ba, ba_len, MK_ERR_BAD_SIGNATURE, "challenge", "short challenge");
        CHECK(F.verify_calls == 0, "challenge checked before the signature");
    }
    ba_len = bench_auth_msg(ba, sizeof ba, in.challenge, 32);
    F.verify_result = -1;
    expect_error(MK_MSG_BENCH_AUTH, ba, ba_len, MK_ERR_BAD_SIGNATURE, "not trusted", "untrusted bench");
    CHECK(mk_device_state(&D) == MK_STATE_FACTORY, "still FACTORY");
    F.verify_result = 0;
    CHECK(call(MK_MSG_BENCH_AUTH, 50, ba, ba_len) == 0 && out_type == MK_MSG_BENCH_AUTH_OK, "BENCH_AUTH ok (type %u)",
          out_type);
    CHECK(out_len == 3 && out[0] == 0xA1 && out[1] == 0x01 && out[2] == MK_STATE_AUTHENTICATED, "BENCH_AUTH_OK{1: 1}");
    CHECK(mk_device_state(&D) == MK_STATE_AUTHENTICATED, "AUTHENTICATED");
    /* retry of BENCH_AUTH: same reply, no second verification */
    {
        unsigned calls = F.verify_calls;
        CHECK(call(MK_MSG_BENCH_AUTH, 50, ba, ba_len) == 0 && out_type == MK_MSG_BENCH_AUTH_OK, "BENCH_AUTH retry");
        CHECK(F.verify_calls == calls, "retry not re-verified");
    }
    expect_error(MK_MSG_KEYGEN, keygen, sizeof keygen, MK_ERR_UNKNOWN_MESSAGE, "KEYGEN not implemented", "KEYGEN auth");
    expect_error(MK_MSG_COMMIT, commit, sizeof commit, MK_ERR_BAD_STATE, "COMMIT", "COMMIT auth in FACTORY");

    /* HELLO opens a new session: authentication is gone, state reported FACTORY */
    CHECK(call(MK_MSG_HELLO, 2, HELLO_V1, sizeof HELLO_V1) == 0 && parse_info(&in) == 0, "HELLO again");
    CHECK(in.state == MK_STATE_FACTORY, "INFO.state after new HELLO: %llu", (unsigned long long)in.state);
    expect_error(MK_MSG_KEYGEN, keygen, sizeof keygen, MK_ERR_NOT_AUTHENTICATED, NULL, "KEYGEN after new HELLO");
    /* the previous session's BENCH_AUTH (old challenge) is refused */
    expect_error(MK_MSG_BENCH_AUTH, ba, ba_len, MK_ERR_BAD_SIGNATURE, "challenge", "replayed BENCH_AUTH");

    /* end of session (unplug) */
    mk_device_end_session(&D);
    expect_error(MK_MSG_KEYGEN, keygen, sizeof keygen, MK_ERR_BAD_STATE, "HELLO", "KEYGEN after end of session");

    /* persistent state from flash: COMMITTED refuses KEYGEN even when authenticated */
    fake_reset();
    make_blob(F.flash, MK_STATE_COMMITTED);
    F.flash_len = 12;
    init_device();
    CHECK(mk_device_state(&D) == MK_STATE_COMMITTED, "state from flash");
    CHECK(call(MK_MSG_HELLO, 1, HELLO_V1, sizeof HELLO_V1) == 0 && parse_info(&in) == 0 && in.state == 5,
          "INFO.state 5");
    ba_len = bench_auth_msg(ba, sizeof ba, in.challenge, 32);
    CHECK(call(MK_MSG_BENCH_AUTH, 2, ba, ba_len) == 0 && out_type == MK_MSG_BENCH_AUTH_OK && out[2] == 5,
          "BENCH_AUTH_OK{state 5}");
    expect_error(MK_MSG_KEYGEN, keygen, sizeof keygen, MK_ERR_BAD_STATE, "KEYGEN: not allowed in state 5",
                 "KEYGEN when COMMITTED");
    expect_error(MK_MSG_COMMIT, commit, sizeof commit, MK_ERR_UNKNOWN_MESSAGE, "not implemented", "COMMIT again");
}

static void test_init_and_platform_faults(void)
{
    uint8_t blob[16];
    mk_device_identity bad = ID;
    char long_name[MK_DEVICE_IDENTITY_MAX + 2];
    static const char bad_utf8[] = {(char)0xC0, (char)0x80, 0};
    int rc, k;

    fake_reset();
    CHECK(mk_device_init(NULL, &P, &ID) == -MK_ERR_BAD_LENGTH, "NULL dev");
    CHECK(mk_device_init(&D, NULL, &ID) == -MK_ERR_BAD_LENGTH, "NULL platform");
    CHECK(mk_device_init(&D, &P, NULL) == -MK_ERR_BAD_LENGTH, "NULL identity");
    P.rng_fill = NULL;
    CHECK(mk_device_init(&D, &P, &ID) == -MK_ERR_BAD_LENGTH, "missing rng hook");
    fake_reset();
    P.bench_verify = NULL;
    CHECK(mk_device_init(&D, &P, &ID) == 0, "bench_verify is optional");
    bad.model = NULL;
    CHECK(mk_device_init(&D, &P, &bad) == -MK_ERR_BAD_LENGTH, "NULL model");
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    bad.model = long_name;
    CHECK(mk_device_init(&D, &P, &bad) == -MK_ERR_BAD_LENGTH, "model of 65 bytes");
    long_name[MK_DEVICE_IDENTITY_MAX] = '\0';
    CHECK(mk_device_init(&D, &P, &bad) == 0, "model of 64 bytes");
    bad.model = bad_utf8;
    CHECK(mk_device_init(&D, &P, &bad) == -MK_ERR_BAD_LENGTH, "overlong UTF-8 model");

    /* corrupt or unreadable state blobs */
    for (k = 0; k < 7; k++) {
        fake_reset();
        make_blob(blob, MK_STATE_KEYS_GENERATED);
        F.flash_len = 12;
        switch (k) {
        case 0: blob[0] = 'X'; break;                             /* magic */
        case 1: blob[4] = 2; break;                               /* format */
        case 2: blob[11] ^= 1; break;                             /* CRC */
        case 3: make_blob(blob, MK_STATE_AUTHENTICATED); break;   /* session-only state */
        case 4: make_blob(blob, 6); break;                        /* out of range */
        case 5: F.flash_len = 11; break;                          /* short */
        default: F.flash_fail = 1; break;                         /* read error */
        }
        memcpy(F.flash, blob, 12);
        rc = mk_device_init(&D, &P, &ID);
        CHECK(rc == -MK_ERR_FLASH, "corrupt blob case %d: rc=%d", k, rc);
    }

    /* RNG failure -> ERROR{RNG}, no session */
    fake_reset();
    init_device();
    F.rng_fail = 1;
    expect_error(MK_MSG_HELLO, HELLO_V1, sizeof HELLO_V1, MK_ERR_RNG, "random", "RNG failure");
    F.rng_fail = 0;
    {
        static const uint8_t keygen[] = {0xA1, 0x01, 0x07};
        expect_error(MK_MSG_KEYGEN, keygen, sizeof keygen, MK_ERR_BAD_STATE, NULL, "no session after RNG failure");
    }

    /* no bench_verify hook: BENCH_AUTH always fails */
    fake_reset();
    P.bench_verify = NULL;
    init_device();
    {
        uint8_t ba[200];
        size_t ba_len;
        info in;
        CHECK(call(MK_MSG_HELLO, 1, HELLO_V1, sizeof HELLO_V1) == 0 && parse_info(&in) == 0, "HELLO");
        ba_len = bench_auth_msg(ba, sizeof ba, in.challenge, 32);
        expect_error(MK_MSG_BENCH_AUTH, ba, ba_len, MK_ERR_BAD_SIGNATURE, NULL, "no trusted bench");
    }

    /* caller mistakes */
    fake_reset();
    init_device();
    CHECK(mk_device_handle(&D, 1, 1, HELLO_V1, 3, out, 10, &out_type, &out_len) == -MK_ERR_TOO_LARGE, "small cap");
    CHECK(mk_device_handle(&D, 1, 1, HELLO_V1, 3, out, 10, &out_type, &out_len) == -MK_ERR_TOO_LARGE,
          "small cap on retry");
    CHECK(mk_device_handle(&D, 1, 1, NULL, 3, out, sizeof out, &out_type, &out_len) == -MK_ERR_BAD_LENGTH, "NULL msg");
    CHECK(mk_device_handle(&D, 1, 1, HELLO_V1, 3, NULL, 0, &out_type, &out_len) == -MK_ERR_BAD_LENGTH, "NULL out");
    CHECK(mk_device_handle(NULL, 1, 1, HELLO_V1, 3, out, sizeof out, &out_type, &out_len) == -MK_ERR_BAD_LENGTH,
          "NULL dev");
}

/* Random requests: every reply is subset CBOR, INFO or ERROR or BENCH_AUTH_OK, and fits the cache. */
static void test_random_requests(void)
{
    static uint8_t msg[600];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int it;
    fake_reset();
    init_device();
    for (it = 0; it < 20000; it++) {
        size_t len, i;
        uint8_t type;
        int rc;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        type = (uint8_t)(x % 16u == 15u ? x >> 8 : x % 13u);
        len = (size_t)(x >> 20) % 40u;
        for (i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            msg[i] = (uint8_t)(x >> 32);
        }
        if (len > 0 && (x & 3u) == 0) msg[0] = (uint8_t)(0xA0 | (msg[0] & 3u)); /* often a small map */
        F.verify_result = (x & 8u) ? 0 : -1;
        rc = mk_device_handle(&D, type, (uint8_t)it, msg, len, out, sizeof out, &out_type, &out_len);
        if (rc != 0 || mk_cbor_validate(out, out_len, MK_CBOR_MAX_DEPTH) != 0 ||
            (out_type != MK_MSG_ERROR && out_type != MK_MSG_INFO && out_type != MK_MSG_BENCH_AUTH_OK)) {
            CHECK(0, "random request %d: type %u len %zu rc %d reply %u", it, type, len, rc, out_type);
            break;
        }
    }
    CHECK(it == 20000, "all random requests answered");
}

/* ---------------------------------------------------------------- host platform */

static void test_host_platform(const char *tmpdir)
{
    mk_platform hp;
    mk_host_platform hctx;
    char path[512], tmp[520];
    uint8_t buf[MK_PLATFORM_STATE_MAX + 8], blob[12];
    size_t len = 99;
    struct stat st;
    FILE *fp;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES], other_pk[32], other_sk[64];
    uint8_t ba[200], sig[64];
    info in;
    mk_cbor_writer w;

    snprintf(path, sizeof path, "%s/test_device_state.bin", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);
    CHECK(mk_host_platform_init(&hp, &hctx, path, NULL) == 0, "host platform init");
    CHECK(hp.flash_read(hp.ctx, buf, sizeof buf, &len) == 0 && len == 0, "missing state file reads as empty");
    make_blob(blob, MK_STATE_INSTALLED);
    CHECK(hp.flash_write(hp.ctx, blob, sizeof blob) == 0, "flash write");
    CHECK(stat(tmp, &st) != 0, "no temp file left behind");
    CHECK(stat(path, &st) == 0 && (st.st_mode & 077) == 0, "state file mode 0600");
    CHECK(hp.flash_read(hp.ctx, buf, sizeof buf, &len) == 0 && len == 12 && memcmp(buf, blob, 12) == 0, "read back");
    CHECK(hp.flash_read(hp.ctx, buf, 11, &len) != 0, "blob larger than cap is an error");
    CHECK(hp.flash_read(hp.ctx, buf, 12, &len) == 0 && len == 12, "blob of exactly cap");
    CHECK(hp.now_ms(hp.ctx) <= hp.now_ms(hp.ctx), "monotonic clock");
    memset(buf, 0, 64);
    CHECK(hp.rng_fill(hp.ctx, buf, 64) == 0, "rng");
    {
        int nonzero = 0, i;
        for (i = 0; i < 64; i++) nonzero |= buf[i];
        CHECK(nonzero != 0, "rng produced bytes");
    }
    /* the device reads the file */
    CHECK(mk_device_init(&D, &hp, &ID) == 0 && mk_device_state(&D) == MK_STATE_INSTALLED, "device state from file");
    /* a corrupt file is refused */
    fp = fopen(path, "wb");
    CHECK(fp != NULL, "open state file");
    if (fp != NULL) {
        fputs("garbage", fp);
        fclose(fp);
    }
    CHECK(mk_device_init(&D, &hp, &ID) == -MK_ERR_FLASH, "corrupt state file");
    unlink(path);

    /* BENCH_AUTH with a real Ed25519 signature by the pinned provisioner key */
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(other_pk, other_sk);
    CHECK(mk_host_platform_init(&hp, &hctx, path, pk) == 0, "host platform with provisioner key");
    CHECK(mk_device_init(&D, &hp, &ID) == 0, "device on host platform");
    CHECK(call(MK_MSG_HELLO, 1, HELLO_V1, sizeof HELLO_V1) == 0 && parse_info(&in) == 0, "HELLO (host)");
    {
        int round;
        for (round = 0; round < 3; round++) {
            const unsigned char *use_pk = round == 1 ? other_pk : pk;
            const unsigned char *use_sk = round == 0 ? other_sk : sk;
            crypto_sign_detached(sig, NULL, in.challenge, 32, use_sk);
            mk_cbor_writer_init(&w, ba, sizeof ba);
            mk_cbor_write_map(&w, 3);
            mk_cbor_write_uint(&w, 1);
            mk_cbor_write_bstr(&w, in.challenge, 32);
            mk_cbor_write_uint(&w, 2);
            mk_cbor_write_bstr(&w, use_pk, 32);
            mk_cbor_write_uint(&w, 3);
            mk_cbor_write_bstr(&w, sig, 64);
            if (round < 2) {
                expect_error(MK_MSG_BENCH_AUTH, ba, w.len, MK_ERR_BAD_SIGNATURE, NULL,
                             round == 0 ? "signature by another key" : "unpinned bench key");
            } else {
                CHECK(call(MK_MSG_BENCH_AUTH, 9, ba, w.len) == 0 && out_type == MK_MSG_BENCH_AUTH_OK,
                      "Ed25519 BENCH_AUTH by the pinned key");
            }
        }
    }
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(other_sk, sizeof other_sk);
    CHECK(stat(path, &st) != 0, "HELLO and BENCH_AUTH write nothing to flash");
}

int main(int argc, char **argv)
{
    const char *tmpdir = argc > 1 ? argv[1] : "build";
    test_hello_info();
    test_unknown();
    test_malformed();
    test_states();
    test_init_and_platform_faults();
    test_random_requests();
    test_host_platform(tmpdir);
    printf("test_device: %d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
