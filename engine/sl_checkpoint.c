/* sl_checkpoint.c - SQL of the processor and checkpoint rows. */
#include "sl_checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_buf.h"
#include "sl_store_int.h"

enum { Q_PROC_GET, Q_PROC_PUT, Q_GET, Q_PUT, Q_PUT_OFFSET, Q_FAULT, Q_BGFAIL, Q_CLEAR_ONE, Q_CLEAR_ALL, Q_HASH_GET, Q_HASH_PUT, Q_DEAD_PUT, Q_DEAD_EACH, Q_EACH, Q_RESET_ONE, Q_RESET_ALL, Q_RESET_FX_ONE,
       Q_RESET_FX_ALL, Q_TABLES, Q_TABLES_DEL, Q_COUNT };

static const char *const q_sql[Q_COUNT] = {
	[Q_PROC_GET] = "SELECT version, anchor FROM sl_processors WHERE name = ?1",
	[Q_PROC_PUT] = "INSERT INTO sl_processors(name, version, anchor) VALUES (?1, ?2, ?3)"
		       " ON CONFLICT(name) DO UPDATE SET version = ?2",
	[Q_GET] = "SELECT \"offset\", effects_mark, state, status, last_error, background_failures"
		  " FROM sl_checkpoints WHERE processor = ?1 AND stream = ?2",
	[Q_PUT] = "INSERT INTO sl_checkpoints(processor, stream, \"offset\", state, effects_mark)"
		  " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(processor, stream) DO UPDATE SET"
		  " \"offset\" = ?3, state = ?4, effects_mark = ?5, status = 'ok', last_error = NULL",
	[Q_PUT_OFFSET] = "INSERT INTO sl_checkpoints(processor, stream, \"offset\", state, effects_mark)"
			 " VALUES (?1, ?2, ?3, NULL, ?4) ON CONFLICT(processor, stream) DO UPDATE SET"
			 " \"offset\" = ?3, effects_mark = ?4, status = 'ok', last_error = NULL",
	[Q_FAULT] = "INSERT INTO sl_checkpoints(processor, stream, \"offset\", state, status, last_error)"
		    " VALUES (?1, ?2, 0, NULL, 'faulted', ?3) ON CONFLICT(processor, stream) DO UPDATE SET"
		    " status = 'faulted', last_error = ?3",
	[Q_BGFAIL] = "INSERT INTO sl_checkpoints(processor, stream, \"offset\", state,"
		     " background_failures) VALUES (?1, ?2, 0, NULL, 1) ON CONFLICT(processor, stream)"
		     " DO UPDATE SET background_failures = background_failures + 1",
	[Q_CLEAR_ONE] = "UPDATE sl_checkpoints SET status = 'ok', last_error = NULL"
			" WHERE processor = ?1 AND stream = ?2 AND status = 'faulted'",
	[Q_CLEAR_ALL] = "UPDATE sl_checkpoints SET status = 'ok', last_error = NULL"
			" WHERE processor = ?1 AND status = 'faulted'",
	[Q_HASH_GET] = "SELECT coalesce(script_hash, ''), coalesce(contract_hash, '')"
		       " FROM sl_processors WHERE name = ?1",
	[Q_HASH_PUT] = "UPDATE sl_processors SET script_hash = ?2, contract_hash = ?3 WHERE name = ?1",
	[Q_DEAD_PUT] = "INSERT INTO sl_dead_letters(processor, stream, \"offset\", position, type,"
		       " error, traceback, attempts, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[Q_DEAD_EACH] = "SELECT processor, stream, \"offset\", position, type, error, traceback,"
			" attempts, at FROM sl_dead_letters ORDER BY id",
	[Q_EACH] = "SELECT stream, \"offset\", effects_mark, state, status, last_error,"
		   " background_failures FROM sl_checkpoints WHERE processor = ?1 ORDER BY stream",
	[Q_RESET_ONE] = "UPDATE sl_checkpoints SET \"offset\" = 0, state = NULL, status = 'ok',"
			" last_error = NULL WHERE processor = ?1 AND stream = ?2",
	[Q_RESET_ALL] = "UPDATE sl_checkpoints SET \"offset\" = 0, state = NULL, status = 'ok',"
			" last_error = NULL WHERE processor = ?1",
	[Q_RESET_FX_ONE] = "DELETE FROM sl_checkpoints WHERE processor = ?1 AND stream = ?2",
	[Q_RESET_FX_ALL] = "DELETE FROM sl_checkpoints WHERE processor = ?1",
	[Q_TABLES] = "SELECT name FROM sl_tables WHERE processor = ?1",
	[Q_TABLES_DEL] = "DELETE FROM sl_tables WHERE processor = ?1",
};

struct sl_ckpts {
	struct sl_store *s;
	sqlite3 *db;
	sqlite3_stmt *q[Q_COUNT];
};

static int db_fail(struct sl_ckpts *k, struct sl_diag *d, const char *what)
{
	return sl_store_db_error(k->s, d, what);
}

int sl_ckpts_open(struct sl_ckpts **out, struct sl_store *s, struct sl_diag *d)
{
	struct sl_ckpts *k = calloc(1, sizeof(*k));
	int i;

	*out = NULL;
	if (!k)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	k->s = s;
	k->db = sl_store_db(s);
	for (i = 0; i < Q_COUNT; i++) {
		if (sqlite3_prepare_v3(k->db, q_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &k->q[i],
				       NULL) != SQLITE_OK) {
			int rc = db_fail(k, d, "cannot prepare checkpoint statement");
			sl_ckpts_close(k);
			return rc;
		}
	}
	*out = k;
	return 0;
}

void sl_ckpts_close(struct sl_ckpts *k)
{
	int i;

	if (!k)
		return;
	for (i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(k->q[i]);
	free(k);
}

void sl_ckpt_release(struct sl_ckpt *c)
{
	free(c->state);
	free(c->last_error);
	memset(c, 0, sizeof(*c));
}

/* Runs a statement that returns no rows, then resets it. */
static int run(struct sl_ckpts *k, sqlite3_stmt *st, struct sl_diag *d, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_fail(k, d, what);
}

int sl_ckpt_proc_get(struct sl_ckpts *k, const char *proc, int *exists, int64_t *version,
		     int64_t *anchor, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_PROC_GET];
	int rc;

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*exists = rc == SQLITE_ROW;
	*version = *exists ? sqlite3_column_int64(st, 0) : 0;
	*anchor = *exists ? sqlite3_column_int64(st, 1) : 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(k, d, "cannot read processor");
}

int sl_ckpt_proc_put(struct sl_ckpts *k, const char *proc, int64_t version, int64_t anchor,
		     struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_PROC_PUT];

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, version);
	sqlite3_bind_int64(st, 3, anchor);
	return run(k, st, d, "cannot write processor");
}

static char *dup_text(sqlite3_stmt *st, int col, size_t *len)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	char *out;

	if (len)
		*len = t ? n : 0;
	if (!t || !(out = malloc(n + 1)))
		return NULL;
	memcpy(out, t, n);
	out[n] = '\0';
	return out;
}

/* Fills c from a row whose columns start at `col`: offset, effects_mark, state,
 * status, last_error, background_failures. */
static void row_to_ckpt(sqlite3_stmt *st, int col, struct sl_ckpt *c)
{
	const char *status = (const char *)sqlite3_column_text(st, col + 3);

	c->offset = sqlite3_column_int64(st, col);
	c->effects_mark = sqlite3_column_int64(st, col + 1);
	c->state = dup_text(st, col + 2, &c->state_len);
	c->faulted = status && !strcmp(status, "faulted");
	c->last_error = dup_text(st, col + 4, NULL);
	c->background_failures = sqlite3_column_int64(st, col + 5);
}

int sl_ckpt_get(struct sl_ckpts *k, const char *proc, const char *stream, struct sl_ckpt *c,
		int *found, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_GET];
	int rc;

	memset(c, 0, sizeof(*c));
	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if ((*found = rc == SQLITE_ROW))
		row_to_ckpt(st, 0, c);
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(k, d, "cannot read checkpoint");
}

int sl_ckpt_put(struct sl_ckpts *k, const char *proc, const char *stream, int64_t offset,
		const char *state, size_t state_len, int64_t effects_mark, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_PUT];

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, offset);
	if (state)
		sqlite3_bind_text(st, 4, state, (int)state_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int64(st, 5, effects_mark);
	return run(k, st, d, "cannot write checkpoint");
}

int sl_ckpt_put_offset(struct sl_ckpts *k, const char *proc, const char *stream, int64_t offset,
		       int64_t effects_mark, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_PUT_OFFSET];

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, offset);
	sqlite3_bind_int64(st, 4, effects_mark);
	return run(k, st, d, "cannot write checkpoint");
}

int sl_ckpt_fault(struct sl_ckpts *k, const char *proc, const char *stream, const char *error,
		  struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_FAULT];

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	return run(k, st, d, "cannot record fault");
}

int sl_ckpt_add_background_failure(struct sl_ckpts *k, const char *proc, const char *stream,
				   struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_BGFAIL];

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
	return run(k, st, d, "cannot count a background failure");
}

int sl_ckpt_each(struct sl_ckpts *k, const char *proc, sl_ckpt_fn fn, void *ud, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_EACH];
	struct sl_ckpt c;
	int rc;

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_to_ckpt(st, 1, &c);
		rc = fn(ud, (const char *)sqlite3_column_text(st, 0), &c);
		sl_ckpt_release(&c);
		if (rc) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_fail(k, d, "cannot read checkpoints");
}

int sl_ckpt_reset(struct sl_ckpts *k, const char *proc, const char *stream, int with_effects,
		  struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[with_effects ? (stream ? Q_RESET_FX_ONE : Q_RESET_FX_ALL)
					      : (stream ? Q_RESET_ONE : Q_RESET_ALL)];

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	if (stream)
		sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
	return run(k, st, d, "cannot reset checkpoint");
}

int sl_ckpt_drop_tables(struct sl_ckpts *k, const char *proc, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_TABLES];
	struct sl_buf sql;
	int rc;

	sl_buf_init(&sql);
	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		sl_buf_adds(&sql, "DROP TABLE IF EXISTS \"");
		for (; *name; name++) /* double any quote inside the identifier */
			*name == '"' ? sl_buf_adds(&sql, "\"\"") : sl_buf_addc(&sql, *name);
		sl_buf_adds(&sql, "\";");
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		sl_buf_release(&sql);
		return db_fail(k, d, "cannot list projection tables");
	}
	if (!sl_buf_ok(&sql)) {
		sl_buf_release(&sql);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	rc = sql.len && sqlite3_exec(k->db, sql.ptr, NULL, NULL, NULL) != SQLITE_OK;
	sl_buf_release(&sql);
	if (rc)
		return db_fail(k, d, "cannot drop projection tables");
	st = k->q[Q_TABLES_DEL];
	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	return run(k, st, d, "cannot forget projection tables");
}

int sl_ckpt_clear_fault(struct sl_ckpts *k, const char *proc, const char *stream, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[stream ? Q_CLEAR_ONE : Q_CLEAR_ALL];

	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	if (stream)
		sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
	return run(k, st, d, "cannot clear a fault");
}

int sl_ckpt_proc_hashes(struct sl_ckpts *k, const char *proc, const char *script_hash,
			const char *contract_hash, int *cleared, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_HASH_GET];
	int rc, same;

	*cleared = 0;
	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? 0 : db_fail(k, d, "cannot read processor");
	}
	same = !strcmp((const char *)sqlite3_column_text(st, 0), script_hash) &&
	       !strcmp((const char *)sqlite3_column_text(st, 1), contract_hash);
	sqlite3_reset(st);
	if (same)
		return 0;
	if ((rc = sl_ckpt_clear_fault(k, proc, NULL, d)))
		return rc;
	*cleared = sqlite3_changes(k->db);
	st = k->q[Q_HASH_PUT];
	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, script_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, contract_hash, -1, SQLITE_STATIC);
	return run(k, st, d, "cannot write processor");
}

int sl_ckpt_dead_letter(struct sl_ckpts *k, const struct sl_dead_letter *dl, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_DEAD_PUT];

	sqlite3_bind_text(st, 1, dl->processor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, dl->stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, dl->offset);
	sqlite3_bind_int64(st, 4, dl->position);
	sqlite3_bind_text(st, 5, dl->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, dl->error, -1, SQLITE_STATIC);
	if (dl->traceback)
		sqlite3_bind_text(st, 7, dl->traceback, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 7);
	sqlite3_bind_int64(st, 8, dl->attempts);
	sqlite3_bind_text(st, 9, dl->at, -1, SQLITE_STATIC);
	return run(k, st, d, "cannot record a dead letter");
}

int sl_ckpt_dead_letters(struct sl_ckpts *k, sl_dead_fn fn, void *ud, struct sl_diag *d)
{
	sqlite3_stmt *st = k->q[Q_DEAD_EACH];
	struct sl_dead_letter dl;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		dl.processor = (const char *)sqlite3_column_text(st, 0);
		dl.stream = (const char *)sqlite3_column_text(st, 1);
		dl.offset = sqlite3_column_int64(st, 2);
		dl.position = sqlite3_column_int64(st, 3);
		dl.type = (const char *)sqlite3_column_text(st, 4);
		dl.error = (const char *)sqlite3_column_text(st, 5);
		dl.traceback = (const char *)sqlite3_column_text(st, 6);
		dl.attempts = sqlite3_column_int64(st, 7);
		dl.at = (const char *)sqlite3_column_text(st, 8);
		if ((rc = fn(ud, &dl))) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_fail(k, d, "cannot read dead letters");
}
