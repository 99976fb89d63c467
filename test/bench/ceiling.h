/* Peak multiply-adds per second of one core (test/bench/ceiling.c). */
#ifndef QLIB_BENCH_CEILING_H
#define QLIB_BENCH_CEILING_H

typedef struct bench_ceiling {
    double fma;       /* fp32 FMA, 8 per instruction */
    double pmaddwd;   /* pmaddwd + paddd, 16 per pair */
    double maddubs;   /* maddubs + paddw, 32 per pair */
    double dpbusd;    /* vpdpbusd (AVX-VNNI, else AVX512-VNNI), 32 per instruction; 0 without */
    double dpbusd512; /* vpdpbusd on 512-bit registers (AVX512-VNNI), 64 per instruction; 0 without */
} bench_ceiling;

/* 1 and the peaks, or 0 where they are not measured (not x86-64 with AVX2
 * and FMA). */
int bench_ceilings(bench_ceiling *out);

#endif
