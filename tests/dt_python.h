/* dt_python.h: helpers for tests that compare with PyTorch (Debian's python3-torch
 * at /usr/bin/python3). A test that needs torch calls dt_py_have_torch() and, when
 * it is false, prints the reason and skips that part. */
#ifndef DT_PYTHON_H
#define DT_PYTHON_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#define DT_PY "/usr/bin/python3"

/* Run a shell command; its exit status (-1 when it did not exit normally). */
static inline int dt_py_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int dt_py_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

/* The reference programs (safetensors_min.py, the torch jobs) are not copied
 * into the project: they are read from ../shared/bench beside the checkout. */
#ifdef DT_SRC_DIR
#define DT_SHARED_BENCH DT_SRC_DIR "/../shared/bench"
#endif

/* True when /usr/bin/python3 imports torch and numpy and the shared reference
 * programs are present; otherwise prints why not (once). */
static inline int dt_py_have_torch(void)
{
    static int known = -1;
    if (known < 0) {
        known = dt_py_sh(DT_PY " -c 'import torch, numpy' >/dev/null 2>&1") == 0;
        if (!known) fprintf(stderr, "SKIP: " DT_PY " cannot import torch and numpy; PyTorch comparisons skipped\n");
#ifdef DT_SHARED_BENCH
        if (known && dt_py_sh("test -f " DT_SHARED_BENCH "/safetensors_min.py") != 0) {
            known = 0;
            fprintf(stderr, "SKIP: " DT_SHARED_BENCH "/safetensors_min.py not found; PyTorch comparisons skipped\n");
        }
#endif
    }
    return known;
}

#endif /* DT_PYTHON_H */
