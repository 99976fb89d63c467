/* What the core knows of a quantization method: one row of the method
 * registry. Rows are defined in one table outside the core (the methods'
 * registry); the core reads them through qlib_method_lookup() and never names a
 * method: configs, tensor validation, blob layout and the matmul's method
 * branch all follow the row. Included by core.h. */
#ifndef QLIB_METHOD_H
#define QLIB_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include "qlib.h"

struct qlib_tensor_desc;

/* The values a parameter takes. */
typedef enum qlib_param_kind {
    QLIB_PK_INT = 1,      /* int in [lo, hi] */
    QLIB_PK_SWITCH = 2,   /* int 0 or 1 */
    QLIB_PK_WIDTH = 3,    /* int: one of the widths in `widths` (bit v set: v allowed) */
    QLIB_PK_GROUP = 4,    /* int: -1, 0, or a positive multiple of 32 up to hi */
    QLIB_PK_FLOAT = 5     /* finite float in [lo, hi] */
} qlib_param_kind;

typedef struct qlib_param_spec {
    qlib_param id;
    qlib_param_kind kind;
    double lo, hi;
    uint64_t widths;
    double def;           /* the value a new config holds */
    int fixed;            /* held at def: the method's tensors need it, callers cannot set it */
    const char *what;     /* in messages: "GPTQ block size" */
} qlib_param_spec;

/* Parameters one method may have (registry rows are checked against it). */
#define QLIB_CONFIG_MAX_PARAMS 16

/* Bit of an optional tensor section (QLIB_SEC_*) in qlib_method_row.sections. */
#define QLIB_SEC_BIT(id) (1u << (id))

/* The method's quantizer, called by qlib_quantize after its argument checks
 * (w finite, sizes valid, calib's k checked when the row reads a calib). */
typedef qlib_status (*qlib_quantize_fn)(qlib_ctx *ctx, const float *w, size_t n, size_t k,
                                        size_t ldw, const qlib_config *cfg,
                                        const qlib_calib *calib, qlib_tensor **out);

/* count weight matrices that read the same input, quantized together
 * (qlib_quantize_shared, after its checks): fills out[0 .. count-1], all of
 * them or, on failure, whatever it got to (the caller destroys out's
 * tensors). */
typedef qlib_status (*qlib_quantize_shared_fn)(qlib_ctx *ctx, size_t count,
                                               const float *const *w, const size_t *n, size_t k,
                                               const size_t *ldw, const qlib_config *cfg,
                                               const qlib_calib *calib, qlib_tensor **out);

/* How the quantized product runs for one call: input columns with drop[c]
 * != 0 count as zero (drop NULL: none); post(post_arg, n0, n1), when set,
 * runs after each chunk of output columns (docs in core.h). */
typedef struct qlib_matmul_plan {
    const uint8_t *drop;
    void (*post)(void *arg, size_t n0, size_t n1);
    void *post_arg;
} qlib_matmul_plan;

/* Fills the plan of one product y = x W^T (qlib_matmul's checks done); may
 * use the context's auxiliary scratch for what the plan points to. */
typedef qlib_status (*qlib_matmul_plan_fn)(qlib_ctx *ctx, const qlib_tensor *t, const float *x,
                                           size_t m, size_t ldx, float *y, size_t ldy,
                                           qlib_matmul_plan *plan);

typedef struct qlib_method_row {
    qlib_method id;
    const char *name;             /* qlib_method_name() */
    const char *label;            /* in messages: "GPTQ", "LLM.int8()" */
    unsigned calib;               /* QLIB_CALIB_* its quantizer reads, if given (whether it
                                     needs them is its own check); 0: it takes none */
    const qlib_param_spec *params;
    unsigned n_params;
    int float_weights;            /* its tensors keep fp32/fp16 weights, not codes */
    unsigned sections;            /* optional sections its tensors may carry (QLIB_SEC_BIT) */
    qlib_param header_param;      /* the float parameter its blobs' header stores; 0: none */
    /* Further validity rule for a tensor description (created or loaded), or
     * NULL: returns code with a message naming fn when d breaks it. */
    qlib_status (*check)(const struct qlib_tensor_desc *d, const char *fn, qlib_status code);
    qlib_quantize_fn quantize;                 /* NULL: quantize_shared with a count of 1 */
    qlib_quantize_shared_fn quantize_shared;   /* NULL: one quantize call per matrix */
    qlib_matmul_plan_fn matmul_plan;   /* NULL: the quantized product as is */
    /* The whole product, for methods whose tensors are not codes (NONE: the
     * float weights through the linear algebra); NULL: the quantized one. */
    qlib_status (*matmul)(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                          size_t ldx, float *y, size_t ldy);
} qlib_method_row;

/* The registry's row for m, or NULL when m is not a method. */
const qlib_method_row *qlib_method_lookup(qlib_method m);

/* The spec of parameter p in row, or NULL when the method has none. */
const qlib_param_spec *qlib_method_param(const qlib_method_row *row, qlib_param p);

/* A config's values, for the quantizers: the value of p (a parameter of the
 * config's method, fixed ones included; 0 when it has none). */
int   qlib_cfg_int(const qlib_config *c, qlib_param p);
float qlib_cfg_float(const qlib_config *c, qlib_param p);
const qlib_method_row *qlib_cfg_row(const qlib_config *c);

#endif
