/*
 * mk_frame.c - CRC-32C, COBS, serial frames with fragmentation, streaming frame decoder, HID reports.
 * See mk_frame.h and docs/protocol-framing.md. No malloc, no globals beyond a const table.
 */
#include "mk_frame.h"

#include <string.h>

/* ---------------------------------------------------------------- CRC-32C */

/* Half-byte table for the reflected Castagnoli polynomial 0x82F63B78 (64 bytes of flash). */
static const uint32_t crc32c_nibble[16] = {
    0x00000000u, 0x105EC76Fu, 0x20BD8EDEu, 0x30E349B1u, 0x417B1DBCu, 0x5125DAD3u, 0x61C69362u, 0x7198540Du,
    0x82F63B78u, 0x92A8FC17u, 0xA24BB5A6u, 0xB21572C9u, 0xC38D26C4u, 0xD3D3E1ABu, 0xE330A81Au, 0xF36E6F75u,
};

static uint32_t crc32c_raw(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc32c_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ crc32c_nibble[crc & 0x0Fu];
    }
    return crc;
}

uint32_t mk_crc32c_update(uint32_t crc, const uint8_t *data, size_t len)
{
    if (data == NULL) {
        return crc;
    }
    return crc32c_raw(crc ^ 0xFFFFFFFFu, data, len) ^ 0xFFFFFFFFu;
}

uint32_t mk_crc32c(const uint8_t *data, size_t len)
{
    return mk_crc32c_update(0, data, len);
}

static void put_be16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---------------------------------------------------------------- COBS */

/* Incremental COBS encoder writing into a bounded buffer. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;      /* next free byte */
    size_t code_pos; /* where the current block's code byte goes */
    uint8_t code;
    int err;
} cobs_enc;

static void cobs_enc_start(cobs_enc *e, uint8_t *out, size_t cap)
{
    e->out = out;
    e->cap = cap;
    e->code = 1;
    e->err = 0;
    e->code_pos = 0;
    e->pos = 1;
    if (cap < 1) {
        e->err = -MK_ERR_TOO_LARGE;
    }
}

/* Close the current block and open a new one (the caller knows more input follows). */
static void cobs_enc_next_block(cobs_enc *e)
{
    e->out[e->code_pos] = e->code;
    e->code = 1;
    if (e->pos >= e->cap) {
        e->err = -MK_ERR_TOO_LARGE;
        return;
    }
    e->code_pos = e->pos++;
}

/* Feed one byte; `last` says whether it is the final input byte. */
static void cobs_enc_put(cobs_enc *e, uint8_t b, int last)
{
    if (e->err != 0) {
        return;
    }
    if (b == 0) {
        cobs_enc_next_block(e);
        return;
    }
    if (e->pos >= e->cap) {
        e->err = -MK_ERR_TOO_LARGE;
        return;
    }
    e->out[e->pos++] = b;
    e->code++;
    if (e->code == 0xFF) {
        if (last) {
            /* canonical: no extra 0x01 block after a final 254-byte run */
            e->out[e->code_pos] = e->code;
            e->code = 0;
        } else {
            cobs_enc_next_block(e);
        }
    }
}

static int cobs_enc_finish(cobs_enc *e, size_t *out_len)
{
    if (e->err != 0) {
        return e->err;
    }
    if (e->code != 0) {
        e->out[e->code_pos] = e->code;
    }
    *out_len = e->pos;
    return 0;
}

int mk_cobs_encode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    cobs_enc e;
    size_t i;
    if ((in == NULL && in_len > 0) || out == NULL || out_len == NULL) {
        return -MK_ERR_BAD_LENGTH;
    }
    cobs_enc_start(&e, out, out_cap);
    for (i = 0; i < in_len && e.err == 0; i++) {
        cobs_enc_put(&e, in[i], i + 1 == in_len);
    }
    return cobs_enc_finish(&e, out_len);
}

int mk_cobs_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t i = 0, o = 0;
    if (in == NULL || out_len == NULL || (out == NULL && out_cap > 0) || in_len == 0) {
        return -MK_ERR_BAD_LENGTH;
    }
    while (i < in_len) {
        uint8_t code = in[i++];
        size_t k, n;
        if (code == 0) {
            return -MK_ERR_BAD_LENGTH;
        }
        n = (size_t)code - 1u;
        if (n > in_len - i) {
            return -MK_ERR_BAD_LENGTH;
        }
        for (k = 0; k < n; k++) {
            if (in[i + k] == 0) {
                return -MK_ERR_BAD_LENGTH;
            }
            if (o >= out_cap) {
                return -MK_ERR_TOO_LARGE;
            }
            out[o++] = in[i + k];
        }
        i += n;
        if (i < in_len && code != 0xFF) {
            if (o >= out_cap) {
                return -MK_ERR_TOO_LARGE;
            }
            out[o++] = 0;
        }
    }
    *out_len = o;
    return 0;
}

/* ---------------------------------------------------------------- frame encoding */

int mk_frame_encode(uint8_t type, uint8_t seq, uint8_t flags, const uint8_t *payload, size_t payload_len,
                    uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint8_t head[MK_FRAME_HEADER_LEN];
    uint8_t crc_be[MK_FRAME_CRC_LEN];
    uint32_t crc;
    cobs_enc e;
    size_t i, enc_len = 0;
    int rc;

    if (out == NULL || out_len == NULL || (payload == NULL && payload_len > 0)) {
        return -MK_ERR_BAD_LENGTH;
    }
    if (payload_len > MK_MAX_FRAME_PAYLOAD) {
        return -MK_ERR_TOO_LARGE;
    }
    if ((flags >> 1) >= MK_MAX_FRAGMENTS) {
        return -MK_ERR_FRAGMENT_ORDER;
    }
    head[0] = (uint8_t)MK_FRAME_VERSION;
    head[1] = type;
    head[2] = seq;
    head[3] = flags;
    put_be16(head + 4, (unsigned)payload_len);
    crc = mk_crc32c_update(0, head, sizeof head);
    crc = mk_crc32c_update(crc, payload, payload_len);
    put_be32(crc_be, crc);

    if (out_cap < 1) {
        return -MK_ERR_TOO_LARGE;
    }
    cobs_enc_start(&e, out, out_cap - 1u); /* keep one byte for the delimiter */
    for (i = 0; i < sizeof head; i++) {
        cobs_enc_put(&e, head[i], 0);
    }
    for (i = 0; i < payload_len; i++) {
        cobs_enc_put(&e, payload[i], 0);
    }
    for (i = 0; i < sizeof crc_be; i++) {
        cobs_enc_put(&e, crc_be[i], i + 1 == sizeof crc_be);
    }
    rc = cobs_enc_finish(&e, &enc_len);
    if (rc != 0) {
        return rc;
    }
    out[enc_len] = 0x00;
    *out_len = enc_len + 1u;
    return 0;
}

size_t mk_message_fragment_count(size_t msg_len)
{
    if (msg_len > MK_MAX_MESSAGE) {
        return 0;
    }
    if (msg_len == 0) {
        return 1;
    }
    return (msg_len + MK_MAX_FRAME_PAYLOAD - 1u) / MK_MAX_FRAME_PAYLOAD;
}

int mk_message_encode_fragment(uint8_t type, uint8_t seq, const uint8_t *msg, size_t msg_len, size_t index,
                               uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t count = mk_message_fragment_count(msg_len);
    size_t off, n;
    uint8_t flags;
    if (count == 0) {
        return -MK_ERR_TOO_LARGE;
    }
    if (msg == NULL && msg_len > 0) {
        return -MK_ERR_BAD_LENGTH;
    }
    if (index >= count) {
        return -MK_ERR_FRAGMENT_ORDER;
    }
    off = index * MK_MAX_FRAME_PAYLOAD;
    n = msg_len - off;
    if (n > MK_MAX_FRAME_PAYLOAD) {
        n = MK_MAX_FRAME_PAYLOAD;
    }
    flags = (uint8_t)((index << 1) | (index + 1u < count ? MK_FRAME_FLAG_MORE : 0u));
    return mk_frame_encode(type, seq, flags, msg_len > 0 ? msg + off : msg, n, out, out_cap, out_len);
}

int mk_message_encode(uint8_t type, uint8_t seq, const uint8_t *msg, size_t msg_len, uint8_t *out,
                      size_t out_cap, size_t *out_len)
{
    size_t count = mk_message_fragment_count(msg_len);
    size_t i, pos = 0;
    if (count == 0) {
        return -MK_ERR_TOO_LARGE;
    }
    if (out == NULL || out_len == NULL) {
        return -MK_ERR_BAD_LENGTH;
    }
    for (i = 0; i < count; i++) {
        size_t n = 0;
        int rc = mk_message_encode_fragment(type, seq, msg, msg_len, i, out + pos, out_cap - pos, &n);
        if (rc != 0) {
            return rc;
        }
        pos += n;
    }
    *out_len = pos;
    return 0;
}

/* ---------------------------------------------------------------- streaming frame decoder */

static void decoder_frame_reset(mk_frame_decoder *d)
{
    d->cobs_code = 0;
    d->cobs_left = 0;
    d->overlong = 0;
    d->cobs_bad = 0;
    d->raw_len = 0;
    d->enc_len = 0;
    d->crc = 0xFFFFFFFFu;
}

static void decoder_message_reset(mk_frame_decoder *d)
{
    d->msg_len = 0;
    d->next_index = 0;
    d->in_message = 0;
    d->ready = 0;
}

int mk_frame_decoder_init(mk_frame_decoder *d, uint8_t *buf, size_t cap)
{
    if (d == NULL || (buf == NULL && cap > 0)) {
        return -MK_ERR_BAD_LENGTH;
    }
    memset(d, 0, sizeof *d);
    d->buf = buf;
    d->cap = cap;
    mk_frame_decoder_reset(d);
    return 0;
}

void mk_frame_decoder_reset(mk_frame_decoder *d)
{
    decoder_message_reset(d);
    decoder_frame_reset(d);
    d->type = 0;
    d->seq = 0;
}

/* One decoded byte of the frame. The last 4 bytes wait in a delay line (they may be the CRC);
 * a byte leaving it is CRC'd and stored as header or payload. */
static void decoder_emit(mk_frame_decoder *d, uint8_t x)
{
    size_t slot;
    slot = d->raw_len & 3u;
    if (d->raw_len >= MK_FRAME_CRC_LEN) {
        uint8_t b = d->tail[slot];
        size_t p = d->raw_len - MK_FRAME_CRC_LEN;
        d->crc = crc32c_raw(d->crc, &b, 1);
        if (p < MK_FRAME_HEADER_LEN) {
            d->head[p] = b;
        } else {
            size_t q = d->msg_len + (p - MK_FRAME_HEADER_LEN);
            if (q < d->cap) {
                d->buf[q] = b;
            }
        }
    }
    d->tail[slot] = x;
    d->raw_len++;
}

static int decoder_fail(mk_frame_decoder *d, int err)
{
    decoder_message_reset(d);
    decoder_frame_reset(d);
    return err;
}

static int decoder_finish(mk_frame_decoder *d)
{
    size_t payload_len, len_field, k;
    uint32_t crc_rx = 0;
    unsigned index, more;

    /* check order of docs/protocol.md "Serial frames" */
    if (d->enc_len == 0) {
        return 0; /* empty frame between delimiters: ignored */
    }
    if (d->overlong) {
        return decoder_fail(d, -MK_ERR_TOO_LARGE);
    }
    if (d->cobs_bad || d->cobs_left != 0) {
        return decoder_fail(d, -MK_ERR_BAD_LENGTH);
    }
    if (d->raw_len < MK_FRAME_RAW_MIN) {
        return decoder_fail(d, -MK_ERR_BAD_LENGTH);
    }
    for (k = 0; k < MK_FRAME_CRC_LEN; k++) {
        crc_rx = (crc_rx << 8) | d->tail[(d->raw_len + k) & 3u];
    }
    if ((d->crc ^ 0xFFFFFFFFu) != crc_rx) {
        return decoder_fail(d, -MK_ERR_BAD_CRC);
    }
    if (d->head[0] != MK_FRAME_VERSION) {
        return decoder_fail(d, -MK_ERR_BAD_VERSION);
    }
    payload_len = d->raw_len - MK_FRAME_RAW_MIN;
    len_field = ((size_t)d->head[4] << 8) | d->head[5];
    if (len_field > MK_MAX_FRAME_PAYLOAD) {
        return decoder_fail(d, -MK_ERR_TOO_LARGE);
    }
    if (len_field != payload_len) {
        return decoder_fail(d, -MK_ERR_BAD_LENGTH);
    }
    index = (unsigned)d->head[3] >> 1;
    more = d->head[3] & MK_FRAME_FLAG_MORE;
    if (d->in_message) {
        if (index != d->next_index || d->head[1] != d->type || d->head[2] != d->seq) {
            return decoder_fail(d, -MK_ERR_FRAGMENT_ORDER);
        }
    } else if (index != 0) {
        return decoder_fail(d, -MK_ERR_FRAGMENT_ORDER);
    }
    if (more && index + 1u >= MK_MAX_FRAGMENTS) {
        return decoder_fail(d, -MK_ERR_TOO_LARGE);
    }
    if (d->msg_len + payload_len > d->cap || d->msg_len + payload_len > MK_MAX_MESSAGE) {
        return decoder_fail(d, -MK_ERR_TOO_LARGE);
    }
    if (!d->in_message) {
        d->type = d->head[1];
        d->seq = d->head[2];
        d->in_message = 1;
    }
    d->msg_len += payload_len;
    d->next_index++;
    decoder_frame_reset(d);
    if (more) {
        return 0;
    }
    d->in_message = 0;
    d->next_index = 0;
    d->ready = 1;
    return MK_FRAME_MESSAGE_READY;
}

int mk_frame_decoder_byte(mk_frame_decoder *d, uint8_t byte)
{
    if (d->ready) {
        d->ready = 0;
        d->msg_len = 0;
    }
    if (byte == 0x00) {
        int rc = decoder_finish(d);
        decoder_frame_reset(d);
        return rc;
    }
    if (d->enc_len >= MK_MAX_ENCODED_FRAME) {
        d->overlong = 1; /* discard up to the delimiter */
    }
    if (d->cobs_bad || d->overlong) {
        return 0; /* wait for the delimiter */
    }
    d->enc_len++;
    if (d->cobs_left == 0) {
        /* a code byte; the previous block (if any, and not a 254-byte run) implies a zero */
        if (d->cobs_code != 0 && d->cobs_code != 0xFF) {
            decoder_emit(d, 0);
        }
        d->cobs_code = byte;
        d->cobs_left = (uint8_t)(byte - 1u);
        return 0;
    }
    decoder_emit(d, byte);
    d->cobs_left--;
    return 0;
}

int mk_frame_decoder_push(mk_frame_decoder *d, const uint8_t *data, size_t len, size_t *consumed)
{
    size_t i;
    for (i = 0; i < len; i++) {
        int rc = mk_frame_decoder_byte(d, data[i]);
        if (rc != 0) {
            if (consumed != NULL) {
                *consumed = i + 1u;
            }
            return rc;
        }
    }
    if (consumed != NULL) {
        *consumed = len;
    }
    return 0;
}

/* ---------------------------------------------------------------- HID reports */

int mk_hid_encode_report(uint32_t cid, uint8_t type, const uint8_t *msg, size_t msg_len, size_t index,
                         uint8_t report[MK_HID_REPORT_SIZE])
{
    size_t off, n, room, hdr;
    if (report == NULL || (msg == NULL && msg_len > 0)) {
        return -MK_ERR_BAD_LENGTH;
    }
    if (msg_len > MK_MAX_MESSAGE) {
        return -MK_ERR_TOO_LARGE;
    }
    if (type >= 0x80u || index >= MK_HID_REPORT_COUNT(msg_len)) {
        return -MK_ERR_BAD_LENGTH;
    }
    memset(report, 0, MK_HID_REPORT_SIZE);
    put_be32(report, cid);
    if (index == 0) {
        report[4] = (uint8_t)(0x80u | type);
        put_be16(report + 5, (unsigned)msg_len);
        off = 0;
        room = MK_HID_INIT_DATA;
        hdr = 7;
    } else {
        report[4] = (uint8_t)(index - 1u);
        off = MK_HID_INIT_DATA + (index - 1u) * MK_HID_CONT_DATA;
        room = MK_HID_CONT_DATA;
        hdr = 5;
    }
    n = msg_len - off;
    if (n > room) {
        n = room;
    }
    if (n > 0) {
        memcpy(report + hdr, msg + off, n);
    }
    return 0;
}

int mk_hid_encode(uint32_t cid, uint8_t type, const uint8_t *msg, size_t msg_len, uint8_t *out, size_t out_cap,
                  size_t *out_len)
{
    size_t count, i;
    if (out == NULL || out_len == NULL) {
        return -MK_ERR_BAD_LENGTH;
    }
    if (msg_len > MK_MAX_MESSAGE) {
        return -MK_ERR_TOO_LARGE;
    }
    count = MK_HID_REPORT_COUNT(msg_len);
    if (out_cap / MK_HID_REPORT_SIZE < count) {
        return -MK_ERR_TOO_LARGE;
    }
    for (i = 0; i < count; i++) {
        int rc = mk_hid_encode_report(cid, type, msg, msg_len, i, out + i * MK_HID_REPORT_SIZE);
        if (rc != 0) {
            return rc;
        }
    }
    *out_len = count * MK_HID_REPORT_SIZE;
    return 0;
}

int mk_hid_reassembler_init(mk_hid_reassembler *r, uint8_t *buf, size_t cap, uint32_t cid)
{
    if (r == NULL || (buf == NULL && cap > 0)) {
        return -MK_ERR_BAD_LENGTH;
    }
    memset(r, 0, sizeof *r);
    r->buf = buf;
    r->cap = cap;
    r->cid = cid;
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    size_t i;
    uint8_t acc = 0;
    for (i = 0; i < n; i++) {
        acc |= p[i];
    }
    return acc == 0;
}

static int hid_fail(mk_hid_reassembler *r, int err)
{
    r->active = 0;
    r->got = 0;
    r->msg_len = 0;
    return err;
}

int mk_hid_reassembler_push(mk_hid_reassembler *r, const uint8_t *report, size_t len)
{
    uint32_t cid;
    size_t n;
    if (report == NULL || len != MK_HID_REPORT_SIZE) {
        return hid_fail(r, -MK_ERR_BAD_LENGTH);
    }
    cid = ((uint32_t)report[0] << 24) | ((uint32_t)report[1] << 16) | ((uint32_t)report[2] << 8) |
          (uint32_t)report[3];
    if (cid != r->cid) {
        return -MK_ERR_BAD_CHANNEL; /* ignored; a message in progress is kept */
    }
    if (report[4] & 0x80u) {
        size_t bcnt = ((size_t)report[5] << 8) | report[6];
        if (r->active) {
            return hid_fail(r, -MK_ERR_FRAGMENT_ORDER);
        }
        if (bcnt > MK_MAX_MESSAGE || bcnt > r->cap) {
            return hid_fail(r, -MK_ERR_TOO_LARGE);
        }
        n = bcnt < MK_HID_INIT_DATA ? bcnt : MK_HID_INIT_DATA;
        if (!all_zero(report + 7 + n, MK_HID_INIT_DATA - n)) {
            return hid_fail(r, -MK_ERR_BAD_LENGTH);
        }
        if (n > 0) {
            memcpy(r->buf, report + 7, n);
        }
        r->type = (uint8_t)(report[4] & 0x7Fu);
        r->msg_len = bcnt;
        r->got = n;
        r->next_seq = 0;
    } else {
        if (!r->active || report[4] != r->next_seq) {
            return hid_fail(r, -MK_ERR_FRAGMENT_ORDER);
        }
        n = r->msg_len - r->got;
        if (n > MK_HID_CONT_DATA) {
            n = MK_HID_CONT_DATA;
        }
        if (!all_zero(report + 5 + n, MK_HID_CONT_DATA - n)) {
            return hid_fail(r, -MK_ERR_BAD_LENGTH);
        }
        memcpy(r->buf + r->got, report + 5, n);
        r->got += n;
        r->next_seq++;
    }
    if (r->got == r->msg_len) {
        r->active = 0;
        return MK_FRAME_MESSAGE_READY;
    }
    r->active = 1;
    return 0;
}
