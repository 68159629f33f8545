/*
 * mk_platform.h - the platform layer the meshkit device runs on (portable C99).
 *
 * The device (mk_device.h) never touches hardware, files or crypto libraries itself: it is initialised with an
 * mk_platform, a struct of function pointers plus one opaque context pointer that is passed back to every call.
 * A port supplies: a random number generator, the storage of one small state blob (a flash page or a file;
 * the write must be atomic: after a power cut the old or the new blob is read back, never a mix), a monotonic
 * clock, and optionally the bench-key check of BENCH_AUTH (which key is pinned and which signature algorithm it
 * uses is the platform's policy). The host build (platform/host.c) uses libsodium and a file.
 *
 * Every int-returning hook returns 0 on success and a negative value on failure (the device maps an RNG failure
 * to ERROR{RNG}, a flash failure to ERROR{FLASH}, a failed bench check to ERROR{BAD_SIGNATURE}).
 */
#ifndef MK_PLATFORM_H
#define MK_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest state blob the device reads or writes. */
#define MK_PLATFORM_STATE_MAX 2048u

typedef struct mk_platform {
    /* Opaque context handed back to every hook. */
    void *ctx;
    /* Fill buf[0..len) with cryptographically secure random bytes. Required. */
    int (*rng_fill)(void *ctx, uint8_t *buf, size_t len);
    /* Read the stored state blob into buf (capacity cap). An empty store (never written) is success with
     * *len = 0. A blob larger than cap is a failure. Required. */
    int (*flash_read)(void *ctx, uint8_t *buf, size_t cap, size_t *len);
    /* Replace the stored state blob with buf[0..len), atomically. Required. */
    int (*flash_write)(void *ctx, const uint8_t *buf, size_t len);
    /* Milliseconds since an arbitrary fixed point; never goes backwards. Required. */
    uint64_t (*now_ms)(void *ctx);
    /* BENCH_AUTH: return 0 if bench_key is a key this device trusts (pinned) and signature is its valid
     * signature over challenge[0..challenge_len). NULL: the device trusts no bench (BENCH_AUTH always fails). */
    int (*bench_verify)(void *ctx, const uint8_t *bench_key, size_t bench_key_len, const uint8_t *challenge,
                        size_t challenge_len, const uint8_t *signature, size_t signature_len);
} mk_platform;

#ifdef __cplusplus
}
#endif

#endif /* MK_PLATFORM_H */
