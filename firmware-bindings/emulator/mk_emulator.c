/*
 * mk_emulator.c - the meshkit device emulator: the firmware's C sources (mk_frame, mk_cbor, mk_device) on the host
 * platform layer (platform/host.c: libsodium, a file-backed state blob), speaking the protocol on a tty (serial
 * frames) or on a USB HID gadget node (64-byte reports).
 *
 *   mk-emulator (--tty PATH | --hidg PATH) --state FILE [--model NAME] [--serial S] [--firmware V] [--baud N]
 *               [--provisioner-key HEX64]
 *
 * --tty PATH: opens PATH raw (cfmakeraw), feeds the bytes read to the streaming frame decoder, hands each complete
 * message to mk_device_handle and writes the encoded reply frames. --baud N throttles writes to N/10 bytes per
 * second (a real UART's rate with 8N1 framing), in chunks of ≥ 64 bytes (5 ms of line time) each written when its
 * last byte would have left a real UART; tty only.
 * --hidg PATH: a Linux USB HID gadget function node (/dev/hidgN, usb_f_hid, 64-byte reports). Each OUTPUT report
 * read from it goes to the HID reassembler (mk_hid_reassembler); the message body is seq (1 byte) || CBOR message
 * (docs/protocol-framing.md "HID reports"). An init report received while no message is in progress selects the
 * channel (CID); the reply goes back as 64-byte INPUT reports on that channel with the request's seq.
 * Logs to stderr ("mk-emulator: ready" once listening). Exits 0 on SIGTERM or SIGINT, 2 on bad arguments, 1 when
 * the device node or the state file cannot be used.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mk_device.h"
#include "mk_frame.h"
#include "mk_platform_host.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: mk-emulator (--tty PATH | --hidg PATH) --state FILE [--model NAME] [--serial S] "
                    "[--firmware V] [--baud N] [--provisioner-key HEX64]\n");
}

static int parse_hex32(const char *s, uint8_t out[32])
{
    size_t i;
    if (strlen(s) != 64) return -1;
    for (i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static speed_t baud_constant(long baud)
{
    switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 921600: return B921600;
    default: return B0;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts;
    if (s <= 0) return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {
    }
}

/* Line time per throttled write: what 5 ms of the line holds, at least 64 bytes (fewer, larger reads on the host). */
#define THROTTLE_CHUNK_S 0.005
#define THROTTLE_CHUNK_MIN 64u

/*
 * Write all bytes; with bytes_per_s > 0, at most that rate: chunks of whatever THROTTLE_CHUNK_S of line time holds
 * (at least THROTTLE_CHUNK_MIN bytes), each written when a real UART would have finished sending its last byte
 * (start + (sent + chunk) / rate), so no byte reaches the host earlier than on the wire and the average rate is
 * exactly bytes_per_s.
 */
static int write_reply(int fd, const uint8_t *buf, size_t len, double bytes_per_s)
{
    double start = now_s();
    size_t sent = 0;
    size_t max_chunk = THROTTLE_CHUNK_MIN;
    if (bytes_per_s > 0 && bytes_per_s * THROTTLE_CHUNK_S > (double)max_chunk) max_chunk = (size_t)(bytes_per_s * THROTTLE_CHUNK_S);
    while (sent < len && !stop_requested) {
        size_t chunk = len - sent;
        ssize_t n;
        if (bytes_per_s > 0) {
            if (chunk > max_chunk) chunk = max_chunk;
            sleep_s(start + (double)(sent + chunk) / bytes_per_s - now_s());
        }
        n = write(fd, buf + sent, chunk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            if (errno == EAGAIN) sleep_s(0.001);
            continue;
        }
        if (n < 0) return -1;
        sent += (size_t)n;
    }
    if (bytes_per_s > 0 && !stop_requested) sleep_s(start + (double)len / bytes_per_s - now_s());
    return 0;
}

static const char *type_name(uint8_t t)
{
    static const char *names[] = {"?",      "HELLO",   "INFO",  "BENCH_AUTH", "BENCH_AUTH_OK", "KEYGEN", "PUBKEYS",
                                  "COGEN",  "PROOF",   "INSTALL", "ACK",      "COMMIT",        "RECEIPT"};
    if (t == MK_MSG_ERROR) return "ERROR";
    return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* The largest reply the device may write so that seq || reply still fits one HID message. */
#define HID_REPLY_MAX (MK_DEVICE_REPLY_MAX < MK_MAX_MESSAGE - 1u ? MK_DEVICE_REPLY_MAX : MK_MAX_MESSAGE - 1u)

static int serve_tty(int fd, mk_device *dev, double bytes_per_s)
{
    static uint8_t rx[MK_MAX_MESSAGE], reply[MK_DEVICE_REPLY_MAX], wire[MK_MESSAGE_WIRE_MAX(MK_DEVICE_REPLY_MAX)];
    mk_frame_decoder dec;
    int rc;

    mk_frame_decoder_init(&dec, rx, sizeof rx);
    while (!stop_requested) {
        struct pollfd pfd;
        uint8_t in[512];
        ssize_t n;
        size_t off = 0;
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 200) <= 0) continue;
        if ((pfd.revents & POLLIN) == 0) {
            sleep_s(0.05); /* POLLHUP: nobody on the other end yet */
            continue;
        }
        n = read(fd, in, sizeof in);
        if (n <= 0) {
            if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EIO) {
                fprintf(stderr, "mk-emulator: read: %s\n", strerror(errno));
                return 1;
            }
            sleep_s(0.01);
            continue;
        }
        while (off < (size_t)n && !stop_requested) {
            size_t used = 0;
            int ev = mk_frame_decoder_push(&dec, in + off, (size_t)n - off, &used);
            off += used;
            if (ev < 0) {
                fprintf(stderr, "mk-emulator: dropped a frame (status %d)\n", -ev);
            } else if (ev == MK_FRAME_MESSAGE_READY) {
                uint8_t out_type = 0;
                size_t out_len = 0, wire_len = 0;
                uint8_t seq = dec.seq, type = dec.type;
                rc = mk_device_handle(dev, type, seq, rx, dec.msg_len, reply, sizeof reply, &out_type, &out_len);
                if (rc != 0) {
                    fprintf(stderr, "mk-emulator: handler failed (status %d)\n", -rc);
                    continue;
                }
                rc = mk_message_encode(out_type, seq, reply, out_len, wire, sizeof wire, &wire_len);
                if (rc != 0) {
                    fprintf(stderr, "mk-emulator: encode failed (status %d)\n", -rc);
                    continue;
                }
                fprintf(stderr, "mk-emulator: %s seq %u (%zu bytes) -> %s (%zu bytes)\n", type_name(type),
                        (unsigned)seq, dec.msg_len, type_name(out_type), out_len);
                if (write_reply(fd, wire, wire_len, bytes_per_s) != 0)
                    fprintf(stderr, "mk-emulator: write: %s\n", strerror(errno));
            }
        }
    }
    return 0;
}

/* Write one 64-byte INPUT report to a hidg node, waiting (up to 5 s) while the host has not taken the last one. */
static int write_report(int fd, const uint8_t *report)
{
    double deadline = now_s() + 5.0;
    while (!stop_requested) {
        ssize_t n = write(fd, report, MK_HID_REPORT_SIZE);
        if (n == (ssize_t)MK_HID_REPORT_SIZE) return 0;
        if (n >= 0) {
            errno = EIO;
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return -1;
        if (now_s() > deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        {
            struct pollfd pfd;
            pfd.fd = fd;
            pfd.events = POLLOUT;
            pfd.revents = 0;
            (void)poll(&pfd, 1, 50);
        }
    }
    return -1;
}

static int serve_hidg(int fd, mk_device *dev)
{
    static uint8_t rx[MK_MAX_MESSAGE], body[1 + HID_REPLY_MAX];
    static uint8_t wire[MK_HID_REPORT_COUNT(1 + HID_REPLY_MAX) * MK_HID_REPORT_SIZE];
    mk_hid_reassembler hid;
    int rc;

    mk_hid_reassembler_init(&hid, rx, sizeof rx, 0);
    while (!stop_requested) {
        struct pollfd pfd;
        uint8_t in[MK_HID_REPORT_SIZE + 1];
        ssize_t n;
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 200) <= 0) continue;
        if ((pfd.revents & POLLIN) == 0) {
            sleep_s(0.05);
            continue;
        }
        n = read(fd, in, sizeof in);
        if (n <= 0) {
            if (n < 0 && errno != EINTR && errno != EAGAIN && errno != ESHUTDOWN && errno != EIO) {
                fprintf(stderr, "mk-emulator: read: %s\n", strerror(errno));
                return 1;
            }
            sleep_s(0.01); /* the host side is not configured (yet) */
            continue;
        }
        if (n == (ssize_t)MK_HID_REPORT_SIZE && !hid.active && (in[4] & 0x80u) != 0) {
            /* idle: an init report selects the channel the reply goes to */
            hid.cid = ((uint32_t)in[0] << 24) | ((uint32_t)in[1] << 16) | ((uint32_t)in[2] << 8) | (uint32_t)in[3];
        }
        rc = mk_hid_reassembler_push(&hid, in, (size_t)n);
        if (rc < 0) {
            fprintf(stderr, "mk-emulator: dropped a report (status %d)\n", -rc);
        } else if (rc == MK_FRAME_MESSAGE_READY) {
            uint8_t out_type = 0, seq, type = hid.type;
            size_t out_len = 0, wire_len = 0, i;
            if (hid.msg_len == 0) {
                fprintf(stderr, "mk-emulator: dropped a HID message without its seq byte\n");
                continue;
            }
            seq = rx[0];
            rc = mk_device_handle(dev, type, seq, rx + 1, hid.msg_len - 1, body + 1, HID_REPLY_MAX, &out_type,
                                  &out_len);
            if (rc != 0) {
                fprintf(stderr, "mk-emulator: handler failed (status %d)\n", -rc);
                continue;
            }
            body[0] = seq;
            rc = mk_hid_encode(hid.cid, out_type, body, out_len + 1, wire, sizeof wire, &wire_len);
            if (rc != 0) {
                fprintf(stderr, "mk-emulator: encode failed (status %d)\n", -rc);
                continue;
            }
            fprintf(stderr, "mk-emulator: %s seq %u (%zu bytes) -> %s (%zu bytes, %zu reports)\n", type_name(type),
                    (unsigned)seq, hid.msg_len - 1, type_name(out_type), out_len, wire_len / MK_HID_REPORT_SIZE);
            for (i = 0; i < wire_len; i += MK_HID_REPORT_SIZE) {
                if (write_report(fd, wire + i) != 0) {
                    fprintf(stderr, "mk-emulator: write: %s\n", strerror(errno));
                    break;
                }
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *tty = NULL, *hidg = NULL, *state = NULL, *model = "meshkit-emulator", *serial = "EMU-0001", *firmware = "0.1.0";
    long baud = 0;
    uint8_t pkey[32];
    int have_pkey = 0, fd, i;
    struct termios tio;
    struct sigaction sa;
    mk_host_platform host;
    mk_platform platform;
    mk_device_identity identity;
    static mk_device dev;
    int rc;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
            return 2;
        }
        if (strcmp(a, "--tty") == 0) tty = v;
        else if (strcmp(a, "--hidg") == 0) hidg = v;
        else if (strcmp(a, "--state") == 0) state = v;
        else if (strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "--serial") == 0) serial = v;
        else if (strcmp(a, "--firmware") == 0) firmware = v;
        else if (strcmp(a, "--baud") == 0) {
            char *end;
            baud = strtol(v, &end, 10);
            if (*end != '\0' || baud < 10 || baud > 10000000) {
                fprintf(stderr, "mk-emulator: --baud: expected 10..10000000, got %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--provisioner-key") == 0) {
            if (parse_hex32(v, pkey) != 0) {
                fprintf(stderr, "mk-emulator: --provisioner-key: expected 64 hex digits\n");
                return 2;
            }
            have_pkey = 1;
        } else {
            usage();
            return 2;
        }
        i++;
    }
    if ((tty == NULL) == (hidg == NULL) || state == NULL) {
        usage();
        return 2;
    }
    if (hidg != NULL && baud != 0) {
        fprintf(stderr, "mk-emulator: --baud applies to --tty only\n");
        return 2;
    }

    if (mk_host_platform_init(&platform, &host, state, have_pkey ? pkey : NULL) != 0) {
        fprintf(stderr, "mk-emulator: cannot initialise the host platform (libsodium, state path)\n");
        return 1;
    }
    identity.model = model;
    identity.serial = serial;
    identity.firmware = firmware;
    identity.transports = hidg != NULL ? MK_CAP_HID : MK_CAP_SERIAL;
    rc = mk_device_init(&dev, &platform, &identity);
    if (rc != 0) {
        fprintf(stderr, "mk-emulator: device init failed (status %d)%s\n", -rc,
                rc == -MK_ERR_FLASH ? ": state file unreadable or corrupt" : ": bad identity");
        return 1;
    }

    if (hidg != NULL) {
        fd = open(hidg, O_RDWR | O_NONBLOCK);
        if (fd < 0) {
            fprintf(stderr, "mk-emulator: cannot open %s: %s\n", hidg, strerror(errno));
            return 1;
        }
    } else {
        fd = open(tty, O_RDWR | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
            fprintf(stderr, "mk-emulator: cannot open %s: %s\n", tty, strerror(errno));
            return 1;
        }
        if (tcgetattr(fd, &tio) == 0) {
            cfmakeraw(&tio);
            tio.c_cc[VMIN] = 1;
            tio.c_cc[VTIME] = 0;
            if (baud != 0 && baud_constant(baud) != B0) cfsetspeed(&tio, baud_constant(baud));
            if (tcsetattr(fd, TCSANOW, &tio) != 0)
                fprintf(stderr, "mk-emulator: warning: tcsetattr %s: %s\n", tty, strerror(errno));
        } else {
            fprintf(stderr, "mk-emulator: warning: %s is not a tty (%s); using it as a byte stream\n", tty,
                    strerror(errno));
        }
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fprintf(stderr, "mk-emulator: ready on %s (model %s, serial %s, state %u%s)\n", hidg != NULL ? hidg : tty, model,
            serial, (unsigned)mk_device_state(&dev), baud > 0 ? ", throttled" : "");
    rc = hidg != NULL ? serve_hidg(fd, &dev) : serve_tty(fd, &dev, baud > 0 ? (double)baud / 10.0 : 0);
    close(fd);
    fprintf(stderr, "mk-emulator: stopped\n");
    return rc;
}
