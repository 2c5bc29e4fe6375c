/* sl_jsonl.c - one line of `sluice append --jsonl`: an event envelope in JSON. */
#include "sl_jsonl.h"

#include <stdlib.h>
#include <string.h>

#include "sl_json.h"

struct line_parse {
	struct sl_jsonl_line *ln;
	int has_type;
};

static char *dup_member_string(const struct sl_json_member *m, const char *field, struct sl_diag *d)
{
	char *s;

	if (m->kind != SL_JSON_STRING) {
		sl_diag_set(d, SL_EINVAL, "%s: must be a string, got %s", field,
		            sl_json_kind_name(m->kind));
		return NULL;
	}
	if (memchr(m->text, '\0', m->len)) {
		sl_diag_set(d, SL_EINVAL, "%s: must not contain NUL characters", field);
		return NULL;
	}
	if (!(s = strndup(m->text, m->len)))
		sl_diag_set(d, SL_ENOMEM, "out of memory");
	return s;
}

static int line_member(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct line_parse *lp = ud;
	struct sl_jsonl_line *ln = lp->ln;
	char key[32];

	if (m->keylen >= sizeof(key) || memchr(m->key, '\0', m->keylen))
		return sl_diag_set(d, SL_EINVAL, "unknown field '%.*s'", (int)m->keylen, m->key);
	memcpy(key, m->key, m->keylen);
	key[m->keylen] = '\0';
	if (!strcmp(key, "stream")) {
		free(ln->stream);
		return (ln->stream = dup_member_string(m, key, d)) ? 0 : d->code;
	}
	if (!strcmp(key, "type")) {
		free(ln->type);
		lp->has_type = 1;
		return (ln->type = dup_member_string(m, key, d)) ? 0 : d->code;
	}
	if (!strcmp(key, "idempotencyKey")) {
		free(ln->key);
		return (ln->key = dup_member_string(m, key, d)) ? 0 : d->code;
	}
	if (!strcmp(key, "payload") || !strcmp(key, "metadata")) {
		if (m->kind != SL_JSON_OBJECT)
			return sl_diag_set(d, SL_EINVAL, "%s: must be a JSON object, got %s", key,
			                   sl_json_kind_name(m->kind));
		if (key[0] == 'p')
			ln->ev.payload = m->text, ln->ev.payload_len = m->len;
		else
			ln->ev.metadata = m->text, ln->ev.metadata_len = m->len;
		return 0;
	}
	if (!strcmp(key, "offset")) {
		if (m->kind != SL_JSON_INTEGER || m->integer < 1)
			return sl_diag_set(d, SL_EINVAL, "offset: must be a positive integer");
		ln->ev.offset = m->integer;
		return 0;
	}
	if (!strcmp(key, "createdAt") || !strcmp(key, "position"))
		return sl_diag_set(d, SL_EINVAL, "%s: is set by the store and cannot be given",
		                   key);
	return sl_diag_set(d, SL_EINVAL, "unknown field '%s'", key);
}

int sl_jsonl_own(struct sl_jsonl_line *ln)
{
	size_t np = ln->ev.payload ? ln->ev.payload_len : 0;
	size_t nm = ln->ev.metadata ? ln->ev.metadata_len : 0;
	char *t;

	if (!np && !nm)
		return 0;
	if (!(t = malloc(np + nm)))
		return SL_ENOMEM;
	if (np) {
		memcpy(t, ln->ev.payload, np);
		ln->ev.payload = t;
	}
	if (nm) {
		memcpy(t + np, ln->ev.metadata, nm);
		ln->ev.metadata = t + np;
	}
	free(ln->text);
	ln->text = t;
	return 0;
}

void sl_jsonl_release(struct sl_jsonl_line *ln)
{
	free(ln->stream);
	free(ln->type);
	free(ln->key);
	free(ln->text);
	memset(ln, 0, sizeof(*ln));
}

int sl_jsonl_parse(const char *text, size_t len, const char *stream, struct sl_jsonl_line *ln,
                   sl_payload_check_fn check, void *ud, struct sl_diag *d)
{
	struct line_parse lp = {ln, 0};
	int rc;

	memset(ln, 0, sizeof(*ln));
	if ((rc = sl_json_members(text, len, line_member, &lp, d)))
		return rc;
	if (!lp.has_type)
		return sl_diag_set(d, SL_EINVAL, "type: required");
	if (!ln->stream && stream && !(ln->stream = strdup(stream)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if (!ln->stream)
		return sl_diag_set(d, SL_EINVAL, "stream: required (no STREAM argument was given)");
	ln->ev.stream = ln->stream;
	ln->ev.type = ln->type;
	ln->ev.key = ln->key;
	return sl_store_check_event(&ln->ev, check, ud, d);
}
