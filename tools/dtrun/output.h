/* Worker output: each worker's stdout and stderr arrive on pipes; complete
 * lines go to the console prefixed with the rank ("[3]: ...", one write per
 * line, so lines never mix mid-line) and, unprefixed, to the rank's log files.
 * Only the agent's one thread writes the console. Does not poll: the agent's
 * loop hands it the bytes. */
#ifndef DTRUN_OUTPUT_H
#define DTRUN_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>

#define DTRUN_LINE_MAX 65536   /* a longer line is cut into pieces of this size */

typedef struct {
    int pipe_fd;        /* read end; -1 once closed */
    int console_fd;     /* 1 or 2; -1: not shown */
    int file_fd;        /* log file; -1: none */
    char prefix[32];    /* "[3]: " */
    char *buf;          /* partial line (DTRUN_LINE_MAX + prefix room) */
    size_t len;         /* bytes of the partial line in buf after the prefix */
    size_t plen;
} dtrun_stream;

/* Owns nothing until init; init allocates buf. */
int dtrun_stream_init(dtrun_stream *s, int pipe_fd, int console_fd, int file_fd, int rank);
/* Read what the pipe has (non-blocking). Returns 1 while open, 0 at EOF
 * (the partial line is flushed and the pipe closed). */
int dtrun_stream_read(dtrun_stream *s);
/* Flush a partial line, close the pipe and the file, free buf. */
void dtrun_stream_close(dtrun_stream *s);

#endif
