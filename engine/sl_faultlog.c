/* sl_faultlog.c - the faults a runner's store could not take, in space reserved
 * beforehand (sl_faultlog.h). */
#define _GNU_SOURCE
#include "sl_faultlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_buf.h"

struct sl_faultlog {
	int fd;
	size_t used; /* bytes of records from offset 0 */
};

static void log_path(char *out, size_t n, const char *store_path)
{
	snprintf(out, n, "%s-faults", store_path);
}

int sl_faultlog_open(struct sl_faultlog **out, const char *store_path, struct sl_diag *d)
{
	static const char zeros[4096];
	struct sl_faultlog *f = calloc(1, sizeof(*f));
	char path[4200];
	size_t off;

	*out = NULL;
	if (!f)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	log_path(path, sizeof(path), store_path);
	if ((f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		free(f);
		return sl_diag_set(d, SL_EIO, "cannot open %s: %s", path, strerror(errno));
	}
	/* Reserve the space now, while there is room (where posix_fallocate is not
	 * supported, writing the zeros that empty it allocates it too). */
	(void)posix_fallocate(f->fd, 0, SL_FAULTLOG_SIZE);
	for (off = 0; off < SL_FAULTLOG_SIZE; off += sizeof(zeros))
		if (pwrite(f->fd, zeros, sizeof(zeros), (off_t)off) != (ssize_t)sizeof(zeros)) {
			close(f->fd);
			free(f);
			return sl_diag_set(d, SL_EIO, "cannot reserve %s: %s", path,
			                   strerror(errno));
		}
	*out = f;
	return 0;
}

/* Appends s, its control characters (and the separator) as spaces. */
static void add_clean(struct sl_buf *b, const char *s)
{
	for (; *s; s++)
		sl_buf_addc(b, (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s);
}

int sl_faultlog_add(struct sl_faultlog *f, const char *proc, const char *stream, const char *msg)
{
	struct sl_buf b;
	int rc = 0;

	if (!f)
		return SL_EIO;
	sl_buf_init(&b);
	add_clean(&b, proc);
	sl_buf_addc(&b, 0x1f);
	add_clean(&b, stream);
	sl_buf_addc(&b, 0x1f);
	add_clean(&b, msg);
	sl_buf_addc(&b, '\n');
	if (!sl_buf_ok(&b))
		rc = SL_ENOMEM;
	else if (f->used + b.len > SL_FAULTLOG_SIZE)
		rc = SL_ETOOBIG;
	else if (pwrite(f->fd, b.ptr, b.len, (off_t)f->used) != (ssize_t)b.len)
		rc = SL_EIO;
	else
		f->used += b.len, fdatasync(f->fd);
	sl_buf_release(&b);
	return rc;
}

void sl_faultlog_close(struct sl_faultlog *f)
{
	if (!f)
		return;
	close(f->fd);
	free(f);
}

int sl_faultlog_read(const char *store_path, sl_faultlog_fn fn, void *ud)
{
	char path[4200], *buf, *line, *end;
	ssize_t n;
	int fd, rc = 0;

	log_path(path, sizeof(path), store_path);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0; /* no runner noted anything */
	if (!(buf = malloc(SL_FAULTLOG_SIZE + 1))) {
		close(fd);
		return SL_ENOMEM;
	}
	n = pread(fd, buf, SL_FAULTLOG_SIZE, 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0'; /* the records end at the first NUL */
	for (line = buf; !rc && (end = strchr(line, '\n')); line = end + 1) {
		char *stream, *msg;
		*end = '\0';
		if (!(stream = strchr(line, 0x1f)) || !(msg = strchr(stream + 1, 0x1f)))
			continue;
		*stream++ = '\0';
		*msg++ = '\0';
		rc = fn(ud, line, stream, msg);
	}
	free(buf);
	return rc;
}
