/* Method configurations: options set one at a time, keyed by pinned enums. */
#include <math.h>
#include <stdlib.h>

#include "core.h"

static const char *method_name(qlib_method m)
{
    switch (m) {
    case QLIB_METHOD_NONE: return "NONE";
    case QLIB_METHOD_RTN: return "RTN";
    case QLIB_METHOD_GPTQ: return "GPTQ";
    case QLIB_METHOD_AWQ: return "AWQ";
    case QLIB_METHOD_LLM_INT8: return "LLM_INT8";
    }
    return "?";
}

qlib_status qlib_config_create(qlib_method method, qlib_config **out)
{
    if (!out) return qlib_fail(QLIB_ERR_ARG, "qlib_config_create: out is NULL");
    *out = NULL;
    if ((unsigned)method > QLIB_METHOD_LLM_INT8)
        return qlib_fail(QLIB_ERR_ARG, "qlib_config_create: unknown method %d", (int)method);
    /* A config exists before any context, so it uses the default allocator. */
    qlib_config *c = qlib_mem_calloc(&qlib_default_allocator, sizeof *c);
    if (!c) return qlib_fail(QLIB_ERR_NOMEM, "qlib_config_create: out of memory");
    c->method = method;
    c->bits = method == QLIB_METHOD_NONE ? 32 : method == QLIB_METHOD_LLM_INT8 ? 8 : 4;
    c->group_size = method == QLIB_METHOD_LLM_INT8 || method == QLIB_METHOD_NONE ? 0 : 128;
    c->symmetric = method == QLIB_METHOD_LLM_INT8;
    c->gptq_damp = 0.01f;
    c->gptq_block_size = 128;
    c->awq_grid = 20;
    c->awq_clip = 1;
    c->awq_max_shrink = 0.5f;
    c->outlier_threshold = 6.0f;
    *out = c;
    return QLIB_OK;
}

void qlib_config_destroy(qlib_config *c)
{
    qlib_mem_free(&qlib_default_allocator, c);
}

qlib_method qlib_config_method(const qlib_config *c) { return c ? c->method : QLIB_METHOD_NONE; }

const char *qlib_method_name(qlib_method m)
{
    switch (m) {
    case QLIB_METHOD_NONE: return "none";
    case QLIB_METHOD_RTN: return "rtn";
    case QLIB_METHOD_GPTQ: return "gptq";
    case QLIB_METHOD_AWQ: return "awq";
    case QLIB_METHOD_LLM_INT8: return "llm-int8";
    }
    return "unknown";
}

/* Which parameters each method takes, and whether they are int or float. */
static int param_is_float(qlib_param p)
{
    return p == QLIB_PARAM_GPTQ_DAMP || p == QLIB_PARAM_AWQ_MAX_SHRINK ||
           p == QLIB_PARAM_OUTLIER_THRESHOLD;
}

static int param_known(qlib_param p)
{
    switch (p) {
    case QLIB_PARAM_BITS: case QLIB_PARAM_GROUP_SIZE: case QLIB_PARAM_SYMMETRIC:
    case QLIB_PARAM_GPTQ_DAMP: case QLIB_PARAM_GPTQ_BLOCK_SIZE: case QLIB_PARAM_GPTQ_ACT_ORDER:
    case QLIB_PARAM_GPTQ_STATIC_GROUPS: case QLIB_PARAM_AWQ_GRID: case QLIB_PARAM_AWQ_CLIP:
    case QLIB_PARAM_AWQ_MAX_SHRINK: case QLIB_PARAM_OUTLIER_THRESHOLD:
        return 1;
    }
    return 0;
}

static int param_of_method(qlib_method m, qlib_param p)
{
    if (p == QLIB_PARAM_BITS) return 1;
    switch (m) {
    case QLIB_METHOD_NONE: return 0;
    case QLIB_METHOD_RTN: return p == QLIB_PARAM_GROUP_SIZE || p == QLIB_PARAM_SYMMETRIC;
    case QLIB_METHOD_GPTQ:
        return p == QLIB_PARAM_GROUP_SIZE || p == QLIB_PARAM_SYMMETRIC ||
               (p >= QLIB_PARAM_GPTQ_DAMP && p <= QLIB_PARAM_GPTQ_STATIC_GROUPS);
    case QLIB_METHOD_AWQ:
        return p == QLIB_PARAM_GROUP_SIZE || p == QLIB_PARAM_SYMMETRIC ||
               (p >= QLIB_PARAM_AWQ_GRID && p <= QLIB_PARAM_AWQ_MAX_SHRINK);
    case QLIB_METHOD_LLM_INT8: return p == QLIB_PARAM_OUTLIER_THRESHOLD;
    }
    return 0;
}

static qlib_status param_check(const qlib_config *c, qlib_param p, int want_float,
                               const char *fn)
{
    if (!c) return qlib_fail(QLIB_ERR_ARG, "%s: config is NULL", fn);
    if (!param_known(p))
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: unknown parameter %d", fn, (int)p);
    if (!param_of_method(c->method, p))
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: parameter %d is not an option of method %s",
                         fn, (int)p, method_name(c->method));
    if (param_is_float(p) != want_float)
        return qlib_fail(QLIB_ERR_ARG, "%s: parameter %d is %s-valued", fn, (int)p,
                         want_float ? "int" : "float");
    return QLIB_OK;
}

static int bits_valid(qlib_method m, int v)
{
    switch (m) {
    case QLIB_METHOD_NONE: return v == 16 || v == 32;
    case QLIB_METHOD_LLM_INT8: return v == 8;
    default: return v == 2 || v == 3 || v == 4 || v == 8;
    }
}

qlib_status qlib_config_set_int(qlib_config *c, qlib_param p, int v)
{
    static const char fn[] = "qlib_config_set_int";
    qlib_status s = param_check(c, p, 0, fn);
    if (s != QLIB_OK) return s;
    switch (p) {
    case QLIB_PARAM_BITS:
        if (!bits_valid(c->method, v))
            return qlib_fail(QLIB_ERR_ARG, "%s: %d bits is not valid for method %s", fn, v,
                             method_name(c->method));
        c->bits = v;
        break;
    case QLIB_PARAM_GROUP_SIZE:
        if (v < -1 || (v > 0 && v % 32 != 0) || v > (1 << 24))
            return qlib_fail(QLIB_ERR_ARG,
                             "%s: group size %d (need -1, 0 or a positive multiple of 32)", fn, v);
        c->group_size = v;
        break;
    case QLIB_PARAM_GPTQ_BLOCK_SIZE:
        if (v < 1 || v > 4096)
            return qlib_fail(QLIB_ERR_ARG, "%s: GPTQ block size %d (need 1..4096)", fn, v);
        c->gptq_block_size = v;
        break;
    case QLIB_PARAM_AWQ_GRID:
        if (v < 1 || v > 1000)
            return qlib_fail(QLIB_ERR_ARG, "%s: AWQ grid %d (need 1..1000)", fn, v);
        c->awq_grid = v;
        break;
    default:                                         /* the 0/1 switches */
        if (v != 0 && v != 1)
            return qlib_fail(QLIB_ERR_ARG, "%s: parameter %d takes 0 or 1, not %d", fn, (int)p, v);
        if (p == QLIB_PARAM_SYMMETRIC) c->symmetric = v;
        else if (p == QLIB_PARAM_GPTQ_ACT_ORDER) c->gptq_act_order = v;
        else if (p == QLIB_PARAM_GPTQ_STATIC_GROUPS) c->gptq_static_groups = v;
        else c->awq_clip = v;
        break;
    }
    return QLIB_OK;
}

qlib_status qlib_config_set_float(qlib_config *c, qlib_param p, float v)
{
    static const char fn[] = "qlib_config_set_float";
    qlib_status s = param_check(c, p, 1, fn);
    if (s != QLIB_OK) return s;
    if (!isfinite(v)) return qlib_fail(QLIB_ERR_ARG, "%s: value is not finite", fn);
    switch (p) {
    case QLIB_PARAM_GPTQ_DAMP:
        if (v < 0.0f || v > 1.0f)
            return qlib_fail(QLIB_ERR_ARG, "%s: GPTQ damp %g (need 0..1)", fn, (double)v);
        c->gptq_damp = v;
        break;
    case QLIB_PARAM_AWQ_MAX_SHRINK:
        if (v < 0.0f || v > 0.95f)
            return qlib_fail(QLIB_ERR_ARG, "%s: AWQ max shrink %g (need 0..0.95)", fn, (double)v);
        c->awq_max_shrink = v;
        break;
    default:
        c->outlier_threshold = v;
        break;
    }
    return QLIB_OK;
}

qlib_status qlib_config_get_int(const qlib_config *c, qlib_param p, int *v)
{
    static const char fn[] = "qlib_config_get_int";
    qlib_status s = param_check(c, p, 0, fn);
    if (s != QLIB_OK) return s;
    if (!v) return qlib_fail(QLIB_ERR_ARG, "%s: value is NULL", fn);
    switch (p) {
    case QLIB_PARAM_BITS: *v = c->bits; break;
    case QLIB_PARAM_GROUP_SIZE: *v = c->group_size; break;
    case QLIB_PARAM_SYMMETRIC: *v = c->symmetric; break;
    case QLIB_PARAM_GPTQ_BLOCK_SIZE: *v = c->gptq_block_size; break;
    case QLIB_PARAM_GPTQ_ACT_ORDER: *v = c->gptq_act_order; break;
    case QLIB_PARAM_GPTQ_STATIC_GROUPS: *v = c->gptq_static_groups; break;
    case QLIB_PARAM_AWQ_GRID: *v = c->awq_grid; break;
    default: *v = c->awq_clip; break;
    }
    return QLIB_OK;
}

qlib_status qlib_config_get_float(const qlib_config *c, qlib_param p, float *v)
{
    static const char fn[] = "qlib_config_get_float";
    qlib_status s = param_check(c, p, 1, fn);
    if (s != QLIB_OK) return s;
    if (!v) return qlib_fail(QLIB_ERR_ARG, "%s: value is NULL", fn);
    *v = p == QLIB_PARAM_GPTQ_DAMP ? c->gptq_damp
       : p == QLIB_PARAM_AWQ_MAX_SHRINK ? c->awq_max_shrink : c->outlier_threshold;
    return QLIB_OK;
}
