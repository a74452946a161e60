#include "core/fork_mutex.h"

#include <unistd.h>

/* Serialises the restart of mutexes in a new process. It may itself have been held by a
 * parent's thread at fork, so the child makes it afresh (pthread_atfork). */
static pthread_mutex_t g_restart_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void restart_lock_after_fork(void)
{
    pthread_mutex_init(&g_restart_lock, NULL);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, restart_lock_after_fork);
}

int cfs_fork_mutex_init(cfs_fork_mutex *m)
{
    pthread_once(&g_once, register_atfork);
    atomic_store(&m->pid, (int)getpid());
    return pthread_mutex_init(&m->mutex, NULL) == 0 ? 0 : -1;
}

void cfs_fork_mutex_destroy(cfs_fork_mutex *m)
{
    pthread_mutex_destroy(&m->mutex);
}

int cfs_fork_mutex_lock(cfs_fork_mutex *m)
{
    int pid = (int)getpid(), restarted = 0;
    if (atomic_load(&m->pid) != pid) {
        pthread_mutex_lock(&g_restart_lock);
        if (atomic_load(&m->pid) != pid) {
            /* the parent's copy may be locked by a thread that does not exist here */
            pthread_mutex_init(&m->mutex, NULL);
            atomic_store(&m->pid, pid);
            restarted = 1;
        }
        pthread_mutex_unlock(&g_restart_lock);
    }
    pthread_mutex_lock(&m->mutex);
    return restarted;
}

void cfs_fork_mutex_unlock(cfs_fork_mutex *m)
{
    pthread_mutex_unlock(&m->mutex);
}
