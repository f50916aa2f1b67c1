/* Failure records and the summary dtrun prints when it gives up: torchrun's
 * layout (root cause first observed, then the other failures), each with
 * time, host, rank, exit code or signal name, and the message the worker
 * recorded in its error file. Does not decide what counts as a failure. */
#ifndef DTRUN_SUMMARY_H
#define DTRUN_SUMMARY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    int64_t wall_ms;          /* when it was seen (or the error file's timestamp) */
    char host[256];
    int rank, local_rank;
    pid_t pid;
    int exitcode;             /* torch's convention: -N for signal N */
    char error_file[4096];    /* "" when the worker wrote none */
    char message[4096];
} dtrun_failure;

/* Fill f from a worker's wait status and its error file (torch's JSON:
 * {"message": {"message": ..., "extraInfo": {"timestamp": ...}}} or
 * {"message": "...", "timestamp": ...}). oom: the kernel's OOM killer took it. */
void dtrun_failure_make(dtrun_failure *f, const char *host, int rank, int local_rank, pid_t pid,
                        int wait_status, const char *error_file, bool oom);

/* One line for the store ("rank\texitcode\tpid\twall_ms\thost\terror_file\tmessage")
 * and back: how agents learn the job's root cause from another host. */
int dtrun_failure_encode(const dtrun_failure *f, char *out, size_t cap);
int dtrun_failure_decode(dtrun_failure *f, const char *s, size_t len);

/* Print torchrun's failure summary to stderr. root may be NULL (then the
 * first of others is the root); title names the program. */
void dtrun_summary_print(const char *title, const dtrun_failure *root, const dtrun_failure *others, int nothers);

/* "SIGSEGV" for 11; "SIG?" for unknown. */
const char *dtrun_signame(int sig);

#endif
