/*
 * proc.c - see proc.h.
 */
#include "proc.h"

#include "sock.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    t_proc *p = h->data;
    static char discard[4096];
    (void)hint;
    if (p->len + 1 < sizeof(p->output)) {
        *buf = uv_buf_init(p->output + p->len, (unsigned)(sizeof(p->output) - 1 - p->len));
    } else {
        *buf = uv_buf_init(discard, sizeof(discard)); /* beyond what is kept */
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    t_proc *p = s->data;
    if (n > 0 && buf->base >= p->output && buf->base < p->output + sizeof(p->output)) {
        p->len += (size_t)n;
        p->output[p->len] = '\0';
    } else if (n < 0) {
        p->eof = true;
        uv_close((uv_handle_t *)s, NULL);
    }
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    t_proc *p = proc->data;
    p->exited = true;
    p->status = sig != 0 ? 128 + sig : status;
    uv_close((uv_handle_t *)proc, NULL);
}

void t_proc_start(t_proc *p, uv_loop_t *loop, char **argv)
{
    static char *wrapped[64];
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    size_t n = 0;

    memset(p, 0, sizeof(*p));
    p->loop = loop;
    /* sh runs the program with its stderr joined to its stdout */
    wrapped[n++] = "/bin/sh";
    wrapped[n++] = "-c";
    wrapped[n++] = "exec \"$0\" \"$@\" 2>&1";
    for (size_t i = 0; argv[i] != NULL && n < 63; i++) {
        wrapped[n++] = argv[i];
    }
    wrapped[n] = NULL;
    assert_int_equal(uv_pipe_init(loop, &p->in, 0), 0);
    assert_int_equal(uv_pipe_init(loop, &p->out, 0), 0);
    p->in.data = p->out.data = p->proc.data = p;
    io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    io[0].data.stream = (uv_stream_t *)&p->in;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&p->out;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    memset(&o, 0, sizeof(o));
    o.file = wrapped[0];
    o.args = wrapped;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = on_exit_cb;
    assert_int_equal(uv_spawn(loop, &p->proc, &o), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read), 0);
}

void t_proc_shell(t_proc *p, uv_loop_t *loop, const char *cmd)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    t_proc_start(p, loop, argv);
}

void t_proc_say(t_proc *p, const char *text)
{
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)text, (unsigned)strlen(text));
    assert_int_equal(uv_write(&p->wreq, (uv_stream_t *)&p->in, &b, 1, NULL), 0);
}

void t_proc_close_stdin(t_proc *p)
{
    if (!p->in_closed) {
        p->in_closed = true;
        uv_close((uv_handle_t *)&p->in, NULL);
    }
}

bool t_proc_wait_output(t_proc *p, const char *needle, unsigned ms)
{
    uint64_t end = s_now_ms() + ms;
    while (strstr(p->output, needle) == NULL && !p->eof && s_now_ms() < end) {
        s_step(p->loop, 20);
    }
    return strstr(p->output, needle) != NULL;
}

int64_t t_proc_finish(t_proc *p, unsigned ms)
{
    uint64_t end = s_now_ms() + ms;
    while (!(p->exited && p->eof) && s_now_ms() < end) {
        s_step(p->loop, 20);
    }
    if (!p->exited) {
        uv_process_kill(&p->proc, SIGKILL);
        while (!p->exited || !p->eof) {
            s_step(p->loop, 20);
        }
        t_proc_close_stdin(p);
        s_step(p->loop, 0);
        fail_msg("client did not finish in time; output:\n%s", p->output);
    }
    t_proc_close_stdin(p);
    s_step(p->loop, 0);
    return p->status;
}

int64_t t_proc_run_shell(t_proc *p, uv_loop_t *loop, const char *cmd, unsigned ms)
{
    t_proc_shell(p, loop, cmd);
    t_proc_close_stdin(p);
    return t_proc_finish(p, ms);
}
