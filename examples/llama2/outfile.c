/*
 * Output files and directories written whole or not at all: everything goes
 * to PATH.qlib-llama-tmp.<pid> first, which is fsynced and renamed over PATH
 * (the directory fsynced after). The temporary name tells a user what left
 * it; a later run writing the same PATH removes the ones whose process is
 * gone (a run killed with SIGKILL cannot clean up after itself).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "llama.h"

#define TMP_TAG ".qlib-llama-tmp."
#define OLD_TAG ".qlib-llama-old."

/* dir and base name of path, into the caller's buffers */
static int split_path(const char *path, char *dir, size_t dcap, const char **base)
{
    const char *slash = strrchr(path, '/');
    size_t n;
    if (!slash) {
        snprintf(dir, dcap, ".");
        *base = path;
        return 0;
    }
    n = (size_t)(slash - path);
    if (n == 0)
        n = 1;   /* "/name" */
    if (n >= dcap)
        return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    *base = slash + 1;
    return 0;
}

/* Removes a file, or a directory of files (what this program writes). */
static int remove_tree(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char sub[4096];
    if (lstat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    d = opendir(path);
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) < sizeof(sub))
            remove_tree(sub);
    }
    closedir(d);
    return rmdir(path);
}

static int pid_gone(long pid)
{
    return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Removes base.qlib-llama-tmp.<pid> and base.qlib-llama-old.<pid> left in
 * dir by runs that no longer exist. */
static void clean_stale(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t bl = strlen(base);
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        const char *tail = e->d_name + bl, *num;
        char *end, full[4096];
        long pid;
        if (strncmp(e->d_name, base, bl) != 0)
            continue;
        if (!strncmp(tail, TMP_TAG, strlen(TMP_TAG)))
            num = tail + strlen(TMP_TAG);
        else if (!strncmp(tail, OLD_TAG, strlen(OLD_TAG)))
            num = tail + strlen(OLD_TAG);
        else
            continue;
        pid = strtol(num, &end, 10);
        if (*num == '\0' || *end != '\0' || !pid_gone(pid) || pid == (long)getpid())
            continue;
        if ((size_t)snprintf(full, sizeof(full), "%s/%s", dir, e->d_name) >= sizeof(full))
            continue;
        if (remove_tree(full) == 0)
            llama_err("removed %s, left by an interrupted run (process %ld)", full, pid);
    }
    closedir(d);
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int prepare(output_file *o, const char *path, int is_dir)
{
    const char *base;
    memset(o, 0, sizeof(*o));
    o->fd = -1;
    o->is_dir = is_dir;
    if (strlen(path) + 40 >= sizeof(o->path) || path[0] == '\0'
        || split_path(path, o->dir, sizeof(o->dir), &base) != 0 || base[0] == '\0') {
        llama_err("%s: not a usable output path", path);
        return -1;
    }
    strcpy(o->path, path);
    snprintf(o->tmp, sizeof(o->tmp), "%s%s%ld", path, TMP_TAG, (long)getpid());
    clean_stale(o->dir, base);
    return 0;
}

int out_open(output_file *o, const char *path)
{
    struct stat st;
    if (prepare(o, path, 0) != 0)
        return -1;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        llama_err("%s: is a directory", path);
        return -1;
    }
    o->fd = open(o->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        llama_err("%s: cannot create %s: %s", path, o->tmp, strerror(errno));
        return -1;
    }
    o->f = fdopen(o->fd, "w+b");
    if (!o->f) {
        llama_err("%s: %s", o->tmp, strerror(errno));
        close(o->fd);
        unlink(o->tmp);
        o->fd = -1;
        return -1;
    }
    o->open = 1;
    return 0;
}

int out_open_dir(output_file *o, const char *path)
{
    struct stat st;
    if (prepare(o, path, 1) != 0)
        return -1;
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
        llama_err("%s: exists and is not a directory", path);
        return -1;
    }
    if (mkdir(o->tmp, 0755) != 0) {
        llama_err("%s: cannot create %s: %s", path, o->tmp, strerror(errno));
        return -1;
    }
    o->open = 1;
    return 0;
}

/* The path of a file inside an output directory. */
int out_dir_file(const output_file *o, const char *name, char *buf, size_t cap)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", o->tmp, name) >= cap) {
        llama_err("%s/%s: path too long", o->path, name);
        return -1;
    }
    return 0;
}

int out_commit(output_file *o)
{
    char old[4200];
    int moved = 0;
    if (!o->open)
        return -1;
    if (!o->is_dir) {
        if (fflush(o->f) != 0 || fsync(o->fd) != 0) {
            llama_err("%s: write failed: %s", o->tmp, strerror(errno));
            out_abort(o);
            return -1;
        }
        fclose(o->f);
        o->f = NULL;
        o->fd = -1;
    } else if (sync_dir(o->tmp) != 0) {
        llama_err("%s: %s", o->tmp, strerror(errno));
        out_abort(o);
        return -1;
    }
    if (o->is_dir && access(o->path, F_OK) == 0) {
        /* rename() cannot replace a directory with files in it */
        snprintf(old, sizeof(old), "%s%s%ld", o->path, OLD_TAG, (long)getpid());
        if (rename(o->path, old) != 0) {
            llama_err("%s: cannot move the old directory aside: %s", o->path, strerror(errno));
            out_abort(o);
            return -1;
        }
        moved = 1;
    }
    if (rename(o->tmp, o->path) != 0) {
        llama_err("%s: rename from %s failed: %s", o->path, o->tmp, strerror(errno));
        if (moved)
            rename(old, o->path);
        out_abort(o);
        return -1;
    }
    if (moved)
        remove_tree(old);
    o->open = 0;
    if (sync_dir(o->dir) != 0) {
        llama_err("%s: fsync of the directory failed: %s", o->dir, strerror(errno));
        return -1;
    }
    return 0;
}

void out_abort(output_file *o)
{
    if (o->f)
        fclose(o->f);
    else if (o->fd >= 0)
        close(o->fd);
    o->f = NULL;
    o->fd = -1;
    if (o->open)
        remove_tree(o->tmp);
    o->open = 0;
}
