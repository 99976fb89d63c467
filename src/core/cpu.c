/* CPU features, read once: CPUID plus the OS's XSAVE state on x86-64,
 * getauxval(AT_HWCAP) on AArch64. */
#include <unistd.h>

#include "core.h"

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned cpu_detect(void)
{
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6u) != 6u) return 0;                 /* XMM and YMM state saved by the OS */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if ((b >> 5) & 1) f |= QK_CPU_AVX2;
    if (fma) f |= QK_CPU_FMA;
    if (f16c) f |= QK_CPU_F16C;
    unsigned subleaves = a;
    /* AVX512F, AVX512VL, AVX512-VNNI, and opmask and ZMM state saved */
    if ((b >> 16) & 1 && (b >> 31) & 1 && (c >> 11) & 1 && (lo & 0xe0u) == 0xe0u) {
        f |= QK_CPU_AVX512_VNNI;
        if ((b >> 30) & 1) f |= QK_CPU_AVX512;     /* and AVX512BW */
    }
    if (subleaves >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        if ((a >> 4) & 1) f |= QK_CPU_AVX_VNNI;
    }
    return f;
}
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
static unsigned cpu_detect(void)
{
    unsigned long hw = getauxval(AT_HWCAP);
    unsigned f = 0;
    if (hw & HWCAP_ASIMD) f |= QK_CPU_NEON;
    if (hw & HWCAP_ASIMDDP) f |= QK_CPU_DOTPROD;
    return f;
}
#elif defined(__aarch64__)
static unsigned cpu_detect(void) { return QK_CPU_NEON; }   /* NEON is mandatory on AArch64 */
#else
static unsigned cpu_detect(void) { return 0; }
#endif

unsigned qlib_cpu_features(void)
{
    static unsigned cached;              /* features | 0x80000000 once known */
    unsigned f = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (!f) {
        f = cpu_detect() | 0x80000000u;
        __atomic_store_n(&cached, f, __ATOMIC_RELEASE);
    }
    return f & 0x7fffffffu;
}

int qlib_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > 1024 ? 1024 : (int)n;
}
