/* A mutex a forked child can still use. A thread of the parent (a transfer lane fetching a
 * token) may hold a backend's lock at the moment another thread forks; the child, which
 * has none of the parent's threads, would then wait on it forever. The first lock taken in
 * a new process starts the mutex afresh, and says so, so that the caller can forget state
 * that belonged to the parent's threads (a refresh one of them had claimed). */
#ifndef CFS_FORK_MUTEX_H
#define CFS_FORK_MUTEX_H
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

typedef struct cfs_fork_mutex {
    pthread_mutex_t mutex;
    atomic_int pid;         /* the process the mutex belongs to */
} cfs_fork_mutex;

/* Returns 0, or -1 if the mutex cannot be made. */
int cfs_fork_mutex_init(cfs_fork_mutex *m);
void cfs_fork_mutex_destroy(cfs_fork_mutex *m);
/* Lock; returns 1 if the mutex was started afresh (first lock in a forked child), else 0. */
int cfs_fork_mutex_lock(cfs_fork_mutex *m);
void cfs_fork_mutex_unlock(cfs_fork_mutex *m);

#endif
