/*
 * listener.c - a listening socket: bind (TCP or a Unix domain socket) or
 * adopt one the host already has, listen, report pending connections, and
 * survive accept errors.
 *
 * The listener never accepts itself: it tells its owner a connection is
 * pending, and admission decides which slot (or reject handle) takes it.
 * Accept errors at the process fd limit are counted and logged at most once
 * a second: libuv already shed the connection with its reserve fd, so the
 * listener does not spin.
 *
 * Every kind is held in a uv_tcp_t: libuv's Unix stream code reads, writes,
 * listens and accepts without looking at the address family (uv_tcp_open
 * takes any stream socket, uv_accept opens the accepted descriptor in
 * whatever stream handle it is given), so a Unix domain socket and its
 * connections use the same handles as TCP. Only the TCP options are
 * skipped for them (TCP_NODELAY here; the slots ignore its failure).
 *
 * Shared addresses: with SO_REUSEPORT several listening sockets (one per
 * worker, or one per server a host runs on its own threads) bind the same
 * address and the kernel spreads new connections across them. libuv 1.44
 * cannot set that option before bind, so such a socket is made here
 * (socket, SO_REUSEADDR as libuv sets it, SO_REUSEPORT, bind) and handed to
 * libuv with uv_tcp_open. Unix domain sockets have no such groups: workers
 * share one socket (see server.c).
 *
 * Unix socket paths: a path whose file is a socket nobody accepts on (a
 * process that died left it) is replaced; a path a live process serves is
 * UV_EADDRINUSE. The file this listener bound is unlinked when it closes,
 * checked by device and inode so that a file another process bound since
 * is left alone, and not at all when a successor took the socket over
 * (keep_path). "@name" is Linux's abstract namespace: no file at all.
 *
 * Inherited sockets (systemd's socket activation, an upgrade's
 * predecessor): listened on again, which for a socket that already listens
 * only sets the backlog; the connections waiting in its queue are served.
 */
#include "listener.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage ss;
} any_addr;

static void on_connection(uv_stream_t *stream, int status)
{
    nea__listener *l = stream->data;
    if (status < 0) {
        uint64_t now = uv_now(stream->loop);
        l->stats->accept_errors++;
        if (now - l->error_logged_ms >= 1000 || l->error_logged_ms == 0) {
            l->error_logged_ms = now;
            nea__log(l->cfg, NEA_LOG_WARN, "accept failed: %s (%llu so far)", uv_strerror(status),
                     (unsigned long long)l->stats->accept_errors);
        }
        return;
    }
    l->on_connection(l->data, stream);
}

/* The path's file is still the one bound here (not replaced since). */
static bool path_is_ours(const nea__listener *l)
{
    struct stat st;
    return lstat(l->path, &st) == 0 && st.st_dev == l->path_dev && st.st_ino == l->path_ino;
}

static void on_close(uv_handle_t *h)
{
    nea__listener *l = h->data;
    if (l->owns_path && !l->keep_path && path_is_ours(l)) {
        (void)unlink(l->path);
    }
    l->owns_path = false;
    l->listening = false;
    l->open = false;
    (*l->handles_open)--;
    l->on_closed(l->data);
}

static int adopt(nea__listener *l, int fd)
{
    int rc = uv_tcp_open(&l->tcp, fd);
    if (rc != 0) {
        close(fd);
    }
    return rc;
}

/* A bound socket with SO_REUSEPORT, adopted by l->tcp. */
static int bind_shared(nea__listener *l, const struct sockaddr *sa, socklen_t len)
{
    int one = 1, rc;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, sa, len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return adopt(l, fd);
}

/* sun for l->path; its length, or a negative error. */
static int unix_addr(const nea__listener *l, struct sockaddr_un *sun)
{
    size_t n = strlen(l->path);
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, l->path, n);
    if (l->path[0] == '@') {
        sun->sun_path[0] = '\0'; /* abstract: the name is the bytes after it */
    }
    return (int)(offsetof(struct sockaddr_un, sun_path) + n + (l->path[0] == '@' ? 0 : 1));
}

/* A socket file nobody accepts on: its process is gone. */
static bool stale(const struct sockaddr_un *sun, socklen_t len, const char *path)
{
    struct stat st;
    int fd, rc;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return false; /* not a socket: never removed */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    rc = connect(fd, (const struct sockaddr *)sun, len);
    rc = rc == 0 ? 0 : errno;
    close(fd);
    return rc == ECONNREFUSED; /* EAGAIN: alive with a full backlog */
}

static int bind_unix(nea__listener *l)
{
    struct sockaddr_un sun;
    struct stat st;
    socklen_t len;
    int fd, rc;

    if (l->path[0] == '\0' || strcmp(l->path, "@") == 0) {
        return UV_EINVAL;
    }
    len = (socklen_t)unix_addr(l, &sun);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    rc = bind(fd, (struct sockaddr *)&sun, len) == 0 ? 0 : -errno;
    if (rc == UV_EADDRINUSE && l->path[0] != '@' && stale(&sun, len, l->path) &&
        unlink(l->path) == 0) {
        nea__log(l->cfg, NEA_LOG_INFO, "unix:%s: replaced a socket file nobody served", l->path);
        rc = bind(fd, (struct sockaddr *)&sun, len) == 0 ? 0 : -errno;
    }
    if (rc == 0 && l->path[0] != '@' && lstat(l->path, &st) == 0) {
        l->owns_path = true;
        l->path_dev = st.st_dev;
        l->path_ino = st.st_ino;
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return adopt(l, fd);
}

/* A listening (or bound) stream socket the host had. */
static int adopt_inherited(nea__listener *l, int fd)
{
    int type = 0, flags;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
        int rc = errno == ENOTSOCK ? UV_ENOTSOCK : UV_EINVAL;
        close(fd);
        return rc;
    }
    flags = fcntl(fd, F_GETFD);
    if (flags >= 0) {
        (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC); /* children get it only when handed */
    }
    return adopt(l, fd);
}

static int resolve(const nea__listen_on *on, any_addr *addr, socklen_t *len)
{
    if (on->addr != NULL) {
        memcpy(&addr->ss, on->addr, sizeof(addr->ss));
    } else if (uv_ip4_addr(on->host, on->port, &addr->in4) != 0 &&
               uv_ip6_addr(on->host, on->port, &addr->in6) != 0) {
        return UV_EINVAL;
    }
    *len = addr->sa.sa_family == AF_INET6 ? sizeof(addr->in6) : sizeof(addr->in4);
    return 0;
}

static int bind_tcp(nea__listener *l, const nea__listen_on *on)
{
    any_addr addr;
    socklen_t len;
    int rc = resolve(on, &addr, &len);
    if (rc != 0) {
        return rc;
    }
    if (on->shared) {
        return bind_shared(l, &addr.sa, len);
    }
    return uv_tcp_bind(&l->tcp, &addr.sa, 0);
}

/* Reads back what the socket is bound to: family, port. */
static int learn_address(nea__listener *l)
{
    any_addr addr;
    int len = sizeof(addr);
    int rc = uv_tcp_getsockname(&l->tcp, &addr.sa, &len);
    if (rc != 0) {
        return rc;
    }
    l->family = addr.sa.sa_family;
    if (l->family == AF_INET || l->family == AF_INET6) {
        l->port = ntohs(l->family == AF_INET6 ? addr.in6.sin6_port : addr.in4.sin_port);
    } else if (l->family == AF_UNIX && l->path[0] == '\0') {
        /* inherited: name it for the logs */
        size_t n = (size_t)len > offsetof(struct sockaddr_un, sun_path)
                       ? (size_t)len - offsetof(struct sockaddr_un, sun_path)
                       : 0;
        n = n < sizeof(l->path) - 1 ? n : sizeof(l->path) - 1;
        memcpy(l->path, addr.un.sun_path, n);
        l->path[n] = '\0';
        if (n > 0 && l->path[0] == '\0') {
            l->path[0] = '@';
        }
    }
    return 0;
}

/* The address being set up, for a failure's log line. */
static void describe(const nea__listen_on *on, char *buf, size_t len)
{
    if (on->fd >= 0) {
        snprintf(buf, len, "inherited fd %d", on->fd);
    } else if (on->path != NULL) {
        snprintf(buf, len, "unix:%s", on->path);
    } else if (on->addr != NULL) {
        snprintf(buf, len, "the inherited socket's address");
    } else {
        snprintf(buf, len, "%s:%d", on->host, on->port);
    }
}

int nea__listener_start(nea__listener *l, uv_loop_t *loop, const nea_config *cfg,
                        const nea__listen_on *on, nea_stats *stats, unsigned *handles_open,
                        nea__fault *fault, void (*on_conn)(void *data, uv_stream_t *listener),
                        void (*on_closed)(void *data), void *data)
{
    char what[NEA__UNIX_PATH_MAX + 32];
    int rc;

    memset(l, 0, sizeof(*l));
    l->cfg = cfg;
    l->stats = stats;
    l->handles_open = handles_open;
    l->on_connection = on_conn;
    l->on_closed = on_closed;
    l->data = data;
    l->port = -1;
    uv_tcp_init(loop, &l->tcp);
    (*handles_open)++;
    l->open = true;
    l->tcp.data = l;
    if (nea__fault_hit(fault, NEA__FAULT_LISTEN)) {
        rc = UV_EADDRINUSE;
        if (on->fd >= 0) {
            close(on->fd);
        }
    } else if (on->fd >= 0) {
        rc = adopt_inherited(l, on->fd);
    } else if (on->path != NULL) {
        rc = strlen(on->path) >= sizeof(l->path) ? UV_ENAMETOOLONG : 0;
        if (rc == 0) {
            strcpy(l->path, on->path);
            rc = bind_unix(l);
        }
    } else {
        rc = bind_tcp(l, on);
    }
    if (rc == 0) {
        rc = learn_address(l);
    }
    if (rc == 0 && l->family != AF_UNIX) {
        /* Linux copies TCP_NODELAY to every socket accepted from this one:
         * one setsockopt here instead of one per connection. */
        rc = uv_tcp_nodelay(&l->tcp, 1);
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&l->tcp, cfg->backlog, on_connection);
    }
    if (rc != 0) {
        describe(on, what, sizeof(what));
        nea__log(cfg, NEA_LOG_ERROR, "cannot listen on %s: %s", what, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, on_close);
        return rc;
    }
    l->listening = true;
    return 0;
}

int nea__listener_fd(const nea__listener *l)
{
    uv_os_fd_t fd;
    if (!l->open || uv_fileno((const uv_handle_t *)&l->tcp, &fd) != 0) {
        return -1;
    }
    return fd;
}

void nea__listener_close(nea__listener *l)
{
    l->listening = false; /* at once: the port is being given up */
    if (l->open && !uv_is_closing((uv_handle_t *)&l->tcp)) {
        uv_close((uv_handle_t *)&l->tcp, on_close);
    }
}

bool nea__listener_fd_reuseport(int fd)
{
    int on = 0;
    socklen_t len = sizeof(on);
    return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on != 0;
}
