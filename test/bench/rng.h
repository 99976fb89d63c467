/* The random numbers the benchmarks and the build-agreement test make their
 * data from: a splitmix64 stream, uniform in [0, 1) with 53 bits, and normal
 * deviates by Box-Muller. Each program keeps its own state (its own seed). */
#ifndef QLIB_BENCH_RNG_H
#define QLIB_BENCH_RNG_H

#include <math.h>
#include <stdint.h>

static inline double rng_uniform01(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static inline double rng_normal(uint64_t *state)
{
    double u = rng_uniform01(state) + 1e-300, v = rng_uniform01(state);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif
