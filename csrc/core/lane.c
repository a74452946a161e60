/* A lane: one transfer thread and its libcurl multi handle, driven from the lane's epoll
 * (curl_multi_socket_action). Each turn of its loop admits ops for every lane, starts
 * what other threads handed it (admitted and prepared ops, children, verify failures to
 * retry), drops cancelled ops, starts due retries and samples for stalls, then waits for
 * its sockets, its wakeup eventfd or the next deadline. Also how other threads hand a lane
 * work and wake it, and opening and closing a lane. */
#include "core/engine_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>

#define IDLE_POLL_MS 1000
/* How often the bytes moved by each transfer are sampled: a stall is seen at most about
 * two intervals after its timeout. */
#define STALL_SAMPLE_MS 250

static _Thread_local lane *t_lane; /* the lane this thread runs, if any */

/* Milliseconds until t, rounded up (0 once t has passed): waiting that long never wakes
 * before t, so a deadline is not polled for in a busy loop. */
static long ms_until(struct timespec t)
{
    struct timespec n = now_mono();
    long long ns = (long long)(t.tv_sec - n.tv_sec) * 1000000000LL + (t.tv_nsec - n.tv_nsec);
    return ns <= 0 ? 0 : (long)((ns + 999999) / 1000000);
}

/* ---------- handing work to a lane ---------- */

/* Wake a lane's thread unless a wakeup is already on its way, or we are it. */
void cfs_lane_wake(lane *ln)
{
    if (t_lane == ln) {
        ln->turn_again = 1; /* it looks at its lists again before it next sleeps */
        return;
    }
    if (!atomic_exchange(&ln->wake_pending, 1)) {
        uint64_t one = 1;
        ssize_t rc = write(ln->wake_fd, &one, sizeof one); /* fails only if already readable */
        (void)rc;
    }
}

/* Give an op to one of a lane's inbound queues and wake the lane. */
void cfs_lane_hand(engine *e, lane *ln, op_queue *q, cfs_op *op)
{
    pthread_mutex_lock(&e->lock);
    queue_push(q, op);
    pthread_mutex_unlock(&e->lock);
    cfs_lane_wake(ln);
}

/* Everything in one of a lane's inbound queues (on the lane's thread). */
static cfs_op *take_inbound(lane *ln, op_queue *q)
{
    pthread_mutex_lock(&ln->e->lock);
    cfs_op *list = queue_take_all(q);
    pthread_mutex_unlock(&ln->e->lock);
    return list;
}

/* A slot freed or ops submitted: have a lane admit (any lane admits for all of them),
 * unless this thread is a lane, which then admits again before it next sleeps. (A slot
 * freed during a turn, after its admission, by an op that failed as it was built, waited
 * for the lane's idle timeout: a second.) */
void cfs_lane_wake_admission(engine *e)
{
    cfs_lane_wake(t_lane ? t_lane : &e->lanes[0]);
}

/* ---------- each turn of the loop ---------- */

/* Hand completed children back to their parents' backends. */
static void run_children_done(lane *ln)
{
    for (;;) {
        /* again until none is left: children started below may complete at once */
        cfs_op *list = take_inbound(ln, &ln->children_done);
        if (!list)
            return;
        cfs_transfer_hand_back_children(ln, list);
    }
}

/* Start what other threads handed to this lane: admitted ops, prepared ones (for their
 * request), children of another lane's op. */
static void start_ready(lane *ln)
{
    cfs_op *list = take_inbound(ln, &ln->ready);
    cfs_op *op;
    while ((op = list_pop(&list))) {
        cfs_transfer_start_request(ln, op);
    }
}

/* Verified ops that failed come back here to back off and try again. */
static void retry_verify_failures(lane *ln)
{
    cfs_op *list = take_inbound(ln, &ln->verify_failed);
    cfs_op *op;
    while ((op = list_pop(&list))) {
        transfer *t = calloc(1, sizeof *t);
        if (!t) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory retrying");
            finish_op(ln, op);
            continue;
        }
        t->op = op;
        t->retry_after = -1;
        op->engine_priv = t;
        cfs_transfer_schedule_retry(ln, t);
    }
}

/* Fail, for a retry, every transfer that has moved no byte for its stall timeout
 * (sampled every STALL_SAMPLE_MS). */
static void check_stalls(lane *ln)
{
    struct timespec now = now_mono();
    if (now.tv_sec < ln->next_stall_check.tv_sec ||
        (now.tv_sec == ln->next_stall_check.tv_sec && now.tv_nsec < ln->next_stall_check.tv_nsec))
        return;
    ln->next_stall_check = after_seconds(STALL_SAMPLE_MS / 1000.0);
    transfer *t = ln->active;
    while (t) {
        transfer *next = t->next_active; /* t may leave the list below */
        curl_off_t down = 0, up = 0;
        curl_easy_getinfo(t->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
        curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &up);
        if (down + up != t->moved) {
            t->moved = down + up;
            t->last_move = now;
        } else {
            double idle = (double)(now.tv_sec - t->last_move.tv_sec) +
                          (double)(now.tv_nsec - t->last_move.tv_nsec) / 1e9;
            if (idle >= (double)t->op->limiter->cfg.stall_timeout_s) {
                t->stalled = 1;
                cfs_transfer_done(ln, t->easy, CURLE_OPERATION_TIMEDOUT);
            }
        }
        t = next;
    }
}

/* After a cfs_engine_notice_cancel: drop what may be given up among the transfers on
 * the wire and those waiting to retry (ops about to start are checked in
 * cfs_transfer_start_request). */
static void give_up_cancelled(lane *ln)
{
    unsigned gen = cfs_engine_cancel_gen();
    if (gen == ln->cancel_gen)
        return;
    ln->cancel_gen = gen;
    transfer *t = ln->active;
    while (t) {
        transfer *next = t->next_active; /* t leaves the list below */
        if (cfs_engine_may_give_up(t->op, 1)) {
            t->cancelled = 1;
            cfs_transfer_done(ln, t->easy, CURLE_ABORTED_BY_CALLBACK);
        }
        t = next;
    }
    transfer **pp = &ln->retries;
    while (*pp) {
        t = *pp;
        if (!cfs_engine_may_give_up(t->op, 0)) {
            pp = &t->next_retry;
            continue;
        }
        *pp = t->next_retry;
        cfs_op *op = t->op;
        cfs_transfer_free(ln, t);
        cfs_engine_fail_cancelled(op);
        finish_op(ln, op);
    }
}

static void start_due_retries(lane *ln, long *timeout_ms)
{
    transfer **pp = &ln->retries;
    while (*pp) {
        transfer *t = *pp;
        long ms = ms_until(t->retry_at);
        if (ms > 0) {
            if (ms < *timeout_ms)
                *timeout_ms = ms;
            pp = &t->next_retry;
            continue;
        }
        *pp = t->next_retry;
        cfs_op *op = t->op;
        /* a retry rebuilds the request (fresh signature, date) and clears old results */
        op->status = CFS_OK;
        op->message[0] = '\0';
        cfs_transfer_free(ln, t);
        cfs_transfer_start_request(ln, op);
    }
}

/* ---------- the loop ---------- */

/* libcurl's socket callback: keep epoll's interest in step with what each socket waits
 * for. Event-driven, libcurl touches only the sockets that are ready (curl_multi_perform
 * polls every transfer's socket on every call: 13 poll() calls per request here). */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    lane *ln = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(ln->epfd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(ln->multi, fd, NULL);
        return 0;
    }
    struct epoll_event ev = { .events = 0, .data.fd = fd };
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (socketp) {
        epoll_ctl(ln->epfd, EPOLL_CTL_MOD, fd, &ev);
    } else if (epoll_ctl(ln->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
        curl_multi_assign(ln->multi, fd, ln); /* any non-NULL mark: "registered" */
    }
    return 0;
}

/* libcurl's timer callback: when to call it back with CURL_SOCKET_TIMEOUT (-1: never). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    lane *ln = userp;
    ln->curl_timer_set = timeout_ms >= 0;
    if (ln->curl_timer_set)
        ln->curl_deadline = after_seconds((double)timeout_ms / 1000.0);
    return 0;
}

static void drain_messages(lane *ln)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(ln->multi, &left)))
        if (msg->msg == CURLMSG_DONE)
            cfs_transfer_done(ln, msg->easy_handle, msg->data.result);
}

/* The lane's thread (its argument: the lane). */
void *cfs_lane_main(void *arg)
{
    lane *ln = arg;
    engine *e = ln->e;
    t_lane = ln;
    pthread_setname_np(pthread_self(), "cfs-transfer");
    struct epoll_event events[256];
    int running = 0;
    for (;;) {
        atomic_store(&ln->wake_pending, 0); /* before admitting: later submits wake us again */
        ln->turn_again = 0;
        pthread_mutex_lock(&e->lock);
        unsigned given = cfs_admission_admit_locked(e);
        pthread_mutex_unlock(&e->lock);
        for (int i = 0; i < e->n_lanes; i++)
            if (i != ln->index && (given & (1u << i)))
                cfs_lane_wake(&e->lanes[i]); /* this one starts its own below */

        long timeout_ms = ln->active ? STALL_SAMPLE_MS : IDLE_POLL_MS;
        start_ready(ln);
        run_children_done(ln);
        retry_verify_failures(ln);
        give_up_cancelled(ln);
        cfs_transfer_release_parked(ln);
        start_due_retries(ln, &timeout_ms);
        check_stalls(ln);
        cfs_transfer_start_hedges(ln, &timeout_ms);
        if (ln->curl_timer_set) {
            long ms = ms_until(ln->curl_deadline);
            if (ms < timeout_ms)
                timeout_ms = ms;
        }

        if (ln->turn_again)
            timeout_ms = 0; /* look at the sockets, then take the new work */
        int n =
            epoll_wait(ln->epfd, events, (int)(sizeof events / sizeof events[0]), (int)timeout_ms);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ln->wake_fd) {
                uint64_t count;
                ssize_t rc = read(ln->wake_fd, &count, sizeof count);
                (void)rc;
                continue;
            }
            int flags = 0;
            if (events[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (events[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(ln->multi, fd, flags, &running);
        }
        if (ln->curl_timer_set && ms_until(ln->curl_deadline) == 0) {
            ln->curl_timer_set = 0;
            curl_multi_socket_action(ln->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_messages(ln);
    }
    return NULL;
}

/* ---------- opening and closing ---------- */

void cfs_lane_close(lane *ln)
{
    if (ln->multi)
        curl_multi_cleanup(ln->multi);
    if (ln->epfd >= 0)
        close(ln->epfd);
    if (ln->wake_fd >= 0)
        close(ln->wake_fd);
    ln->multi = NULL;
    ln->epfd = ln->wake_fd = -1;
}

/* A lane's epoll, eventfd and multi handle (its thread not started). 0, or -1 with
 * nothing left open. */
int cfs_lane_open(engine *e, lane *ln, int index)
{
    ln->e = e;
    ln->index = index;
    ln->epfd = epoll_create1(EPOLL_CLOEXEC);
    ln->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event wake_ev = { .events = EPOLLIN, .data.fd = ln->wake_fd };
    if (ln->epfd < 0 || ln->wake_fd < 0 ||
        epoll_ctl(ln->epfd, EPOLL_CTL_ADD, ln->wake_fd, &wake_ev) < 0 ||
        !(ln->multi = curl_multi_init())) {
        cfs_lane_close(ln);
        return -1;
    }
    curl_multi_setopt(ln->multi, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETDATA, ln);
    curl_multi_setopt(ln->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(ln->multi, CURLMOPT_TIMERDATA, ln);
    return 0;
}
