/* Method configurations: options set one at a time, keyed by pinned enums.
 * Which options a method takes, their kinds, ranges and defaults are its
 * registry row's parameter specs (method.h); nothing here names a method. */
#include <math.h>
#include <stdlib.h>

#include "core.h"

typedef union param_value {
    int i;
    float f;
} param_value;

struct qlib_config {
    const qlib_method_row *row;
    param_value v[QLIB_CONFIG_MAX_PARAMS];   /* v[i]: the value of row->params[i] */
};

static int is_float(const qlib_param_spec *p) { return p->kind == QLIB_PK_FLOAT; }

const qlib_param_spec *qlib_method_param(const qlib_method_row *row, qlib_param p)
{
    for (unsigned i = 0; i < row->n_params; i++)
        if (row->params[i].id == p) return &row->params[i];
    return NULL;
}

static size_t param_index(const qlib_config *c, const qlib_param_spec *p)
{
    return (size_t)(p - c->row->params);
}

qlib_status qlib_config_create(qlib_method method, qlib_config **out)
{
    if (!out) return qlib_fail(QLIB_ERR_ARG, "qlib_config_create: out is NULL");
    *out = NULL;
    const qlib_method_row *row = qlib_method_lookup(method);
    if (!row) return qlib_fail(QLIB_ERR_ARG, "qlib_config_create: unknown method %d", (int)method);
    /* A config exists before any context, so it uses the default allocator. */
    qlib_config *c = qlib_mem_calloc(&qlib_default_allocator, sizeof *c);
    if (!c) return qlib_fail(QLIB_ERR_NOMEM, "qlib_config_create: out of memory");
    c->row = row;
    for (unsigned i = 0; i < row->n_params; i++) {
        const qlib_param_spec *p = &row->params[i];
        if (is_float(p)) c->v[i].f = (float)p->def;
        else c->v[i].i = (int)p->def;
    }
    *out = c;
    return QLIB_OK;
}

void qlib_config_destroy(qlib_config *c)
{
    qlib_mem_free(&qlib_default_allocator, c);
}

qlib_method qlib_config_method(const qlib_config *c) { return c ? c->row->id : QLIB_METHOD_NONE; }
const qlib_method_row *qlib_cfg_row(const qlib_config *c) { return c->row; }

int qlib_cfg_int(const qlib_config *c, qlib_param p)
{
    const qlib_param_spec *s = qlib_method_param(c->row, p);
    return s && !is_float(s) ? c->v[param_index(c, s)].i : 0;
}

float qlib_cfg_float(const qlib_config *c, qlib_param p)
{
    const qlib_param_spec *s = qlib_method_param(c->row, p);
    return s && is_float(s) ? c->v[param_index(c, s)].f : 0.0f;
}

/* Whether any method has parameter p. */
static int param_known(qlib_param p)
{
    for (int m = 0;; m++) {
        const qlib_method_row *row = qlib_method_lookup((qlib_method)m);
        if (!row) return 0;
        const qlib_param_spec *s = qlib_method_param(row, p);
        if (s && !s->fixed) return 1;
    }
}

/* The spec of p in c's method, after the checks every accessor makes. */
static qlib_status param_lookup(const qlib_config *c, qlib_param p, int want_float,
                                const char *fn, const qlib_param_spec **out)
{
    if (!c) return qlib_fail(QLIB_ERR_ARG, "%s: config is NULL", fn);
    if (!param_known(p))
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: unknown parameter %d", fn, (int)p);
    const qlib_param_spec *s = qlib_method_param(c->row, p);
    if (!s || s->fixed)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: parameter %d is not an option of method %s",
                         fn, (int)p, c->row->label);
    if (is_float(s) != want_float)
        return qlib_fail(QLIB_ERR_ARG, "%s: parameter %d is %s-valued", fn, (int)p,
                         want_float ? "int" : "float");
    *out = s;
    return QLIB_OK;
}

static qlib_status int_check(const qlib_config *c, const qlib_param_spec *s, int v,
                             const char *fn)
{
    switch (s->kind) {
    case QLIB_PK_SWITCH:
        if (v != 0 && v != 1)
            return qlib_fail(QLIB_ERR_ARG, "%s: parameter %d takes 0 or 1, not %d", fn,
                             (int)s->id, v);
        return QLIB_OK;
    case QLIB_PK_WIDTH:
        if (v < 0 || v > 63 || !((s->widths >> v) & 1u))
            return qlib_fail(QLIB_ERR_ARG, "%s: %d bits is not valid for method %s", fn, v,
                             c->row->label);
        return QLIB_OK;
    case QLIB_PK_GROUP:
        if (v < -1 || (v > 0 && v % 32 != 0) || v > s->hi)
            return qlib_fail(QLIB_ERR_ARG,
                             "%s: group size %d (need -1, 0 or a positive multiple of 32)", fn, v);
        return QLIB_OK;
    default:
        if (v < s->lo || v > s->hi)
            return qlib_fail(QLIB_ERR_ARG, "%s: %s %d (need %d..%d)", fn, s->what, v, (int)s->lo,
                             (int)s->hi);
        return QLIB_OK;
    }
}

qlib_status qlib_config_set_int(qlib_config *c, qlib_param p, int v)
{
    static const char fn[] = "qlib_config_set_int";
    const qlib_param_spec *s;
    qlib_status st = param_lookup(c, p, 0, fn, &s);
    if (st == QLIB_OK) st = int_check(c, s, v, fn);
    if (st == QLIB_OK) c->v[param_index(c, s)].i = v;
    return st;
}

qlib_status qlib_config_set_float(qlib_config *c, qlib_param p, float v)
{
    static const char fn[] = "qlib_config_set_float";
    const qlib_param_spec *s;
    qlib_status st = param_lookup(c, p, 1, fn, &s);
    if (st != QLIB_OK) return st;
    if (!isfinite(v)) return qlib_fail(QLIB_ERR_ARG, "%s: value is not finite", fn);
    if (v < s->lo || v > s->hi)
        return qlib_fail(QLIB_ERR_ARG, "%s: %s %g (need %g..%g)", fn, s->what, (double)v,
                         s->lo, s->hi);
    c->v[param_index(c, s)].f = v;
    return QLIB_OK;
}

/* The value of p into *v (an int or a float, as want_float says). */
static qlib_status param_get(const qlib_config *c, qlib_param p, int want_float, void *v,
                             const char *fn)
{
    const qlib_param_spec *s;
    qlib_status st = param_lookup(c, p, want_float, fn, &s);
    if (st != QLIB_OK) return st;
    if (!v) return qlib_fail(QLIB_ERR_ARG, "%s: value is NULL", fn);
    const param_value *pv = &c->v[param_index(c, s)];
    if (want_float) *(float *)v = pv->f;
    else *(int *)v = pv->i;
    return QLIB_OK;
}

qlib_status qlib_config_get_int(const qlib_config *c, qlib_param p, int *v)
{
    return param_get(c, p, 0, v, "qlib_config_get_int");
}

qlib_status qlib_config_get_float(const qlib_config *c, qlib_param p, float *v)
{
    return param_get(c, p, 1, v, "qlib_config_get_float");
}

const char *qlib_method_name(qlib_method m)
{
    const qlib_method_row *row = qlib_method_lookup(m);
    return row ? row->name : "unknown";
}
