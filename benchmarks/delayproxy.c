/* delayproxy: a TCP proxy on loopback that holds every chunk of bytes, in each direction,
 * for a set time before passing it on: round-trip latency for benchmarks on a machine
 * without netem.
 *
 *   cc -O2 -Wall -Wextra -pthread -o delayproxy delayproxy.c
 *   delayproxy --target 127.0.0.1:8080 [--port 0] [--delay-ms 20] [--jitter-ms 0]
 *              [--max-conns 4096] [--max-buffer 1048576] [--seed N] [--splice 1] [--threads 1]
 *
 * Prints "PORT <n>" on stdout once listening on 127.0.0.1:<n>. Each accepted connection
 * gets its own connection to the target (which must be a 127.0.0.0/8 address). What is read
 * from one side is released to the other after delay-ms plus a uniform jitter in
 * [0, jitter-ms]; release times never go backwards within a direction, so the byte order of
 * each connection is kept. A request and its response thus take 2 x delay-ms more (one
 * round trip), a TCP/TLS handshake as many round trips as it has.
 *
 * Each thread (--threads, default 1) runs its own loop: a listening socket of its own
 * (SO_REUSEPORT spreads new connections over them), epoll, a timer wheel of 1 ms slots; a
 * connection stays on the thread that accepted it. On 2 cores a second thread did not
 * raise the zero-delay rate (benchmarks/NOTES.md). Bounded memory: at most max-buffer bytes
 * held per direction (reading from that side stops until they are written; a queued read
 * buffer is at least half full, so under 2 x max-buffer allocated), at most max-conns
 * connections (more are accepted and closed at once, as are connections that arrive when
 * descriptors run out).
 *
 * With delay and jitter 0 (the "is the proxy the bottleneck" check) bytes go through at once
 * by splice(): socket -> pipe -> other socket, never copied into user space, one splice
 * each way per message. Reading a side stops while bytes wait in its pipe (the other socket
 * is full); a direction takes a pipe from a small pool only while it forwards, so idle
 * connections hold no pipe. --splice 0 uses the copy path (recv + send) instead. With a
 * delay, or where no pipe can be had, bytes are read into a buffer and queued with their
 * release time.
 * SIGTERM/SIGINT stop it: every loop closes its connections, and it exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WHEEL 1024     /* slots of 1 ms */
#define READ_SIZE 65536
#define PIPE_SIZE (256 * 1024) /* asked for each splice pipe (F_SETPIPE_SZ) */
#define PIPE_POOL 256          /* empty pipes kept for reuse (per thread) */
#define MAX_THREADS 64

typedef struct chunk {
    struct chunk *next;
    uint64_t due_ms;
    size_t len, off;
    char data[];
} chunk;

struct conn;

typedef struct dir {              /* bytes flowing from one socket to the other */
    struct conn *c;
    int from, to;                 /* indexes into c->fd: 0 client, 1 upstream */
    chunk *head, *tail;
    size_t held;                  /* bytes queued (in chunks, or in the pipe) */
    int pipe[2];                  /* splice path: bytes read, not yet written (-1: none) */
    uint64_t last_due;            /* release times never go back */
    int eof;                      /* the source sent FIN */
    int shut;                     /* FIN passed on */
    int in_wheel;
    uint64_t wheel_due;
    struct dir *wprev, *wnext;
} dir;

typedef struct end {              /* what epoll points to */
    struct conn *c;
    int side;
} end;

typedef struct conn {
    int fd[2];
    unsigned mask[2];             /* current epoll interest per fd */
    int connected;                /* the upstream connect finished */
    int dead;
    dir d[2];                     /* d[0]: client -> upstream, d[1]: upstream -> client */
    end ends[2];
    struct conn *next_dead;
    struct conn *prev, *next; /* the live connections (freed at exit) */
} conn;

/* set by main before the loops start, read-only after */
static uint64_t g_delay_ms, g_jitter_ms;
static size_t g_max_buffer = 1 << 20;
static int g_max_conns = 4096;
static int g_splice = 1; /* with delay and jitter 0: splice() through a pipe */
static int g_stopfd;     /* an eventfd in every loop's epoll: written once to stop them all */
static int g_nconns;     /* over all loops (atomic) */
/* each loop (thread) has its own */
static __thread int g_ep;
static __thread dir *g_wheel[WHEEL];
static __thread uint64_t g_wheel_now; /* slots up to this time were processed */
static __thread conn *g_dead, *g_live;
static __thread uint64_t g_rng;
static __thread int g_pool[PIPE_POOL][2], g_npool;
static __thread chunk *g_spare; /* READ_SIZE bytes to read into (copy path) */
static __thread int g_reserve = -1; /* a descriptor given up to refuse a connection at EMFILE */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---------- the wheel: a direction is in it while its head chunk waits for its time */

static void wheel_remove(dir *d)
{
    if (!d->in_wheel)
        return;
    if (d->wprev)
        d->wprev->wnext = d->wnext;
    else
        g_wheel[d->wheel_due % WHEEL] = d->wnext;
    if (d->wnext)
        d->wnext->wprev = d->wprev;
    d->in_wheel = 0;
    d->wprev = d->wnext = NULL;
}

static void wheel_add(dir *d, uint64_t due)
{
    wheel_remove(d);
    if (due <= g_wheel_now)
        due = g_wheel_now + 1; /* the next slot processed */
    d->wheel_due = due;
    dir **slot = &g_wheel[due % WHEEL];
    d->wprev = NULL;
    d->wnext = *slot;
    if (*slot)
        (*slot)->wprev = d;
    *slot = d;
    d->in_wheel = 1;
}

/* ---------- pipes for the zero-delay path: a direction holds one only while bytes wait in it */

static int pipe_get(dir *d)
{
    if (d->pipe[0] >= 0)
        return 0;
    if (g_npool) {
        g_npool--;
        d->pipe[0] = g_pool[g_npool][0];
        d->pipe[1] = g_pool[g_npool][1];
        return 0;
    }
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        d->pipe[0] = d->pipe[1] = -1;
        return -1;
    }
    fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE); /* a hint: the default 64 KiB also works */
    return 0;
}

static void pipe_put(dir *d)
{
    if (d->pipe[0] < 0)
        return;
    if (d->held == 0 && g_npool < PIPE_POOL) { /* only an empty pipe goes back */
        g_pool[g_npool][0] = d->pipe[0];
        g_pool[g_npool][1] = d->pipe[1];
        g_npool++;
    } else {
        close(d->pipe[0]);
        close(d->pipe[1]);
    }
    d->pipe[0] = d->pipe[1] = -1;
}

/* ---------- connections */

static void update_mask(conn *c, int side)
{
    if (c->dead || c->fd[side] < 0)
        return;
    unsigned m = 0;
    dir *in = &c->d[side];       /* reads from this side */
    dir *out = &c->d[1 - side];  /* writes to this side */
    /* a pipe is read into only when empty: splice() can refuse more before held reaches
     * max-buffer (the pipe has slots, not bytes), and epoll would then wake us for nothing */
    if (!in->eof && (in->pipe[0] >= 0 ? in->held == 0 : in->held < g_max_buffer) &&
        (side == 0 || c->connected))
        m |= EPOLLIN;
    if (side == 1 && !c->connected)
        m |= EPOLLOUT; /* connect completion */
    else if (out->pipe[0] >= 0 && out->held)
        m |= EPOLLOUT; /* piped bytes wait for room in the socket */
    else if (out->head && out->head->due_ms <= now_ms())
        m |= EPOLLOUT; /* a due chunk waits for room in the socket */
    if (m == c->mask[side])
        return;
    struct epoll_event ev = { .events = m, .data.ptr = &c->ends[side] };
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd[side], &ev) == 0)
        c->mask[side] = m;
}

static void conn_kill(conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    for (int i = 0; i < 2; i++) {
        wheel_remove(&c->d[i]);
        for (chunk *k = c->d[i].head, *n; k; k = n) {
            n = k->next;
            free(k);
        }
        c->d[i].head = c->d[i].tail = NULL;
        pipe_put(&c->d[i]); /* closed if bytes are left in it */
        c->d[i].held = 0;
        if (c->fd[i] >= 0) {
            epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd[i], NULL);
            close(c->fd[i]);
            c->fd[i] = -1;
        }
    }
    __atomic_sub_fetch(&g_nconns, 1, __ATOMIC_RELAXED);
    if (c->prev)
        c->prev->next = c->next;
    else
        g_live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next_dead = g_dead; /* freed after this round of events */
    g_dead = c;
}

static void maybe_finish(conn *c)
{
    for (int i = 0; i < 2; i++) {
        dir *d = &c->d[i];
        if (d->eof && !d->held && !d->shut && c->connected) {
            shutdown(c->fd[d->to], SHUT_WR);
            d->shut = 1;
        }
    }
    if (c->d[0].shut && c->d[1].shut)
        conn_kill(c);
}

/* Write the due chunks of d; 0, or -1 if the connection died. */
static int flush(dir *d)
{
    conn *c = d->c;
    if (!c->connected && d->to == 1)
        return 0;
    if (d->pipe[0] >= 0) { /* zero-delay path: what waits in the pipe */
        while (d->held) {
            ssize_t n = splice(d->pipe[0], NULL, c->fd[d->to], NULL, d->held,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno != EAGAIN) {
                conn_kill(c);
                return -1;
            }
            if (n <= 0)
                break;
            d->held -= (size_t)n;
        }
        if (!d->held)
            pipe_put(d);
        update_mask(c, d->to);
        update_mask(c, d->from);
        maybe_finish(c);
        return c->dead ? -1 : 0;
    }
    uint64_t now = now_ms();
    while (d->head && d->head->due_ms <= now) {
        chunk *k = d->head;
        ssize_t n = send(c->fd[d->to], k->data + k->off, k->len - k->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_kill(c);
            return -1;
        }
        k->off += (size_t)n;
        d->held -= (size_t)n;
        if (k->off < k->len)
            break;
        d->head = k->next;
        if (!d->head)
            d->tail = NULL;
        free(k);
    }
    if (d->head && d->head->due_ms > now)
        wheel_add(d, d->head->due_ms);
    else
        wheel_remove(d);
    update_mask(c, d->to);
    update_mask(c, d->from);
    maybe_finish(c);
    return c->dead ? -1 : 0;
}

/* Zero delay: splice what side `side` sent into a pipe and on to the other side, without
 * copying it through user space. Reads stop while bytes wait in the pipe. 0, or -1 if
 * the copy path must take this read (no pipe to be had). */
static int splice_readable(conn *c, int side)
{
    dir *d = &c->d[side];
    if (d->held)
        return 0; /* an event from before the pipe filled */
    if (pipe_get(d) < 0)
        return -1;
    int can_write = c->connected || d->to == 0;
    while (!c->dead && !d->eof && !d->held) {
        size_t want = g_max_buffer < PIPE_SIZE ? g_max_buffer : PIPE_SIZE;
        ssize_t n =
            splice(c->fd[side], NULL, d->pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_kill(c);
            break;
        }
        if (n == 0) {
            d->eof = 1;
            break;
        }
        d->held = (size_t)n;
        if (!can_write)
            break;
        while (d->held) {
            ssize_t w = splice(d->pipe[0], NULL, c->fd[d->to], NULL, d->held,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno != EAGAIN) {
                conn_kill(c);
                return 0;
            }
            if (w <= 0)
                break; /* the socket is full: EPOLLOUT, and no reads meanwhile */
            d->held -= (size_t)w;
        }
        if ((size_t)n < want)
            break; /* most likely drained; level-triggered epoll tells us if not */
    }
    if (c->dead)
        return 0;
    if (!d->held)
        pipe_put(d);
    update_mask(c, side);
    update_mask(c, d->to);
    maybe_finish(c);
    return 0;
}

/* Read what side `side` sent; queue it (or pass it on at once with no delay). */
static void on_readable(conn *c, int side)
{
    dir *d = &c->d[side];
    if (g_splice && (d->pipe[0] >= 0 || !d->head) && splice_readable(c, side) == 0)
        return;
    while (!c->dead && !d->eof && d->held < g_max_buffer) {
        size_t want = g_max_buffer - d->held < READ_SIZE ? g_max_buffer - d->held : READ_SIZE;
        if (!g_spare && !(g_spare = malloc(sizeof *g_spare + READ_SIZE))) {
            conn_kill(c);
            break;
        }
        char *buf = g_spare->data;
        ssize_t n = recv(c->fd[side], buf, want, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_kill(c);
            break;
        }
        if (n == 0) {
            d->eof = 1;
            break;
        }
        int drained = (size_t)n < want; /* most likely; level-triggered epoll tells us if not */
        size_t off = 0;
        uint64_t now = now_ms();
        uint64_t due = now + g_delay_ms + (g_jitter_ms ? rnd() % (g_jitter_ms + 1) : 0);
        if (due < d->last_due)
            due = d->last_due;
        d->last_due = due;
        if (due <= now && !d->head && (c->connected || d->to == 0)) {
            ssize_t w = send(c->fd[d->to], buf, (size_t)n, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                conn_kill(c);
                break;
            }
            off = w > 0 ? (size_t)w : 0;
            if (off == (size_t)n) {
                if (drained)
                    break;
                continue;
            }
        }
        chunk *k;
        if ((size_t)n - off >= READ_SIZE / 2) { /* queue the buffer itself: no copy */
            k = g_spare;
            g_spare = NULL;
            k->len = (size_t)n;
            k->off = off;
        } else { /* a small remainder: copy it, keep the buffer */
            k = malloc(sizeof *k + ((size_t)n - off));
            if (!k) {
                conn_kill(c);
                break;
            }
            k->len = (size_t)n - off;
            k->off = 0;
            memcpy(k->data, buf + off, k->len);
        }
        k->next = NULL;
        k->due_ms = due;
        if (d->tail)
            d->tail->next = k;
        else
            d->head = k;
        d->tail = k;
        d->held += k->len - k->off;
        if (k == d->head && due > now)
            wheel_add(d, due);
        if (drained)
            break;
    }
    if (c->dead)
        return;
    if (d->head && d->head->due_ms <= now_ms())
        flush(d); /* also updates the masks and finishes */
    else {
        update_mask(c, side);
        update_mask(c, d->to);
        maybe_finish(c);
    }
}

static void on_writable(conn *c, int side)
{
    if (side == 1 && !c->connected) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            conn_kill(c);
            return;
        }
        c->connected = 1;
    }
    flush(&c->d[1 - side]);
    if (!c->dead)
        flush(&c->d[side]); /* its reads may have waited for the connect */
}

static struct sockaddr_in g_target;

static void on_accept(int lfd)
{
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0 && (errno == EMFILE || errno == ENFILE) && g_reserve >= 0) {
            close(g_reserve); /* out of descriptors: refuse it (like max-conns), or */
            cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC); /* epoll would wake us for it forever */
            if (cfd >= 0)
                close(cfd);
            g_reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
            continue;
        }
        if (cfd < 0)
            return; /* EAGAIN */
        if (__atomic_add_fetch(&g_nconns, 1, __ATOMIC_RELAXED) > g_max_conns) {
            __atomic_sub_fetch(&g_nconns, 1, __ATOMIC_RELAXED);
            close(cfd);
            continue;
        }
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        conn *c = ufd >= 0 ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            if (ufd >= 0)
                close(ufd);
            close(cfd);
            __atomic_sub_fetch(&g_nconns, 1, __ATOMIC_RELAXED);
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd[0] = cfd;
        c->fd[1] = ufd;
        for (int i = 0; i < 2; i++) {
            c->d[i].c = c;
            c->d[i].pipe[0] = c->d[i].pipe[1] = -1;
            c->d[i].from = i;
            c->d[i].to = 1 - i;
            c->ends[i].c = c;
            c->ends[i].side = i;
        }
        int r = connect(ufd, (struct sockaddr *)&g_target, sizeof g_target);
        if (r == 0)
            c->connected = 1;
        struct epoll_event ev0 = { .events = EPOLLIN, .data.ptr = &c->ends[0] };
        struct epoll_event ev1 = { .events = c->connected ? EPOLLIN : EPOLLOUT,
                                   .data.ptr = &c->ends[1] };
        if ((r < 0 && errno != EINPROGRESS) || epoll_ctl(g_ep, EPOLL_CTL_ADD, cfd, &ev0) < 0) {
            close(cfd);
            close(ufd);
            free(c);
            __atomic_sub_fetch(&g_nconns, 1, __ATOMIC_RELAXED);
            continue;
        }
        c->mask[0] = EPOLLIN;
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, ufd, &ev1) < 0) {
            epoll_ctl(g_ep, EPOLL_CTL_DEL, cfd, NULL);
            close(cfd);
            close(ufd);
            free(c);
            __atomic_sub_fetch(&g_nconns, 1, __ATOMIC_RELAXED);
            continue;
        }
        c->mask[1] = ev1.events;
        c->next = g_live;
        if (g_live)
            g_live->prev = c;
        g_live = c;
    }
}

/* Release what became due since the last call. */
static void run_wheel(void)
{
    uint64_t now = now_ms();
    if (now <= g_wheel_now)
        return;
    uint64_t from = g_wheel_now + 1;
    if (now - g_wheel_now > WHEEL)
        from = now - WHEEL + 1; /* every slot once */
    g_wheel_now = now;
    for (uint64_t t = from; t <= now; t++) {
        dir *d = g_wheel[t % WHEEL];
        while (d) {
            dir *next = d->wnext;
            if (d->wheel_due <= now && !d->c->dead)
                flush(d); /* removes it, or adds it again for its next chunk */
            d = next;
        }
    }
}

/* Milliseconds until the next slot with a direction in it (-1: none). */
static int next_timeout(void)
{
    for (uint64_t i = 1; i <= WHEEL; i++)
        if (g_wheel[(g_wheel_now + i) % WHEEL]) {
            uint64_t now = now_ms();
            uint64_t at = g_wheel_now + i;
            return at <= now ? 0 : (int)(at - now);
        }
    return -1;
}

static void free_dead(void)
{
    while (g_dead) {
        conn *c = g_dead;
        g_dead = c->next_dead;
        free(c);
    }
}

typedef struct loop_arg {
    int lfd;
    uint64_t seed;
} loop_arg;

/* One event loop: its own listening socket (SO_REUSEPORT spreads new connections over the
 * loops), epoll, wheel, connections and pipes. Runs until g_stopfd is written. */
static void *run_loop(void *arg)
{
    int lfd = ((loop_arg *)arg)->lfd;
    g_rng = ((loop_arg *)arg)->seed;
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &g_stopfd };
    if (g_ep < 0 || epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &lev) < 0 ||
        epoll_ctl(g_ep, EPOLL_CTL_ADD, g_stopfd, &sev) < 0) {
        perror("delayproxy: epoll");
        exit(1);
    }
    g_wheel_now = now_ms();
    g_reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct epoll_event evs[256];
    for (int stop = 0; !stop;) {
        int n = epoll_wait(g_ep, evs, 256, next_timeout());
        if (n < 0 && errno != EINTR) {
            perror("delayproxy: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                on_accept(lfd);
                continue;
            }
            if (evs[i].data.ptr == &g_stopfd) {
                stop = 1;
                continue;
            }
            end *en = evs[i].data.ptr;
            conn *c = en->c;
            if (c->dead)
                continue;
            unsigned m = evs[i].events;
            if (m & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                on_writable(c, en->side);
            if (!c->dead && (m & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(c, en->side);
        }
        run_wheel();
        free_dead();
    }
    while (g_live) /* stopped: close everything, so leak checkers see a clean exit */
        conn_kill(g_live);
    free_dead();
    while (g_npool--) {
        close(g_pool[g_npool][0]);
        close(g_pool[g_npool][1]);
    }
    free(g_spare);
    g_spare = NULL;
    if (g_reserve >= 0)
        close(g_reserve);
    close(g_ep);
    close(lfd);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: delayproxy --target 127.0.0.1:PORT [--port 0] [--delay-ms N] [--jitter-ms N]\n"
            "                  [--max-conns N] [--max-buffer BYTES] [--seed N] [--splice 0|1]\n"
            "                  [--threads N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 0, threads = 1;
    uint64_t seed = 88172645463325252ULL;
    const char *target = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *k = argv[i], *v = argv[++i];
        char *e;
        unsigned long long n = strtoull(v, &e, 10);
        if (strcmp(k, "--target") == 0) {
            target = v;
            continue;
        }
        if (*e || e == v || n > 100000000ULL)
            usage();
        if (strcmp(k, "--port") == 0 && n < 65536)
            port = (int)n;
        else if (strcmp(k, "--delay-ms") == 0 && n <= 60000)
            g_delay_ms = n;
        else if (strcmp(k, "--jitter-ms") == 0 && n <= 60000)
            g_jitter_ms = n;
        else if (strcmp(k, "--max-conns") == 0 && n >= 1)
            g_max_conns = (int)n;
        else if (strcmp(k, "--max-buffer") == 0 && n >= 1024)
            g_max_buffer = (size_t)n;
        else if (strcmp(k, "--seed") == 0)
            seed = n ? n : 1;
        else if (strcmp(k, "--splice") == 0 && n <= 1)
            g_splice = (int)n;
        else if (strcmp(k, "--threads") == 0 && n >= 1 && n <= MAX_THREADS)
            threads = (int)n;
        else
            usage();
    }
    if (!target)
        usage();
    if (g_delay_ms || g_jitter_ms)
        g_splice = 0; /* held bytes need timestamps: the chunk queues */
    char host[64];
    const char *colon = strrchr(target, ':');
    if (!colon || (size_t)(colon - target) >= sizeof host)
        usage();
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = 0;
    char *e;
    unsigned long tport = strtoul(colon + 1, &e, 10);
    g_target.sin_family = AF_INET;
    if (*e || tport == 0 || tport > 65535 || inet_pton(AF_INET, host, &g_target.sin_addr) != 1 ||
        (ntohl(g_target.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "delayproxy: the target must be 127.x.x.x:PORT\n");
        return 2;
    }
    g_target.sin_port = htons((uint16_t)tport);

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl; /* two descriptors a connection, and pipes while bytes pass */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigset_t stopsigs; /* blocked in every thread; main waits for them with sigwait */
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGTERM);
    sigaddset(&stopsigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stopsigs, NULL);
    g_stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g_stopfd < 0) {
        perror("delayproxy: eventfd");
        return 1;
    }

    loop_arg args[MAX_THREADS];
    struct sockaddr_in la = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int t = 0; t < threads; t++) { /* the first binds (port 0: any), the others join it */
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        socklen_t alen = sizeof la;
        if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            (threads > 1 && setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
            bind(lfd, (struct sockaddr *)&la, sizeof la) < 0 || listen(lfd, 4096) < 0 ||
            set_nonblock(lfd) < 0 || getsockname(lfd, (struct sockaddr *)&la, &alen) < 0) {
            perror("delayproxy: listen");
            return 1;
        }
        args[t].lfd = lfd;
        args[t].seed = t ? seed * 0x9E3779B97F4A7C15ULL + (uint64_t)t : seed; /* non-zero */
        if (!args[t].seed)
            args[t].seed = 1;
    }
    pthread_t tids[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tids[t], NULL, run_loop, &args[t]) != 0) {
            fprintf(stderr, "delayproxy: pthread_create failed\n");
            return 1;
        }
    printf("PORT %d\n", ntohs(la.sin_port));
    fflush(stdout);
    int sig;
    sigwait(&stopsigs, &sig);
    uint64_t one64 = 1;
    if (write(g_stopfd, &one64, sizeof one64) < 0)
        perror("delayproxy: eventfd write");
    for (int t = 0; t < threads; t++)
        pthread_join(tids[t], NULL);
    close(g_stopfd);
    return 0;
}
