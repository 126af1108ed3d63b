/*
 * listener.c - the listening socket: bind, listen, report pending
 * connections, and survive accept errors.
 *
 * The listener never accepts itself: it tells its owner a connection is
 * pending, and admission decides which slot (or reject handle) takes it.
 * Accept errors at the process fd limit are counted and logged at most once
 * a second: libuv already shed the connection with its reserve fd, so the
 * listener does not spin.
 *
 * Shared addresses: with SO_REUSEPORT several listening sockets (one per
 * worker, or one per server a host runs on its own threads) bind the same
 * address and the kernel spreads new connections across them. libuv 1.44
 * cannot set that option before bind, so such a socket is made here
 * (socket, SO_REUSEADDR as libuv sets it, SO_REUSEPORT, bind) and handed to
 * libuv with uv_tcp_open.
 */
#include "listener.h"

#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

static void on_close(uv_handle_t *h)
{
    nea__listener *l = h->data;
    l->listening = false;
    l->open = false;
    (*l->handles_open)--;
    l->on_closed(l->data);
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
    rc = uv_tcp_open(&l->tcp, fd);
    if (rc != 0) {
        close(fd);
    }
    return rc;
}

int nea__listener_start(nea__listener *l, uv_loop_t *loop, const nea_config *cfg, const char *host,
                        int port, bool shared, nea_stats *stats, unsigned *handles_open,
                        nea__fault *fault,
                        void (*on_conn)(void *data, uv_stream_t *listener),
                        void (*on_closed)(void *data), void *data)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } addr;
    int len = sizeof(addr), rc;

    memset(l, 0, sizeof(*l));
    l->cfg = cfg;
    l->stats = stats;
    l->handles_open = handles_open;
    l->on_connection = on_conn;
    l->on_closed = on_closed;
    l->data = data;
    l->port = -1;
    /* The plan accepted host as an IP literal. */
    if (uv_ip4_addr(host, port, &addr.in4) != 0) {
        (void)uv_ip6_addr(host, port, &addr.in6);
    }
    uv_tcp_init(loop, &l->tcp);
    (*handles_open)++;
    l->open = true;
    l->tcp.data = l;
    if (nea__fault_hit(fault, NEA__FAULT_LISTEN)) {
        rc = UV_EADDRINUSE;
    } else if (shared) {
        rc = bind_shared(l, &addr.sa,
                         addr.sa.sa_family == AF_INET6 ? sizeof(addr.in6) : sizeof(addr.in4));
    } else {
        rc = uv_tcp_bind(&l->tcp, &addr.sa, 0);
    }
    if (rc == 0) {
        /* Linux copies TCP_NODELAY to every socket accepted from this one:
         * one setsockopt here instead of one per connection. */
        rc = uv_tcp_nodelay(&l->tcp, 1);
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&l->tcp, cfg->backlog, on_connection);
    }
    if (rc == 0) {
        rc = uv_tcp_getsockname(&l->tcp, &addr.sa, &len);
    }
    if (rc != 0) {
        nea__log(cfg, NEA_LOG_ERROR, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, on_close);
        return rc;
    }
    l->port = ntohs(addr.sa.sa_family == AF_INET6 ? addr.in6.sin6_port : addr.in4.sin_port);
    l->listening = true;
    return 0;
}

void nea__listener_close(nea__listener *l)
{
    l->listening = false; /* at once: the port is being given up */
    if (l->open && !uv_is_closing((uv_handle_t *)&l->tcp)) {
        uv_close((uv_handle_t *)&l->tcp, on_close);
    }
}
