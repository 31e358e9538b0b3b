/* common.c: per-thread error messages and the process-wide thread count. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include "core/common.h"

static _Thread_local char pf_error_buf[512];
static int pf_num_threads = 1;

/* fmt, ... -> this thread's error message; returns status unchanged. */
pf_status pf_fail(pf_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pf_error_buf, sizeof pf_error_buf, fmt, ap);
    va_end(ap);
    return status;
}

/* The message of this thread's last failure. */
const char *pf_last_error(void) { return pf_error_buf[0] ? pf_error_buf : "unknown error"; }

/* n >= 1 -> the thread count of every OpenMP region and oneDNN call. */
pf_status pf_set_num_threads(int n) {
    if (n < 1) return pf_fail(PF_EINVAL, "number of threads must be >= 1, got %d", n);
    __atomic_store_n(&pf_num_threads, n, __ATOMIC_RELAXED);
    return PF_OK;
}

/* The thread count set by pf_set_num_threads (1 by default). */
int pf_get_num_threads(void) { return __atomic_load_n(&pf_num_threads, __ATOMIC_RELAXED); }

/* x (n) -> the index of its first NaN or Inf, or -1. */
int64_t pf_first_nonfinite(const float *x, int64_t n) {
    int64_t first = n;
#pragma omp parallel for schedule(static) reduction(min : first) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]) && i < first) first = i;
    return first == n ? -1 : first;
}

typedef struct {
    void *buf[PF_TLS_SLOTS];
    size_t bytes[PF_TLS_SLOTS];
} tls_buffers;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* pthread key destructor: a thread's buffers go with the thread. */
static void tls_release(void *p) {
    tls_buffers *t = p;
    for (int i = 0; i < PF_TLS_SLOTS; i++) free(t->buf[i]);
    free(t);
}
static void tls_key_init(void) { (void)pthread_key_create(&tls_key, tls_release); }

/* The calling thread's buffer for slot, grown to at least bytes (common.h). */
void *pf_tls_buffer(int slot, size_t bytes) {
    pthread_once(&tls_once, tls_key_init);
    tls_buffers *t = pthread_getspecific(tls_key);
    if (!t) {
        if (!(t = calloc(1, sizeof *t))) return NULL;
        if (pthread_setspecific(tls_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    if (t->bytes[slot] < bytes || !t->buf[slot]) { /* a 0-byte request still gets a buffer */
        free(t->buf[slot]);
        t->bytes[slot] = 0;
        if (!(t->buf[slot] = pf_malloc(bytes))) return NULL;
        t->bytes[slot] = bytes;
    }
    return t->buf[slot];
}
