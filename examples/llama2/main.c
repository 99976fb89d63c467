/* qlib-llama: command line. */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

enum { C_PPL = 1, C_GEN = 2, C_QUANT = 4, C_INFO = 8, C_CONV = 16, C_ALL = 31 };
enum { K_STR, K_INT, K_FLOAT, K_FLAG, K_METHOD, K_COMPUTE, K_SEED, K_CALIB_TOKENS, K_ROUNDING, K_SCALES };

typedef struct opt_spec {
    const char *name, *alias;
    unsigned commands;
    int kind;
    size_t offset;
    double lo, hi;
} opt_spec;

#define OFF(f) offsetof(llama_opts, f)
static const opt_spec OPTS[] = {
    { "--model", NULL, C_ALL, K_STR, OFF(model), 0, 0 },
    { "--tokenizer", NULL, C_ALL, K_STR, OFF(tokenizer), 0, 0 },
    { "--threads", NULL, C_ALL, K_INT, OFF(threads), 0, 1024 },
    { "--isa", NULL, C_ALL, K_STR, OFF(isa), 0, 0 },
    { "--compute", NULL, C_ALL, K_COMPUTE, OFF(compute), 0, 0 },
    { "--text", NULL, C_PPL, K_STR, OFF(text), 0, 0 },
    { "--prompt", NULL, C_GEN, K_STR, OFF(prompt), 0, 0 },
    { "--tokens-out", NULL, C_PPL | C_GEN, K_STR, OFF(tokens_out), 0, 0 },
    { "--temperature", "-t", C_GEN, K_FLOAT, OFF(temperature), 0, 100 },
    { "--top-p", "-p", C_GEN, K_FLOAT, OFF(topp), 0, 1 },
    { "--steps", "-n", C_GEN, K_INT, OFF(steps), 0, INT_MAX },
    { "--seed", "-s", C_GEN, K_SEED, OFF(seed), 0, 0 },
    { "--method", NULL, C_QUANT, K_METHOD, OFF(method), 0, 0 },
    { "--bits", NULL, C_QUANT, K_INT, OFF(bits), 1, 32 },
    { "--group", NULL, C_QUANT, K_INT, OFF(group), -1, INT_MAX },
    { "--act-order", NULL, C_QUANT, K_FLAG, OFF(act_order), 0, 0 },
    { "--clip-grid", NULL, C_QUANT, K_INT, OFF(clip_grid), 0, 1000 },
    { "--awq-rounding", NULL, C_QUANT, K_ROUNDING, OFF(awq_rounding), 0, 0 },
    { "--awq-scales", NULL, C_QUANT, K_SCALES, OFF(awq_scales), 0, 0 },
    { "--sym", NULL, C_QUANT, K_FLAG, OFF(sym), 0, 0 },
    { "--calib", NULL, C_QUANT, K_STR, OFF(calib), 0, 0 },
    { "--calib-tokens", NULL, C_QUANT, K_CALIB_TOKENS, OFF(calib_ids), 2, INT_MAX },
    { "--calib-budget", NULL, C_QUANT, K_INT, OFF(calib_tokens), 2, INT_MAX },
    { "--output", "-o", C_QUANT | C_CONV, K_STR, OFF(out), 0, 0 },
    { "--type", NULL, C_CONV, K_STR, OFF(type), 0, 0 },
    { "--format", NULL, C_QUANT | C_CONV, K_STR, OFF(format), 0, 0 },
    { "--embed-bits", NULL, C_QUANT, K_INT, OFF(embed_bits), 4, 8 },
    { "--fallback", NULL, C_QUANT, K_STR, OFF(fallback), 0, 0 },
    { "--target-bpw", NULL, C_QUANT, K_FLOAT, OFF(target_bpw), 1, 32 },
    { "--quiet", "-q", C_QUANT | C_PPL, K_FLAG, OFF(quiet), 0, 0 },
    { "--awq-shared", NULL, C_QUANT, K_FLAG, OFF(awq_shared), 0, 0 },
    { "--awq-fold", NULL, C_QUANT, K_FLAG, OFF(awq_fold), 0, 0 },
    { "--calib-seed", NULL, C_QUANT, K_INT, OFF(calib_seed), 0, INT_MAX },
};
#define N_OPTS (sizeof(OPTS) / sizeof(OPTS[0]))

static void usage(FILE *f)
{
    fputs("usage: qlib-llama COMMAND --model FILE [--tokenizer FILE] [options]\n"
          "       qlib-llama --help | --version\n"
          "commands:\n"
          "  ppl       --text FILE                mean NLL and perplexity, one story per sequence\n"
          "  generate  [--prompt TEXT] [-t TEMP] [-p TOPP] [-n STEPS] [-s SEED]\n"
          "  quantize  --method rtn|gptq|awq|llm-int8|none [--bits B] [--group G] [--sym]\n"
          "            [--act-order] [--clip-grid N] [--awq-rounding rtn|gptq]\n"
          "            [--awq-scales act|duo|both]\n"
          "            [--calib TEXT [--calib-seed S] | --calib-tokens IDS]\n"
          "            [--calib-budget N]\n"
          "            [--embed-bits 8|4] [--target-bpw B] -o OUT [--format qlm|gguf|gptq|awq]\n"
          "            [--fallback f32|f16|q8_0] [--awq-shared | --awq-fold] [--quiet]\n"
          "  convert   -o OUT [--type f32|f16|keep] [--format gguf|hf]   a GGUF file or an HF directory\n"
          "  info      the model's configuration and tensors\n"
          "common options: --threads N, --isa scalar|avx2|neon|..., --compute auto|f32\n"
          "--model takes a llama2.c checkpoint (with --tokenizer), a GGUF file, a Hugging Face\n"
          "directory, or a file written by quantize; --tokenizer takes a llama2.c tokenizer.bin\n"
          "or a GGUF file whose vocabulary is used.\n", f);
}

static int parse_long(const char *s, long long lo, long long hi, long long *v)
{
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

static int parse_method(const char *s, int *m)
{
    static const char *const names[] = { "none", "rtn", "gptq", "awq", "llm-int8" };
    static const int ids[] = { QLIB_METHOD_NONE, QLIB_METHOD_RTN, QLIB_METHOD_GPTQ,
                               QLIB_METHOD_AWQ, QLIB_METHOD_LLM_INT8 };
    size_t i;
    for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            *m = ids[i];
            return 0;
        }
    }
    return -1;
}

static int set_value(const opt_spec *sp, const char *v, llama_opts *o)
{
    char *field = (char *)o + sp->offset, *end;
    long long n;
    double d;
    switch (sp->kind) {
    case K_STR: *(const char **)(void *)field = v; return 0;
    case K_METHOD: {
        /* one method, or (for --target-bpw) a comma-separated list of them */
        char name[32];
        const char *p = v;
        int m;
        o->methods = 0;
        while (*p) {
            size_t len = strcspn(p, ",");
            if (len == 0 || len >= sizeof(name))
                return -1;
            memcpy(name, p, len);
            name[len] = '\0';
            if (parse_method(name, &m) != 0)
                return -1;
            if (!o->methods)
                *(int *)(void *)field = m;
            o->methods |= 1u << m;
            p += len + (p[len] == ',');
        }
        return o->methods ? 0 : -1;
    }
    case K_COMPUTE:
        if (strcmp(v, "auto") && strcmp(v, "f32"))
            return -1;
        *(int *)(void *)field = strcmp(v, "f32") == 0 ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO;
        return 0;
    case K_INT:
        if (parse_long(v, (long long)sp->lo, (long long)sp->hi, &n))
            return -1;
        *(int *)(void *)field = (int)n;
        return 0;
    case K_CALIB_TOKENS:
        /* a number is the budget (as before --calib-budget), else a file of ids */
        if (parse_long(v, (long long)sp->lo, (long long)sp->hi, &n) == 0) {
            o->calib_tokens = (int)n;
            return 0;
        }
        if (v[0] >= '0' && v[0] <= '9' && strspn(v, "0123456789") == strlen(v))
            return -1;
        o->calib_ids = v;
        return 0;
    case K_ROUNDING:
        if (strcmp(v, "rtn") && strcmp(v, "gptq"))
            return -1;
        *(int *)(void *)field = strcmp(v, "gptq") == 0;
        return 0;
    case K_SCALES:
        if (strcmp(v, "act") && strcmp(v, "duo") && strcmp(v, "both"))
            return -1;
        *(int *)(void *)field = strcmp(v, "act") == 0 ? 0 : strcmp(v, "duo") == 0 ? 1 : 2;
        return 0;
    case K_SEED:
        if (parse_long(v, 0, LLONG_MAX, &n))
            return -1;
        *(unsigned long long *)(void *)field = (unsigned long long)n;
        o->seed_set = 1;
        return 0;
    default:
        d = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || !(d >= sp->lo && d <= sp->hi))
            return -1;
        *(float *)(void *)field = (float)d;
        return 0;
    }
}

static unsigned command_bit(const char *c)
{
    if (strcmp(c, "ppl") == 0)
        return C_PPL;
    if (strcmp(c, "generate") == 0)
        return C_GEN;
    if (strcmp(c, "quantize") == 0)
        return C_QUANT;
    if (strcmp(c, "convert") == 0)
        return C_CONV;
    return strcmp(c, "info") == 0 ? C_INFO : 0;
}

static const opt_spec *find_opt(const char *arg)
{
    size_t i;
    for (i = 0; i < N_OPTS; i++)
        if (strcmp(arg, OPTS[i].name) == 0 || (OPTS[i].alias && strcmp(arg, OPTS[i].alias) == 0))
            return &OPTS[i];
    return NULL;
}

static int parse_option(int argc, char **argv, int *i, unsigned cmd, llama_opts *o)
{
    const opt_spec *sp = find_opt(argv[*i]);
    if (!sp) {
        llama_err("unknown option '%s'", argv[*i]);
        return -1;
    }
    if (!(sp->commands & cmd)) {
        llama_err("option %s does not apply to %s", sp->name, o->command);
        return -1;
    }
    if (sp->kind == K_FLAG) {
        *(int *)(void *)((char *)o + sp->offset) = 1;
        return 0;
    }
    if (*i + 1 >= argc) {
        llama_err("option %s needs a value", sp->name);
        return -1;
    }
    *i += 1;
    if (set_value(sp, argv[*i], o) != 0) {
        llama_err("bad value '%s' for %s", argv[*i], sp->name);
        return -1;
    }
    return 0;
}

static void default_opts(llama_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->threads = -1;
    o->compute = QLIB_COMPUTE_AUTO;
    o->method = -1;
    o->bits = OPT_UNSET;
    o->group = OPT_UNSET;
    o->clip_grid = OPT_UNSET;
    o->awq_rounding = OPT_UNSET;
    o->awq_scales = OPT_UNSET;
    o->calib_tokens = 8192;
    o->temperature = 0.0f;
    o->topp = 1.0f;
    o->steps = 256;
    o->prompt = "";
}

static int parse_args(int argc, char **argv, llama_opts *o)
{
    unsigned cmd;
    int i;
    default_opts(o);
    if (argc < 2 || !(cmd = command_bit(argv[1]))) {
        if (argc >= 2)
            llama_err("unknown command '%s'", argv[1]);
        return -1;
    }
    o->command = argv[1];
    for (i = 2; i < argc; i++)
        if (parse_option(argc, argv, &i, cmd, o) != 0)
            return -1;
    if (!o->model) {
        llama_err("%s needs --model", o->command);
        return -1;
    }
    return 0;
}

int setup_ctx(const llama_opts *o, qlib_ctx **ctx)
{
    *ctx = NULL;
    if (qlib_ctx_create(ctx) != QLIB_OK) {
        report_qlib_error("context");
        return -1;
    }
    if ((o->threads >= 0 && qlib_ctx_set_threads(*ctx, o->threads) != QLIB_OK)
        || (o->isa && qlib_ctx_set_isa(*ctx, o->isa) != QLIB_OK)
        || qlib_ctx_set_compute(*ctx, (qlib_compute)o->compute) != QLIB_OK) {
        report_qlib_error("context options (--threads, --isa, --compute)");
        qlib_ctx_destroy(*ctx);
        *ctx = NULL;
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    llama_opts o;
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return RC_OK;
    }
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("qlib-llama %s (qlib %s)\n", QLIB_VERSION_STRING, qlib_version_string());
        return RC_OK;
    }
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return RC_USAGE;
    }
    switch (command_bit(o.command)) {
    case C_PPL: return cmd_ppl(&o);
    case C_GEN: return cmd_generate(&o);
    case C_QUANT: return cmd_quantize(&o);
    case C_CONV: return cmd_convert(&o);
    default: return cmd_info(&o);
    }
}
