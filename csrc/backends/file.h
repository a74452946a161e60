/* The file:// backend's interface beyond cfs_backend_ops, for copies that never hold an
 * object whole: a stored object opened for reading (Store._open_stored), sent from its
 * file; and a new object written piece by piece (Store._new_file), as its ranges arrive.
 * The new file is made as a PUT makes it (unnamed, or with a hidden temporary name, in the
 * key's directory resolved beneath the root) and put in place as a PUT puts it, removing
 * the key's other encoded variants; all path safety stays in file.c. Every call may block
 * on the filesystem: call them without the GIL. A writer is used by one thread at a time. */
#ifndef CFS_BACKENDS_FILE_H
#define CFS_BACKENDS_FILE_H
#include "core/backend.h"
#include "core/op.h"

typedef struct cfs_file_writer cfs_file_writer;

/* Whether `b` is a file:// store. */
int cfs_file_backend_is(const cfs_backend *b);

/* Open the stored file of op->key (op: a GET, whose status, message and where record what
 * failed) in the file:// store `b`, for reading its bytes as stored: op->size and
 * op->attrs.content_encoding set from it. The descriptor (the caller closes it), or -1
 * after cfs_op_fail() (CFS_ENOTFOUND: no such key). */
int cfs_file_open_stored(cfs_backend *b, cfs_op *op);

/* A new file for op->key (op: a PUT, whose status, message and where, the file's path,
 * record what failed) in the store `b`, a file:// one; its directory is made if missing.
 * NULL after cfs_op_fail(). The writer holds nothing of `b`: the store may close first. */
cfs_file_writer *cfs_file_writer_open(cfs_backend *b, cfs_op *op);

/* The file's descriptor, open for writing (pwrite at any offset) until commit or discard. */
int cfs_file_writer_fd(const cfs_file_writer *w);

/* Put the file in place as op->key stored with op->attrs.content_encoding (NULL: none;
 * key.gz, key.br, key.zstd otherwise), the key's other variants removed; flushed first
 * when the store is durable. Frees w, in place or not; failures are recorded on op (and
 * then nothing of the file stays). */
void cfs_file_writer_commit(cfs_file_writer *w, cfs_op *op);

/* Give the file up, nothing of it left; frees w. NULL is ignored. */
void cfs_file_writer_discard(cfs_file_writer *w);

#endif
