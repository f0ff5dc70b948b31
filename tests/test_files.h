/* test_files.h — temporary files for the I/O tests (safetensors, checkpoints): a fresh directory
 * under /tmp per test, removed with everything in it, and raw byte writers for files built by
 * hand. Header-only (static inline) so that each test file includes what it uses. */
#ifndef CD_TEST_FILES_H
#define CD_TEST_FILES_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory /tmp/cd_<tag>_XXXXXX; tmp_rm removes it. */
static inline int tmp_dir_tag(char *dir, size_t cap, const char *tag) {
    snprintf(dir, cap, "/tmp/cd_%s_XXXXXX", tag);
    return mkdtemp(dir) != NULL;
}

/* Removes path and, for a directory, everything below it (symlinks are removed, not followed). */
static inline void tmp_rm(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                size_t n = strlen(path) + strlen(e->d_name) + 2;
                char *p = malloc(n);
                if (!p) continue;
                snprintf(p, n, "%s/%s", path, e->d_name);
                tmp_rm(p);
                free(p);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Number of directory entries other than . and .. (-1 if it cannot be listed). */
static inline int dir_count(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static inline int write_bytes(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = len ? fwrite(buf, 1, len, f) : 0;
    return fclose(f) == 0 && w == len;
}

static inline int write_text(const char *path, const char *text) { return write_bytes(path, text, strlen(text)); }

static inline long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Writes [u64 hlen][header][data_len bytes of 0x5a] with an explicit header length field. */
static inline int write_st_raw(const char *path, uint64_t hlen, const char *header, size_t data_len) {
    size_t h = strlen(header), total = 8 + h + data_len;
    unsigned char *buf = malloc(total);
    if (!buf) return 0;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, 0x5a, data_len);
    int ok = write_bytes(path, buf, total);
    free(buf);
    return ok;
}

/* Same, with the true header length. */
static inline int write_st(const char *path, const char *header, size_t data_len) {
    return write_st_raw(path, strlen(header), header, data_len);
}

/* Resident set size of this process in bytes (/proc/self/statm), 0 if unknown. */
static inline uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, res = 0;
    int ok = fscanf(f, "%llu %llu", &size, &res) == 2;
    fclose(f);
    return ok ? res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

#endif
