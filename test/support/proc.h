/*
 * proc.h - client programs (curl, python3, openssl) run as child processes
 * on the loop that serves them, their output captured, so a test drives a
 * real client and its server from one thread without sleeps.
 */
#ifndef NEA_TEST_PROC_H
#define NEA_TEST_PROC_H

#include <uv.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct t_proc {
    uv_process_t proc;
    uv_pipe_t in, out;
    uv_write_t wreq;
    uv_loop_t *loop;
    char output[65536]; /* stdout and stderr, NUL-terminated (the rest is dropped) */
    size_t len;
    bool exited, eof, in_closed;
    int64_t status; /* exit status, or 128 + the signal */
} t_proc;

/* Starts argv (argv[0] a path) on loop with its stderr joined to its
 * stdout, both captured; stdin stays open for t_proc_say until
 * t_proc_close_stdin or the end. */
void t_proc_start(t_proc *p, uv_loop_t *loop, char **argv);
/* Starts /bin/sh -c cmd (stderr joined to stdout). */
void t_proc_shell(t_proc *p, uv_loop_t *loop, const char *cmd);
/* Writes text to its stdin (text must stay valid until the write is done:
 * a string literal). */
void t_proc_say(t_proc *p, const char *text);
void t_proc_close_stdin(t_proc *p);
/* Runs the loop until the output holds needle (true), or the process's
 * output ended or ms passed (false). */
bool t_proc_wait_output(t_proc *p, const char *needle, unsigned ms);
/* Runs the loop until the process exited and its output ended; after ms it
 * is killed and the test fails, showing its output. Returns its status. */
int64_t t_proc_finish(t_proc *p, unsigned ms);
/* t_proc_shell, stdin closed, then t_proc_finish. */
int64_t t_proc_run_shell(t_proc *p, uv_loop_t *loop, const char *cmd, unsigned ms);

#endif
