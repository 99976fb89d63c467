/* make bench BENCH=ceiling: how many multiply-adds per second one core's
 * vector units can issue, for the three instruction pairs the GEMM kernels
 * and OpenBLAS are built on, each in a loop of independent register-only
 * accumulators (no loads, no dependency chains longer than the loop's
 * accumulator count covers). These are the peaks the GEMM rows of the
 * shapes table are measured against in docs/PERFORMANCE.md.
 *
 * x86-64 only: on other machines the section says so and prints nothing. */
#include <stdio.h>
#include <time.h>

#include "ceiling.h"

#define CEIL_ITERS 10000000L

static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))

/* Ten fp32 FMA chains: 10 x 8 multiply-adds per iteration. */
TGT static double fma_peak(long iters)
{
    __m256 a0 = _mm256_set1_ps(0.5f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0, a8 = a0, a9 = a0;
    __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __asm__("" : "+x"(b), "+x"(c));
    double t0 = thread_seconds();
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, b, c);
        a1 = _mm256_fmadd_ps(a1, b, c);
        a2 = _mm256_fmadd_ps(a2, b, c);
        a3 = _mm256_fmadd_ps(a3, b, c);
        a4 = _mm256_fmadd_ps(a4, b, c);
        a5 = _mm256_fmadd_ps(a5, b, c);
        a6 = _mm256_fmadd_ps(a6, b, c);
        a7 = _mm256_fmadd_ps(a7, b, c);
        a8 = _mm256_fmadd_ps(a8, b, c);
        a9 = _mm256_fmadd_ps(a9, b, c);
        __asm__("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6),
                "+x"(a7), "+x"(a8), "+x"(a9));
    }
    double t = thread_seconds() - t0;
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(a8, a9));
    volatile float sink = _mm256_cvtss_f32(s);
    (void)sink;
    return (double)iters * 80.0 / t;
}

/* Eight accumulators, each advanced by STEP(acc, w, x): pmaddwd (16
 * multiply-adds) + paddd, maddubs (32) + paddw — the pairs the int16 and u8
 * GEMM tiles issue with plain AVX2 — or one vpdpbusd (32, accumulate
 * included), the VNNI tiles' step, in its VEX (AVX-VNNI) or 256-bit EVEX
 * (AVX512-VNNI + AVX512VL) encoding. */
#define INT_PEAK(name, isas, STEP, macs)                                                 \
    __attribute__((target(isas))) static double name(long iters)                        \
    {                                                                                  \
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, \
                a6 = a0, a7 = a0;                                                      \
        __m256i w0 = _mm256_set1_epi16(3), w1 = _mm256_set1_epi16(5);                  \
        __m256i x0 = _mm256_set1_epi16(7), x1 = _mm256_set1_epi16(9);                  \
        __m256i x2 = _mm256_set1_epi16(2), x3 = _mm256_set1_epi16(1);                  \
        __asm__("" : "+x"(w0), "+x"(w1), "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3));      \
        double t0 = thread_seconds();                                                  \
        for (long i = 0; i < iters; i++) {                                             \
            a0 = STEP(a0, w0, x0);                                                     \
            a1 = STEP(a1, w1, x0);                                                     \
            a2 = STEP(a2, w0, x1);                                                     \
            a3 = STEP(a3, w1, x1);                                                     \
            a4 = STEP(a4, w0, x2);                                                     \
            a5 = STEP(a5, w1, x2);                                                     \
            a6 = STEP(a6, w0, x3);                                                     \
            a7 = STEP(a7, w1, x3);                                                     \
            /* the operands too, or the products are hoisted out of the loop */         \
            __asm__("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5),    \
                    "+x"(a6), "+x"(a7), "+x"(w0), "+x"(w1), "+x"(x0), "+x"(x1),        \
                    "+x"(x2), "+x"(x3));                                               \
        }                                                                              \
        double t = thread_seconds() - t0;                                              \
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1),         \
                                                      _mm256_add_epi32(a2, a3)),        \
                                     _mm256_add_epi32(_mm256_add_epi32(a4, a5),         \
                                                      _mm256_add_epi32(a6, a7)));       \
        volatile int sink = _mm256_cvtsi256_si32(s);                                   \
        (void)sink;                                                                    \
        return (double)iters * 8.0 * (macs) / t;                                       \
    }

#define STEP_MADDWD(a, w, x) _mm256_add_epi32(a, _mm256_madd_epi16(w, x))
#define STEP_MADDUBS(a, w, x) _mm256_add_epi16(a, _mm256_maddubs_epi16(w, x))

INT_PEAK(pmaddwd_peak, "avx2,fma", STEP_MADDWD, 16)
INT_PEAK(maddubs_peak, "avx2,fma", STEP_MADDUBS, 32)
INT_PEAK(dpbusd_vex_peak, "avx2,fma,avxvnni", _mm256_dpbusd_avx_epi32, 32)
INT_PEAK(dpbusd_evex_peak, "avx2,fma,avx512vnni,avx512vl", _mm256_dpbusd_epi32, 32)

/* The same on 512-bit registers: 64 multiply-adds per instruction (the
 * avx512 kernels' step). */
__attribute__((target("avx512f,avx512vnni"))) static double dpbusd512_peak(long iters)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0;
    __m512i w0 = _mm512_set1_epi16(3), w1 = _mm512_set1_epi16(5);
    __m512i x0 = _mm512_set1_epi16(7), x1 = _mm512_set1_epi16(9);
    __m512i x2 = _mm512_set1_epi16(2), x3 = _mm512_set1_epi16(1);
    __asm__("" : "+v"(w0), "+v"(w1), "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3));
    double t0 = thread_seconds();
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_dpbusd_epi32(a0, w0, x0);
        a1 = _mm512_dpbusd_epi32(a1, w1, x0);
        a2 = _mm512_dpbusd_epi32(a2, w0, x1);
        a3 = _mm512_dpbusd_epi32(a3, w1, x1);
        a4 = _mm512_dpbusd_epi32(a4, w0, x2);
        a5 = _mm512_dpbusd_epi32(a5, w1, x2);
        a6 = _mm512_dpbusd_epi32(a6, w0, x3);
        a7 = _mm512_dpbusd_epi32(a7, w1, x3);
        __asm__("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6),
                "+v"(a7), "+v"(w0), "+v"(w1), "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3));
    }
    double t = thread_seconds() - t0;
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                 _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return (double)iters * 8.0 * 64.0 / t;
}

static double best_of(double (*f)(long), int reps)
{
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double v = f(CEIL_ITERS);
        if (v > best) best = v;
    }
    return best;
}

int bench_ceilings(bench_ceiling *out)
{
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    /* short runs, many of them: the best one found the core to itself */
    out->fma = best_of(fma_peak, 20);
    out->pmaddwd = best_of(pmaddwd_peak, 20);
    out->maddubs = best_of(maddubs_peak, 20);
    /* the form qlib would pick: VEX first, else EVEX (libgcc reports the
     * AVX-512 features only when the OS saves their state, as qlib checks) */
    out->dpbusd = 0.0;
    if (__builtin_cpu_supports("avxvnni"))
        out->dpbusd = best_of(dpbusd_vex_peak, 20);
    else if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl"))
        out->dpbusd = best_of(dpbusd_evex_peak, 20);
    out->dpbusd512 = 0.0;
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        out->dpbusd512 = best_of(dpbusd512_peak, 20);
    return 1;
}

#else

int bench_ceilings(bench_ceiling *out)
{
    (void)out;
    (void)thread_seconds;
    return 0;
}

#endif
