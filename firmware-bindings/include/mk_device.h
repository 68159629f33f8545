/*
 * mk_device.h - the meshkit device: message handlers and state machine (portable C99).
 *
 * mk_device_handle is a pure request -> reply function over caller buffers: the transport (serial frames, HID
 * reports) reassembles a request message, passes its type, seq and CBOR bytes, and sends back the reply type and
 * bytes with the same seq. Every failure the host should hear about is a reply ERROR{code, detail}; only caller
 * mistakes (NULL pointers, a too small reply buffer) are negative returns.
 *
 * Requests (docs/enrollment.md is the contract, byte for byte): HELLO -> INFO (a fresh 32-byte challenge per
 * session), BENCH_AUTH -> BENCH_AUTH_OK through the platform's bench_verify hook, KEYGEN -> PUBKEYS (three raw
 * scalars made on the device and the base Device Profile), COGEN -> PROOF (the sealed bench contribution opened
 * with the base encryption key, composite keys checked against the expected ones, proof of possession and the
 * composite Device Profile), INSTALL -> ACK (admin-signed connection naming this device, configuration sealed to
 * the composite encryption key), COMMIT -> RECEIPT (signature over the record digest), RESET -> ACK (back to
 * FACTORY unless COMMITTED). Every transition is written to flash (one atomic blob, versioned, CRC-32C) before the
 * reply is built, and a flash failure leaves the state in RAM and in flash unchanged (ERROR{FLASH}). Repeating a
 * step answers from the stored state (same keys; KEYGEN/COGEN/INSTALL/COMMIT with other inputs -> BAD_STATE).
 * Secret scalars live in the device struct (the key store) and are wiped from the stack on every path.
 *
 * Order of checks for a request:
 *   1. the same (type, seq, bytes) as the previous request -> the previous reply again, byte for byte;
 *   2. a type that is not a host -> device request -> UNKNOWN_MESSAGE;
 *   3. the message must be one item of the CBOR subset (mk_cbor_validate) -> CBOR_INVALID / CBOR_NONCANONICAL,
 *      a map -> WRONG_TYPE, its required fields present -> MISSING_FIELD and of the right type -> WRONG_TYPE
 *      (detail names the field, e.g. "HELLO.version: expected uint");
 *   4. state: BENCH_AUTH before HELLO, or a request not allowed in the device's state (the table of
 *      docs/enrollment.md) -> BAD_STATE; KEYGEN, COGEN, INSTALL, COMMIT, RESET without BENCH_AUTH in this session
 *      -> NOT_AUTHENTICATED;
 *   5. the handler (its own checks: field lengths, idempotence against the stored digests, crypto, flash).
 *
 * No malloc, no global state; one mk_device per device, not thread-safe.
 */
#ifndef MK_DEVICE_H
#define MK_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "meshkit_protocol.h"
#include "mk_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MK_DEVICE_CHALLENGE_LEN 32u
/* Longest model, serial and firmware strings (bytes of UTF-8). */
#define MK_DEVICE_IDENTITY_MAX 64u
/* Largest reply kept for retries; every reply of this firmware fits. */
#ifndef MK_DEVICE_REPLY_CACHE
#define MK_DEVICE_REPLY_CACHE MK_MAX_MESSAGE
#endif
/* Longest account (Master Profile identifier) and device identifier a connection may carry (bytes). */
#define MK_DEVICE_ACCOUNT_MAX 128u
#define MK_DEVICE_ID_MAX 64u
/* Scratch space of the device (flash blob, decrypted configuration, Device Profile payload). */
#define MK_DEVICE_WORK MK_PLATFORM_STATE_MAX

/* The persistent state, as loaded from and written to flash (see mk_device.c for the blob layout). */
typedef struct mk_device_store {
    uint8_t state;
    uint64_t keygen_time;  /* KEYGEN.time of the KEYGEN that made the keys (a record; replies use each message's) */
    uint64_t cogen_time;   /* COGEN.time of the accepted COGEN (a record) */
    uint8_t base[3][32];   /* base scalars: signature, encryption, authentication (secret) */
    uint8_t comp[3][32];   /* composite scalars (secret) */
    uint8_t cogen_digest[32];   /* SHA-512(contribution box)[0..32] */
    uint8_t install_digest[32]; /* SHA-512(connection || config)[0..32] */
    uint8_t record_digest[64];  /* COMMIT.record_digest */
    uint8_t admin_key[32];
    uint8_t account_len;
    uint8_t device_id_len;
    uint16_t config_len;
    char account[MK_DEVICE_ACCOUNT_MAX];
    char device_id[MK_DEVICE_ID_MAX]; /* the composite Device Profile identifier */
    uint8_t config[MK_MAX_CONFIG];
} mk_device_store;
/* A reply buffer of this size always suffices. */
#define MK_DEVICE_REPLY_MAX MK_DEVICE_REPLY_CACHE

/* Who the device is. The strings are NUL-terminated UTF-8 of at most MK_DEVICE_IDENTITY_MAX bytes; the device
 * keeps the pointers, so they must outlive it. transports: MK_CAP_SERIAL and/or MK_CAP_HID, reported in
 * INFO.capabilities. */
typedef struct mk_device_identity {
    const char *model;
    const char *serial;
    const char *firmware;
    uint32_t transports;
} mk_device_identity;

/* Public so that the caller can allocate it; treat as opaque. */
typedef struct mk_device {
    mk_platform platform;
    mk_device_identity id;
    uint8_t state;         /* persistent state (never MK_STATE_AUTHENTICATED); equals store.state */
    uint8_t session;       /* 1 after HELLO */
    uint8_t authenticated; /* 1 after BENCH_AUTH in this session */
    uint8_t challenge[MK_DEVICE_CHALLENGE_LEN];
    /* the previous exchange, for retries */
    uint8_t have_last;
    uint8_t last_type;
    uint8_t last_seq;
    uint8_t last_reply_type;
    uint32_t last_request_crc;
    size_t last_request_len;
    size_t last_reply_len;
    uint8_t last_reply[MK_DEVICE_REPLY_CACHE];
    mk_device_store store;
    uint8_t work[MK_DEVICE_WORK]; /* scratch; wiped after each request */
} mk_device;

/* Initialise dev: check the platform (every required hook set) and identity, and load the persistent state from
 * the platform's state blob (an empty store is a factory-fresh device). Returns 0; -MK_ERR_BAD_LENGTH for a NULL
 * argument, a missing hook, or an identity string that is NULL, too long or not UTF-8; -MK_ERR_FLASH when the
 * blob cannot be read or is corrupt (bad magic, version, length, CRC, state or an invalid stored scalar). */
int mk_device_init(mk_device *dev, const mk_platform *platform, const mk_device_identity *identity);

/* Handle one request message (type, seq, msg[0..len)) and write the reply into out (capacity cap):
 * *out_type is the reply message type (MK_MSG_ERROR for a failure), *out_len its length. Returns 0 whenever a
 * reply was written (ERROR replies included); -MK_ERR_BAD_LENGTH for NULL pointers (msg may be NULL when
 * len == 0); -MK_ERR_TOO_LARGE when cap is smaller than the reply (MK_DEVICE_REPLY_MAX always suffices). */
int mk_device_handle(mk_device *dev, uint8_t type, uint8_t seq, const uint8_t *msg, size_t len, uint8_t *out,
                     size_t cap, uint8_t *out_type, size_t *out_len);

/* The state INFO reports: the persistent state, or MK_STATE_AUTHENTICATED for a FACTORY device whose bench
 * authenticated in this session. */
uint8_t mk_device_state(const mk_device *dev);

/* Forget the session (as after a reset or unplug): no challenge, not authenticated, no cached reply. */
void mk_device_end_session(mk_device *dev);

/* Wipe every secret the device holds in RAM (before it is freed); the stored blob is untouched. */
void mk_device_wipe(mk_device *dev);

#ifdef __cplusplus
}
#endif

#endif /* MK_DEVICE_H */
