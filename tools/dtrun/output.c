/* Line assembly and prefixing for worker output (see output.h). A line is
 * written to the console as prefix + text + '\n' in one write() from the
 * agent's single thread, so two ranks' lines can never mix; the file gets the
 * text as the worker wrote it. Does not decide which streams go where. */
#include "output.h"

#include <dtrain/util.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dtrun_stream_init(dtrun_stream *s, int pipe_fd, int console_fd, int file_fd, int rank)
{
    s->pipe_fd = pipe_fd;
    s->console_fd = console_fd;
    s->file_fd = file_fd;
    s->plen = (size_t)snprintf(s->prefix, sizeof s->prefix, "[%d]: ", rank);
    s->len = 0;
    s->buf = malloc(DTRUN_LINE_MAX + sizeof s->prefix + 1);
    if (!s->buf) return -1;
    memcpy(s->buf, s->prefix, s->plen);
    return 0;
}

/* Emit the line in buf (text = buf + plen, n bytes including its '\n'). */
static void emit(dtrun_stream *s, const char *text, size_t n)
{
    if (s->file_fd >= 0 && dt_write_all(s->file_fd, text, n, "worker log") < 0) {
        fprintf(stderr, "dtrun: %s (further output of this stream goes to the console only)\n", dt_last_error());
        close(s->file_fd);
        s->file_fd = -1;
    }
    if (s->console_fd >= 0) (void)dt_write_all(s->console_fd, s->buf, s->plen + n, "console");
}

static void flush_partial(dtrun_stream *s)
{
    if (s->len == 0) return;
    s->buf[s->plen + s->len] = '\n';
    emit(s, s->buf + s->plen, s->len + 1);
    s->len = 0;
}

int dtrun_stream_read(dtrun_stream *s)
{
    if (s->pipe_fd < 0) return 0;
    char chunk[16384];
    for (;;) {
        ssize_t r = read(s->pipe_fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (r <= 0) {
            flush_partial(s);
            close(s->pipe_fd);
            s->pipe_fd = -1;
            return 0;
        }
        const char *p = chunk, *end = chunk + r;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t take = nl ? (size_t)(nl - p) : (size_t)(end - p);
            size_t room = DTRUN_LINE_MAX - s->len;
            if (take > room) take = room, nl = NULL;
            memcpy(s->buf + s->plen + s->len, p, take);
            s->len += take;
            if (nl || s->len == DTRUN_LINE_MAX) flush_partial(s);
            p += take + (nl ? 1 : 0);
        }
    }
}

void dtrun_stream_close(dtrun_stream *s)
{
    if (s->pipe_fd >= 0 && s->buf) (void)dtrun_stream_read(s);   /* what is already in the pipe */
    if (s->buf) flush_partial(s);
    if (s->pipe_fd >= 0) close(s->pipe_fd);
    if (s->file_fd >= 0) close(s->file_fd);
    s->pipe_fd = s->file_fd = -1;
    free(s->buf);
    s->buf = NULL;
}
