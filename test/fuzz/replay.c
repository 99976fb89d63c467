/* Feeds every file of the corpus directories (or files) named on the command
 * line to LLVMFuzzerTestOneInput, in name order, so that the committed corpus
 * runs on every build without libFuzzer. Each input sits in a buffer of
 * exactly its size, so a sanitizer build sees any read past its end. A
 * missing or empty corpus is an error: a target without seeds tests nothing. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        perror(path);
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf || fread(buf, 1, size, f) != size) {
        fprintf(stderr, "%s: cannot read %zu bytes\n", path, size);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, size);
    free(buf);
    return 0;
}

static int not_hidden(const struct dirent *e) { return e->d_name[0] != '.'; }

/* Runs the regular files of dir; returns how many, or -1. */
static long run_dir(const char *dir)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, not_hidden, alphasort);
    if (n < 0) {
        perror(dir);
        return -1;
    }
    long ran = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]->d_name) + 2;
        char *path = malloc(len);
        struct stat st;
        if (path) {
            snprintf(path, len, "%s/%s", dir, names[i]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                if (run_file(path) != 0) ran = -1;
                else if (ran >= 0) ran++;
            }
        } else {
            ran = -1;
        }
        free(path);
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s corpus_dir_or_file...\n", argv[0]);
        return 2;
    }
    for (int a = 1; a < argc; a++) {
        struct stat st;
        long ran;
        if (stat(argv[a], &st) != 0) {
            perror(argv[a]);
            return 1;
        }
        ran = S_ISDIR(st.st_mode) ? run_dir(argv[a]) : run_file(argv[a]) == 0 ? 1 : -1;
        if (ran <= 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[a], ran == 0 ? "no inputs" : "failed");
            return 1;
        }
        printf("replay %s: %ld inputs\n", argv[a], ran);
    }
    return 0;
}
