/* Internal to svckit: shared between layers, not part of the public API. */
#ifndef SVC_CORE_INTERNAL_H
#define SVC_CORE_INTERNAL_H

#include "svckit/core.h"

/* Logging (src/core/log.c). */
void svc__log_set_buffered(int on);          /* this thread's lines wait for a flush */
void svc__log_thread_exit(void);             /* flush and free this thread's buffer */
unsigned long svc__log_dropped(void);        /* lines dropped because stdout blocked */
const char *svc__log_timestamp(char out[32]);/* RFC 3339 UTC with milliseconds */
void svc__log_line_begin(svc_buf *b, svc_log_level level); /* "{"time":..,"service":.." or text prefix */
int svc__log_json(void);                     /* 1 when lines are JSON */

#endif
