/*
 * mk_frame.h - device-side framing of the meshkit device protocol (portable C99).
 *
 * Serial link: COBS-encoded frames ending in one 0x00 byte; decoded, a frame is
 *   version(1) | type(1) | seq(1) | flags(1) | length(2, BE) | payload(length) | CRC-32C(4, BE)
 * with flags bit 0 = more fragments follow and bits 1-7 = fragment index (0-7).
 * A message of up to MK_MAX_MESSAGE bytes is split into up to 8 fragments: full
 * MK_MAX_FRAME_PAYLOAD-byte fragments, then the rest (the receiver accepts any fragment sizes).
 * HID link: 64-byte CTAPHID-style init / continuation reports.
 * Spec: docs/protocol-framing.md.
 *
 * Caller-owned buffers only, no malloc, no global state. Functions return 0 (or a
 * documented positive status) on success and a negated status code of meshkit_protocol.h
 * (-MK_ERR_BAD_CRC ...) on failure; "MK_ERR_X" below means the return value -MK_ERR_X.
 */
#ifndef MK_FRAME_H
#define MK_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "meshkit_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MK_FRAME_VERSION MK_PROTOCOL_VERSION
#define MK_FRAME_HEADER_LEN 6u
#define MK_FRAME_CRC_LEN 4u
#define MK_FRAME_FLAG_MORE 0x01u
/* Smallest and largest decoded (raw) frame. */
#define MK_FRAME_RAW_MIN (MK_FRAME_HEADER_LEN + MK_FRAME_CRC_LEN)
#define MK_FRAME_RAW_MAX (MK_FRAME_HEADER_LEN + MK_MAX_FRAME_PAYLOAD + MK_FRAME_CRC_LEN)
/* COBS output size for n input bytes (no delimiter): n + 1 + n/254. */
#define MK_COBS_MAX_ENCODED(n) ((n) + 1u + (n) / 254u)
/* Largest encoded frame on the wire, delimiter included (MK_MAX_ENCODED_FRAME + 1 = 526 bytes). */
#define MK_FRAME_WIRE_MAX (MK_MAX_ENCODED_FRAME + 1u)
/* Wire bytes needed for a whole message of n bytes (n <= MK_MAX_MESSAGE). */
#define MK_MESSAGE_WIRE_MAX(n) \
    ((((n) + MK_MAX_FRAME_PAYLOAD - 1u) / MK_MAX_FRAME_PAYLOAD + ((n) == 0u)) * MK_FRAME_WIRE_MAX)

/* Positive status of the streaming decoders: a whole message is ready. */
#define MK_FRAME_MESSAGE_READY 1

/* ---- CRC-32C (Castagnoli, reflected, init and final xor 0xFFFFFFFF) ---- */

/* CRC-32C of len bytes. mk_crc32c("123456789", 9) == 0xE3069283. */
uint32_t mk_crc32c(const uint8_t *data, size_t len);
/* Incremental form: start with crc = 0, feed pieces; the result equals mk_crc32c of the concatenation. */
uint32_t mk_crc32c_update(uint32_t crc, const uint8_t *data, size_t len);

/* ---- COBS (Cheshire & Baker); no delimiter byte is written or expected ---- */

/* Encode in[0..in_len) into out (capacity out_cap). A run of 254 non-zero bytes that ends the input is
 * not followed by an extra 0x01 code byte. Returns 0, or MK_ERR_TOO_LARGE if out_cap is too small. */
int mk_cobs_encode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);
/* Decode in[0..in_len) (the bytes between two 0x00 delimiters) into out. Also accepts the paper's form
 * with a trailing 0x01 block after a final 254-byte run (same data). Returns 0; MK_ERR_BAD_LENGTH for
 * empty input, a 0x00 byte inside or a code byte that runs past the end; MK_ERR_TOO_LARGE if out_cap is
 * too small. out may not overlap in. */
int mk_cobs_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);

/* ---- serial frames ---- */

/* Encode one frame (COBS + trailing 0x00) into out. flags holds the more bit and fragment index
 * (index << 1 | more); payload_len <= MK_MAX_FRAME_PAYLOAD. Returns 0, MK_ERR_TOO_LARGE (payload or
 * out_cap), or MK_ERR_FRAGMENT_ORDER (index > 7). */
int mk_frame_encode(uint8_t type, uint8_t seq, uint8_t flags, const uint8_t *payload, size_t payload_len,
                    uint8_t *out, size_t out_cap, size_t *out_len);

/* Number of frames a message of msg_len bytes needs (1 for an empty message), or 0 if msg_len > MK_MAX_MESSAGE. */
size_t mk_message_fragment_count(size_t msg_len);

/* Encode fragment `index` of a message (index < mk_message_fragment_count(msg_len)) as one wire frame. */
int mk_message_encode_fragment(uint8_t type, uint8_t seq, const uint8_t *msg, size_t msg_len, size_t index,
                               uint8_t *out, size_t out_cap, size_t *out_len);

/* Encode a whole message as consecutive wire frames into out (MK_MESSAGE_WIRE_MAX(msg_len) bytes always
 * suffice). Returns 0 or MK_ERR_TOO_LARGE (message over MK_MAX_MESSAGE, or out_cap too small). */
int mk_message_encode(uint8_t type, uint8_t seq, const uint8_t *msg, size_t msg_len, uint8_t *out,
                      size_t out_cap, size_t *out_len);

/* Streaming receiver: feed wire bytes; COBS is undone on the fly, the payload goes straight into the
 * caller's reassembly buffer. Public so that the caller can allocate it; treat fields as read-only. */
typedef struct mk_frame_decoder {
    uint8_t *buf;      /* caller-owned reassembly buffer */
    size_t cap;        /* its capacity (MK_MAX_MESSAGE for every message) */
    size_t msg_len;    /* bytes of the message reassembled so far / length of the ready message */
    uint8_t type;      /* type of the message in progress / ready */
    uint8_t seq;       /* seq of the message in progress / ready */
    uint8_t next_index;/* index of the next expected fragment */
    uint8_t in_message;/* 1 while fragments 0..next_index-1 have been accepted */
    uint8_t ready;     /* 1 after MK_FRAME_MESSAGE_READY until the next byte */
    /* frame in progress (decoded bytes) */
    uint8_t cobs_code; /* current COBS code byte, 0 = expecting a code byte */
    uint8_t cobs_left; /* data bytes left in the current COBS block */
    uint8_t overlong;  /* the frame exceeded MK_MAX_ENCODED_FRAME encoded bytes */
    uint8_t cobs_bad;  /* invalid COBS seen */
    size_t enc_len;    /* encoded bytes of this frame so far (at most MK_MAX_ENCODED_FRAME) */
    size_t raw_len;    /* decoded bytes of this frame so far (< MK_MAX_ENCODED_FRAME) */
    uint8_t head[MK_FRAME_HEADER_LEN];
    uint8_t tail[MK_FRAME_CRC_LEN]; /* last 4 decoded bytes (delay line; CRC candidates) */
    uint32_t crc;      /* running CRC over the bytes that left the delay line */
} mk_frame_decoder;

/* Prepare a decoder over a caller-owned reassembly buffer. Returns 0 or MK_ERR_BAD_LENGTH if buf is NULL
 * with cap > 0. */
int mk_frame_decoder_init(mk_frame_decoder *d, uint8_t *buf, size_t cap);
/* Drop any partial frame and message. */
void mk_frame_decoder_reset(mk_frame_decoder *d);
/* Feed one wire byte. Returns 0 (need more), MK_FRAME_MESSAGE_READY (the message is in d->buf[0..d->msg_len),
 * with d->type and d->seq; valid until the next byte is fed), or a negative MK_ERR_* when a frame was dropped
 * at its delimiter (the partial message, if any, is dropped too). Empty frames (0x00 0x00) are ignored. */
int mk_frame_decoder_byte(mk_frame_decoder *d, uint8_t byte);
/* Feed bytes until a message is ready or a frame is dropped; *consumed says how many bytes were used.
 * Returns as mk_frame_decoder_byte (0 when all bytes were used without an event). */
int mk_frame_decoder_push(mk_frame_decoder *d, const uint8_t *data, size_t len, size_t *consumed);

/* ---- HID reports (CTAPHID style) ---- */

#define MK_HID_MAX_SEQ 127u
/* Reports a message of n bytes needs (n <= MK_MAX_MESSAGE). */
#define MK_HID_REPORT_COUNT(n) \
    (1u + ((n) > MK_HID_INIT_DATA ? ((n) - MK_HID_INIT_DATA + MK_HID_CONT_DATA - 1u) / MK_HID_CONT_DATA : 0u))

/* Encode report `index` (0 = init, i >= 1 = continuation SEQ i-1) of a message into report[64].
 * type must be < 0x80. Returns 0, MK_ERR_TOO_LARGE (msg_len > MK_MAX_MESSAGE) or MK_ERR_BAD_LENGTH
 * (index out of range, type >= 0x80). */
int mk_hid_encode_report(uint32_t cid, uint8_t type, const uint8_t *msg, size_t msg_len, size_t index,
                         uint8_t report[MK_HID_REPORT_SIZE]);
/* Encode all reports of a message back to back into out (MK_HID_REPORT_COUNT(msg_len) * 64 bytes). */
int mk_hid_encode(uint32_t cid, uint8_t type, const uint8_t *msg, size_t msg_len, uint8_t *out, size_t out_cap,
                  size_t *out_len);

typedef struct mk_hid_reassembler {
    uint8_t *buf;        /* caller-owned */
    size_t cap;
    size_t msg_len;      /* BCNT of the message in progress / ready */
    size_t got;          /* bytes received so far */
    uint32_t cid;        /* the expected channel id (may be changed between messages) */
    uint8_t type;        /* message type (CMD & 0x7F) */
    uint8_t next_seq;
    uint8_t active;      /* a message is in progress */
} mk_hid_reassembler;

/* Prepare a reassembler for channel `cid` over a caller-owned buffer. Returns 0 or MK_ERR_BAD_LENGTH. */
int mk_hid_reassembler_init(mk_hid_reassembler *r, uint8_t *buf, size_t cap, uint32_t cid);
/* Feed one report of len bytes (must be MK_HID_REPORT_SIZE). Returns 0 (need more), MK_FRAME_MESSAGE_READY
 * (r->buf[0..r->msg_len), r->type; valid until the next report), or a negative error:
 *   MK_ERR_BAD_CHANNEL     a report with another CID (ignored; a message in progress is kept);
 *   MK_ERR_BAD_LENGTH      len != 64, or a non-zero byte after the end of the data (more data than BCNT);
 *   MK_ERR_FRAGMENT_ORDER  a continuation with no message in progress, a SEQ out of order, or an init
 *                          report while a message is in progress;
 *   MK_ERR_TOO_LARGE       BCNT > MK_MAX_MESSAGE or > cap.
 * Every error but BAD_CHANNEL drops the message in progress (and the offending report). */
int mk_hid_reassembler_push(mk_hid_reassembler *r, const uint8_t *report, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MK_FRAME_H */
