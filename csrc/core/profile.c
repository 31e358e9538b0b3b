/* profile.c: per-layer-kind timing totals, off by default. */
#include <time.h>
#include "core/profile.h"

int pf_prof_on = 0;
static double totals[PF_PROF_COUNT];
static long calls[PF_PROF_COUNT];
static const char *names[PF_PROF_COUNT] = {
    "linear fwd", "linear bwd", "attention fwd", "attention bwd", "layernorm fwd", "layernorm bwd",
    "gelu fwd", "gelu bwd", "residual add", "tokens/patches", "loss", "adamw"};

/* on: PROF() times its statements from now on; 0: stops. */
void pf_prof_enable(int on) { pf_prof_on = on; }

/* Add one call of `seconds` to entry id. */
void pf_prof_add(pf_prof_id id, double seconds) {
    totals[id] += seconds;
    calls[id]++;
}

/* Entry i's name, total seconds and calls; 0 past the last entry. */
int pf_prof_get(int i, const char **name, double *seconds, long *n) {
    if (i < 0 || i >= PF_PROF_COUNT) return 0;
    *name = names[i], *seconds = totals[i], *n = calls[i];
    return 1;
}

/* Zero every entry. */
void pf_prof_reset(void) {
    for (int i = 0; i < PF_PROF_COUNT; i++) totals[i] = 0.0, calls[i] = 0;
}

/* Monotonic wall-clock seconds. */
double pf_wtime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
