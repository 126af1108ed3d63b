/*
 * sockets.c - a server's listening sockets: which one each worker serves
 * (bound here, a Unix domain socket shared, or handed over by the parent
 * process), the round-robin program while the address's reuseport group
 * holds the server's own sockets alone (balance.c), and handing the sockets
 * to a successor (upgrade.c).
 *
 * Worker 0 decides for the group and runs the group check: its timer reads
 * every worker's listener, so it stops when the close begins (the workers
 * close their listeners on their own threads). After a successful upgrade
 * handed_off says a successor serves the same sockets; every worker reads
 * it while it closes.
 */
#include "sockets.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What worker w listens on (g: worker 0, already listening when w is
 * another). Inherited sockets go one per worker; a worker beyond them
 * joins the first one's reuseport group when it has one, else shares it,
 * as every worker shares a Unix domain socket. A TCP address is bound by
 * every worker, with SO_REUSEPORT when more than one socket shares it. */
static int listen_spec(nea_server *g, nea_server *w, nea__listen_on *on,
                       struct sockaddr_storage *addr)
{
    int first = nea__listener_fd(&g->listener);
    memset(on, 0, sizeof(*on));
    on->fd = -1;
    w->own_socket = true;
    if (g->inherit.http_count > 0 && w->index < g->inherit.http_count) {
        on->fd = g->inherit.http[w->index];
        g->inherit.http[w->index] = -1; /* the listener owns it now */
    } else if (g->inherit.http_count > 0 && g->listener.family != AF_UNIX &&
               nea__listener_fd_reuseport(first)) {
        socklen_t len = sizeof(*addr);
        if (getsockname(first, (struct sockaddr *)addr, &len) != 0) {
            return -errno;
        }
        on->addr = addr;
        on->shared = true;
    } else if (w->index > 0 && (g->inherit.http_count > 0 || g->cfg.unix_path != NULL)) {
        on->fd = fcntl(first, F_DUPFD_CLOEXEC, 3);
        w->own_socket = false;
        if (on->fd < 0) {
            return -errno;
        }
    } else if (g->cfg.unix_path != NULL) {
        on->path = g->cfg.unix_path;
    } else {
        on->host = g->cfg.host;
        on->port = w->index == 0 ? g->cfg.port : g->listener.port;
        on->shared = g->cfg.reuse_port || g->plan.workers > 1;
    }
    return 0;
}

int nea__sockets_listen(nea_server *w)
{
    nea__listen_on on;
    struct sockaddr_storage addr;
    int rc = listen_spec(w->group, w, &on, &addr);
    if (rc != 0) {
        nea__log(&w->cfg, NEA_LOG_ERROR, "cannot listen on worker %u: %s", w->index,
                 uv_strerror(rc));
        return rc;
    }
    return nea__listener_start(&w->listener, w->loop, &w->cfg, &on, &w->stats, &w->env.handles_open,
                               &w->fault, w->hooks->connection, w->hooks->closed, w);
}

/* Inherited descriptors nobody took (an error stopped the listen). */
void nea__sockets_close_inherited(nea_server *s)
{
    for (unsigned i = 0; i < s->inherit.http_count; i++) {
        if (s->inherit.http[i] >= 0) {
            close(s->inherit.http[i]);
            s->inherit.http[i] = -1;
        }
    }
    if (s->inherit.agent >= 0) {
        close(s->inherit.agent);
        s->inherit.agent = -1;
    }
}

/* Every worker's listening socket, in worker order (s: worker 0). */
static unsigned worker_fds(const nea_server *s, int *fds)
{
    for (unsigned i = 0; i < s->plan.workers; i++) {
        fds[i] = nea__listener_fd(&nea__server_worker(s, i)->listener);
    }
    return s->plan.workers;
}

/* Deals connections round-robin while the reuseport group holds this
 * server's sockets alone; leaves them to the kernel's hash while another
 * server or process shares the address (balance.c). Logs every change. */
static void rebalance(nea_server *s)
{
    int fds[1024], rc;
    unsigned n = worker_fds(s, fds);
    int alone = nea__balance_alone(fds, n);

    if (alone == 1 && !s->balance.attached) {
        rc = nea__balance_attach(&s->balance, fds[0]);
        if (rc == 0) {
            nea__log(&s->cfg, NEA_LOG_INFO,
                     "%u workers: new connections dealt round-robin, past workers with no free "
                     "slot",
                     n);
        } else {
            nea__log(&s->cfg, NEA_LOG_INFO,
                     "%u workers: new connections spread by the kernel's reuseport hash (the "
                     "round-robin program could not be attached: %s)",
                     n, uv_strerror(rc));
        }
    } else if (alone != 1 && (s->balance.attached || !s->balance_check_open)) {
        (void)nea__balance_detach(&s->balance, fds[0]);
        nea__log(&s->cfg, NEA_LOG_INFO,
                 "%u workers: new connections spread by the kernel's reuseport hash (%s)", n,
                 alone == 0 ? "another server or process listens on the same address"
                            : "cannot tell who else listens on the address");
    }
}

static void on_balance_check(uv_timer_t *t)
{
    rebalance(t->data);
}

static void on_balance_check_closed(uv_handle_t *h)
{
    nea_server *s = h->data;
    s->balance_check_open = false;
    s->env.handles_open--;
    s->hooks->closed(s);
}

/* With workers on one TCP address, each with a socket of its own: the
 * round-robin program's maps, then the first look at the group. Without
 * CAP_BPF (or with a shared socket) the kernel spreads connections. */
void nea__sockets_balance(nea_server *s)
{
    int fds[1024], rc;
    unsigned n = worker_fds(s, fds);

    for (unsigned i = 0; i < n; i++) {
        const nea_server *w = nea__server_worker(s, i);
        if (!w->own_socket || w->listener.family == AF_UNIX) {
            nea__log(&s->cfg, NEA_LOG_INFO,
                     "%u workers, not each on a TCP socket of its own in one reuseport group: "
                     "each accepts when it can",
                     n);
            return;
        }
    }
    rc = nea__fault_hit(&s->fault, NEA__FAULT_BALANCE) ? UV_EPERM
                                                       : nea__balance_init(&s->balance, fds, n);
    if (rc != 0) {
        nea__log(&s->cfg, NEA_LOG_INFO,
                 "%u workers: new connections spread by the kernel's reuseport hash (the "
                 "round-robin program could not be loaded: %s)",
                 n, uv_strerror(rc));
        return;
    }
    s->balance_ready = true;
    for (unsigned i = 0; i < n; i++) {
        nea__server_worker(s, i)->flags_map = s->balance.flags_map;
    }
    rebalance(s);
    uv_timer_init(s->loop, &s->balance_check);
    s->balance_check.data = s;
    s->balance_check_open = true;
    s->env.handles_open++;
    uv_timer_start(&s->balance_check, on_balance_check, NEA__BALANCE_CHECK_MS,
                   NEA__BALANCE_CHECK_MS);
    uv_unref((uv_handle_t *)&s->balance_check); /* never keeps the loop alive */
}

/* A single socket joining a group others hold (reuse_port): whatever
 * program they attached would never select it; the kernel's hash will. */
void nea__sockets_join(nea_server *s)
{
    int fd = nea__listener_fd(&s->listener);
    if (s->listener.family != AF_UNIX && nea__balance_alone(&fd, 1) == 0 &&
        nea__balance_detach(NULL, fd) == 0) {
        nea__log(&s->cfg, NEA_LOG_INFO,
                 "another server or process listens on the same address: its round-robin "
                 "program is detached, the kernel's reuseport hash spreads connections");
    }
}

bool nea__sockets_check_open(nea_server *s)
{
    if (!s->balance_check_open) {
        return false;
    }
    if (!uv_is_closing((uv_handle_t *)&s->balance_check)) {
        uv_close((uv_handle_t *)&s->balance_check, on_balance_check_closed);
    }
    return true;
}

static void on_upgrade_done(void *data, int status)
{
    nea_server *s = data;
    if (status == 0) {
        __atomic_store_n(&s->handed_off, true, __ATOMIC_RELEASE);
        s->listener.keep_path = true; /* the successor's path now */
    }
    s->upgrade_cb(s, status, s->upgrade_data);
}

int nea_server_upgrade(nea_server *s, char *const argv[],
                       void (*cb)(nea_server *s, int status, void *data), void *data)
{
    int fds[NEA_LISTEN_FDS_MAX + 1];
    const char *names[NEA_LISTEN_FDS_MAX + 1];
    unsigned n = 0;
    int rc;

    if (s->index != 0 || !s->listener.listening || s->closing || s->upgrade.open ||
        nea__server_handed_off(s)) {
        return NEA_ESTATE;
    }
    if (argv == NULL || argv[0] == NULL || cb == NULL) {
        return UV_EINVAL;
    }
    /* Each worker's own socket (a shared one once), in worker order: the
     * successor's worker i serves the socket worker i served. */
    for (unsigned i = 0; i < s->plan.workers && n < NEA_LISTEN_FDS_MAX; i++) {
        const nea_server *w = nea__server_worker(s, i);
        if (w->own_socket) {
            fds[n] = nea__listener_fd(&w->listener);
            names[n++] = NEA__FDNAME_HTTP;
        }
    }
    if (s->agent.listener.listening) {
        fds[n] = nea__listener_fd(&s->agent.listener);
        names[n++] = NEA__FDNAME_AGENT;
    }
    s->upgrade_cb = cb;
    s->upgrade_data = data;
    rc = nea__upgrade_start(&s->upgrade, s->loop, &s->cfg, &s->env.handles_open, argv, fds, names,
                            n, on_upgrade_done, s->hooks->closed, s);
    if (rc != 0) {
        nea__log(&s->cfg, NEA_LOG_ERROR, "upgrade: cannot start %s: %s", argv[0], uv_strerror(rc));
    }
    return rc;
}
