/*
 * obj_fmt - what the format-string calls share (obj_build.c: mp_obj_build,
 * obj_parse.c: mp_obj_parse): recording why the last one failed on this
 * thread. Private: never installed.
 *
 * The record is the library's per-thread message (mp_errmsg, core/error.c).
 */
#ifndef MPIPC_OBJ_FMT_H
#define MPIPC_OBJ_FMT_H

/* Record code and a printf-formatted reason as this thread's last failure of
 * a build or parse. Keeps errno. */
void mp__obj_fmt_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget the last failure (each build or parse starts with it). */
void mp__obj_fmt_clear(void);

/* The code of this thread's last recorded build or parse failure (0: none
 * since the last call started), with its reason in *msg (never NULL; "" for
 * none). The text lives until this thread's next build or parse. */
int mp__obj_fmt_last(const char **msg);

#endif /* MPIPC_OBJ_FMT_H */
