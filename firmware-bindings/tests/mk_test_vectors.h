/*
 * mk_test_vectors.h - shared by the C tests and fuzz runs (test code only; included once per program):
 * the CHECK macro with its counters, and the reader of the shared vector files firmware-bindings/vectors/ (the .hex files)
 * (format: docs/protocol-framing.md "Shared vectors").
 */
#ifndef MK_TEST_VECTORS_H
#define MK_TEST_VECTORS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_check.h"

/* ---------------------------------------------------------------- vector files */

#define LINE_MAX_BYTES 65536
static char line[LINE_MAX_BYTES];
static uint8_t va[LINE_MAX_BYTES / 2], vb[LINE_MAX_BYTES / 2];
static size_t va_len, vb_len;

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_hex(const char *s, size_t n, uint8_t *out, size_t *out_len)
{
    size_t i;
    if (n % 2 != 0) return -1;
    for (i = 0; i < n / 2; i++) {
        int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
        if (h < 0 || l < 0) return -1;
        out[i] = (uint8_t)(h << 4 | l);
    }
    *out_len = n / 2;
    return 0;
}

static const struct { const char *name; int code; } error_names[] = {
    {"BAD_CRC", MK_ERR_BAD_CRC}, {"BAD_VERSION", MK_ERR_BAD_VERSION}, {"BAD_LENGTH", MK_ERR_BAD_LENGTH},
    {"FRAGMENT_ORDER", MK_ERR_FRAGMENT_ORDER}, {"TOO_LARGE", MK_ERR_TOO_LARGE}, {"BAD_CHANNEL", MK_ERR_BAD_CHANNEL},
    {"CBOR_INVALID", MK_ERR_CBOR_INVALID}, {"CBOR_NONCANONICAL", MK_ERR_CBOR_NONCANONICAL},
};

/* One case: kind 0 = "a", 1 = "a = b", 2 = "a ! ERROR" (err = the negated code). */
typedef void (*case_fn)(const char *name, int kind, int err);

static int run_file(const char *dir, const char *file, case_fn fn)
{
    char path[1024];
    FILE *f;
    int n = 0;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "FAIL cannot open %s\n", path);
        failures++;
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *colon, *rest, *eq, *bang, *end;
        int kind = 0, err = 0;
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        if (len == 0 || line[0] == '#') continue;
        colon = strchr(line, ':');
        if (colon == NULL) {
            fprintf(stderr, "FAIL %s: bad line %.40s\n", file, line);
            failures++;
            continue;
        }
        *colon = 0;
        rest = colon + 1;
        while (*rest == ' ') rest++;
        eq = strstr(rest, " = ");
        bang = strstr(rest, " ! ");
        end = rest + strlen(rest);
        vb_len = 0;
        if (bang != NULL) {
            size_t k;
            kind = 2;
            err = 1;
            for (k = 0; k < sizeof error_names / sizeof error_names[0]; k++) {
                if (strcmp(bang + 3, error_names[k].name) == 0) err = -error_names[k].code;
            }
            CHECK(err < 0, "%s/%s: unknown error name %s", file, line, bang + 3);
            end = bang;
        } else if (eq != NULL) {
            kind = 1;
            if (parse_hex(eq + 3, strlen(eq + 3), vb, &vb_len) != 0) {
                CHECK(0, "%s/%s: bad hex after =", file, line);
                continue;
            }
            end = eq;
        }
        if (parse_hex(rest, (size_t)(end - rest), va, &va_len) != 0) {
            CHECK(0, "%s/%s: bad hex", file, line);
            continue;
        }
        fn(line, kind, err);
        n++;
    }
    fclose(f);
    return n;
}

#endif /* MK_TEST_VECTORS_H */
