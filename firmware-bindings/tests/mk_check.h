/*
 * mk_check.h - the CHECK macro and its counters, shared by the C tests (test code only; included once per
 * program). A failing check prints its file, line, condition and message and is counted; the test's main()
 * reports `failures` and exits non-zero when there are any.
 */
#ifndef MK_CHECK_H
#define MK_CHECK_H

#include <stdio.h>

static int failures, checks;
#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        checks++;                                                                                            \
        if (!(cond)) {                                                                                       \
            failures++;                                                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
        }                                                                                                    \
    } while (0)

#endif /* MK_CHECK_H */
