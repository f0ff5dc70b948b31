/* st_stream.h — library-private streaming safetensors writer (safetensors_write.c, where
 * cd_st_write is built on it).
 *
 * For outputs larger than memory: the header (every name, dtype and shape) is known up front and
 * written first; then the tensors' bytes are appended in the same order, in as many pieces as
 * the caller likes; commit checks that exactly the announced bytes arrived, fsyncs and renames
 * the temporary file over the destination. Same file format and atomicity as cd_st_write: a
 * temporary PATH.tmp.XXXXXX in the destination directory, removed on abort or any failure, so the
 * destination is either the complete new file or untouched. */
#ifndef CD_ST_STREAM_H
#define CD_ST_STREAM_H

#include "st_internal.h"

typedef struct cd_st_stream cd_st_stream;

/* Validates the list as cd_st_write does (names, dtypes, shapes, metadata, uniqueness; `data` is
 * ignored), creates the temporary file and writes the header. meta: n_meta (key, value) pairs as
 * in cd_st_write. *out = NULL on error. */
cd_status cd_st_stream_begin(cd_ctx *ctx, const char *path, const cd_st_out *tensors, size_t n, const char *const *meta,
                             size_t n_meta, cd_st_stream **out);
/* Appends the next `len` bytes of tensor data (tensors back to back, in header order). Writing
 * more than the header announced is an error. */
cd_status cd_st_stream_write(cd_st_stream *w, const void *data, size_t len);
/* Completes the file (all bytes written, fsync, rename) and frees w, even on error. */
cd_status cd_st_stream_commit(cd_st_stream *w);
/* Removes the temporary file and frees w (NULL is fine). */
void cd_st_stream_abort(cd_st_stream *w);

#endif
