/*
 * replay.c - runs LLVMFuzzerTestOneInput over every file in the directories
 * given as arguments, without libFuzzer. Linked with each fuzz target by
 * every build as fuzz_replay_<target> (test/CMakeLists.txt) and run by ctest
 * over that target's corpus and regressions (fuzz_replay_conn: corpus/ and
 * regressions/; fuzz_replay_server: corpus_server/ and regressions_server/),
 * so the seeds and every input that ever crashed stay tested by the normal
 * test run, under whatever sanitizers that build uses.
 *
 *   fuzz_replay_<target> DIR... -> "N inputs replayed", exit 0
 *
 * Files are taken in name order; names starting with '.' or "README" are
 * skipped. An input that breaks an invariant aborts (as under the fuzzer).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILE_BYTES (1u << 20)

static uint8_t buf[MAX_FILE_BYTES];

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Replays one file; returns 1 if it was an input, 0 if skipped, -1 on error. */
static int replay_file(const char *dir, const char *name)
{
    char path[4096];
    struct stat sb;
    FILE *f;
    size_t n;

    if (name[0] == '.' || strncmp(name, "README", 6) == 0) {
        return 0;
    }
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        fprintf(stderr, "fuzz_replay: path too long: %s/%s\n", dir, name);
        return -1;
    }
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        return 0;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    if (ferror(f) || !feof(f)) {
        fprintf(stderr, "fuzz_replay: %s: unreadable or larger than %u bytes\n", path,
                MAX_FILE_BYTES);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (getenv("FUZZ_REPLAY_VERBOSE") != NULL) {
        fprintf(stderr, "fuzz_replay: %s (%zu bytes)\n", path, n);
    }
    (void)LLVMFuzzerTestOneInput(buf, n);
    return 1;
}

int main(int argc, char **argv)
{
    unsigned long replayed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct dirent **names;
        int count = scandir(argv[i], &names, NULL, by_name);
        int rc = 0;
        if (count < 0) {
            perror(argv[i]);
            return 1;
        }
        for (int j = 0; j < count; j++) {
            if (rc >= 0) {
                rc = replay_file(argv[i], names[j]->d_name);
                replayed += rc > 0 ? 1u : 0u;
            }
            free(names[j]);
        }
        free(names);
        if (rc < 0) {
            return 1;
        }
    }
    printf("%lu inputs replayed\n", replayed);
    return 0;
}
