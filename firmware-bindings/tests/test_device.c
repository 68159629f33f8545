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
    int write_fail; /* only flash_write fails */
    unsigned writes;
    int rng_fail;
    int real_rng; /* draw from libsodium instead of the counter (key generation rejects counter bytes) */
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
    if (f->real_rng) {
        randombytes_buf(buf, len);
        return 0;
    }
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
    if (f->flash_fail || f->write_fail || len > sizeof f->flash) return -1;
    f->writes++;
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

/* A format-2 state blob (docs: mk_device.c) of a FACTORY device: header, zeros, config length 0, CRC. */
#define BLOB_FACTORY_LEN 574u
static void make_blob(uint8_t *b, uint8_t state)
{
    uint32_t crc;
    memset(b, 0, BLOB_FACTORY_LEN);
    memcpy(b, "MKDS", 4);
    b[4] = 2;
    b[5] = state;
    crc = mk_crc32c(b, BLOB_FACTORY_LEN - 4);
    b[570] = (uint8_t)(crc >> 24);
    b[571] = (uint8_t)(crc >> 16);
    b[572] = (uint8_t)(crc >> 8);
    b[573] = (uint8_t)crc;
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
    CHECK(in.caps == (MK_CAP_ED25519 | MK_CAP_X25519 | MK_CAP_COGEN | MK_CAP_SERIAL), "capabilities %llu",
          (unsigned long long)in.caps);
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
    static const uint8_t keygen[] = {0xA2, 0x01, 0x07, 0x02, 0x00};
    static const uint8_t cogen[] = {0xA2, 0x01, 0x41, 0x00, 0x02, 0x00};
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
    expect_error(MK_MSG_COGEN, cogen, sizeof cogen, MK_ERR_BAD_STATE, "COGEN", "COGEN auth in FACTORY");
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

}

static void test_init_and_platform_faults(void)
{
    uint8_t blob[BLOB_FACTORY_LEN];
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

    /* a valid factory blob loads */
    fake_reset();
    make_blob(F.flash, MK_STATE_FACTORY);
    F.flash_len = BLOB_FACTORY_LEN;
    CHECK(mk_device_init(&D, &P, &ID) == 0 && mk_device_state(&D) == MK_STATE_FACTORY, "factory blob loads");
    /* corrupt or unreadable state blobs */
    for (k = 0; k < 10; k++) {
        uint32_t crc;
        fake_reset();
        make_blob(blob, MK_STATE_FACTORY);
        F.flash_len = BLOB_FACTORY_LEN;
        switch (k) {
        case 0: blob[0] = 'X'; break;                             /* magic */
        case 1: blob[4] = 1; break;                               /* format 1 (state only) */
        case 2: blob[573] ^= 1; break;                            /* CRC */
        case 3: make_blob(blob, MK_STATE_AUTHENTICATED); break;   /* session-only state */
        case 4: make_blob(blob, 6); break;                        /* out of range */
        case 5: F.flash_len = BLOB_FACTORY_LEN - 1; break;         /* short */
        case 6: make_blob(blob, MK_STATE_KEYS_GENERATED); break;  /* keys state with zero (invalid) scalars */
        case 7:                                                   /* config length beyond the blob */
            blob[569] = 1;
            crc = mk_crc32c(blob, 570);
            blob[570] = (uint8_t)(crc >> 24), blob[571] = (uint8_t)(crc >> 16);
            blob[572] = (uint8_t)(crc >> 8), blob[573] = (uint8_t)crc;
            break;
        case 8: F.flash_len = 12; break;                          /* a format-1 length */
        default: F.flash_fail = 1; break;                         /* read error */
        }
        memcpy(F.flash, blob, BLOB_FACTORY_LEN);
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
        static const uint8_t keygen[] = {0xA2, 0x01, 0x07, 0x02, 0x00};
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
            (out_type != MK_MSG_ERROR && out_type != MK_MSG_INFO && out_type != MK_MSG_BENCH_AUTH_OK &&
             out_type != MK_MSG_PUBKEYS && out_type != MK_MSG_ACK)) {
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
    uint8_t buf[MK_PLATFORM_STATE_MAX + 8], blob[BLOB_FACTORY_LEN];
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
    make_blob(blob, MK_STATE_FACTORY);
    CHECK(hp.flash_write(hp.ctx, blob, sizeof blob) == 0, "flash write");
    CHECK(stat(tmp, &st) != 0, "no temp file left behind");
    CHECK(stat(path, &st) == 0 && (st.st_mode & 077) == 0, "state file mode 0600");
    CHECK(hp.flash_read(hp.ctx, buf, sizeof buf, &len) == 0 && len == sizeof blob && memcmp(buf, blob, len) == 0,
          "read back");
    CHECK(hp.flash_read(hp.ctx, buf, sizeof blob - 1, &len) != 0, "blob larger than cap is an error");
    CHECK(hp.flash_read(hp.ctx, buf, sizeof blob, &len) == 0 && len == sizeof blob, "blob of exactly cap");
    CHECK(hp.now_ms(hp.ctx) <= hp.now_ms(hp.ctx), "monotonic clock");
    memset(buf, 0, 64);
    CHECK(hp.rng_fill(hp.ctx, buf, 64) == 0, "rng");
    {
        int nonzero = 0, i;
        for (i = 0; i < 64; i++) nonzero |= buf[i];
        CHECK(nonzero != 0, "rng produced bytes");
    }
    /* the device reads the file */
    CHECK(mk_device_init(&D, &hp, &ID) == 0 && mk_device_state(&D) == MK_STATE_FACTORY, "device state from file");
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

/* ---------------------------------------------------------------- enrollment (KEYGEN .. COMMIT, RESET) */

#include "mk_crypto.h"
#include "mk_profile.h"

/* the bench side draws real randomness (libsodium) for its boxes and contributions */
static int bench_rng(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    randombytes_buf(buf, len);
    return 0;
}
static mk_platform BENCH;

static const uint64_t T_KEYGEN = 1764288000u, T_COGEN = 1764288060u;
static const uint8_t L_BYTES[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                    0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                                    0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

/* Reply map field (key) as bstr / uint; 0 on success. */
static int reply_bstr(uint64_t want, const uint8_t **p, size_t *n)
{
    mk_cbor_reader r;
    size_t pairs, i;
    uint64_t key;
    mk_cbor_reader_init(&r, out, out_len);
    if (mk_cbor_read_map(&r, &pairs) != 0) return -1;
    for (i = 0; i < pairs; i++) {
        if (mk_cbor_read_uint(&r, &key) != 0) return -1;
        if (key == want) return mk_cbor_read_bstr(&r, p, n);
        if (mk_cbor_skip(&r) != 0) return -1;
    }
    return -1;
}

static uint64_t reply_uint(uint64_t want)
{
    mk_cbor_reader r;
    size_t pairs, i;
    uint64_t key, v;
    mk_cbor_reader_init(&r, out, out_len);
    if (mk_cbor_read_map(&r, &pairs) != 0) return 999;
    for (i = 0; i < pairs; i++) {
        if (mk_cbor_read_uint(&r, &key) != 0) return 999;
        if (key == want) return mk_cbor_read_uint(&r, &v) == 0 ? v : 999;
        if (mk_cbor_skip(&r) != 0) return 999;
    }
    return 999;
}

typedef struct keyset {
    uint8_t sig[32], enc[33], auth[33];
    char profile[MK_PROFILE_MAX + 1];
    size_t profile_len;
    uint8_t proof[64];
} keyset;

static size_t b64u_dec(uint8_t *o, size_t cap, const char *in, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    int bits = 0;
    size_t i, k = 0;
    for (i = 0; i < n; i++) {
        const char *at = in[i] == '\0' ? NULL : strchr(A, in[i]);
        if (at == NULL) return (size_t)-1;
        acc = acc << 6 | (uint32_t)(at - A);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (k == cap) return (size_t)-1;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    return k;
}

/* The profile is signed by sig (libsodium), its kid and Identifier are sig's UDF, and it names the three keys. */
static int profile_ok(const keyset *k, const char *updated)
{
    static char payload[MK_PROFILE_SCRATCH_MAX];
    char id[MK_KEY_UDF_LEN + 1], want[200], x[48];
    const char *p = k->profile, *pe, *h, *he, *sg, *se;
    uint8_t sig[64];
    size_t n;
    static char signing[MK_PROFILE_MAX];
    if (strncmp(p, "{\"payload\":\"", 12) != 0) return 0;
    p += 12;
    pe = strchr(p, '"');
    h = pe == NULL ? NULL : strstr(pe, "\"protected\":\"");
    if (h == NULL) return 0;
    h += 13;
    he = strchr(h, '"');
    sg = he == NULL ? NULL : strstr(he, "\"signature\":\"");
    if (sg == NULL) return 0;
    sg += 13;
    se = strchr(sg, '"');
    if (se == NULL || b64u_dec(sig, 64, sg, (size_t)(se - sg)) != 64) return 0;
    snprintf(signing, sizeof signing, "%.*s.%.*s", (int)(he - h), h, (int)(pe - p), p);
    if (crypto_sign_verify_detached(sig, (const unsigned char *)signing, strlen(signing), k->sig) != 0) return 0;
    n = b64u_dec((uint8_t *)payload, sizeof payload - 1, p, (size_t)(pe - p));
    if (n == (size_t)-1) return 0;
    payload[n] = '\0';
    mk_key_udf_ed25519(id, k->sig);
    snprintf(want, sizeof want, "{\"DeviceProfile\":{\"Identifier\":\"%s\",\"Names\":[],\"Updated\":\"%s\"", id, updated);
    if (strncmp(payload, want, strlen(want)) != 0) return 0;
    if (strstr(payload, "\"Description\":\"esp32s3-devkit SN-000123\"") == NULL) return 0;
    n = mk_b64u_encode(x, sizeof x, k->enc, 32);
    x[n] = '\0';
    if (strstr(payload, x) == NULL) return 0;
    n = mk_b64u_encode(x, sizeof x, k->auth, 32);
    x[n] = '\0';
    return strstr(payload, x) != NULL;
}

/* PUBKEYS or PROOF -> keyset */
static int read_keys(keyset *k)
{
    const uint8_t *p;
    size_t n;
    memset(k, 0, sizeof *k);
    if (out_type != MK_MSG_PUBKEYS && out_type != MK_MSG_PROOF) return -1;
    if (reply_bstr(1, &p, &n) != 0 || n != 32) return -1;
    memcpy(k->sig, p, 32);
    if (reply_bstr(2, &p, &n) != 0 || n != 33) return -1;
    memcpy(k->enc, p, 33);
    if (reply_bstr(3, &p, &n) != 0 || n != 33) return -1;
    memcpy(k->auth, p, 33);
    if (out_type == MK_MSG_PROOF) {
        if (reply_bstr(4, &p, &n) != 0 || n != 64) return -1;
        memcpy(k->proof, p, 64);
    }
    if (reply_bstr(out_type == MK_MSG_PROOF ? 5 : 4, &p, &n) != 0 || n > MK_PROFILE_MAX) return -1;
    memcpy(k->profile, p, n);
    k->profile[n] = '\0';
    k->profile_len = n;
    return 0;
}

static uint8_t next_seq = 1;
static int req(uint8_t type, const uint8_t *msg, size_t len) { return call(type, next_seq++, msg, len); }

/* HELLO + BENCH_AUTH (the fake platform accepts) */
static void session(void)
{
    info in;
    uint8_t ba[200];
    size_t n;
    F.verify_result = 0;
    CHECK(req(MK_MSG_HELLO, HELLO_V1, sizeof HELLO_V1) == 0 && parse_info(&in) == 0, "HELLO");
    n = bench_auth_msg(ba, sizeof ba, in.challenge, 32);
    CHECK(req(MK_MSG_BENCH_AUTH, ba, n) == 0 && out_type == MK_MSG_BENCH_AUTH_OK, "BENCH_AUTH");
}

static size_t msg_keygen(uint8_t *b, size_t cap, uint64_t keys, uint64_t t)
{
    mk_cbor_writer w;
    mk_cbor_writer_init(&w, b, cap);
    mk_cbor_write_map(&w, 2);
    mk_cbor_write_uint(&w, 1);
    mk_cbor_write_uint(&w, keys);
    mk_cbor_write_uint(&w, 2);
    mk_cbor_write_uint(&w, t);
    return w.len;
}

/* map {1: bstr a, 2: uint t} (COGEN) or {1: bstr a, 2: bstr b} (INSTALL) or {1: bstr a} (COMMIT) */
static size_t msg_bstrs(uint8_t *b, size_t cap, const uint8_t *a, size_t an, const uint8_t *c, size_t cn,
                        int with_time, uint64_t t)
{
    mk_cbor_writer w;
    mk_cbor_writer_init(&w, b, cap);
    mk_cbor_write_map(&w, (c != NULL || with_time) ? 2u : 1u);
    mk_cbor_write_uint(&w, 1);
    mk_cbor_write_bstr(&w, a, an);
    if (c != NULL) {
        mk_cbor_write_uint(&w, 2);
        mk_cbor_write_bstr(&w, c, cn);
    } else if (with_time) {
        mk_cbor_write_uint(&w, 2);
        mk_cbor_write_uint(&w, t);
    }
    return w.err == 0 ? w.len : 0;
}

typedef struct contribution {
    uint8_t c[3][32];
    uint8_t exp_sig[32], exp_enc[33], exp_auth[33];
    uint8_t comp[3][32]; /* what the device should hold (test side, from the base scalars in flash) */
} contribution;

/* The device's base scalars as stored in the fake flash (white box: the test bench computes the expected composite
 * keys from them, and checks them independently with libsodium's point arithmetic). */
static void make_contribution(contribution *k)
{
    int i;
    uint8_t e[32], cB[32], sum[32], u[32];
    for (i = 0; i < 3; i++) {
        CHECK(mk_scalar_random(&BENCH, k->c[i]) == 0, "bench scalar");
        CHECK(mk_scalar_add(k->comp[i], F.flash + 24 + 32 * i, k->c[i]) == 0, "composite scalar");
    }
    CHECK(mk_ed25519_public(k->exp_sig, k->comp[0]) == 0 && mk_x25519_public(k->exp_enc, k->comp[1]) == 0 &&
              mk_x25519_public(k->exp_auth, k->comp[2]) == 0,
          "expected composite keys");
    /* independent: base point + contribution point (Edwards), and its Montgomery u */
    CHECK(crypto_scalarmult_ed25519_base_noclamp(e, F.flash + 24) == 0 &&
              crypto_scalarmult_ed25519_base_noclamp(cB, k->c[0]) == 0 && crypto_core_ed25519_add(sum, e, cB) == 0 &&
              memcmp(sum, k->exp_sig, 32) == 0,
          "composite signature key = base + contribution (libsodium)");
    for (i = 1; i < 3; i++) {
        CHECK(crypto_scalarmult_ed25519_base_noclamp(e, F.flash + 24 + 32 * i) == 0 &&
                  crypto_scalarmult_ed25519_base_noclamp(cB, k->c[i]) == 0 &&
                  crypto_core_ed25519_add(sum, e, cB) == 0 && crypto_sign_ed25519_pk_to_curve25519(u, sum) == 0 &&
                  memcmp(u, i == 1 ? k->exp_enc : k->exp_auth, 32) == 0,
              "composite X25519 u = map(base + contribution) (libsodium), key %d", i);
    }
}

static size_t contribution_cbor(uint8_t *b, size_t cap, const contribution *k, int omit_last)
{
    mk_cbor_writer w;
    mk_cbor_writer_init(&w, b, cap);
    mk_cbor_write_map(&w, omit_last ? 5u : 6u);
    mk_cbor_write_uint(&w, 1);
    mk_cbor_write_bstr(&w, k->c[0], 32);
    mk_cbor_write_uint(&w, 2);
    mk_cbor_write_bstr(&w, k->c[1], 32);
    mk_cbor_write_uint(&w, 3);
    mk_cbor_write_bstr(&w, k->c[2], 32);
    mk_cbor_write_uint(&w, 4);
    mk_cbor_write_bstr(&w, k->exp_sig, 32);
    mk_cbor_write_uint(&w, 5);
    mk_cbor_write_bstr(&w, k->exp_enc, 33);
    if (!omit_last) {
        mk_cbor_write_uint(&w, 6);
        mk_cbor_write_bstr(&w, k->exp_auth, 33);
    }
    return w.len;
}

static size_t seal(uint8_t *box, size_t cap, const uint8_t *to_u, const char *label, const uint8_t *m, size_t n)
{
    size_t len = 0;
    CHECK(mk_box_seal(&BENCH, box, cap, &len, to_u, label, m, n) == 0, "seal %s", label);
    return len;
}

/* the signed fields {1: account, 2: device, 3: admin key, 4: issued} of a connection, as map entries */
static void connection_fields(mk_cbor_writer *w, const char *account, const char *device, const uint8_t *admin_pk)
{
    mk_cbor_write_uint(w, 1);
    mk_cbor_write_tstr(w, account, strlen(account));
    mk_cbor_write_uint(w, 2);
    mk_cbor_write_tstr(w, device, strlen(device));
    mk_cbor_write_uint(w, 3);
    mk_cbor_write_bstr(w, admin_pk, 32);
    mk_cbor_write_uint(w, 4);
    mk_cbor_write_uint(w, 1764288100u);
}

/* connection CBOR signed by admin (sk), naming device */
static size_t connection(uint8_t *b, size_t cap, const char *account, const char *device, const uint8_t *admin_pk,
                         const uint8_t *admin_sk, int forge)
{
    static const char ctx[] = "meshkit-connection-v1";
    uint8_t tbs[400], sig[64];
    mk_cbor_writer w;
    memcpy(tbs, ctx, sizeof ctx);
    mk_cbor_writer_init(&w, tbs + sizeof ctx, sizeof tbs - sizeof ctx);
    mk_cbor_write_map(&w, 4);
    connection_fields(&w, account, device, admin_pk);
    crypto_sign_detached(sig, NULL, tbs, sizeof ctx + w.len, admin_sk);
    if (forge) sig[5] ^= 0x40;
    mk_cbor_writer_init(&w, b, cap);
    mk_cbor_write_map(&w, 5);
    connection_fields(&w, account, device, admin_pk);
    mk_cbor_write_uint(&w, 5);
    mk_cbor_write_bstr(&w, sig, 64);
    return w.len;
}

/* flash snapshot helpers */
static uint8_t snap[MK_PLATFORM_STATE_MAX];
static size_t snap_len;
static uint8_t snap_state;
static void snapshot(void)
{
    memcpy(snap, F.flash, F.flash_len);
    snap_len = F.flash_len;
    snap_state = mk_device_state(&D);
}
static int unchanged(void)
{
    return F.flash_len == snap_len && memcmp(F.flash, snap, snap_len) == 0 && mk_device_state(&D) == snap_state;
}

/* A flash write failure: ERROR{FLASH}, nothing changes in RAM or flash; then the same request succeeds. */
static void flash_fault(uint8_t type, const uint8_t *m, size_t n, const char *what)
{
    snapshot();
    F.write_fail = 1;
    expect_error(type, m, n, MK_ERR_FLASH, "flash", what);
    F.write_fail = 0;
    CHECK(unchanged(), "%s: state unchanged after a flash failure", what);
}

/* Power cut after the flash write: a new device from the same flash answers the retry. */
static void power_cut(void)
{
    mk_device_wipe(&D);
    init_device();
}

static uint8_t cbuf[MK_MAX_MESSAGE], mbuf[MK_MAX_MESSAGE + 64], box[MK_MAX_MESSAGE];

static void test_enrollment(void)
{
    keyset base, again, comp, comp2;
    contribution k, other;
    uint8_t admin_pk[32], admin_sk[64], digest[64], digest2[64], receipt_sig[64];
    char comp_id[MK_KEY_UDF_LEN + 1];
    static const char config[] = "{\"wifi\":{\"ssid\":\"factory\",\"psk\":\"s3cret\"},\"mqtt\":\"mqtts://broker:8883\"}";
    static const char account[] = "MBQO-UETO-EL5H-EQBI-PM4Y-QOE7-E6PH";
    size_t n, bn, cn, cfg_n, conn_n;
    uint8_t cogen_msg[600], install_msg[900], commit_msg[80], cfg_box[200], conn[400];
    size_t cogen_len, install_len, commit_len;
    const uint8_t *p;

    memset(&BENCH, 0, sizeof BENCH);
    BENCH.rng_fill = bench_rng;
    crypto_sign_keypair(admin_pk, admin_sk);
    fake_reset();
    F.real_rng = 1;
    init_device();
    session();

    /* ---- KEYGEN */
    n = msg_keygen(mbuf, sizeof mbuf, 3, T_KEYGEN);
    expect_error(MK_MSG_KEYGEN, mbuf, n, MK_ERR_WRONG_TYPE, "KEYGEN.keys: must be 7", "KEYGEN keys=3");
    n = msg_keygen(mbuf, sizeof mbuf, 15, T_KEYGEN);
    expect_error(MK_MSG_KEYGEN, mbuf, n, MK_ERR_WRONG_TYPE, "KEYGEN.keys", "KEYGEN keys=15");
    n = msg_keygen(mbuf, sizeof mbuf, 7, MK_TIME_MAX + 1);
    expect_error(MK_MSG_KEYGEN, mbuf, n, MK_ERR_WRONG_TYPE, "KEYGEN.time", "KEYGEN time after 9999");
    CHECK(F.writes == 0 && mk_device_state(&D) == MK_STATE_AUTHENTICATED, "bad KEYGENs change nothing");
    n = msg_keygen(mbuf, sizeof mbuf, 7, T_KEYGEN);
    flash_fault(MK_MSG_KEYGEN, mbuf, n, "KEYGEN flash failure");
    F.rng_fail = 1;
    expect_error(MK_MSG_KEYGEN, mbuf, n, MK_ERR_RNG, "random", "KEYGEN RNG failure");
    F.rng_fail = 0;
    CHECK(F.writes == 0 && F.flash_len == 0, "nothing written before KEYGEN succeeds");
    /* the retry path: the same seq and bytes get the same bytes back */
    CHECK(call(MK_MSG_KEYGEN, 200, mbuf, n) == 0 && read_keys(&base) == 0, "KEYGEN -> PUBKEYS (type %u)", out_type);
    CHECK(F.writes == 1 && mk_device_state(&D) == MK_STATE_KEYS_GENERATED, "KEYGEN written, KEYS_GENERATED");
    CHECK(profile_ok(&base, "2025-11-28T00:00:00.000Z"), "base Device Profile signed by the base key");
    {
        uint8_t first[MK_DEVICE_REPLY_MAX];
        size_t first_len = out_len;
        memcpy(first, out, out_len);
        CHECK(call(MK_MSG_KEYGEN, 200, mbuf, n) == 0 && out_len == first_len && memcmp(out, first, out_len) == 0,
              "KEYGEN retry: same reply bytes");
    }
    /* KEYGEN again (new seq, a new time): same base keys, the profile dated by this KEYGEN's time */
    n = msg_keygen(mbuf, sizeof mbuf, 7, T_KEYGEN + 999);
    CHECK(req(MK_MSG_KEYGEN, mbuf, n) == 0 && read_keys(&again) == 0, "KEYGEN again");
    CHECK(memcmp(again.sig, base.sig, 32) == 0 && memcmp(again.enc, base.enc, 33) == 0 &&
              memcmp(again.auth, base.auth, 33) == 0 && F.writes == 1,
          "KEYGEN again: same base keys, nothing written");
    CHECK(profile_ok(&again, "2025-11-28T00:16:39.000Z"), "KEYGEN again: profile dated by its message's time");
    CHECK(D.store.keygen_time == T_KEYGEN, "the first KEYGEN's time is recorded");
    CHECK(memcmp(base.sig, F.flash + 24, 32) != 0, "the public key is not the scalar");

    /* ---- wrong states with keys generated */
    n = msg_bstrs(mbuf, sizeof mbuf, (const uint8_t *)"x", 1, (const uint8_t *)"y", 1, 0, 0);
    expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_BAD_STATE, "INSTALL: not allowed in state 2", "INSTALL in KEYS_GENERATED");
    memset(digest, 0x5A, sizeof digest);
    commit_len = msg_bstrs(commit_msg, sizeof commit_msg, digest, 64, NULL, 0, 0, 0);
    expect_error(MK_MSG_COMMIT, commit_msg, commit_len, MK_ERR_BAD_STATE, "COMMIT: not allowed in state 2",
                 "COMMIT in KEYS_GENERATED");

    /* ---- COGEN: bad inputs, nothing stored */
    make_contribution(&k);
    cn = contribution_cbor(cbuf, sizeof cbuf, &k, 0);
    bn = seal(box, sizeof box, base.enc, "contribution", cbuf, cn);
    snapshot();
    box[bn - 1] ^= 1; /* tag */
    n = msg_bstrs(mbuf, sizeof mbuf, box, bn, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_DECRYPT_FAILED, "COGEN.contribution", "COGEN box with a bad tag");
    box[bn - 1] ^= 1;
    n = msg_bstrs(mbuf, sizeof mbuf, box, 40, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_DECRYPT_FAILED, NULL, "COGEN box shorter than its overhead");
    {
        size_t wn = seal(mbuf + 2000, 1000, base.enc, "config", cbuf, cn); /* wrong label */
        n = msg_bstrs(mbuf, 2000, mbuf + 2000, wn, NULL, 0, 1, T_COGEN);
        expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_DECRYPT_FAILED, NULL, "COGEN box with the config label");
    }
    /* expected keys differ */
    other = k;
    other.exp_auth[3] ^= 1;
    n = contribution_cbor(cbuf, sizeof cbuf, &other, 0);
    n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, n);
    n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_COGEN_MISMATCH, "composite authentication key differs",
                 "COGEN expected key differs");
    other = k;
    other.exp_sig[0] ^= 1;
    n = contribution_cbor(cbuf, sizeof cbuf, &other, 0);
    n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, n);
    n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_COGEN_MISMATCH, "composite signature key", "COGEN signature differs");
    /* non-canonical scalar (c = L) and zero scalar */
    other = k;
    memcpy(other.c[1], L_BYTES, 32);
    n = contribution_cbor(cbuf, sizeof cbuf, &other, 0);
    n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, n);
    n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_COGEN_MISMATCH, "COGEN.contribution.encryption: not a scalar",
                 "COGEN non-canonical contribution scalar");
    memset(other.c[1], 0, 32);
    n = contribution_cbor(cbuf, sizeof cbuf, &other, 0);
    n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, n);
    n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_COGEN_MISMATCH, "not a scalar", "COGEN zero contribution scalar");
    /* contribution = L - base: composite zero */
    other = k;
    {
        uint8_t neg[32], zero[32] = {0};
        crypto_core_ed25519_scalar_negate(neg, F.flash + 24);
        memcpy(other.c[0], neg, 32);
        (void)zero;
    }
    n = contribution_cbor(cbuf, sizeof cbuf, &other, 0);
    n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, n);
    n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_COGEN_MISMATCH, "scalar is zero", "COGEN composite scalar zero");
    /* malformed contribution CBOR */
    n = contribution_cbor(cbuf, sizeof cbuf, &k, 1);
    n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, n);
    n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_MISSING_FIELD, "COGEN.contribution.expected_authentication_key: missing",
                 "COGEN contribution without field 6");
    {
        static const uint8_t non_shortest[] = {0xA1, 0x18, 0x01, 0x41, 0x00}; /* {1: h'00'} with key as 0x18 0x01 */
        n = seal(mbuf + 2000, 1000, base.enc, "contribution", non_shortest, sizeof non_shortest);
        n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
        expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_CBOR_NONCANONICAL, "COGEN.contribution: CBOR not in canonical",
                     "COGEN contribution non-shortest");
    }
    {
        static const uint8_t not_map[] = {0x01};
        n = seal(mbuf + 2000, 1000, base.enc, "contribution", not_map, 1);
        n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
        expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_WRONG_TYPE, "COGEN.contribution: message is not a map",
                     "COGEN contribution not a map");
    }
    {
        mk_cbor_writer w;
        mk_cbor_writer_init(&w, cbuf, sizeof cbuf);
        mk_cbor_write_map(&w, 6);
        for (n = 1; n <= 6; n++) {
            mk_cbor_write_uint(&w, n);
            mk_cbor_write_bstr(&w, k.c[0], n == 2 ? 31u : 32u);
        }
        n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, w.len);
        n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
        expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_WRONG_TYPE, "COGEN.contribution.encryption: expected 32 bytes",
                     "COGEN contribution scalar of 31 bytes");
    }
    CHECK(unchanged(), "failed COGENs change nothing (RAM state and flash)");

    /* ---- COGEN */
    cogen_len = msg_bstrs(cogen_msg, sizeof cogen_msg, box, bn, NULL, 0, 1, T_COGEN);
    flash_fault(MK_MSG_COGEN, cogen_msg, cogen_len, "COGEN flash failure");
    CHECK(req(MK_MSG_COGEN, cogen_msg, cogen_len) == 0 && read_keys(&comp) == 0, "COGEN -> PROOF (type %u)", out_type);
    CHECK(mk_device_state(&D) == MK_STATE_COGENERATED, "COGENERATED");
    CHECK(memcmp(comp.sig, k.exp_sig, 32) == 0 && memcmp(comp.enc, k.exp_enc, 33) == 0 &&
              memcmp(comp.auth, k.exp_auth, 33) == 0,
          "PROOF keys are the expected composite keys");
    CHECK(memcmp(F.flash + 120, k.comp, sizeof k.comp) == 0, "composite scalars stored");
    CHECK(profile_ok(&comp, "2025-11-28T00:01:00.000Z"), "composite Device Profile signed by the composite key");
    {
        static const char ctx[] = "meshkit-cogen-proof-v1";
        uint8_t m[sizeof ctx + 64 + 98];
        memcpy(m, ctx, sizeof ctx);
        crypto_hash_sha512(m + sizeof ctx, box, bn);
        memcpy(m + sizeof ctx + 64, comp.sig, 32);
        memcpy(m + sizeof ctx + 96, comp.enc, 33);
        memcpy(m + sizeof ctx + 129, comp.auth, 33);
        CHECK(crypto_sign_verify_detached(comp.proof, m, sizeof m, comp.sig) == 0, "proof of possession verifies");
    }
    mk_key_udf_ed25519(comp_id, comp.sig);
    /* power cut between the flash write and the reply: a fresh device from the same flash answers the retry */
    power_cut();
    CHECK(mk_device_state(&D) == MK_STATE_COGENERATED, "after the power cut: COGENERATED from flash");
    session();
    CHECK(req(MK_MSG_COGEN, cogen_msg, cogen_len) == 0 && read_keys(&comp2) == 0, "COGEN after the power cut");
    CHECK(memcmp(comp2.sig, comp.sig, 32) == 0 && memcmp(comp2.enc, comp.enc, 33) == 0 &&
              memcmp(comp2.auth, comp.auth, 33) == 0 && profile_ok(&comp2, "2025-11-28T00:01:00.000Z"),
          "COGEN retry: the same composite keys");
    n = msg_keygen(mbuf, sizeof mbuf, 7, T_KEYGEN);
    CHECK(req(MK_MSG_KEYGEN, mbuf, n) == 0 && read_keys(&again) == 0 && memcmp(again.sig, base.sig, 32) == 0,
          "KEYGEN in COGENERATED: the base keys");
    /* another box in COGENERATED */
    make_contribution(&other); /* (from the base scalars: a valid but different contribution) */
    n = contribution_cbor(cbuf, sizeof cbuf, &other, 0);
    n = seal(mbuf + 2000, 1000, base.enc, "contribution", cbuf, n);
    n = msg_bstrs(mbuf, 2000, mbuf + 2000, n, NULL, 0, 1, T_COGEN);
    expect_error(MK_MSG_COGEN, mbuf, n, MK_ERR_BAD_STATE, "another contribution", "COGEN with another box");
    expect_error(MK_MSG_COMMIT, commit_msg, commit_len, MK_ERR_BAD_STATE, "COMMIT: not allowed in state 3",
                 "COMMIT in COGENERATED");

    /* ---- INSTALL: bad inputs */
    cfg_n = seal(cfg_box, sizeof cfg_box, comp.enc, "config", (const uint8_t *)config, strlen(config));
    snapshot();
    conn_n = connection(conn, sizeof conn, account, "MAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG", admin_pk, admin_sk, 0);
    n = msg_bstrs(mbuf, sizeof mbuf, conn, conn_n, cfg_box, cfg_n, 0, 0);
    expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_WRONG_DEVICE, "INSTALL.connection.device", "INSTALL for another device");
    {
        char base_id[MK_KEY_UDF_LEN + 1];
        mk_key_udf_ed25519(base_id, base.sig);
        conn_n = connection(conn, sizeof conn, account, base_id, admin_pk, admin_sk, 0);
        n = msg_bstrs(mbuf, sizeof mbuf, conn, conn_n, cfg_box, cfg_n, 0, 0);
        expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_WRONG_DEVICE, NULL, "INSTALL naming the base profile");
    }
    conn_n = connection(conn, sizeof conn, account, comp_id, admin_pk, admin_sk, 1);
    n = msg_bstrs(mbuf, sizeof mbuf, conn, conn_n, cfg_box, cfg_n, 0, 0);
    expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_BAD_SIGNATURE, "INSTALL.connection.signature", "forged admin signature");
    conn_n = connection(conn, sizeof conn, account, comp_id, admin_pk, admin_sk, 0);
    {
        /* the right connection with a config sealed to the base key, with a bad tag, too large */
        static uint8_t big[MK_MAX_CONFIG + 1], bigbox[MK_MAX_CONFIG + 100];
        size_t bb;
        bb = seal(bigbox, sizeof bigbox, base.enc, "config", (const uint8_t *)config, strlen(config));
        n = msg_bstrs(mbuf, sizeof mbuf, conn, conn_n, bigbox, bb, 0, 0);
        expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_DECRYPT_FAILED, "composite encryption key",
                     "config sealed to the base key");
        cfg_box[10] ^= 1;
        n = msg_bstrs(mbuf, sizeof mbuf, conn, conn_n, cfg_box, cfg_n, 0, 0);
        expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_DECRYPT_FAILED, "INSTALL.config", "config with a bad tag");
        cfg_box[10] ^= 1;
        memset(big, 'c', sizeof big);
        bb = seal(bigbox, sizeof bigbox, comp.enc, "config", big, sizeof big);
        n = msg_bstrs(mbuf, sizeof mbuf, conn, conn_n, bigbox, bb, 0, 0);
        expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_TOO_LARGE, "MAX_CONFIG", "config of 1025 bytes");
        bb = seal(bigbox, sizeof bigbox, comp.enc, "config", big, MK_MAX_CONFIG);
        CHECK(bb == MK_MAX_CONFIG + 48, "a 1024-byte config box");
    }
    {
        static const uint8_t junk[] = {0xA1, 0x01, 0x00};
        n = msg_bstrs(mbuf, sizeof mbuf, junk, sizeof junk, cfg_box, cfg_n, 0, 0);
        expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_WRONG_TYPE, "INSTALL.connection.account: expected tstr",
                     "connection with a uint account");
    }
    CHECK(unchanged(), "failed INSTALLs change nothing");

    /* ---- INSTALL */
    install_len = msg_bstrs(install_msg, sizeof install_msg, conn, conn_n, cfg_box, cfg_n, 0, 0);
    flash_fault(MK_MSG_INSTALL, install_msg, install_len, "INSTALL flash failure");
    CHECK(req(MK_MSG_INSTALL, install_msg, install_len) == 0 && out_type == MK_MSG_ACK &&
              reply_uint(1) == MK_STATE_INSTALLED,
          "INSTALL -> ACK{4} (type %u)", out_type);
    CHECK(D.store.config_len == strlen(config) && memcmp(D.store.config, config, strlen(config)) == 0 &&
              D.store.account_len == strlen(account) && memcmp(D.store.admin_key, admin_pk, 32) == 0,
          "config, account and admin key stored");
    power_cut();
    CHECK(mk_device_state(&D) == MK_STATE_INSTALLED && D.store.config_len == strlen(config), "INSTALLED from flash");
    session();
    CHECK(req(MK_MSG_INSTALL, install_msg, install_len) == 0 && out_type == MK_MSG_ACK, "INSTALL retry -> ACK");
    {
        size_t other_cfg = seal(cfg_box, sizeof cfg_box, comp.enc, "config", (const uint8_t *)"{}", 2);
        n = msg_bstrs(mbuf, sizeof mbuf, conn, conn_n, cfg_box, other_cfg, 0, 0);
        expect_error(MK_MSG_INSTALL, mbuf, n, MK_ERR_BAD_STATE, "already installed", "INSTALL of another config");
    }
    CHECK(req(MK_MSG_COGEN, cogen_msg, cogen_len) == 0 && out_type == MK_MSG_PROOF, "COGEN same box in INSTALLED");

    /* ---- COMMIT */
    n = msg_bstrs(mbuf, sizeof mbuf, digest, 32, NULL, 0, 0, 0);
    expect_error(MK_MSG_COMMIT, mbuf, n, MK_ERR_WRONG_TYPE, "COMMIT.record_digest: expected 64 bytes",
                 "record digest of 32 bytes");
    flash_fault(MK_MSG_COMMIT, commit_msg, commit_len, "COMMIT flash failure");
    CHECK(req(MK_MSG_COMMIT, commit_msg, commit_len) == 0 && out_type == MK_MSG_RECEIPT &&
              reply_bstr(1, &p, &n) == 0 && n == 64,
          "COMMIT -> RECEIPT");
    memcpy(receipt_sig, p, 64);
    {
        uint8_t m[19 + 64];
        memcpy(m, "meshkit-receipt-v1", 19);
        memcpy(m + 19, digest, 64);
        CHECK(crypto_sign_verify_detached(receipt_sig, m, sizeof m, comp.sig) == 0,
              "receipt verifies under the composite signature key");
        power_cut();
        CHECK(mk_device_state(&D) == MK_STATE_COMMITTED, "COMMITTED from flash");
        session();
        CHECK(req(MK_MSG_COMMIT, commit_msg, commit_len) == 0 && out_type == MK_MSG_RECEIPT &&
                  reply_bstr(1, &p, &n) == 0 && n == 64 && crypto_sign_verify_detached(p, m, sizeof m, comp.sig) == 0,
              "COMMIT retry after a power cut -> a receipt that verifies");
    }
    memcpy(digest2, digest, 64);
    digest2[63] ^= 1;
    n = msg_bstrs(mbuf, sizeof mbuf, digest2, 64, NULL, 0, 0, 0);
    expect_error(MK_MSG_COMMIT, mbuf, n, MK_ERR_BAD_STATE, "another record digest", "COMMIT another digest");
    n = msg_bstrs(mbuf, sizeof mbuf, (const uint8_t *)"x", 0, NULL, 0, 0, 0);
    {
        mk_cbor_writer w;
        mk_cbor_writer_init(&w, mbuf, sizeof mbuf);
        mk_cbor_write_map(&w, 1);
        mk_cbor_write_uint(&w, 1);
        mk_cbor_write_tstr(&w, ID.serial, strlen(ID.serial));
        snapshot();
        expect_error(MK_MSG_RESET, mbuf, w.len, MK_ERR_BAD_STATE, "RESET: not allowed in state 5", "RESET in COMMITTED");
        CHECK(unchanged(), "COMMITTED device not reset");
    }
    CHECK(req(MK_MSG_INSTALL, install_msg, install_len) == 0 && out_type == MK_MSG_ACK, "INSTALL same in COMMITTED");
    n = msg_keygen(mbuf, sizeof mbuf, 7, T_KEYGEN);
    CHECK(req(MK_MSG_KEYGEN, mbuf, n) == 0 && read_keys(&again) == 0 && memcmp(again.sig, base.sig, 32) == 0,
          "KEYGEN in COMMITTED: the base keys");

    /* unauthenticated session: every enrollment request refused */
    CHECK(req(MK_MSG_HELLO, HELLO_V1, sizeof HELLO_V1) == 0, "HELLO without BENCH_AUTH");
    expect_error(MK_MSG_KEYGEN, mbuf, n, MK_ERR_NOT_AUTHENTICATED, NULL, "KEYGEN unauthenticated");
    expect_error(MK_MSG_COGEN, cogen_msg, cogen_len, MK_ERR_NOT_AUTHENTICATED, NULL, "COGEN unauthenticated");
    expect_error(MK_MSG_INSTALL, install_msg, install_len, MK_ERR_NOT_AUTHENTICATED, NULL, "INSTALL unauthenticated");
    expect_error(MK_MSG_COMMIT, commit_msg, commit_len, MK_ERR_NOT_AUTHENTICATED, NULL, "COMMIT unauthenticated");
    mk_device_wipe(&D);
    sodium_memzero(admin_sk, sizeof admin_sk);
    mk_wipe(&k, sizeof k);
    mk_wipe(&other, sizeof other);
}

static size_t reset_msg(uint8_t *b, size_t cap, const char *serial)
{
    mk_cbor_writer w;
    mk_cbor_writer_init(&w, b, cap);
    mk_cbor_write_map(&w, 1);
    mk_cbor_write_uint(&w, 1);
    mk_cbor_write_tstr(&w, serial, strlen(serial));
    return w.len;
}

static void test_reset(void)
{
    keyset a, b;
    uint8_t m[100], kg[20];
    size_t n, kn;
    size_t i;
    fake_reset();
    F.real_rng = 1;
    init_device();
    memset(&BENCH, 0, sizeof BENCH);
    BENCH.rng_fill = bench_rng;
    /* RESET in FACTORY (unauthenticated first) */
    CHECK(req(MK_MSG_HELLO, HELLO_V1, sizeof HELLO_V1) == 0, "HELLO");
    n = reset_msg(m, sizeof m, ID.serial);
    expect_error(MK_MSG_RESET, m, n, MK_ERR_NOT_AUTHENTICATED, NULL, "RESET unauthenticated");
    session();
    n = reset_msg(m, sizeof m, "SN-000124");
    expect_error(MK_MSG_RESET, m, n, MK_ERR_WRONG_DEVICE, "RESET.serial", "RESET with a wrong serial");
    n = reset_msg(m, sizeof m, "SN-00012");
    expect_error(MK_MSG_RESET, m, n, MK_ERR_WRONG_DEVICE, NULL, "RESET with a serial prefix");
    {
        static const uint8_t as_bstr[] = {0xA1, 0x01, 0x41, 'S'};
        expect_error(MK_MSG_RESET, as_bstr, sizeof as_bstr, MK_ERR_WRONG_TYPE, "RESET.serial: expected tstr",
                     "RESET serial as bstr");
    }
    kn = msg_keygen(kg, sizeof kg, 7, T_KEYGEN);
    CHECK(req(MK_MSG_KEYGEN, kg, kn) == 0 && read_keys(&a) == 0, "KEYGEN");
    n = reset_msg(m, sizeof m, ID.serial);
    flash_fault(MK_MSG_RESET, m, n, "RESET flash failure");
    CHECK(req(MK_MSG_RESET, m, n) == 0 && out_type == MK_MSG_ACK && reply_uint(1) == MK_STATE_AUTHENTICATED,
          "RESET -> ACK{AUTHENTICATED}");
    CHECK(mk_device_state(&D) == MK_STATE_AUTHENTICATED && D.store.state == MK_STATE_FACTORY, "FACTORY again");
    {
        int nz = 0;
        for (i = 24; i < 570; i++) nz |= F.flash[i];
        CHECK(nz == 0 && F.flash_len == 574, "every scalar and digest wiped in flash");
        nz = 0;
        for (i = 0; i < sizeof D.store.base; i++) nz |= ((const uint8_t *)D.store.base)[i];
        CHECK(nz == 0, "scalars wiped in RAM");
    }
    CHECK(req(MK_MSG_KEYGEN, kg, kn) == 0 && read_keys(&b) == 0, "KEYGEN after RESET");
    CHECK(memcmp(a.sig, b.sig, 32) != 0 && memcmp(a.enc, b.enc, 33) != 0, "new keys after RESET");
    CHECK(req(MK_MSG_RESET, m, n) == 0 && out_type == MK_MSG_ACK, "RESET in KEYS_GENERATED");
    mk_device_wipe(&D);
}

/* The whole enrollment on the host platform (file-backed flash, libsodium RNG): the state file holds the bigger
 * blob, and a second device reading the same file answers from it. */
static void test_enrollment_on_host(const char *tmpdir)
{
    mk_platform hp;
    mk_host_platform hctx;
    char path[512];
    uint8_t pk[32], sk[64], sig[64], ba[200], m[600], boxb[400], c[300];
    keyset base, comp, comp2;
    contribution k;
    info in;
    size_t n, bn;
    mk_cbor_writer w;
    int round;

    snprintf(path, sizeof path, "%s/test_device_enroll.bin", tmpdir);
    unlink(path);
    crypto_sign_keypair(pk, sk);
    CHECK(mk_host_platform_init(&hp, &hctx, path, pk) == 0, "host platform");
    for (round = 0; round < 2; round++) {
        CHECK(mk_device_init(&D, &hp, &ID) == 0, "device on the host platform (round %d)", round);
        CHECK(req(MK_MSG_HELLO, HELLO_V1, sizeof HELLO_V1) == 0 && parse_info(&in) == 0, "HELLO");
        crypto_sign_detached(sig, NULL, in.challenge, 32, sk);
        mk_cbor_writer_init(&w, ba, sizeof ba);
        mk_cbor_write_map(&w, 3);
        mk_cbor_write_uint(&w, 1);
        mk_cbor_write_bstr(&w, in.challenge, 32);
        mk_cbor_write_uint(&w, 2);
        mk_cbor_write_bstr(&w, pk, 32);
        mk_cbor_write_uint(&w, 3);
        mk_cbor_write_bstr(&w, sig, 64);
        CHECK(req(MK_MSG_BENCH_AUTH, ba, w.len) == 0 && out_type == MK_MSG_BENCH_AUTH_OK, "BENCH_AUTH (host)");
        n = msg_keygen(m, sizeof m, 7, T_KEYGEN);
        CHECK(req(MK_MSG_KEYGEN, m, n) == 0 && read_keys(round == 0 ? &base : &comp2) == 0, "KEYGEN (host)");
        if (round == 1) {
            CHECK(memcmp(comp2.sig, base.sig, 32) == 0, "the same base keys read back from the state file");
            break;
        }
        /* the test's bench needs the base scalars: load them from the file into the fake flash buffer */
        {
            size_t len = 0;
            CHECK(hp.flash_read(hp.ctx, F.flash, sizeof F.flash, &len) == 0 && len == 574, "state file of %zu bytes",
                  len);
        }
        make_contribution(&k);
        n = contribution_cbor(c, sizeof c, &k, 0);
        bn = seal(boxb, sizeof boxb, base.enc, "contribution", c, n);
        n = msg_bstrs(m, sizeof m, boxb, bn, NULL, 0, 1, T_COGEN);
        CHECK(req(MK_MSG_COGEN, m, n) == 0 && read_keys(&comp) == 0 && memcmp(comp.sig, k.exp_sig, 32) == 0,
              "COGEN (host)");
        mk_device_wipe(&D);
    }
    mk_device_wipe(&D);
    mk_wipe(&k, sizeof k);
    memset(F.flash, 0, sizeof F.flash);
    sodium_memzero(sk, sizeof sk);
    unlink(path);
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
    test_enrollment();
    test_reset();
    test_enrollment_on_host(tmpdir);
    printf("test_device: %d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
