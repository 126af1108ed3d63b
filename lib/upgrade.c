/*
 * upgrade.c - handing listening sockets from one process to the next.
 *
 * Both directions speak systemd's socket-activation protocol, so a server
 * started by systemd and one started by its predecessor read the same
 * thing: LISTEN_FDS sockets from descriptor 3 on, meant for the process
 * whose pid is LISTEN_PID, named in LISTEN_FDNAMES ("nea-http" for HTTP,
 * "nea-agent" for the agent; systemd's own names, or none, mean HTTP).
 *
 * A successor is started the way nginx's binary upgrade starts one: this
 * process forks and the child executes the new program with the listening
 * sockets in place. It adds NEA_READY_FD, the write end of a pipe: the
 * successor writes one byte there once its nea_server_listen succeeded and
 * closes it. Only then does the predecessor learn it may stop accepting;
 * until then both accept on the very same sockets (they are one socket,
 * shared, not two bound to one address), so no connection is refused
 * while the successor starts, and one that never comes up (it exits, or
 * fails to listen) only closes the pipe: the predecessor is told and goes
 * on serving.
 *
 * Between fork and exec the child calls only async-signal-safe functions
 * (fcntl, dup2, close, sigprocmask, execve, _exit): the parent may run
 * worker threads. The environment and argument arrays are built before the
 * fork, LISTEN_PID's digits written by the child into room left for them.
 * Starting a successor allocates (the environment copy) and forks: it is
 * not on any request's path.
 */
#include "upgrade.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define FDS_START 3

/* --- the successor's side: reading what was handed over ----------------- */

/* A decimal number that fills s, at most max; -1 otherwise. */
static long parse_dec(const char *s, long max)
{
    long v = 0;
    if (s == NULL || *s == '\0') {
        return -1;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > (max - (*s - '0')) / 10) {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Whether the i-th name of the colon-separated list names is name. */
static bool nth_name_is(const char *names, unsigned i, const char *name)
{
    size_t len = strlen(name);
    for (; names != NULL && i > 0; i--) {
        names = strchr(names, ':');
        names = names != NULL ? names + 1 : NULL;
    }
    return names != NULL && strncmp(names, name, len) == 0 &&
           (names[len] == ':' || names[len] == '\0');
}

static void mark_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) {
        (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
}

static void empty(nea_listen_fds *out)
{
    memset(out, 0, sizeof(*out));
    out->agent = out->ready = -1;
}

int nea_listen_fds_from_env(nea_listen_fds *out)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES"), *ready_s = getenv("NEA_READY_FD");
    long pid = parse_dec(pid_s, 1L << 30), n = parse_dec(fds_s, 1L << 20);
    long ready = parse_dec(ready_s, 1L << 20);
    int rc = 0;

    empty(out);
    if (pid_s == NULL && fds_s == NULL && ready_s == NULL) {
        return 0;
    }
    if (pid < 0 || n < 0 || (ready_s != NULL && (ready < 0 || fcntl((int)ready, F_GETFD) < 0))) {
        rc = UV_EINVAL;
    } else if (pid == (long)getpid()) {
        for (long i = 0; i < n && rc == 0; i++) {
            int fd = FDS_START + (int)i;
            if (fcntl(fd, F_GETFD) < 0) {
                rc = UV_EINVAL; /* not open: not what the protocol promised */
            } else if (nth_name_is(names, (unsigned)i, NEA__FDNAME_AGENT) && out->agent < 0) {
                out->agent = fd;
            } else if (out->http_count == NEA_LISTEN_FDS_MAX) {
                rc = UV_EINVAL;
            } else {
                out->http[out->http_count++] = fd;
            }
        }
        out->ready = ready_s != NULL ? (int)ready : -1;
    }
    (void)unsetenv("LISTEN_PID");
    (void)unsetenv("LISTEN_FDS");
    (void)unsetenv("LISTEN_FDNAMES");
    (void)unsetenv("NEA_READY_FD");
    if (rc != 0) {
        empty(out);
        return rc;
    }
    for (unsigned i = 0; i < out->http_count; i++) {
        mark_cloexec(out->http[i]);
    }
    if (out->agent >= 0) {
        mark_cloexec(out->agent);
    }
    if (out->ready >= 0) {
        mark_cloexec(out->ready);
    }
    return (int)out->http_count;
}

void nea__upgrade_ready(int fd, bool listening)
{
    ssize_t n;
    if (fd < 0) {
        return;
    }
    if (listening) {
        do {
            n = write(fd, "1", 1);
        } while (n < 0 && errno == EINTR);
    }
    close(fd);
}

/* --- the predecessor's side: starting the successor ------------------------ */

/* The environment the successor gets: ours without the protocol's
 * variables, plus them. pid_at receives where LISTEN_PID's digits go (room
 * for 20). NULL when out of memory. */
static char **successor_env(const char *const *names, unsigned n, int ready_fd, char **pid_at)
{
    size_t count = 0, names_len = 0;
    char **env, *text, *p;
    unsigned k = 0;

    for (char **e = environ; e != NULL && *e != NULL; e++) {
        count++;
    }
    for (unsigned i = 0; i < n; i++) {
        names_len += strlen(names[i]) + 1;
    }
    env = malloc((count + 5) * sizeof(*env) + 64 + 64 + 32 + 32 + names_len);
    if (env == NULL) {
        return NULL;
    }
    text = (char *)(env + count + 5);
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, "LISTEN_", 7) != 0 && strncmp(*e, "NEA_READY_FD=", 13) != 0) {
            env[k++] = *e;
        }
    }
    p = text;
    env[k++] = p;
    p += sprintf(p, "LISTEN_PID=");
    *pid_at = p;
    memset(p, 0, 21);
    p += 21;
    env[k++] = p;
    p += sprintf(p, "LISTEN_FDS=%u", n) + 1;
    env[k++] = p;
    p += sprintf(p, "NEA_READY_FD=%u", FDS_START + n) + 1;
    env[k++] = p;
    p += sprintf(p, "LISTEN_FDNAMES=");
    for (unsigned i = 0; i < n; i++) {
        p += sprintf(p, "%s%s", i > 0 ? ":" : "", names[i]);
    }
    env[k] = NULL;
    (void)ready_fd;
    return env;
}

/* In the child: digits of v at p. Async-signal-safe. */
static void put_pid(char *p, long v)
{
    char d[21];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0) {
        *p++ = d[--n];
    }
    *p = '\0';
}

/* In the child: the sockets and the pipe in place, then the program. */
static void exec_successor(char *const argv[], char **env, char *pid_at, const int *fds, unsigned n,
                           int ready_w)
{
    int tmp[NEA_LISTEN_FDS_MAX + 2];
    int base = FDS_START + (int)n + 1;
    sigset_t none;

    /* Out of the way first: a source may sit where another one goes. */
    for (unsigned i = 0; i <= n; i++) {
        tmp[i] = fcntl(i < n ? fds[i] : ready_w, F_DUPFD, base);
        if (tmp[i] < 0) {
            _exit(126);
        }
    }
    for (unsigned i = 0; i <= n; i++) {
        if (dup2(tmp[i], FDS_START + (int)i) < 0) {
            _exit(126);
        }
        close(tmp[i]);
    }
    put_pid(pid_at, (long)getpid());
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execve(argv[0], argv, env);
    _exit(127);
}

static void on_handle_closed(uv_handle_t *h)
{
    nea__upgrade *u = h->data;
    (*u->handles_open)--;
    if (--u->closing == 0) {
        u->open = false;
        u->closed(u->data);
    }
}

static void close_handles(nea__upgrade *u)
{
    if (u->open && u->closing == 0) {
        u->closing = 2;
        uv_close((uv_handle_t *)&u->ready, on_handle_closed);
        uv_close((uv_handle_t *)&u->reap, on_handle_closed);
    }
}

static void report(nea__upgrade *u, int status)
{
    if (!u->reported) {
        u->reported = true;
        close_handles(u);
        u->done(u->data, status);
    }
}

/* The ready pipe closed without a byte: the successor's exit status, once
 * it has one (its descriptors close before its parent can reap it), is
 * logged; a live one that gave up is its own business. */
static void on_reap(uv_timer_t *t)
{
    nea__upgrade *u = t->data;
    int wstatus = 0;
    if (waitpid(u->pid, &wstatus, WNOHANG) == u->pid) {
        nea__log(u->cfg, NEA_LOG_ERROR,
                 "upgrade: successor %ld ended before it listened (%s %d); still serving",
                 (long)u->pid, WIFSIGNALED(wstatus) ? "signal" : "exit status",
                 WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
    } else if (++u->tries < NEA__UPGRADE_REAP_TRIES) {
        return;
    } else {
        nea__log(u->cfg, NEA_LOG_ERROR,
                 "upgrade: successor %ld closed its ready pipe without listening; still serving",
                 (long)u->pid);
    }
    report(u, NEA_ESUCCESSOR);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nea__upgrade *u = h->data;
    (void)suggested;
    *buf = uv_buf_init(&u->byte, 1);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    nea__upgrade *u = st->data;
    (void)buf;
    if (n > 0) {
        nea__log(u->cfg, NEA_LOG_INFO, "upgrade: successor %ld listens", (long)u->pid);
        report(u, 0);
    } else if (n < 0) {
        uv_read_stop(st);
        uv_timer_start(&u->reap, on_reap, 0, NEA__UPGRADE_REAP_MS);
    }
}

int nea__upgrade_start(nea__upgrade *u, uv_loop_t *loop, const nea_config *cfg,
                       unsigned *handles_open, char *const argv[], const int *fds,
                       const char *const *names, unsigned n, void (*done)(void *data, int status),
                       void (*closed)(void *data), void *data)
{
    int pipefd[2], rc;
    char **env, *pid_at = NULL;
    pid_t pid;

    if (u->open) {
        return UV_EBUSY;
    }
    if (argv == NULL || argv[0] == NULL || n > NEA_LISTEN_FDS_MAX + 1) {
        return UV_EINVAL;
    }
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        return -errno;
    }
    env = successor_env(names, n, pipefd[1], &pid_at);
    if (env == NULL) {
        close(pipefd[0]);
        close(pipefd[1]);
        return UV_ENOMEM;
    }
    pid = fork();
    if (pid == 0) {
        exec_successor(argv, env, pid_at, fds, n, pipefd[1]);
    }
    rc = pid < 0 ? -errno : 0;
    free(env);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        return rc;
    }
    memset(u, 0, sizeof(*u));
    u->pid = pid;
    u->cfg = cfg;
    u->handles_open = handles_open;
    u->done = done;
    u->closed = closed;
    u->data = data;
    uv_pipe_init(loop, &u->ready, 0);
    u->ready.data = u;
    uv_timer_init(loop, &u->reap);
    u->reap.data = u;
    u->open = true;
    (*handles_open) += 2;
    rc = uv_pipe_open(&u->ready, pipefd[0]);
    if (rc == 0) {
        rc = uv_read_start((uv_stream_t *)&u->ready, on_alloc, on_read);
    } else {
        close(pipefd[0]);
    }
    if (rc != 0) {
        /* The child runs on; without the pipe it cannot be heard. */
        u->reported = true;
        close_handles(u);
        return rc;
    }
    nea__log(cfg, NEA_LOG_INFO, "upgrade: started %s as process %ld with %u listening sockets",
             argv[0], (long)pid, n);
    return 0;
}

void nea__upgrade_close(nea__upgrade *u)
{
    u->reported = true;
    close_handles(u);
}
