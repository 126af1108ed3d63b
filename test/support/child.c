/*
 * child.c - see child.h.
 */
#include "child.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

void t_child_run(void (*fn)(void *arg), void *arg, t_child *out)
{
    char path[] = "/tmp/nea-test-child-XXXXXX";
    int fd = mkstemp(path);
    pid_t pid;
    ssize_t n;

    assert_true(fd >= 0);
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 2);
        signal(SIGABRT, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &out->status, 0), pid);
    n = pread(fd, out->stderr_, sizeof(out->stderr_) - 1, 0);
    out->stderr_[n > 0 ? n : 0] = '\0';
    close(fd);
}

void t_child_aborted(const t_child *c, const char *needle)
{
    if (!WIFSIGNALED(c->status) || WTERMSIG(c->status) != SIGABRT ||
        strstr(c->stderr_, needle) == NULL) {
        print_error("child status 0x%x, stderr: %s\n", c->status, c->stderr_);
    }
    assert_true(WIFSIGNALED(c->status));
    assert_int_equal(WTERMSIG(c->status), SIGABRT);
    assert_non_null(strstr(c->stderr_, needle));
}
