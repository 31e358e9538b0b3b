/* profile.h: opt-in wall-clock totals per layer kind (benchmarks/speed/bench_layers.py reads them). */
#ifndef PF_PROFILE_H
#define PF_PROFILE_H

typedef enum {
    PF_PROF_LINEAR_FWD, PF_PROF_LINEAR_BWD, PF_PROF_ATTN_FWD, PF_PROF_ATTN_BWD,
    PF_PROF_LN_FWD, PF_PROF_LN_BWD, PF_PROF_GELU_FWD, PF_PROF_GELU_BWD, PF_PROF_RESIDUAL,
    PF_PROF_TOKENS, PF_PROF_LOSS, PF_PROF_OPTIM, PF_PROF_COUNT
} pf_prof_id;

extern int pf_prof_on;
void pf_prof_enable(int on);
void pf_prof_add(pf_prof_id id, double seconds);
/* Name, total seconds and call count of entry i; returns 0 past the end. */
int pf_prof_get(int i, const char **name, double *seconds, long *calls);
void pf_prof_reset(void);
double pf_wtime(void);

/* Time stmt under id when profiling is on (a stmt that returns early is not counted). */
#define PROF(id, stmt)                                                    \
    do {                                                                  \
        const double pf_prof_t0_ = pf_prof_on ? pf_wtime() : 0.0;         \
        stmt;                                                             \
        if (pf_prof_on) pf_prof_add((id), pf_wtime() - pf_prof_t0_);      \
    } while (0)

#endif
