/* dt_test.h: the test harness — a handful of assertion macros that print both
 * values, and a runner. A test file defines functions `static void t_name(void)`
 * and a main that calls DT_RUN(t_name) for each, then returns DT_TEST_END().
 * A failed assertion ends the current test function (the rest still run). */
#ifndef DT_TEST_H
#define DT_TEST_H

#include <dtrain/dtrain.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static int dt__test_failures;
static int dt__test_count;
static jmp_buf dt__test_jmp;
static const char *dt__test_name;

#define DT__FAIL(...)                                                          \
    do {                                                                       \
        fprintf(stderr, "FAIL %s (%s:%d): ", dt__test_name, __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                          \
        fprintf(stderr, "\n");                                                 \
        dt__test_failures++;                                                   \
        longjmp(dt__test_jmp, 1);                                              \
    } while (0)

#define DT_ASSERT(cond)                                                        \
    do { if (!(cond)) DT__FAIL("%s", #cond); } while (0)
#define DT_ASSERT_MSG(cond, ...)                                               \
    do { if (!(cond)) DT__FAIL(__VA_ARGS__); } while (0)
#define DT_ASSERT_EQ(a, b)                                                     \
    do { long long dt__a = (long long)(a), dt__b = (long long)(b);             \
         if (dt__a != dt__b) DT__FAIL("%s == %s: %lld != %lld", #a, #b, dt__a, dt__b); } while (0)
#define DT_ASSERT_NE(a, b)                                                     \
    do { long long dt__a = (long long)(a), dt__b = (long long)(b);             \
         if (dt__a == dt__b) DT__FAIL("%s != %s: both %lld", #a, #b, dt__a); } while (0)
#define DT_ASSERT_STREQ(a, b)                                                  \
    do { const char *dt__a = (a), *dt__b = (b);                                \
         if (!dt__a || !dt__b || strcmp(dt__a, dt__b) != 0)                    \
             DT__FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, dt__a ? dt__a : "(null)", dt__b ? dt__b : "(null)"); } while (0)
#define DT_ASSERT_CONTAINS(hay, needle)                                        \
    do { const char *dt__h = (hay), *dt__n = (needle);                         \
         if (!dt__h || !strstr(dt__h, dt__n))                                  \
             DT__FAIL("%s contains \"%s\": got \"%s\"", #hay, dt__n, dt__h ? dt__h : "(null)"); } while (0)
#define DT_ASSERT_NEAR(a, b, tol)                                              \
    do { double dt__a = (double)(a), dt__b = (double)(b);                      \
         if (!(fabs(dt__a - dt__b) <= (tol)))                                  \
             DT__FAIL("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, dt__a, dt__b, (double)(tol)); } while (0)
/* A call that must succeed: prints the code and the library's last error. */
#define DT_ASSERT_OK(call)                                                     \
    do { int dt__rc = (call);                                                  \
         if (dt__rc != 0) DT__FAIL("%s returned %d (%s): %s", #call, dt__rc, dt_errname(dt__rc), dt_last_error()); } while (0)
#define DT_ASSERT_ERR(call, code)                                              \
    do { int dt__rc = (call);                                                  \
         if (dt__rc != (code)) DT__FAIL("%s returned %d (%s), expected %s", #call, dt__rc, dt_errname(dt__rc), #code); } while (0)

#define DT_RUN(fn)                                                             \
    do {                                                                       \
        dt__test_name = #fn;                                                   \
        dt__test_count++;                                                      \
        if (setjmp(dt__test_jmp) == 0) { fn(); fprintf(stderr, "ok   %s\n", #fn); } \
    } while (0)

#define DT_TEST_END()                                                          \
    (fprintf(stderr, "%d test(s), %d failure(s)\n", dt__test_count, dt__test_failures), \
     dt__test_failures ? 1 : 0)

#endif /* DT_TEST_H */
