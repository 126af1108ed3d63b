/*
 * mhd: the benchmark routes on libmicrohttpd, one internal epoll thread
 * (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, no thread pool, no
 * thread per connection) so that it runs on one core like the others.
 * MHD_USE_TURBO enables MHD's opportunistic reads and writes.
 *
 * The /hello response object is built once and queued for every request
 * (MHD reference-counts it); /alloc and /svg build a response per request.
 * A POST body is collected into a per-request heap buffer.
 *
 *   mhd --port N
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <microhttpd.h>

#include "common.h"

struct upload {
    char *data;
    size_t len;
};

static struct MHD_Response *hello;
static int first_call_marker; /* *state for requests other than POST /svg */

static enum MHD_Result send_copy(struct MHD_Connection *conn, unsigned status, const char *ctype,
                                 const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **state)
{
    (void)cls;
    (void)version;

    if (strcmp(method, MHD_HTTP_METHOD_POST) == 0 && strcmp(url, "/svg") == 0) {
        struct upload *u = *state;
        if (!u) { /* first call: headers only */
            u = calloc(1, sizeof *u);
            if (!u)
                return MHD_NO;
            *state = u;
            return MHD_YES;
        }
        if (*upload_size) {
            char *d = realloc(u->data, u->len + *upload_size);
            if (!d)
                return MHD_NO;
            memcpy(d + u->len, upload_data, *upload_size);
            u->data = d;
            u->len += *upload_size;
            *upload_size = 0;
            return MHD_YES;
        }
        char *svg = NULL;
        size_t svg_len = 0;
        int rc = peer_svg_build(u->data ? u->data : "", u->len, &svg, &svg_len);
        if (rc == -1)
            return send_copy(conn, MHD_HTTP_BAD_REQUEST, "text/plain", "malformed csv\n", 14);
        if (rc < 0)
            return send_copy(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "out of memory\n", 14);
        struct MHD_Response *r = MHD_create_response_from_buffer(svg_len, svg, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(svg);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "image/svg+xml");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
    }

    /*
     * Any other request: answer on the second call. MHD 0.9.75 closes the
     * connection after a response queued during the first call (made when
     * only the head has been read), which would defeat keep-alive.
     */
    if (!*state) {
        *state = &first_call_marker;
        return MHD_YES;
    }
    if (*upload_size) { /* an unexpected body: discard it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) == 0) {
        if (strcmp(url, "/hello") == 0)
            return MHD_queue_response(conn, MHD_HTTP_OK, hello);
        if (strncmp(url, "/alloc/", 7) == 0) {
            unsigned long kib;
            char num[24];
            int n;
            if (peer_parse_kib(url + 7, strlen(url + 7), &kib))
                return send_copy(conn, MHD_HTTP_BAD_REQUEST, "text/plain", "bad size\n", 9);
            if ((n = peer_alloc_work(kib, num)) < 0)
                return send_copy(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "out of memory\n", 14);
            return send_copy(conn, MHD_HTTP_OK, "text/plain", num, (size_t)n);
        }
    }
    return send_copy(conn, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n", 10);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state, enum MHD_RequestTerminationCode why)
{
    struct upload *u = *state;
    (void)cls;
    (void)conn;
    (void)why;
    if (u && *state != (void *)&first_call_marker) {
        free(u->data);
        free(u);
        *state = NULL;
    }
}

int main(int argc, char **argv)
{
    int port = peer_parse_port(argc, argv, "mhd");
    struct sockaddr_in addr = {0};
    struct MHD_Daemon *d;
    sigset_t set;
    int sig;

    /* Block the stop signals before MHD starts its thread, then wait for them. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    hello = MHD_create_response_from_buffer(PEER_HELLO_LEN, (void *)PEER_HELLO, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(hello, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");

    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO, (uint16_t)port, NULL, NULL,
                         on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, NULL, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mhd: cannot start on 127.0.0.1:%d\n", port);
        return 1;
    }
    printf("mhd listening on http://127.0.0.1:%d\n", port);
    fflush(stdout);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    MHD_destroy_response(hello);
    return 0;
}
