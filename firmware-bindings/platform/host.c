/*
 * host.c - the host (Linux/POSIX) platform layer of the meshkit device (mk_platform_host.h): libsodium RNG and
 * Ed25519 verification, a file-backed state blob with atomic replace, and the monotonic clock.
 */
#define _POSIX_C_SOURCE 200809L
#include "mk_platform_host.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int host_rng(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    randombytes_buf(buf, len);
    return 0;
}

static int host_flash_read(void *ctx, uint8_t *buf, size_t cap, size_t *len)
{
    const mk_host_platform *h = (const mk_host_platform *)ctx;
    size_t got = 0;
    int fd = open(h->state_path, O_RDONLY);
    *len = 0;
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    for (;;) {
        ssize_t n;
        if (got == cap) { /* a blob larger than cap is an error; probe for one more byte */
            uint8_t extra;
            n = read(fd, &extra, 1);
            if (n < 0 && errno == EINTR) continue;
            close(fd);
            if (n != 0) return -1;
            break;
        }
        n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0) {
            close(fd);
            break;
        }
        got += (size_t)n;
    }
    *len = got;
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int host_flash_write(void *ctx, const uint8_t *buf, size_t len)
{
    const mk_host_platform *h = (const mk_host_platform *)ctx;
    char tmp[sizeof h->state_path + 8];
    char dir[sizeof h->state_path];
    char *slash;
    int fd, rc;
    snprintf(tmp, sizeof tmp, "%s.tmp", h->state_path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    rc = write_all(fd, buf, len);
    if (rc == 0) rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    if (rc == 0) rc = rename(tmp, h->state_path);
    if (rc != 0) {
        unlink(tmp);
        return -1;
    }
    /* make the rename itself durable */
    memcpy(dir, h->state_path, sizeof dir);
    slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash != NULL) *slash = '\0';
    else strcpy(dir, ".");
    fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    return 0;
}

static uint64_t host_now_ms(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int host_bench_verify(void *ctx, const uint8_t *bench_key, size_t bench_key_len, const uint8_t *challenge,
                             size_t challenge_len, const uint8_t *signature, size_t signature_len)
{
    const mk_host_platform *h = (const mk_host_platform *)ctx;
    if (!h->has_provisioner_key || bench_key_len != 32 || signature_len != crypto_sign_BYTES) return -1;
    if (sodium_memcmp(bench_key, h->provisioner_key, 32) != 0) return -1;
    return crypto_sign_verify_detached(signature, challenge, challenge_len, h->provisioner_key) == 0 ? 0 : -1;
}

int mk_host_platform_init(mk_platform *p, mk_host_platform *ctx, const char *state_path,
                          const uint8_t *provisioner_key)
{
    size_t n;
    if (p == NULL || ctx == NULL || state_path == NULL || sodium_init() < 0) return -1;
    n = strlen(state_path);
    if (n == 0 || n >= sizeof ctx->state_path) return -1;
    memset(ctx, 0, sizeof *ctx);
    memcpy(ctx->state_path, state_path, n + 1);
    if (provisioner_key != NULL) {
        memcpy(ctx->provisioner_key, provisioner_key, 32);
        ctx->has_provisioner_key = 1;
    }
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->rng_fill = host_rng;
    p->flash_read = host_flash_read;
    p->flash_write = host_flash_write;
    p->now_ms = host_now_ms;
    p->bench_verify = host_bench_verify;
    return 0;
}
