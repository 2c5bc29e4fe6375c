/* test_processor.c - unit tests of the batch model (sl_processor.h): crafted batches of
 * struct sl_event handed straight to sl_proc_ingest on a temporary store.
 *
 * Each processor lives in a temporary directory with its contract. What the hooks did
 * is observed through the state (reduce keeps the list of reduced offsets), the
 * checkpoint row (sl_ckpt_get), the events processEvent appends (one per run, keyed
 * with a run counter that lives in the lua_State and so survives a failed batch) and,
 * for ctx.db, tables read over a second SQLite connection. "Nothing was written" is
 * checked with PRAGMA data_version on that connection: it changes whenever another
 * connection commits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sl_checkpoint.h"
#include "sl_contract.h"
#include "sl_processor.h"
#include "sl_store.h"
#include "unit.h"

static char dir[] = "/tmp/sl_test_processor_XXXXXX";
static char store_path[512];
static sqlite3 *reader; /* a second connection, for observing commits */

/* ---- fixtures ------------------------------------------------------------------ */

static const char contract_t[] =
	"{\"name\": \"t\", \"version\": 1,\n"
	" \"consumes\": [\"t/a\"],\n"
	" \"emits\": [\"t/out\"],\n"
	" \"events\": {\n"
	"   \"t/a\": {\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"integer\"}}},\n"
	"   \"t/b\": {\"type\": \"object\"},\n"
	"   \"t/out\": {\"type\": \"object\", \"required\": [\"k\"],\n"
	"             \"properties\": {\"k\": {\"type\": \"integer\"},\n"
	"                            \"run\": {\"type\": \"integer\"}}},\n"
	"   \"t/other\": {\"type\": \"object\"}\n"
	" },\n"
	" \"state\": {\"type\": \"object\", \"required\": [\"seen\"],\n"
	"           \"properties\": {\"seen\": {\"type\": \"array\", \"items\": {\"type\": "
	"\"integer\"}}}},\n"
	" \"initialState\": {\"seen\": []}\n"
	"}\n";

/* reduce records every reduced offset in state.seen. processEvent records each of its
 * runs as a t/out event on out/1 keyed hit:<offset>:<run>, with a per-offset run
 * counter kept in the lua_State (it survives a failed batch, which rolls the append
 * back), and obeys flags in the payload. */
static const char script_t[] =
	"local runs = {}\n"
	"return {\n"
	"  contract = 't',\n"
	"  reduce = {\n"
	"    ['t/a'] = function(state, event)\n"
	"      if event.payload.bad == 'state' then return { seen = 'oops' } end\n"
	"      local seen = {}\n"
	"      for i, v in ipairs(state.seen) do seen[i] = v end\n"
	"      seen[#seen + 1] = event.offset\n"
	"      return { seen = sluice.array(seen) }\n"
	"    end,\n"
	"  },\n"
	"  processEvent = {\n"
	"    ['t/a'] = function(event, ctx)\n"
	"      local off = event.offset\n"
	"      runs[off] = (runs[off] or 0) + 1\n"
	"      ctx.append('t/out', { k = off, run = runs[off] },\n"
	"                 { stream = 'out/1', idempotencyKey = 'hit:' .. off .. ':' .. runs[off] "
	"})\n"
	"      if event.payload.emit then ctx.append('t/out', { k = off }, { stream = 'out/1' }) "
	"end\n"
	"      if event.payload.emitOther then ctx.append('t/other', {}, { stream = 'out/1' }) "
	"end\n"
	"      if event.payload.fail then error('boom at ' .. off) end\n"
	"    end,\n"
	"  },\n"
	"}\n";

static const char contract_q[] =
	"{\"name\": \"q\", \"version\": 1, \"consumes\": [\"q/a\"], \"emits\": [],\n"
	" \"events\": {\"q/a\": {\"type\": \"object\"}},\n"
	" \"state\": {\"type\": \"object\", \"required\": [\"n\"],\n"
	"           \"properties\": {\"n\": {\"type\": \"integer\"}, \"tries\": {\"type\": "
	"\"integer\"}}},\n"
	" \"initialState\": {\"n\": 0}}\n";

/* prepare fails the first time; reduce records how many times prepare ran. */
static const char script_q[] =
	"local tries = 0\n"
	"return {\n"
	"  contract = 'q',\n"
	"  prepare = function(ctx)\n"
	"    tries = tries + 1\n"
	"    if tries == 1 then error('prep-fail') end\n"
	"  end,\n"
	"  reduce = { ['q/a'] = function(state) return { n = state.n + 1, tries = tries } end },\n"
	"}\n";

static const char contract_r[] =
	"{\"name\": \"r\", \"version\": 1, \"consumes\": [\"r/a\"], \"emits\": [],\n"
	" \"events\": {\"r/a\": {\"type\": \"object\"}},\n"
	" \"state\": {\"type\": \"object\", \"required\": [\"n\"],\n"
	"           \"properties\": {\"n\": {\"type\": \"integer\"}}},\n"
	" \"initialState\": {\"n\": 0}}\n";

/* prepare creates its tables (the idempotent way, since it runs in every process) and
 * fails the first time after creating them; processEventBatch projects each event. */
static const char script_r[] =
	"local tries = 0\n"
	"return {\n"
	"  contract = 'r',\n"
	"  prepare = function(ctx)\n"
	"    tries = tries + 1\n"
	"    ctx.db:exec('CREATE TABLE IF NOT EXISTS prep(tries INTEGER)')\n"
	"    ctx.db:exec('CREATE TABLE IF NOT EXISTS proj(off INTEGER PRIMARY KEY)')\n"
	"    ctx.db:exec('INSERT INTO prep(tries) VALUES (?)', { tries })\n"
	"    if tries == 1 then error('prep-fail') end\n"
	"  end,\n"
	"  reduce = { ['r/a'] = function(state) return { n = state.n + 1 } end },\n"
	"  processEventBatch = function(batch, ctx)\n"
	"    for _, e in ipairs(batch.events) do\n"
	"      ctx.db:exec('INSERT INTO proj(off) VALUES (:off)', { off = e.offset })\n"
	"      if e.payload.fail then error('projection failed') end\n"
	"    end\n"
	"  end,\n"
	"}\n";

static void write_file(const char *name, const char *text)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

/* ---- helpers --------------------------------------------------------------------- */

struct result {
	int called, rc;
	char msg[SL_DIAG_MAX];
};

static void on_done(void *ud, struct sl_inst *in, int rc, const struct sl_diag *d)
{
	struct result *r = ud;

	(void)in;
	r->called++;
	r->rc = rc;
	snprintf(r->msg, sizeof(r->msg), "%s", rc ? sl_diag_msg(d) : "");
}

static struct sl_event ev(const char *stream, int64_t offset, const char *type, const char *payload)
{
	struct sl_event e;

	memset(&e, 0, sizeof(e));
	e.stream = stream;
	e.offset = offset;
	e.position = 1000 + offset;
	e.type = type;
	e.payload = payload;
	e.payload_len = strlen(payload);
	e.created_at = "2026-01-01T00:00:00.000Z";
	return e;
}

static struct result ingest(struct sl_proc *p, struct sl_inst *in, const struct sl_event *e,
                            size_t n)
{
	struct result r;

	memset(&r, 0, sizeof(r));
	sl_proc_ingest(p, in, e, n, on_done, &r);
	return r;
}

/* The checkpoint row of (proc, stream) as "offset|state", or "none". */
static void ckpt_text(struct sl_store *s, const char *proc, const char *stream, char *out, size_t n)
{
	struct sl_ckpt c;
	int found = 0;

	if (sl_ckpt_get(s, proc, stream, &c, &found, NULL) || !found) {
		snprintf(out, n, "none");
		return;
	}
	snprintf(out, n, "%lld|%s", (long long)c.offset, c.state ? c.state : "(null)");
	sl_ckpt_release(&c);
}

static long long data_version(void)
{
	sqlite3_stmt *st;
	long long v = -1;

	if (sqlite3_prepare_v2(reader, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The single integer result of sql on the reader connection, or -1. */
static long long query_int(const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;

	if (sqlite3_prepare_v2(reader, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The hook runs recorded on out/1 (events keyed hit:<offset>:<run>) as
 * "off:run,off:run,...", and the last other t/out event in *em. */
struct emitted {
	int n; /* t/out events not keyed hit:... */
	char key[128];
	char metadata[512];
	char payload[128];
	char hits[512];
	size_t hlen;
};

static int collect_out(void *ud, const struct sl_event *e)
{
	struct emitted *em = ud;
	long long off, run;

	if (e->key && sscanf(e->key, "hit:%lld:%lld", &off, &run) == 2) {
		if (em->hlen < sizeof(em->hits))
			em->hlen +=
				(size_t)snprintf(em->hits + em->hlen, sizeof(em->hits) - em->hlen,
			                         "%s%lld:%lld", em->hlen ? "," : "", off, run);
		return 0;
	}
	em->n++;
	snprintf(em->key, sizeof(em->key), "%s", e->key ? e->key : "(none)");
	snprintf(em->metadata, sizeof(em->metadata), "%.*s", (int)e->metadata_len,
	         e->metadata ? e->metadata : "");
	snprintf(em->payload, sizeof(em->payload), "%.*s", (int)e->payload_len, e->payload);
	return 0;
}

/* Reads the events of `type` on out/1; returns the number not keyed hit:... */
static int read_out(struct sl_store *s, const char *type, struct emitted *em)
{
	memset(em, 0, sizeof(*em));
	sl_store_read(s, "out/1", 1, 0, type, collect_out, em, NULL);
	return em->n;
}

static const char *hits_of(struct sl_store *s, struct emitted *em)
{
	read_out(s, "t/out", em);
	return em->hits;
}

/* ---- the tests ------------------------------------------------------------------- */

static struct sl_proc *load(struct sl_contracts *cs, struct sl_store *s, const char *name,
                            const char *file, char *script, size_t n)
{
	struct sl_proc_cfg cfg = {.name = name, .script = script, .streams = "*"};
	struct sl_errs errs;
	struct sl_proc *p = NULL;
	struct sl_diag d;
	int rc;

	snprintf(script, n, "%s/%s", dir, file);
	sl_errs_init(&errs);
	sl_diag_init(&d);
	rc = sl_proc_load(&p, &cfg, cs, &errs);
	ok(rc == 0 && p, "%s loads (%s)", file, errs.n ? errs.msg[0] : "no error");
	sl_errs_release(&errs);
	if (!p)
		return NULL;
	rc = sl_proc_attach(p, s, 1, &d);
	ok(rc == 0, "%s attaches (%s)", file, sl_diag_msg(&d));
	return p;
}

static void test_batches(struct sl_store *s, struct sl_contracts *cs)
{
	char script[600], before[256], after[256];
	struct sl_proc *p = load(cs, s, "p", "t.lua", script, sizeof(script));
	struct sl_inst *in;
	struct emitted em;
	struct result r;
	long long v;

	if (!p)
		return;
	in = sl_proc_instance(p, "s/1");
	ok(in != NULL, "an instance for s/1");

	/* [A@1, B@2, A@3]: B is not consumed. */
	{
		struct sl_event b[3] = {ev("s/1", 1, "t/a", "{}"), ev("s/1", 2, "t/b", "{}"),
		                        ev("s/1", 3, "t/a", "{}")};
		r = ingest(p, in, b, 3);
		is(r.called, 1, "done is called once");
		ok(r.rc == 0, "[A@1, B@2, A@3] succeeds (%s)", r.msg);
		ckpt_text(s, "p", "s/1", after, sizeof(after));
		is_str(after, "3|{\"seen\":[1,3]}",
		       "only A@1 and A@3 are reduced; checkpoint 3 (%s)", after);
		is_str(hits_of(s, &em), "1:1,3:1", "processEvent ran for 1 and 3 only (%s)",
		       em.hits);
		ok(in->offset == 3, "the instance's offset is 3");

		/* The same batch again writes nothing. */
		v = data_version();
		r = ingest(p, in, b, 3);
		ok(r.called == 1 && r.rc == 0, "the replayed batch succeeds (%s)", r.msg);
		is(data_version(), v, "the replayed batch commits nothing");
		ckpt_text(s, "p", "s/1", before, sizeof(before));
		is_str(before, after, "the checkpoint row is unchanged (%s)", before);
		is_str(hits_of(s, &em), "1:1,3:1", "processEvent did not run again (%s)", em.hits);
	}

	/* Duplicates and lower offsets inside a batch are skipped. */
	{
		struct sl_event b[5] = {ev("s/1", 2, "t/a", "{}"), ev("s/1", 4, "t/a", "{}"),
		                        ev("s/1", 4, "t/a", "{}"), ev("s/1", 3, "t/a", "{}"),
		                        ev("s/1", 5, "t/a", "{}")};
		r = ingest(p, in, b, 5);
		ok(r.rc == 0, "[A@2, A@4, A@4, A@3, A@5] succeeds (%s)", r.msg);
		ckpt_text(s, "p", "s/1", after, sizeof(after));
		is_str(after, "5|{\"seen\":[1,3,4,5]}", "only 4 and 5 are reduced, once each (%s)",
		       after);
		is_str(hits_of(s, &em), "1:1,3:1,4:1,5:1", "processEvent ran once for 4 and 5 (%s)",
		       em.hits);
	}

	/* processEvent throws after an append: nothing commits; the next batch runs; the same
	 * event delivered again runs the hooks again. */
	{
		struct sl_event bad = ev("s/1", 6, "t/a", "{\"emit\":true,\"fail\":true}");
		struct sl_event good = ev("s/1", 6, "t/a", "{\"emit\":true}");
		struct sl_event next = ev("s/1", 7, "t/a", "{}");

		ckpt_text(s, "p", "s/1", before, sizeof(before));
		v = data_version();
		r = ingest(p, in, &bad, 1);
		ok(r.called == 1 && r.rc != 0, "a throwing processEvent fails the batch");
		ok(strstr(r.msg, "boom at 6") != NULL, "the error carries the hook's message (%s)",
		   r.msg);
		is(data_version(), v, "the failed batch commits nothing");
		ckpt_text(s, "p", "s/1", after, sizeof(after));
		is_str(after, before, "the checkpoint row is unchanged (%s)", after);
		ok(in->offset == 5, "the instance's offset stays 5");
		is(read_out(s, "t/out", &em), 0, "the appends of the failed batch are gone");

		r = ingest(p, in, &good, 1);
		ok(r.rc == 0, "the same event delivered again succeeds (%s)", r.msg);
		ckpt_text(s, "p", "s/1", after, sizeof(after));
		is_str(after, "6|{\"seen\":[1,3,4,5,6]}",
		       "the state advanced once, from the unchanged state (%s)", after);
		is(read_out(s, "t/out", &em), 1, "exactly one default-keyed event was emitted");
		is_str(em.hits, "1:1,3:1,4:1,5:1,6:2",
		       "processEvent ran again for 6: its second run committed (%s)", em.hits);
		is_str(em.key, "p@s/1:6#1",
		       "its default key is <processor>@<stream>:<offset>#1; keyed appends do not "
		       "count (%s)",
		       em.key);
		ok(strstr(em.metadata, "\"processor\":\"p\"") &&
		           strstr(em.metadata, "\"version\":1") &&
		           strstr(em.metadata, "\"stream\":\"s/1\"") &&
		           strstr(em.metadata, "\"offset\":6") &&
		           strstr(em.metadata, "\"source\":{"),
		   "its metadata.source names processor, version, stream and offset (%s)",
		   em.metadata);
		is_str(em.payload, "{\"k\":6}", "its payload is the hook's (%s)", em.payload);

		r = ingest(p, in, &next, 1);
		ok(r.rc == 0, "the next batch runs normally (%s)", r.msg);
	}

	/* Validation failures: state, payload, emits. Each leaves everything unchanged. */
	{
		struct sl_event bad_state = ev("s/1", 8, "t/a", "{\"bad\":\"state\"}");
		struct sl_event bad_payload = ev("s/1", 8, "t/a", "{\"n\":\"x\"}");
		struct sl_event bad_emit = ev("s/1", 8, "t/a", "{\"emitOther\":true}");

		ckpt_text(s, "p", "s/1", before, sizeof(before));
		v = data_version();
		r = ingest(p, in, &bad_state, 1);
		ok(r.rc != 0, "a reduce returning an invalid state fails the batch");
		ok(strstr(r.msg, "seen") != NULL, "the message names the field 'seen' (%s)", r.msg);
		ok(strstr(r.msg, "processor 'p'") && strstr(r.msg, "s/1@8") &&
		           strstr(r.msg, "state"),
		   "it names the processor, the event and says the state is invalid (%s)", r.msg);

		r = ingest(p, in, &bad_payload, 1);
		ok(r.rc != 0, "a payload invalid against its schema fails the batch");
		ok(strstr(r.msg, "/n") != NULL, "the message names the field /n (%s)", r.msg);
		ok(strstr(r.msg, "processor 'p'") && strstr(r.msg, "s/1@8") &&
		           strstr(r.msg, "payload"),
		   "it names the processor, the event and says the payload is invalid (%s)", r.msg);

		r = ingest(p, in, &bad_emit, 1);
		ok(r.rc != 0, "ctx.append of a type not in emits fails the batch");
		ok(strstr(r.msg, "t/other") && strstr(r.msg, "emits"),
		   "the message names the type and emits (%s)", r.msg);

		is(data_version(), v, "none of the failed batches committed anything");
		ckpt_text(s, "p", "s/1", after, sizeof(after));
		is_str(after, before, "the checkpoint row is unchanged (%s)", after);
		is(read_out(s, "t/other", &em), 0, "t/other was not appended");
		is_str(hits_of(s, &em), "1:1,3:1,4:1,5:1,6:2,7:1",
		       "no hook run of the failed batches committed (%s)", em.hits);
	}

	/* A batch of only non-consumed events advances the checkpoint and keeps the state. */
	{
		struct sl_event b[2] = {ev("s/1", 8, "t/b", "{}"), ev("s/1", 9, "t/b", "{}")};

		r = ingest(p, in, b, 2);
		ok(r.rc == 0, "a batch of non-consumed events succeeds (%s)", r.msg);
		ckpt_text(s, "p", "s/1", after, sizeof(after));
		is_str(after, "9|{\"seen\":[1,3,4,5,6,7]}", "it only advances the checkpoint (%s)",
		       after);
		is_str(hits_of(s, &em), "1:1,3:1,4:1,5:1,6:2,7:1", "no hook ran (%s)", em.hits);
	}

	/* Another instance of the same processor starts from the initial state. */
	{
		struct sl_inst *in2 = sl_proc_instance(p, "s/2");
		struct sl_event b = ev("s/2", 2, "t/a", "{}");

		r = ingest(p, in2, &b, 1);
		ok(r.rc == 0, "a second instance runs (%s)", r.msg);
		ckpt_text(s, "p", "s/2", after, sizeof(after));
		is_str(after, "2|{\"seen\":[2]}", "with its own state (%s)", after);
		ckpt_text(s, "p", "s/1", after, sizeof(after));
		is_str(after, "9|{\"seen\":[1,3,4,5,6,7]}", "s/1 is untouched (%s)", after);
	}
	sl_proc_free(p);
}

/* Writes contract 't' at version 2 with the state schema `state` into dir/<sub>,
 * loads t.lua against it as processor "p" (not attached) and returns it, with its
 * contracts in *cs (freed by the caller after the processor). */
static struct sl_proc *load_version(const char *sub, const char *state, struct sl_contracts **cs)
{
	char path[600], text[2048], script[600];
	struct sl_proc_cfg cfg = {.name = "p", .script = script, .streams = "*"};
	const char *dirs[1] = {path};
	struct sl_proc *p = NULL;
	struct sl_errs errs;
	struct sl_diag d;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	snprintf(script, sizeof(script), "%s/t.lua", dir);
	mkdir(path, 0700);
	snprintf(text, sizeof(text),
	         "{\"name\": \"t\", \"version\": 2, \"consumes\": [\"t/a\"], \"emits\": "
	         "[\"t/out\"],\n"
	         " \"events\": {\"t/a\": {\"type\": \"object\"}, \"t/out\": {\"type\": "
	         "\"object\"}},\n"
	         " \"state\": %s,\n"
	         " \"initialState\": {\"seen\": []}}\n",
	         state);
	snprintf(script, sizeof(script), "%s/t.contract.json", sub);
	write_file(script, text);
	snprintf(script, sizeof(script), "%s/t.lua", dir);
	sl_diag_init(&d);
	sl_errs_init(&errs);
	*cs = NULL;
	if (sl_contracts_new(cs, dirs, 1, &d) == 0)
		sl_proc_load(&p, &cfg, *cs, &errs);
	ok(p != NULL, "t.lua loads against the contract of %s (%s)", sub,
	   errs.n ? errs.msg[0] : sl_diag_msg(&d));
	sl_errs_release(&errs);
	return p;
}

/* sl_proc_check_states over the instances test_batches left (p: s/1 has seen
 * [1,3,4,5,6,7], s/2 [2]) plus s/0, a row without a state (faulted before it ran). */
static void test_check_states(struct sl_store *s)
{
	struct sl_contracts *cs;
	struct sl_commit *c;
	struct sl_proc *p;
	struct sl_diag d;
	char text[256];
	int rc, end;

	sl_diag_init(&d);
	rc = sl_commit_begin(s, NULL, &c, &d);
	if (!rc) {
		rc = sl_ckpt_fault(c, "p", "s/0", "never ran", &d);
		end = sl_commit_end(c, rc == 0, &d);
		rc = rc ? rc : end;
	}
	ckpt_text(s, "p", "s/0", text, sizeof(text));
	ok(rc == 0 && strcmp(text, "0|(null)") == 0,
	   "s/0 gets a checkpoint row without a state (%s, %s)", text, sl_diag_msg(&d));

	p = load_version("v_same",
	                 "{\"type\": \"object\", \"required\": [\"seen\"],"
	                 " \"properties\": {\"seen\": {\"type\": \"array\","
	                 " \"items\": {\"type\": \"integer\"}}}}",
	                 &cs);
	sl_diag_init(&d);
	rc = p ? sl_proc_check_states(p, s, &d) : -1;
	ok(rc == 0, "every stored state matches an equivalent schema; s/0 is skipped (%s)",
	   sl_diag_msg(&d));
	sl_proc_free(p);
	sl_contracts_free(cs);

	p = load_version("v_max3",
	                 "{\"type\": \"object\", \"required\": [\"seen\"],"
	                 " \"properties\": {\"seen\": {\"type\": \"array\", \"maxItems\": 3}}}",
	                 &cs);
	sl_diag_init(&d);
	rc = p ? sl_proc_check_states(p, s, &d) : -1;
	is(rc, SL_EINVAL, "a schema that s/1's state breaks fails the check");
	ok(strstr(d.msg, "state of instance 's/1' does not match the new state schema: ") ==
	                   d.msg &&
	           strstr(d.msg, "/seen: maxItems: "),
	   "naming the instance and the schema's message (%s)", d.msg);
	sl_proc_free(p);
	sl_contracts_free(cs);

	/* Only a list of exactly one offset is refused: s/2, after s/0 and s/1. */
	p = load_version("v_not1",
	                 "{\"type\": \"object\", \"required\": [\"seen\"],"
	                 " \"properties\": {\"seen\": {\"type\": \"array\","
	                 " \"not\": {\"minItems\": 1, \"maxItems\": 1}}}}",
	                 &cs);
	sl_diag_init(&d);
	rc = p ? sl_proc_check_states(p, s, &d) : -1;
	is(rc, SL_EINVAL, "a schema that only s/2's state breaks fails the check");
	ok(strstr(d.msg,
	          "state of instance 's/2' does not match the new state schema: /seen: not") ==
	           d.msg,
	   "naming s/2: the states before it were checked and passed (%s)", d.msg);
	sl_proc_free(p);
	sl_contracts_free(cs);
}

/* prepare fails once: the call fails, nothing is read or written, the next call
 * retries it. */
static void test_prepare_retry(struct sl_store *s, struct sl_contracts *cs)
{
	char script[600], after[256];
	struct sl_proc *p = load(cs, s, "q", "q.lua", script, sizeof(script));
	struct sl_event e1 = ev("q/1", 2, "q/a", "{}");
	struct sl_inst *in;
	struct result r;
	long long v;

	if (!p)
		return;
	in = sl_proc_instance(p, "q/1");
	v = data_version();
	r = ingest(p, in, &e1, 1);
	ok(r.called == 1 && r.rc != 0, "a failing prepare fails the call");
	ok(strstr(r.msg, "prepare") && strstr(r.msg, "prep-fail"),
	   "the message says prepare failed and why (%s)", r.msg);
	is(data_version(), v, "nothing was committed");
	ckpt_text(s, "q", "q/1", after, sizeof(after));
	is_str(after, "none", "no checkpoint row (%s)", after);

	r = ingest(p, in, &e1, 1);
	ok(r.rc == 0, "the next call retries prepare and succeeds (%s)", r.msg);
	ckpt_text(s, "q", "q/1", after, sizeof(after));
	is_str(after, "2|{\"n\":1,\"tries\":2}", "the batch ran after the second prepare (%s)",
	       after);

	r = ingest(p, in, &e1, 1);
	ok(r.rc == 0, "a later call does not run prepare again (%s)", r.msg);
	ckpt_text(s, "q", "q/1", after, sizeof(after));
	is_str(after, "2|{\"n\":1,\"tries\":2}", "(the replay wrote nothing) (%s)", after);
	sl_proc_free(p);
}

/* Drops the processor's tables in a commit of its own. */
static int drop_tables(struct sl_store *s, const char *proc, struct sl_diag *d)
{
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(s, NULL, &c, d)))
		return rc;
	rc = sl_ckpt_drop_tables(c, proc, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

/* ctx.db: prepare creates a table (its first attempt fails after creating it), the
 * hooks write projection rows in the batch's transaction, the table is recorded as the
 * processor's and sl_ckpt_drop_tables (in a commit) drops it. */
static void test_db(struct sl_store *s, struct sl_contracts *cs)
{
	char script[600], after[256];
	struct sl_proc *p = load(cs, s, "r", "r.lua", script, sizeof(script));
	struct sl_event b[2] = {ev("r/1", 2, "r/a", "{}"), ev("r/1", 3, "r/a", "{}")};
	struct sl_event bad = ev("r/1", 4, "r/a", "{\"fail\":true}");
	struct sl_inst *in;
	struct sl_diag d;
	struct result r;

	if (!p)
		return;
	in = sl_proc_instance(p, "r/1");
	r = ingest(p, in, b, 2);
	ok(r.rc != 0 && strstr(r.msg, "prep-fail"), "the first prepare fails (%s)", r.msg);
	r = ingest(p, in, b, 2);
	ok(r.rc == 0, "the retried prepare creates its table and the batch runs (%s)", r.msg);
	is(query_int("SELECT group_concat(tries, '') FROM prep"), 2,
	   "prepare's table holds only the second attempt's row");
	is(query_int("SELECT group_concat(off, '') FROM proj"), 23,
	   "processEventBatch wrote one projection row per event (2, 3)");
	r = ingest(p, in, &bad, 1);
	ok(r.rc != 0, "a failing processEventBatch fails the batch (%s)", r.msg);
	is(query_int("SELECT count(*) FROM proj"), 2, "its projection row was rolled back");
	ckpt_text(s, "r", "r/1", after, sizeof(after));
	is_str(after, "3|{\"n\":2}", "the checkpoint is at the projection's last row (%s)", after);
	is(query_int("SELECT count(*) FROM sl_tables WHERE processor = 'r' AND name IN ('prep', "
	             "'proj')"),
	   2, "both tables are recorded as the processor's");
	sl_diag_init(&d);
	ok(drop_tables(s, "r", &d) == 0, "dropping r's tables succeeds (%s)", sl_diag_msg(&d));
	is(query_int("SELECT count(*) FROM sqlite_schema WHERE name IN ('prep', 'proj')"), 0,
	   "dropping the processor's tables drops prep and proj");
	sl_proc_free(p);
}

/* A script with a reduce key typo and an unknown field fails to load, listing both. */
static void test_load_errors(struct sl_contracts *cs)
{
	char script[600];
	struct sl_proc_cfg cfg = {.name = "bad", .script = script, .streams = "x/*"};
	struct sl_errs errs;
	struct sl_proc *p = (struct sl_proc *)1;
	int rc, typo = 0, field = 0;
	size_t i;

	write_file("bad.lua", "return { contract = 't', reduce = { ['t/aa'] = function() end },\n"
	                      "  procesEvent = {} }\n");
	snprintf(script, sizeof(script), "%s/bad.lua", dir);
	sl_errs_init(&errs);
	rc = sl_proc_load(&p, &cfg, cs, &errs);
	ok(rc != 0 && p == NULL, "a broken script does not load");
	for (i = 0; i < errs.n; i++) {
		typo |= strstr(errs.msg[i], "t/aa") && strstr(errs.msg[i], "did you mean 't/a'");
		field |=
			strstr(errs.msg[i], "procesEvent") && strstr(errs.msg[i], "'processEvent'");
	}
	ok(typo, "the reduce key typo is reported with 'did you mean'");
	ok(field, "the unknown top-level field is reported with its closest name");
	sl_errs_release(&errs);
}

int main(void)
{
	struct sl_contracts *cs = NULL;
	struct sl_store *s = NULL;
	struct sl_diag d;
	const char *dirs[1];
	char cmd[700];

	plan(81);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	write_file("t.contract.json", contract_t);
	write_file("t.lua", script_t);
	write_file("q.contract.json", contract_q);
	write_file("q.lua", script_q);
	write_file("r.contract.json", contract_r);
	write_file("r.lua", script_r);
	snprintf(store_path, sizeof(store_path), "%s/store.db", dir);
	sl_diag_init(&d);
	dirs[0] = dir;
	if (sl_contracts_new(&cs, dirs, 1, &d) || sl_store_open(&s, store_path, NULL, &d)) {
		printf("Bail out! %s\n", sl_diag_msg(&d));
		return 1;
	}
	if (sqlite3_open_v2(store_path, &reader, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		printf("Bail out! cannot open a reader\n");
		return 1;
	}
	data_version();

	test_batches(s, cs);
	test_check_states(s);
	test_prepare_retry(s, cs);
	test_db(s, cs);
	test_load_errors(cs);

	sqlite3_close(reader);
	sl_store_close(s);
	sl_contracts_free(cs);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return check_plan();
}
