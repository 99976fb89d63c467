#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "testutil.h"
#include "linalg/linalg.h"

TCase *tu_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 1200);
    return tc;
}

uint64_t tu_next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r) { return (double)(tu_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double tu_normal(tu_rng *r)
{
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

float *tu_alloc_floats(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

void tu_llm_weights(tu_rng *r, float *w, size_t n, size_t k, size_t ldw)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k; j++) {
            /* normal / sqrt(chi2_4 / 4): Student t with 4 degrees of freedom */
            double c = 0.0;
            for (int t = 0; t < 4; t++) { double z = tu_normal(r); c += z * z; }
            w[i * ldw + j] = (float)(0.02 * tu_normal(r) / sqrt(c / 4.0 + 1e-12));
        }
}

void tu_act_model_init(tu_act_model *am, size_t k, float outlier_mag, uint64_t seed)
{
    tu_rng r = { seed };
    am->k = k;
    am->rank = k / 8 < 4 ? 4 : k / 8;
    am->basis = tu_alloc_floats(am->rank * k);
    am->channel_scale = tu_alloc_floats(k);
    for (size_t i = 0; i < am->rank * k; i++) am->basis[i] = (float)tu_normal(&r);
    for (size_t j = 0; j < k; j++)
        am->channel_scale[j] = (j % 64 == 7) ? outlier_mag : (float)(0.5 + tu_uniform(&r));
}

void tu_act_model_sample(const tu_act_model *am, tu_rng *r, float *x, size_t m, size_t ldx)
{
    double *z = malloc(am->rank * sizeof(double));
    ck_assert_ptr_nonnull(z);
    for (size_t i = 0; i < m; i++) {
        for (size_t t = 0; t < am->rank; t++) z[t] = tu_normal(r) / sqrt((double)(t + 1));
        for (size_t j = 0; j < am->k; j++) {
            double v = 0.0;
            for (size_t t = 0; t < am->rank; t++) v += z[t] * am->basis[t * am->k + j];
            v = v / sqrt((double)am->rank) + 0.05 * tu_normal(r);
            x[i * ldx + j] = (float)(v * am->channel_scale[j]);
        }
    }
    free(z);
}

void tu_act_model_free(tu_act_model *am)
{
    free(am->basis);
    free(am->channel_scale);
}

void tu_ref_matmul(const float *x, size_t m, size_t ldx, const float *w, size_t n, size_t k,
                   size_t ldw, double *y)
{
    for (size_t i = 0; i < m; i++)
        for (size_t r = 0; r < n; r++) {
            double acc = 0.0;
            for (size_t j = 0; j < k; j++) acc += (double)x[i * ldx + j] * w[r * ldw + j];
            y[i * n + r] = acc;
        }
}

double tu_rel_err_fd(const float *a, size_t lda, const double *b, size_t ldb, size_t m, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double d = a[i * lda + j] - b[i * ldb + j];
            num += d * d;
            den += b[i * ldb + j] * b[i * ldb + j];
        }
    return den > 0.0 ? num / den : num;
}

static void *count_alloc(void *user, size_t size, size_t alignment)
{
    tu_counting *c = user;
    c->allocs++;
    if (c->fail_at > 0 && (long)c->allocs == c->fail_at) {
        c->allocs--;
        c->fail_at = -1;            /* fail once */
        return NULL;
    }
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0) {
        c->allocs--;
        return NULL;
    }
    return p;
}

static void count_free(void *user, void *p)
{
    tu_counting *c = user;
    c->frees++;
    free(p);
}

qlib_allocator tu_counting_allocator(tu_counting *c)
{
    qlib_allocator a = QLIB_ALLOCATOR_INIT;
    a.alloc = count_alloc;
    a.free = count_free;
    a.user = c;
    return a;
}

qlib_ctx *tu_ctx(int threads, const char *isa)
{
    qlib_ctx *ctx = NULL;
    ck_assert_int_eq(qlib_ctx_create(&ctx), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, threads), QLIB_OK);
    if (isa) ck_assert_int_eq(qlib_ctx_set_isa(ctx, isa), QLIB_OK);
    return ctx;
}

qlib_ctx *tu_counting_ctx(tu_counting *c, int threads)
{
    memset(c, 0, sizeof *c);
    qlib_allocator a = tu_counting_allocator(c);
    qlib_ctx *ctx = NULL;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&a, &ctx), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, threads), QLIB_OK);
    return ctx;
}

void tu_quantize_alloc_failures(qlib_ctx *ctx, tu_counting *c, const float *w, size_t n, size_t k,
                                const qlib_config *cfg, const qlib_calib *calib)
{
    qlib_status s = QLIB_ERR_NOMEM;
    for (long step = 1; s == QLIB_ERR_NOMEM; step++) {
        size_t before = c->allocs - c->frees;
        qlib_tensor *t = (qlib_tensor *)&t;
        c->fail_at = (long)c->allocs + step;
        s = qlib_quantize(ctx, w, n, k, k, cfg, calib, &t);
        c->fail_at = 0;
        if (s == QLIB_ERR_NOMEM) {
            ck_assert_ptr_null(t);
        } else {
            ck_assert_int_eq(s, QLIB_OK);
            qlib_tensor_destroy(t);
        }
        ck_assert_uint_le(c->allocs - c->frees, before + 1);   /* scratch may grow once */
        ck_assert_int_lt(step, 100);
    }
}

qlib_tensor *tu_quantize(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                         qlib_method method, int bits, int group, int sym, const qlib_calib *calib)
{
    qlib_config *cfg = NULL;
    qlib_tensor *t = NULL;
    ck_assert_int_eq(qlib_config_create(method, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, bits), QLIB_OK);
    if (method != QLIB_METHOD_NONE && method != QLIB_METHOD_LLM_INT8) {
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, group), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, sym), QLIB_OK);
    }
    qlib_status s = qlib_quantize(ctx, w, n, k, ldw, cfg, calib, &t);
    ck_assert_msg(s == QLIB_OK, "qlib_quantize: %s", qlib_last_error());
    qlib_config_destroy(cfg);
    return t;
}

void tu_golden_section(char *buf, size_t len)
{
#if defined(__x86_64__)
    const char *arch = "x86_64";
#elif defined(__aarch64__)
    const char *arch = "aarch64";
#else
    const char *arch = "other";
#endif
    const char *core = qlib_la_backend_core();
    snprintf(buf, len, "%s%s%s %s", qlib_la_backend(), *core ? "-" : "", core, arch);
}

void tu_golden_fixture(float **w, float **x)
{
    tu_rng r = { 20261204 };
    *w = tu_alloc_floats((size_t)TU_GOLDEN_N * TU_GOLDEN_K);
    *x = tu_alloc_floats((size_t)TU_GOLDEN_TOK * TU_GOLDEN_K);
    tu_llm_weights(&r, *w, TU_GOLDEN_N, TU_GOLDEN_K, TU_GOLDEN_K);
    tu_act_model am;
    tu_act_model_init(&am, TU_GOLDEN_K, 12.0f, 7);
    tu_act_model_sample(&am, &r, *x, TU_GOLDEN_TOK, TU_GOLDEN_K);
    tu_act_model_free(&am);
}
