/*
 * mk_platform_host.h - the host (Linux/POSIX) platform layer of the meshkit device: libsodium's randombytes,
 * a file-backed state blob (written to FILE.tmp, fsync'd, renamed over FILE, directory fsync'd), CLOCK_MONOTONIC,
 * and BENCH_AUTH as an Ed25519 signature over the challenge by one pinned 32-byte provisioner key.
 * Used by the emulator and the tests; not part of a firmware image.
 */
#ifndef MK_PLATFORM_HOST_H
#define MK_PLATFORM_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "mk_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_host_platform {
    char state_path[4096];
    int has_provisioner_key;
    uint8_t provisioner_key[32]; /* Ed25519 public key the device trusts for BENCH_AUTH */
} mk_host_platform;

/* Initialise libsodium and fill *p with the host hooks over ctx (state blob at state_path; provisioner_key may be
 * NULL: no bench is trusted). Returns 0, or -1 if libsodium cannot start or the path is too long. */
int mk_host_platform_init(mk_platform *p, mk_host_platform *ctx, const char *state_path,
                          const uint8_t *provisioner_key);

#ifdef __cplusplus
}
#endif

#endif /* MK_PLATFORM_HOST_H */
