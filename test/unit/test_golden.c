/* Golden blobs: deterministic tensors (fixed seeds) for every method, bit
 * width, group size, symmetry, act-order and outlier setting are serialized
 * and their 64-bit FNV-1a checksums compared with test/unit/golden_blobs.txt.
 * A refactor that changes one byte of any blob fails here.
 *
 * NONE, RTN and LLM.int8() blobs depend only on qlib's own arithmetic and are
 * checked everywhere. GPTQ and AWQ also depend on the linear algebra below
 * them (the Hessian's SYRK, Cholesky, the loss GEMMs), whose rounding differs
 * between BLAS libraries and CPUs' kernels: their checksums sit in a section
 * named for the linear-algebra backend, the kernels it picked for this CPU
 * and the architecture (tu_golden_section: "openblas-Haswell x86_64",
 * "builtin x86_64"), checked only when the build matches; a build with no
 * section of its own prints that it checked the portable blobs only.
 *
 * QLIB_GOLDEN_WRITE=<file> writes the checksums this build computes instead
 * of checking them (portable section first, then this build's section). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "linalg/linalg.h"

#define GOLDEN_FILE "test/unit/golden_blobs.txt"
#define GN TU_GOLDEN_N
#define GK TU_GOLDEN_K
#define GTOK TU_GOLDEN_TOK

typedef struct golden_case {
    char name[64];
    qlib_method method;
    int bits, group, sym, act_order, static_groups, clip, grid;
    float threshold;
} golden_case;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int uses_linalg(qlib_method m) { return m == QLIB_METHOD_GPTQ || m == QLIB_METHOD_AWQ; }

static size_t add(golden_case *cs, size_t n, golden_case c)
{
    cs[n] = c;
    return n + 1;
}

/* Every combination the methods take, named so that a failure says which. */
static size_t golden_cases(golden_case *cs)
{
    static const int bits[] = { 2, 3, 4, 8 };
    static const int groups[] = { -1, 0, 32, 64, 128 };
    size_t n = 0;
    for (int b = 16; b <= 32; b += 16) {
        golden_case c = { "", QLIB_METHOD_NONE, b, 0, 0, 0, 0, 0, 0, 0.0f };
        snprintf(c.name, sizeof c.name, "none-b%d", b);
        n = add(cs, n, c);
    }
    for (size_t bi = 0; bi < 4; bi++)
        for (size_t gi = 0; gi < 5; gi++)
            for (int sym = 0; sym <= 1; sym++) {
                golden_case c = { "", QLIB_METHOD_RTN, bits[bi], groups[gi], sym, 0, 0, 0, 0, 0 };
                snprintf(c.name, sizeof c.name, "rtn-b%d-g%d-s%d", c.bits, c.group, sym);
                n = add(cs, n, c);
            }
    for (size_t bi = 0; bi < 4; bi++)
        for (size_t gi = 1; gi < 5; gi += 1)
            for (int sym = 0; sym <= 1; sym++)
                for (int ao = 0; ao <= 1; ao++)
                    for (int sg = 0; sg <= 1; sg++) {
                        if (groups[gi] == 64 && (ao || sg)) continue;
                        golden_case c = { "", QLIB_METHOD_GPTQ, bits[bi], groups[gi], sym, ao, sg,
                                          0, 0, 0 };
                        snprintf(c.name, sizeof c.name, "gptq-b%d-g%d-s%d-ao%d-sg%d", c.bits,
                                 c.group, sym, ao, sg);
                        n = add(cs, n, c);
                    }
    for (size_t bi = 0; bi < 4; bi++)
        for (size_t gi = 1; gi < 5; gi += 1)
            for (int sym = 0; sym <= 1; sym++)
                for (int clip = 0; clip <= 1; clip++) {
                    golden_case c = { "", QLIB_METHOD_AWQ, bits[bi], groups[gi], sym, 0, 0, clip,
                                      bi == 2 ? 20 : 5, 0 };
                    snprintf(c.name, sizeof c.name, "awq-b%d-g%d-s%d-clip%d-grid%d", c.bits,
                             c.group, sym, clip, c.grid);
                    n = add(cs, n, c);
                }
    static const float thresholds[] = { 6.0f, 0.0f, 2.5f };
    for (size_t i = 0; i < 3; i++) {
        golden_case c = { "", QLIB_METHOD_LLM_INT8, 8, 0, 1, 0, 0, 0, 0, thresholds[i] };
        snprintf(c.name, sizeof c.name, "llm-int8-t%g", (double)thresholds[i]);
        n = add(cs, n, c);
    }
    return n;
}

static qlib_config *golden_config(const golden_case *c)
{
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(c->method, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, c->bits), QLIB_OK);
    if (c->method == QLIB_METHOD_NONE) return cfg;
    if (c->method == QLIB_METHOD_LLM_INT8) {
        ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, c->threshold),
                         QLIB_OK);
        return cfg;
    }
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, c->group), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, c->sym), QLIB_OK);
    if (c->method == QLIB_METHOD_GPTQ) {
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER, c->act_order),
                         QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_STATIC_GROUPS, c->static_groups),
                         QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_BLOCK_SIZE, 64), QLIB_OK);
    }
    if (c->method == QLIB_METHOD_AWQ) {
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_AWQ_CLIP, c->clip), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_AWQ_GRID, c->grid), QLIB_OK);
    }
    return cfg;
}

/* The checksum of case c's blob. */
static uint64_t golden_hash(qlib_ctx *ctx, const golden_case *c, const float *w,
                            const qlib_calib *cal)
{
    qlib_config *cfg = golden_config(c);
    qlib_tensor *t = NULL;
    qlib_status s = qlib_quantize(ctx, w, GN, GK, GK, cfg, uses_linalg(c->method) ? cal : NULL,
                                  &t);
    ck_assert_msg(s == QLIB_OK, "%s: %s", c->name, qlib_last_error());
    size_t bytes = 0, written = 0;
    ck_assert_int_eq(qlib_tensor_serialized_size(t, &bytes), QLIB_OK);
    uint8_t *blob = malloc(bytes);
    ck_assert_ptr_nonnull(blob);
    ck_assert_int_eq(qlib_tensor_serialize(t, blob, bytes, &written), QLIB_OK);
    ck_assert_uint_eq(written, bytes);
    uint64_t h = fnv1a(blob, bytes);
    free(blob);
    qlib_tensor_destroy(t);
    qlib_config_destroy(cfg);
    return h;
}

typedef struct golden_entry { char section[300]; char name[64]; uint64_t hash; } golden_entry;

/* Reads the committed file: "[section]" lines, then "name hash" lines. */
static size_t golden_read(const char *path, golden_entry *e, size_t cap)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s (run the tests from the source tree)", path);
    char line[256], section[300] = "";
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (line[0] == '[') {
            char *end = strchr(line, ']');
            ck_assert_ptr_nonnull(end);
            *end = '\0';
            snprintf(section, sizeof section, "%s", line + 1);
            continue;
        }
        ck_assert_uint_lt(n, cap);
        unsigned long long h = 0;
        ck_assert_int_eq(sscanf(line, "%63s %llx", e[n].name, &h), 2);
        snprintf(e[n].section, sizeof e[n].section, "%s", section);
        e[n].hash = h;
        n++;
    }
    fclose(f);
    return n;
}

static const golden_entry *golden_find(const golden_entry *e, size_t n, const char *section,
                                       const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].section, section) && !strcmp(e[i].name, name)) return &e[i];
    return NULL;
}

START_TEST(test_golden_blobs)
{
    static golden_case cs[512];
    static golden_entry entries[1024];
    size_t n_cases = golden_cases(cs);
    char backend[64];
    tu_golden_section(backend, sizeof backend);

    float *w, *x;
    tu_golden_fixture(&w, &x);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_calib *cal = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, GK, QLIB_CALIB_ALL, 64, &cal), QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(cal, x, GTOK, GK), QLIB_OK);

    const char *out = getenv("QLIB_GOLDEN_WRITE");
    if (out && *out) {
        FILE *f = fopen(out, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "# FNV-1a 64 of serialized blobs: test/unit/test_golden.c\n[portable]\n");
        for (size_t i = 0; i < n_cases; i++)
            if (!uses_linalg(cs[i].method))
                fprintf(f, "%s %016llx\n", cs[i].name,
                        (unsigned long long)golden_hash(ctx, &cs[i], w, cal));
        fprintf(f, "[%s]\n", backend);
        for (size_t i = 0; i < n_cases; i++)
            if (uses_linalg(cs[i].method))
                fprintf(f, "%s %016llx\n", cs[i].name,
                        (unsigned long long)golden_hash(ctx, &cs[i], w, cal));
        fclose(f);
    } else {
        size_t n = golden_read(GOLDEN_FILE, entries, 1024), checked = 0, skipped = 0;
        for (size_t i = 0; i < n_cases; i++) {
            const char *sec = uses_linalg(cs[i].method) ? backend : "portable";
            const golden_entry *e = golden_find(entries, n, sec, cs[i].name);
            if (!e) {
                ck_assert_msg(uses_linalg(cs[i].method), "%s: no golden checksum", cs[i].name);
                skipped++;
                continue;
            }
            uint64_t h = golden_hash(ctx, &cs[i], w, cal);
            ck_assert_msg(h == e->hash, "%s [%s]: blob checksum %016llx, golden %016llx",
                          cs[i].name, sec, (unsigned long long)h, (unsigned long long)e->hash);
            checked++;
        }
        ck_assert_uint_gt(checked, 40);
        if (skipped)
            printf("golden: %zu blobs checked; no [%s] section, %zu GPTQ/AWQ blobs not compared\n",
                   checked, backend, skipped);
    }
    qlib_calib_destroy(cal);
    qlib_ctx_destroy(ctx);
    free(w);
    free(x);
}
END_TEST

Suite *suite_golden(void);
Suite *suite_golden(void)
{
    Suite *s = suite_create("golden");
    TCase *tc = tu_tcase("blobs");
    tcase_add_test(tc, test_golden_blobs);
    suite_add_tcase(s, tc);
    return s;
}
