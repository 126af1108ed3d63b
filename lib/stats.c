/*
 * stats.c - keeping the server's counters. Every counter is a plain field of
 * nea_stats in the reservation, changed on the loop thread only, so
 * recording is a few instructions and never allocates; nea_server_stats
 * copies them out together with the pool's and the queue's live figures.
 */
#include "stats.h"

void nea__stats_response(nea_stats *st, int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5) {
        st->responses[cls]++;
    }
}

void nea__stats_conn_opened(nea_stats *st)
{
    st->connections_open++;
    st->accepted++;
    if (st->connections_open > st->connections_max) {
        st->connections_max = st->connections_open;
    }
}

void nea__stats_conn_closed(nea_stats *st)
{
    st->connections_open--;
}
