/*
 * mk_hex.h - hex input for the small test drivers (tests/crypto_cli.c, tests/profile_cli.c), which read their
 * requests as hex on stdin. Test code only; header-only (static functions).
 */
#ifndef MK_HEX_H
#define MK_HEX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Decode the hex string s into out (capacity cap); "-" is the empty value. Returns 0, or -1 for NULL, an odd
 * length, a non-hex digit or more than cap bytes. */
static int mk_unhex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n, i;
    *len = 0;
    if (s == NULL) return -1;
    if (strcmp(s, "-") == 0) return 0;
    n = strlen(s);
    if (n % 2 != 0 || n / 2 > cap) return -1;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

#endif /* MK_HEX_H */
