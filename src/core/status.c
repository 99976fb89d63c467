/* Version, status strings and the thread-local error message. */
#include <stdarg.h>
#include <stdio.h>

#include "core.h"

unsigned qlib_version_number(void) { return QLIB_VERSION_NUMBER; }
const char *qlib_version_string(void) { return QLIB_VERSION_STRING; }

/* One list generates the names; values are pinned in qlib.h. */
#define QLIB_STATUS_LIST(X)                                                   \
    X(QLIB_OK, "success")                                                     \
    X(QLIB_ERR_ARG, "invalid argument")                                       \
    X(QLIB_ERR_SHAPE, "operand shapes do not agree")                          \
    X(QLIB_ERR_NOMEM, "out of memory")                                        \
    X(QLIB_ERR_UNSUPPORTED, "not supported by this build, CPU or method")     \
    X(QLIB_ERR_NUMERIC, "numeric failure (NaN/Inf, not positive definite)")   \
    X(QLIB_ERR_STATE, "calibration state lacks what is needed")               \
    X(QLIB_ERR_IO, "input/output error")                                      \
    X(QLIB_ERR_FORMAT, "serialized data corrupt, truncated or of an unknown version") \
    X(QLIB_ERR_CANCELLED, "cancelled by the progress callback")

const char *qlib_status_string(qlib_status s)
{
    switch (s) {
#define QLIB_STATUS_CASE(name, text) case name: return #name ": " text;
    QLIB_STATUS_LIST(QLIB_STATUS_CASE)
#undef QLIB_STATUS_CASE
    }
    return "QLIB_ERR_?: unknown status";
}

static _Thread_local char qlib_error_text[512];

const char *qlib_last_error(void) { return qlib_error_text; }

qlib_status qlib_fail(qlib_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(qlib_error_text, sizeof qlib_error_text, fmt, ap);
    va_end(ap);
    return s;
}
