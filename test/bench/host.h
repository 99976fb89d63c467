/* The host the benchmarks ran on, for their headers: the CPU's model name
 * (x86 "model name", AArch64 "CPU part") from /proc/cpuinfo. */
#ifndef QLIB_BENCH_HOST_H
#define QLIB_BENCH_HOST_H

#include <stdio.h>
#include <string.h>

static inline const char *cpu_model(void)
{
    static char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    if (!f) return model;
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (c && (strncmp(line, "model name", 10) == 0 || strncmp(line, "CPU part", 8) == 0)) {
            snprintf(model, sizeof model, "%s", c + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    }
    fclose(f);
    return model;
}

#endif
