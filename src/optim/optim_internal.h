/* What the optimizer files share: the optimizer object. Not installed. */
#ifndef DTRAIN_OPTIM_INTERNAL_H
#define DTRAIN_OPTIM_INTERNAL_H

#include <dtrain/optim.h>

typedef struct {
    char *name;
    float *data, *grad;      /* borrowed */
    int64_t numel;
    int64_t step;            /* steps this slot has taken (torch's state['step']) */
    bool has_buf;            /* SGD: the momentum buffer exists (made on the first step) */
    float *s0, *s1;          /* views into state: SGD momentum_buffer; Adam exp_avg, exp_avg_sq */
} dt__oslot;

struct dt_optim {
    dt_optim_kind kind;
    dt_sgd_opts sgd;
    dt_adam_opts adam;       /* Adam and AdamW */
    size_t n;
    dt__oslot *slots;        /* [n] */
    float *state;            /* one flat block: nstate * sum(numel) floats */
    int nstate;              /* buffers per slot: SGD 1 with momentum else 0, Adam 2 */
};

const char *dt__optim_kind_name(dt_optim_kind k);
int dt__optim_check_sgd(const dt_sgd_opts *o);
int dt__optim_check_adam(const dt_adam_opts *o, const char *what);

/* Tests: run the loops built without FMA instructions even where the CPU has them
 * (both must give the same bits). */
void dt__optim_force_generic(int on);

#endif
