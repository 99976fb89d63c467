/*
 * Progress of quantize and ppl on stderr. On a terminal, one line redrawn in
 * place: a bar, the unit (layer i/L, story i/N), what is being done (the
 * projections, and qlib's own stage through qlib_ctx_set_progress: hessian,
 * gptq, awq-scale, ...) and the time left, estimated from the time per unit
 * so far. Elsewhere (a log, a pipe) the bar is not drawn; the commands print
 * one plain line per unit themselves. --quiet draws nothing.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"

#define BAR 24
#define REDRAW_SECONDS 0.1

static progress *active;   /* the bar on the terminal, cleared before messages */

static void clear_active(void)
{
    if (active)
        progress_clear(active);
}

void progress_init(progress *p, const llama_opts *o, int total, const char *unit)
{
    memset(p, 0, sizeof(*p));
    p->quiet = o->quiet;
    p->tty = !o->quiet && isatty(fileno(stderr));
    p->total = total > 0 ? total : 1;
    p->unit = unit;
    p->t0 = now_seconds();
    p->what[0] = '\0';
    if (p->tty) {
        active = p;
        llama_err_before = clear_active;
    }
}

static void format_time(double s, char *buf, size_t cap)
{
    if (s < 0.0 || s > 1e7)
        snprintf(buf, cap, "?");
    else if (s < 60.0)
        snprintf(buf, cap, "%.0f s", s);
    else if (s < 3600.0)
        snprintf(buf, cap, "%d min %02d s", (int)(s / 60.0), (int)s % 60);
    else
        snprintf(buf, cap, "%d h %02d min", (int)(s / 3600.0), (int)(s / 60.0) % 60);
}

static void draw(progress *p)
{
    double done = (double)p->done + (p->unit_frac > 0.999 ? 0.999 : p->unit_frac);
    double elapsed = now_seconds() - p->t0, left = done > 0.0 ? elapsed / done * (p->total - done) : -1.0;
    char bar[BAR + 1], eta[32];
    int i, fill = (int)(done / p->total * BAR + 0.5);
    for (i = 0; i < BAR; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[BAR] = '\0';
    format_time(left, eta, sizeof(eta));
    fprintf(stderr, "\r\033[K[%s] %s %d/%d %s", bar, p->unit,
            p->done + 1 <= p->total ? p->done + 1 : p->total, p->total, p->what);
    if (p->stage && p->stage[0])
        fprintf(stderr, " %s %3.0f%%", p->stage, p->stage_frac * 100.0);
    fprintf(stderr, "  ETA %s", eta);
    fflush(stderr);
    p->drawn = 1;
    p->last = now_seconds();
}

void progress_what(progress *p, const char *what, double unit_frac)
{
    if (!p->tty)
        return;
    snprintf(p->what, sizeof(p->what), "%s", what);
    p->unit_frac = unit_frac;
    p->stage = NULL;
    p->stage_frac = 0.0;
    draw(p);
}

int progress_qlib(void *user, const char *stage, double fraction)
{
    progress *p = user;
    if (!p->tty)
        return 0;
    p->stage = stage;
    p->stage_frac = fraction;
    if (now_seconds() - p->last >= REDRAW_SECONDS || fraction >= 1.0)
        draw(p);
    return 0;
}

void progress_clear(progress *p)
{
    if (p->tty && p->drawn) {
        fputs("\r\033[K", stderr);
        p->drawn = 0;
    }
}

void progress_step(progress *p)
{
    p->done++;
    p->unit_frac = 0.0;
    if (p->tty && p->done < p->total && now_seconds() - p->last >= REDRAW_SECONDS) {
        p->what[0] = '\0';
        p->stage = NULL;
        p->stage_frac = 0.0;
        draw(p);
    }
}

void progress_end(progress *p)
{
    progress_clear(p);
    if (active == p) {
        active = NULL;
        llama_err_before = NULL;
    }
}
