/* sl_cli.c - argument parsing, store selection and the store commands of `sluice`. */
#include "sl_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sl_buf.h"
#include "sl_checkpoint.h"
#include "sl_console.h"
#include "sl_contract.h"
#include "sl_deploy.h"
#include "sl_host.h"
#include "sl_json.h"
#include "sl_jsonl.h"
#include "sl_log.h"
#include "sl_repl.h"
#include "sl_progress.h"
#include "sl_render.h"
#include "sl_spool.h"
#include "sl_store.h"

/* The largest --batch-size: the arrays of one chunk are allocated up front. */
#define MAX_CHUNK 100000
/* The default --batch-size of append --jsonl (README, "CLI": how it was chosen). */
#define DEFAULT_CHUNK 50000

#define MAX_POS 8
#define MAX_OPTS 12

/* Options every store command takes. */
#define STORE_OPTS "store=", "deployment=", "namespace="

struct args {
	const struct cmd *cmd;
	const char *pos[MAX_POS];
	int npos;
	const char *optval[MAX_OPTS]; /* indexed like cmd->opts; flags get "1" */
};

struct cmd {
	const char *name;
	int (*run)(struct args *a);
	const char *usage;
	const char *help;
	const char *opts[MAX_OPTS]; /* "name" for a flag, "name=" for an option with a value */
	int min_pos, max_pos;
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints one "sluice: ..." line on stderr and returns the exit status 1. */
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("sluice: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int fail_diag(const struct sl_diag *d)
{
	return fail("%s", sl_diag_msg(d));
}

/* Writes b as one line on stdout. */
static int put_line(struct sl_buf *b)
{
	if (!sl_buf_ok(b))
		return fail("out of memory");
	sl_buf_addc(b, '\n');
	fwrite(b->ptr, 1, b->len, stdout);
	return 0;
}

/* ---- options ---------------------------------------------------------------- */

static int opt_index(const struct cmd *c, const char *name, size_t len, int *has_value)
{
	int i;

	for (i = 0; i < MAX_OPTS && c->opts[i]; i++) {
		size_t n = strcspn(c->opts[i], "=");
		if (n == len && !strncmp(c->opts[i], name, len)) {
			*has_value = c->opts[i][n] == '=';
			return i;
		}
	}
	return -1;
}

static const char *opt(const struct args *a, const char *name)
{
	int i, has_value;

	i = opt_index(a->cmd, name, strlen(name), &has_value);
	return i < 0 ? NULL : a->optval[i];
}

/* Options every command takes: the process's log settings (DESIGN §8). */
static const char *const log_opts[] = {"log-format", "log-level"};

static int log_opt_index(const char *name, size_t len)
{
	int i;

	for (i = 0; i < 2; i++)
		if (strlen(log_opts[i]) == len && !strncmp(log_opts[i], name, len))
			return i;
	return -1;
}

/* Applies --log-format (k 0) or --log-level (k 1). Returns 0, or the exit status 1. */
static int set_log_opt(int k, const char *value)
{
	enum sl_log_format format;
	enum sl_log_level level;

	if (k == 0) {
		if (sl_log_parse_format(value, &format))
			return fail("--log-format: expected text or json, got '%.*s%s'",
			            SL_ECHO(value));
		sl_log_set_format(format);
	} else {
		if (sl_log_parse_level(value, &level))
			return fail(
				"--log-level: expected debug, info, warn or error, got '%.*s%s'",
				SL_ECHO(value));
		sl_log_set_level(level);
	}
	return 0;
}

static void print_help(const struct cmd *c)
{
	printf("usage: sluice %s\n\n%s", c->usage, c->help);
}

/* Parses argv[first..] into a: options may appear anywhere, "--" ends them.
 * Returns -1 to go on, or an exit status (after --help or an error). */
static int parse_args(const struct cmd *c, int argc, char **argv, int first, struct args *a)
{
	int i, k, has_value;
	size_t len;

	memset(a, 0, sizeof(*a));
	a->cmd = c;
	for (i = first; i < argc; i++) {
		const char *arg = argv[i], *eq;
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			print_help(c);
			return 0;
		}
		if (!strcmp(arg, "--")) {
			for (i++; i < argc; i++)
				if (a->npos < MAX_POS)
					a->pos[a->npos++] = argv[i];
				else
					return fail("%s: too many arguments", c->name);
			break;
		}
		if (strncmp(arg, "--", 2) || !arg[2]) {
			if (a->npos == c->max_pos)
				return fail(
					"%s: unexpected argument '%.*s%s' (see sluice %s --help)",
					c->name, SL_ECHO(arg), c->name);
			a->pos[a->npos++] = arg;
			continue;
		}
		eq = strchr(arg, '=');
		len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		if ((k = log_opt_index(arg + 2, len)) >= 0) {
			if (!eq && i + 1 >= argc)
				return fail("%s: option '%.*s%s' needs a value", c->name,
				            SL_ECHO(arg));
			if (set_log_opt(k, eq ? eq + 1 : argv[++i]))
				return 1;
			continue;
		}
		k = opt_index(c, arg + 2, len, &has_value);
		if (k < 0)
			return fail("%s: unknown option '%.*s%s' (see sluice %s --help)", c->name,
			            SL_ECHO(arg), c->name);
		if (!has_value && eq)
			return fail("%s: option '--%s' takes no value", c->name, c->opts[k]);
		if (has_value && !eq && i + 1 >= argc)
			return fail("%s: option '%.*s%s' needs a value", c->name, SL_ECHO(arg));
		a->optval[k] = !has_value ? "1" : eq ? eq + 1 : argv[++i];
	}
	if (a->npos < c->min_pos)
		return fail("%s: missing arguments (see sluice %s --help)", c->name, c->name);
	return -1;
}

/* Parses an integer option: exactly an optional sign and decimal digits (no spaces,
 * nothing after), within [lo, hi]; the message names the option. */
static int parse_int(const char *field, const char *text, int64_t lo, int64_t hi, int64_t *out)
{
	const char *p = text + (*text == '-' || *text == '+');
	char *end;
	long long v;

	errno = 0;
	if (*p < '0' || *p > '9' || strspn(p, "0123456789") != strlen(p) ||
	    ((v = strtoll(text, &end, 10)), errno) || v < lo || v > hi) {
		if (lo == 1 && hi == INT64_MAX)
			return fail("%s: must be a positive integer, got '%.*s%s'", field,
			            SL_ECHO(text));
		return fail("%s: must be between %" PRId64 " and %" PRId64 ", got '%.*s%s'", field,
		            lo, hi, SL_ECHO(text));
	}
	*out = v;
	return 0;
}

/* Parses a strictly positive integer option (up to INT64_MAX). */
static int parse_count(const char *field, const char *text, int64_t *out)
{
	return parse_int(field, text, 1, INT64_MAX, out);
}

/* ---- the store ---------------------------------------------------------------- */

/* The namespace of a nats:// store named without a deployment: --namespace, else
 * $SLUICE_NAMESPACE (empty counts as unset), else NULL (the default). A SQLite store
 * refuses --namespace and ignores the variable. Returns 0, or the exit status 1. */
static int store_namespace(const char *path, const char *nsopt, const char **out)
{
	const char *env = getenv("SLUICE_NAMESPACE");
	int nats = !strncmp(path, "nats://", 7);

	*out = NULL;
	if (nsopt && !nats)
		return fail("--namespace: applies only to a nats:// store, and the store is "
		            "'%.*s%s'",
		            SL_ECHO(path));
	if (nsopt && !sl_store_ns_valid(nsopt))
		return fail("--namespace: must be 1 to %d of [A-Za-z0-9_-], got '%.*s%s'",
		            SL_STORE_NS_MAX, SL_ECHO(nsopt));
	if (!nsopt && nats && env && *env && !sl_store_ns_valid(env))
		return fail("$SLUICE_NAMESPACE: must be 1 to %d of [A-Za-z0-9_-], got '%.*s%s'",
		            SL_STORE_NS_MAX, SL_ECHO(env));
	*out = nsopt ? nsopt : nats && env && *env ? env : NULL;
	return 0;
}

/* The store named by --store, --deployment, $SLUICE_STORE or ./sluice.db, into *out,
 * and the options it opens with (durability; namespace and replicas from the
 * deployment, else from --namespace or $SLUICE_NAMESPACE); *dp is the deployment that
 * named it (the caller frees it; so->ns may point into it), else NULL. Returns 0, or
 * the exit status 1 after saying why. */
static int store_target(const char *path, const char *dfile, const char *nsopt,
                        struct sl_deploy **dp, const char **out, struct sl_store_opts *so)
{
	*dp = NULL;
	so->durability = SL_DURABILITY_FULL;
	so->ns = NULL;
	so->replicas = 0;
	if (nsopt && dfile)
		return fail("--namespace and --deployment cannot be used together (the "
		            "deployment names its namespace)");
	if (nsopt && !*nsopt)
		return fail("--namespace: must not be empty (leave it out for "
		            "$SLUICE_NAMESPACE, else " SL_STORE_NS_DEFAULT ")");
	if (path && dfile)
		return fail("--store and --deployment cannot be used together");
	if (path && !*path)
		return fail("--store: must not be empty (leave it out for $SLUICE_STORE, else "
		            "./sluice.db)");
	if (dfile && !*dfile)
		return fail("--deployment: must not be empty");
	if (dfile) {
		struct sl_errs errs;
		size_t i;
		sl_errs_init(&errs);
		if (sl_deploy_load(dp, dfile, &errs)) {
			for (i = 0; i < errs.n; i++)
				fail("%s", errs.msg[i]);
			sl_errs_release(&errs);
			return 1;
		}
		sl_errs_release(&errs);
		*out = (*dp)->store;
		so->durability = (*dp)->durability;
		so->ns = (*dp)->ns;
		so->replicas = (*dp)->replicas;
		return 0;
	}
	if (!path)
		path = getenv("SLUICE_STORE");
	if (!path || !*path)
		path = "sluice.db";
	*out = path;
	return store_namespace(path, nsopt, &so->ns);
}

/* Opens the store named by --store, --deployment, $SLUICE_STORE or ./sluice.db; its
 * appends are checked by core (NULL: reading only). */
static int open_store_from(const char *path, const char *dfile, const char *nsopt, int readonly,
                           struct sl_core_validator *core, struct sl_store **s)
{
	struct sl_store_opts so = {
		SL_DURABILITY_FULL, readonly, sl_core_validate, core, NULL, 0, NULL};
	struct sl_deploy *dp = NULL;
	struct sl_diag d;
	int rc;

	sl_diag_init(&d);
	if (store_target(path, dfile, nsopt, &dp, &path, &so)) {
		sl_deploy_free(dp);
		return 1;
	}
	if (!core)
		so.check = NULL;
	rc = sl_store_open(s, path, &so, &d) ? fail_diag(&d) : 0;
	sl_deploy_free(dp);
	return rc;
}

/* append --deployment: the validator also checks the types the deployment's contracts
 * define (unless --no-validate), so one bad producer cannot fault a consumer. */
static int use_deployment_contracts(const struct args *a, struct sl_core_validator *core)
{
	const char *dfile = opt(a, "deployment");
	struct sl_deploy *dp = NULL;
	struct sl_errs errs;
	struct sl_diag d;
	size_t i;
	int rc;

	if (!dfile || opt(a, "no-validate"))
		return 0;
	sl_errs_init(&errs);
	if (sl_deploy_load(&dp, dfile, &errs)) {
		for (i = 0; i < errs.n; i++)
			fail("%s", errs.msg[i]);
		sl_errs_release(&errs);
		return 1;
	}
	sl_errs_release(&errs);
	sl_diag_init(&d);
	rc = sl_core_validator_use_contracts(core, (const char *const *)dp->schemas, dp->nschemas,
	                                     &d)
	             ? fail("%s (--no-validate appends without the deployment's contracts)",
	                    sl_diag_msg(&d))
	             : 0;
	sl_deploy_free(dp);
	return rc;
}

static int open_store(const struct args *a, int readonly, struct sl_core_validator *core,
                      struct sl_store **s)
{
	return open_store_from(opt(a, "store"), opt(a, "deployment"), opt(a, "namespace"), readonly,
	                       core, s);
}

static void result_line(struct sl_buf *b, const char *stream, const struct sl_append_result *r)
{
	sl_buf_reset(b);
	sl_render_append_result(b, stream, r);
}

/* ---- append ----------------------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
}

static int blank_line(const char *p, size_t n)
{
	while (n--)
		if (p[n] != ' ' && p[n] != '\t' && p[n] != '\r')
			return 0;
	return 1;
}

/* Validates one line of the input (1-based lineno) and adds it to the spool (once a
 * line was bad, only validates). Reports a bad line and counts it in *bad, up to 20
 * messages. Returns 0, or the exit status 1 when the spool failed. */
static int spool_line(const char *p, size_t n, int64_t lineno, const char *stream,
                      struct sl_core_validator *core, struct sl_spool *sp, size_t *bad)
{
	struct sl_jsonl_line ln;
	struct sl_diag d;
	int rc = 0;

	sl_diag_init(&d);
	if (sl_jsonl_parse(p, n, stream, &ln, sl_core_validate, core, &d)) {
		if (++*bad <= 20)
			fail("line %" PRId64 ": %s", lineno, sl_diag_msg(&d));
	} else if (!*bad && sl_spool_add(sp, &ln.ev, lineno, &d)) {
		rc = fail_diag(&d);
	}
	sl_jsonl_release(&ln);
	return rc;
}

/* Reads f to its end, validating every line into the spool; a line is held in memory
 * only until it was validated. Reports each bad line (up to 20, then how many more). */
static int spool_input(FILE *f, const char *stream, struct sl_core_validator *core,
                       struct sl_spool *sp)
{
	struct sl_buf in;
	size_t bad = 0, start, got;
	int64_t lineno = 0;
	int rc = 0, eof = 0;
	char *p, *nl;

	sl_buf_init(&in);
	while (!rc && !eof) {
		if (sl_buf_grow(&in, 65536)) {
			rc = fail("out of memory");
			break;
		}
		got = fread(in.ptr + in.len, 1, 65536, f);
		in.len += got;
		in.ptr[in.len] = '\0';
		if (got < 65536 && ferror(f)) {
			rc = fail("cannot read standard input: %s", strerror(errno));
			break;
		}
		eof = got < 65536 && feof(f);
		/* Every complete line (and at the end, the last one without a newline). */
		for (start = 0; !rc && start < in.len; start = (size_t)(nl - in.ptr) + 1) {
			p = in.ptr + start;
			if (!(nl = memchr(p, '\n', in.len - start)) && !eof)
				break;
			if (!nl)
				nl = in.ptr + in.len;
			lineno++;
			if (!blank_line(p, (size_t)(nl - p)))
				rc = spool_line(p, (size_t)(nl - p), lineno, stream, core, sp,
				                &bad);
		}
		if (start >= in.len) {
			sl_buf_reset(&in);
		} else if (start) {
			memmove(in.ptr, in.ptr + start, in.len - start);
			in.len -= start;
		}
	}
	if (bad > 20)
		fail("%zu more bad lines", bad - 20);
	sl_buf_release(&in);
	return rc ? rc : bad ? 1 : 0;
}

/* Appends ev[0..m) as one atomic chunk (lineno[k]: ev[k]'s input line) and prints
 * each event's result line once the chunk committed. res has room for m results. */
static int commit_chunk(struct sl_store *s, const struct sl_event_in *ev, const int64_t *lineno,
                        size_t m, struct sl_append_result *res, struct sl_buf *out)
{
	struct sl_diag d;
	size_t k, failed = 0;
	int rc = 0;

	sl_diag_init(&d);
	/* (A JetStream store that could not take back all of a failed chunk says so
	 * first: "N event(s) of this batch were written and could not be taken back".) */
	if (sl_store_append(s, ev, m, res, SL_APPEND_CHECKED, &failed, &d))
		return fail(strstr(sl_diag_msg(&d), "could not be taken back")
		                    ? "line %" PRId64 ": %s (the rest of this chunk of %zu events"
		                      " was not written)"
		                    : "line %" PRId64
		                      ": %s (this chunk of %zu events was not written)",
		            lineno[failed], sl_diag_msg(&d), m);
	for (k = 0; k < m && !rc; k++) {
		result_line(out, ev[k].stream, &res[k]);
		rc = put_line(out);
	}
	fflush(stdout);
	return rc;
}

/* Appends the spooled events in atomic chunks of at most `chunk`, printing each
 * chunk's results after its commit. */
static int append_spooled(struct sl_store *s, struct sl_spool *sp, int64_t chunk)
{
	/* chunk is at most MAX_CHUNK (parse_int), so this size cannot wrap. */
	struct sl_append_result *res = malloc((size_t)chunk * sizeof(*res));
	size_t n = sl_spool_count(sp), done = 0;
	int rc = 0, progress = isatty(2) && n > (size_t)chunk;
	struct sl_spool_chunk c;
	struct sl_buf out;
	struct sl_diag d;

	sl_buf_init(&out);
	sl_diag_init(&d);
	if (!res)
		rc = fail("out of memory");
	else if (sl_spool_rewind(sp, &d))
		rc = fail_diag(&d);
	while (!rc) {
		if (sl_spool_next(sp, (size_t)chunk, &c, &d)) {
			rc = fail_diag(&d);
			break;
		}
		if (!c.n || (rc = commit_chunk(s, c.ev, c.lineno, c.n, res, &out)))
			break;
		done += c.n;
		if (progress)
			fprintf(stderr, "\rappended %zu of %zu events", done, n);
	}
	if (progress)
		fputc('\n', stderr);
	sl_buf_release(&out);
	free(res);
	return rc;
}

/* Appends the lines of a --stream feed as one atomic chunk (n <= MAX_CHUNK). */
static int append_lines(struct sl_store *s, const struct sl_jsonl_line *lines, size_t n)
{
	struct sl_event_in *ev = malloc((n ? n : 1) * sizeof(*ev));
	struct sl_append_result *res = malloc((n ? n : 1) * sizeof(*res));
	int64_t *lineno = malloc((n ? n : 1) * sizeof(*lineno));
	struct sl_buf out;
	size_t k;
	int rc;

	sl_buf_init(&out);
	if (!ev || !res || !lineno) {
		rc = fail("out of memory");
	} else {
		for (k = 0; k < n; k++) {
			ev[k] = lines[k].ev;
			lineno[k] = lines[k].lineno;
		}
		rc = commit_chunk(s, ev, lineno, n, res, &out);
	}
	sl_buf_release(&out);
	free(ev);
	free(res);
	free(lineno);
	return rc;
}

/* append --jsonl --stream: for a pipe that goes on (tail -f app.log | sluice append
 * --jsonl --stream). Each line is validated when it arrives; the pending lines commit
 * as one chunk once there are batch-size of them, or linger_ms after the first of
 * them arrived, or at the end of the input. A bad line is reported; the lines before
 * it are committed and the command exits 1. */
static int append_stream(struct sl_store *s, struct sl_core_validator *core, const char *stream,
                         int64_t chunk, double linger_ms)
{
	struct sl_jsonl_line *pending = calloc((size_t)chunk, sizeof(*pending));
	struct sl_buf in;
	struct sl_diag d;
	size_t n = 0, i, start = 0;
	int lineno = 0, rc = 0, eof = 0;
	double first_at = 0;

	sl_buf_init(&in);
	if (!pending)
		return fail("out of memory");
	while (!rc && (!eof || in.len)) {
		struct pollfd pfd = {0, POLLIN, 0};
		int timeout = -1, ready;
		char buf[65536];
		ssize_t got;
		if (n) {
			double left = first_at + linger_ms - now_ms();
			timeout = left > 0 ? (int)left + 1 : 0;
		}
		/* Lines already read (a full chunk was cut short) come first. */
		if (in.len && memchr(in.ptr, '\n', in.len))
			timeout = 0;
		ready = eof ? 0 : poll(&pfd, 1, timeout);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready > 0) {
			got = read(0, buf, sizeof(buf));
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				rc = fail("cannot read standard input: %s", strerror(errno));
				break;
			}
			if (got == 0)
				eof = 1;
			else
				sl_buf_add(&in, buf, (size_t)got);
			if (!sl_buf_ok(&in)) {
				rc = fail("out of memory");
				break;
			}
		}
		/* Every complete line (and at the end, the last one without a newline). */
		for (;;) {
			char *p = in.ptr + start, *nl;
			size_t avail = in.len - start;
			if (!avail || (!(nl = memchr(p, '\n', avail)) && !eof))
				break;
			if (!nl)
				nl = p + avail;
			lineno++;
			start = (size_t)(nl - in.ptr) + (nl < in.ptr + in.len);
			if (blank_line(p, (size_t)(nl - p)))
				continue;
			sl_diag_init(&d);
			if (sl_jsonl_parse(p, (size_t)(nl - p), stream, &pending[n],
			                   sl_core_validate, core, &d)) {
				fail("line %d: %s", lineno, sl_diag_msg(&d));
				sl_jsonl_release(&pending[n]);
				rc = 1;
				break;
			}
			/* The line waits for its chunk while the input buffer moves on. */
			if (sl_jsonl_own(&pending[n])) {
				sl_jsonl_release(&pending[n]);
				rc = fail("out of memory");
				break;
			}
			pending[n].lineno = lineno;
			if (n++ == 0)
				first_at = now_ms();
			if (n == (size_t)chunk)
				break;
		}
		/* Keep only the unread part of the input. */
		if (start) {
			memmove(in.ptr, in.ptr + start, in.len - start);
			in.len -= start;
			start = 0;
		}
		if (n && (rc || eof || n == (size_t)chunk || now_ms() >= first_at + linger_ms)) {
			int arc = append_lines(s, pending, n);
			for (i = 0; i < n; i++)
				sl_jsonl_release(&pending[i]);
			n = 0;
			if (arc)
				rc = arc;
		}
	}
	for (i = 0; i < n; i++)
		sl_jsonl_release(&pending[i]);
	free(pending);
	sl_buf_release(&in);
	return rc;
}

/* A spool for append --jsonl, near the store it appends to. */
static int new_spool(const struct args *a, struct sl_spool **sp)
{
	struct sl_store_opts so;
	struct sl_deploy *dp = NULL;
	const char *path;
	struct sl_diag d;
	int rc;

	if (store_target(opt(a, "store"), opt(a, "deployment"), opt(a, "namespace"), &dp, &path,
	                 &so)) {
		sl_deploy_free(dp);
		return 1;
	}
	sl_diag_init(&d);
	rc = sl_spool_new(sp, path, &d) ? fail_diag(&d) : 0;
	sl_deploy_free(dp);
	return rc;
}

static int append_jsonl(struct args *a)
{
	const char *bs = opt(a, "batch-size");
	const char *stream = a->npos ? a->pos[0] : NULL;
	struct sl_core_validator *core = NULL;
	struct sl_store *s = NULL;
	struct sl_spool *sp = NULL;
	struct sl_diag d;
	int64_t chunk = DEFAULT_CHUNK;
	double linger = 10;
	int rc;

	sl_diag_init(&d);
	if (a->npos > 1)
		return fail("append --jsonl: takes at most STREAM, the events come from stdin");
	if (opt(a, "key") || opt(a, "metadata") || opt(a, "offset"))
		return fail("append --jsonl: --key, --metadata and --offset go in each line");
	if (a->npos == 1 && !sl_stream_name_valid(a->pos[0]))
		return fail("stream: invalid stream name '%.*s%s'" SL_STREAM_RULE,
		            SL_ECHO(a->pos[0]));
	if (opt(a, "linger") && !opt(a, "stream"))
		return fail("append: --linger needs --jsonl --stream");
	if (opt(a, "linger") && (linger = sl_parse_duration(opt(a, "linger"))) < 0)
		return fail("--linger: bad duration '%.*s%s' (e.g. 10ms, 1s)",
		            SL_ECHO(opt(a, "linger")));
	if (bs && parse_int("--batch-size", bs, 1, MAX_CHUNK, &chunk))
		return 1;
	if (sl_core_validator_new(&core, &d)) {
		rc = fail_diag(&d);
		goto out;
	}
	if ((rc = use_deployment_contracts(a, core)))
		goto out;
	if (opt(a, "stream")) {
		if (!(rc = open_store(a, 0, core, &s)))
			rc = append_stream(s, core, stream, chunk, linger);
		goto out;
	}
	/* The whole input is validated before the store is opened: a bad line anywhere
	 * writes nothing (the store is not even created). */
	if ((rc = new_spool(a, &sp)) || (rc = spool_input(stdin, stream, core, sp)) ||
	    (rc = open_store(a, 0, core, &s)))
		goto out;
	rc = append_spooled(s, sp, chunk);
out:
	sl_spool_free(sp);
	sl_store_close(s);
	sl_core_validator_free(core);
	return rc;
}

static int cmd_append(struct args *a)
{
	struct sl_event_in ev = {0};
	struct sl_append_result res;
	struct sl_core_validator *core = NULL;
	struct sl_store *s = NULL;
	const char *off = opt(a, "offset");
	struct sl_buf out;
	struct sl_diag d;
	int rc;

	if (opt(a, "jsonl"))
		return append_jsonl(a);
	if (opt(a, "batch-size"))
		return fail("append: --batch-size needs --jsonl");
	if (opt(a, "stream") || opt(a, "linger"))
		return fail("append: --stream and --linger need --jsonl");
	if (a->npos < 2)
		return fail("append: missing arguments (see sluice append --help)");
	ev.stream = a->pos[0];
	ev.type = a->pos[1];
	if (a->npos > 2)
		ev.payload = a->pos[2], ev.payload_len = strlen(a->pos[2]);
	if ((ev.metadata = opt(a, "metadata")))
		ev.metadata_len = strlen(ev.metadata);
	ev.key = opt(a, "key");
	if (off && parse_count("--offset", off, &ev.offset))
		return 1;
	sl_diag_init(&d);
	if (sl_core_validator_new(&core, &d)) {
		rc = fail_diag(&d);
		goto out;
	}
	if ((rc = use_deployment_contracts(a, core)))
		goto out;
	if (sl_store_check_event(&ev, sl_core_validate, core, &d)) {
		rc = fail_diag(&d);
		goto out;
	}
	if ((rc = open_store(a, 0, core, &s)))
		goto out;
	if (sl_store_append(s, &ev, 1, &res, SL_APPEND_CHECKED, NULL, &d)) {
		rc = fail_diag(&d);
	} else {
		sl_buf_init(&out);
		result_line(&out, ev.stream, &res);
		rc = put_line(&out);
		sl_buf_release(&out);
	}
out:
	sl_store_close(s);
	sl_core_validator_free(core);
	return rc;
}

/* ---- events and streams -------------------------------------------------------- */

static int print_event(void *ud, const struct sl_event *ev)
{
	struct sl_buf *b = ud;

	sl_buf_reset(b);
	sl_event_to_json(ev, b);
	return put_line(b) ? SL_ENOMEM : 0;
}

static int cmd_events(struct args *a)
{
	const char *from = opt(a, "from"), *limit = opt(a, "limit"), *type = opt(a, "type");
	int64_t f = 1, l = 0;
	struct sl_store *s;
	struct sl_buf b;
	struct sl_diag d;
	int rc;

	if (!sl_stream_name_valid(a->pos[0]))
		return fail("stream: invalid stream name '%.*s%s'" SL_STREAM_RULE,
		            SL_ECHO(a->pos[0]));
	if ((from && parse_count("--from", from, &f)) ||
	    (limit && parse_count("--limit", limit, &l)))
		return 1;
	if ((rc = open_store(a, 1, NULL, &s)))
		return rc;
	sl_buf_init(&b);
	sl_diag_init(&d);
	rc = sl_store_read(s, a->pos[0], f, l, type, print_event, &b, &d);
	if (rc && rc != SL_ENOMEM)
		fail_diag(&d);
	sl_buf_release(&b);
	sl_store_close(s);
	return rc ? 1 : 0;
}

static int print_stream(void *ud, const struct sl_stream_info *info)
{
	struct sl_buf *b = ud;

	sl_buf_reset(b);
	sl_render_stream(b, info);
	return put_line(b) ? SL_ENOMEM : 0;
}

static int cmd_streams(struct args *a)
{
	const char *prefix = a->npos ? a->pos[0] : NULL;
	struct sl_store *s;
	struct sl_buf b;
	struct sl_diag d;
	int rc;

	if (prefix && !sl_stream_name_valid(prefix))
		return fail("prefix: invalid stream name '%.*s%s'" SL_STREAM_RULE, SL_ECHO(prefix));
	if ((rc = open_store(a, 1, NULL, &s)))
		return rc;
	sl_buf_init(&b);
	sl_diag_init(&d);
	rc = sl_store_streams(s, prefix, print_stream, &b, &d);
	if (rc && rc != SL_ENOMEM)
		fail_diag(&d);
	sl_buf_release(&b);
	sl_store_close(s);
	return rc ? 1 : 0;
}

/* ---- verify ---------------------------------------------------------------------- */

struct verify_out {
	struct sl_buf b;
	struct sl_progress *pr;
};

static void add_num(struct sl_buf *b, const char *name, int64_t v)
{
	if (v < 0)
		return;
	sl_buf_adds(b, ",\"");
	sl_buf_adds(b, name);
	sl_buf_adds(b, "\":");
	sl_buf_addi(b, v);
}

static void add_str(struct sl_buf *b, const char *name, const char *v)
{
	sl_buf_adds(b, ",\"");
	sl_buf_adds(b, name);
	sl_buf_adds(b, "\":");
	if (v)
		sl_buf_addjstr(b, v, strlen(v));
	else
		sl_buf_adds(b, "null");
}

/* {"problem":..,"stream":..,["processor":..,]"offset":..,...,"message":..} */
static int print_problem(void *ud, const struct sl_store_problem *p)
{
	struct verify_out *vo = ud;
	struct sl_buf *b = &vo->b;

	if (vo->pr)
		sl_progress_done(vo->pr, "verify"); /* a problem line never mixes with it */
	sl_buf_reset(b);
	sl_buf_adds(b, "{\"problem\":");
	sl_buf_addjstr(b, p->problem, strlen(p->problem));
	add_str(b, "stream", p->stream);
	if (p->processor)
		add_str(b, "processor", p->processor);
	add_num(b, "offset", p->offset);
	add_num(b, "to", p->to);
	add_num(b, "position", p->position);
	add_num(b, "head", p->head);
	add_str(b, "message", p->message);
	sl_buf_addc(b, '}');
	if (put_line(b))
		return SL_ENOMEM;
	fflush(stdout);
	return 0;
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void verify_progress(void *ud, int64_t done, int64_t total)
{
	struct verify_out *vo = ud;

	if (vo->pr)
		sl_progress_update(vo->pr, "verify", done, total, monotonic_ms());
}

static void summary_line(struct sl_buf *b, const struct sl_store_verify_summary *sum, int quick)
{
	sl_buf_reset(b);
	sl_buf_adds(b, sum->problems ? "{\"ok\":false" : "{\"ok\":true");
	add_num(b, "problems", sum->problems);
	sl_buf_adds(b, quick ? ",\"check\":\"quick\"" : ",\"check\":\"full\"");
	add_num(b, "streams", sum->streams);
	if (!quick)
		add_num(b, "events", sum->events);
	add_num(b, "checkpoints", sum->checkpoints);
	sl_buf_addc(b, '}');
}

static int cmd_verify(struct args *a)
{
	const char *dfile = opt(a, "deployment");
	struct sl_store_verify_summary sum;
	struct verify_out vo;
	struct sl_store *s;
	struct sl_diag d;
	int quick = opt(a, "quick") != NULL, rc;

	if (a->npos && dfile)
		return fail("verify: give DEPLOYMENT or --deployment, not both");
	if (a->npos)
		dfile = a->pos[0];
	if ((rc = open_store_from(opt(a, "store"), dfile, opt(a, "namespace"), 1, NULL, &s)))
		return rc;
	sl_buf_init(&vo.b);
	vo.pr = isatty(2) || opt(a, "progress") ? sl_progress_new(2, isatty(2)) : NULL;
	sl_diag_init(&d);
	rc = sl_store_verify(s, quick ? SL_VERIFY_QUICK : 0, print_problem, verify_progress, &vo,
	                     &sum, &d);
	sl_progress_free(vo.pr);
	if (!rc && vo.pr && !isatty(2) && !quick) { /* off a terminal: the last word too */
		char line[256];
		sl_progress_format(line, sizeof(line), "verify", sum.events, sum.events, 0);
		fprintf(stderr, "%s\n", line);
	}
	if (rc)
		rc = rc == SL_ENOMEM ? fail("out of memory") : fail_diag(&d);
	else {
		summary_line(&vo.b, &sum, quick);
		if (!(rc = put_line(&vo.b)) && sum.problems)
			rc = fail("verify: %lld problem%s found", (long long)sum.problems,
			          sum.problems == 1 ? "" : "s");
	}
	sl_buf_release(&vo.b);
	sl_store_close(s);
	return rc ? 1 : 0;
}

/* ---- deployment commands ------------------------------------------------------------------ */

/* Opens the deployment; prints every error. */
static int open_host(const char *file, int flags, struct sl_host **h)
{
	struct sl_errs errs;
	size_t i;
	int rc;

	sl_errs_init(&errs);
	rc = sl_host_open(h, file, flags, &errs);
	for (i = 0; i < errs.n; i++)
		fail("%s", errs.msg[i]);
	if (rc && !errs.n)
		fail("%s: %s", file, sl_strerror(rc));
	sl_errs_release(&errs);
	return rc ? 1 : 0;
}

static int cmd_check(struct args *a)
{
	struct sl_host *h;
	struct sl_buf b;
	int rc;

	if (open_host(a->pos[0], SL_HOST_NO_STORE, &h))
		return 1;
	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"deployment\":");
	sl_buf_addjstr(&b, a->pos[0], strlen(a->pos[0]));
	sl_buf_adds(&b, ",\"ok\":true}");
	rc = put_line(&b);
	sl_buf_release(&b);
	sl_host_free(h);
	return rc;
}

static int cmd_run(struct args *a)
{
	struct sl_console *con = NULL;
	struct sl_host *h;
	struct sl_diag d;
	int rc;

	const char *timeout = opt(a, "shutdown-timeout");
	double ms = timeout ? sl_parse_duration(timeout) : 0;

	if (timeout && !(ms >= 0 && ms <= 86400000.0))
		return fail(
			"--shutdown-timeout: must be a duration of at most 24 hours (e.g. 500ms, "
			"10s, 2m), got '%.*s%s'",
			SL_ECHO(timeout));
	if (open_host(a->pos[0], SL_HOST_RUN | (opt(a, "strict") ? SL_HOST_STRICT : 0), &h))
		return 1;
	if (timeout)
		sl_host_set_shutdown_timeout(h, ms);
	if (opt(a, "progress"))
		sl_host_set_progress(h, 1);
	if (opt(a, "http"))
		sl_host_set_http(h, opt(a, "http"));
	/* A console, an HTTP client or a child that goes away must not end the run
	 * with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (!opt(a, "until-caught-up") && sl_console_new(&con, h)) {
		sl_host_free(h);
		return fail("out of memory");
	}
	sl_diag_init(&d);
	rc = sl_host_run(h, opt(a, "until-caught-up") != NULL, &d);
	if (rc)
		fail("%s", sl_diag_msg(&d));
	sl_host_free(h);
	sl_console_free(con);
	return rc ? 1 : 0;
}

/* The deployment commands that run one host function: open the deployment, call
 * fn, report its error, close. */
typedef int (*host_fn)(struct sl_host *h, struct args *a, struct sl_diag *d);

static int with_host(struct args *a, int flags, host_fn fn)
{
	struct sl_host *h;
	struct sl_diag d;
	size_t i;
	int rc;

	if (open_host(a->pos[0], flags, &h))
		return 1;
	for (i = 0; i < sl_host_skipped(h)->n; i++)
		fprintf(stderr, "sluice: warning: %s (stored states are shown as stored)\n",
		        sl_host_skipped(h)->msg[i]);
	sl_diag_init(&d);
	if ((rc = fn(h, a, &d)))
		fail_diag(&d);
	sl_host_free(h);
	return rc ? 1 : 0;
}

static const char *stream_arg(const struct args *a)
{
	return a->npos > 2 ? a->pos[2] : NULL;
}

/* The sink of a host query's rows: one JSON line each on stdout. */
struct rows_out {
	struct sl_buf b;
	struct sl_diag *d;
};

static int row_line(struct rows_out *o)
{
	if (!sl_buf_ok(&o->b))
		return sl_diag_set(o->d, SL_ENOMEM, "out of memory");
	sl_buf_addc(&o->b, '\n');
	fwrite(o->b.ptr, 1, o->b.len, stdout);
	return 0;
}

/* Starts the line with {"processor":P,"stream":S (null when NULL). */
static void row_start(struct sl_buf *b, const char *proc, const char *stream)
{
	sl_buf_reset(b);
	sl_render_row_start(b, proc, stream);
}

static int print_state(void *ud, const struct sl_state_row *r)
{
	struct rows_out *o = ud;

	sl_buf_reset(&o->b);
	sl_render_state(&o->b, r);
	return row_line(o);
}

static int print_status(void *ud, const struct sl_status_row *r)
{
	struct rows_out *o = ud;

	sl_buf_reset(&o->b);
	sl_render_status(&o->b, r);
	return row_line(o);
}

static int print_resumed(void *ud, const struct sl_resume_row *r)
{
	struct rows_out *o = ud;

	row_start(&o->b, r->processor, r->stream);
	sl_buf_addf(&o->b, ",\"offset\":%lld,\"deadLettered\":true}", (long long)r->offset);
	return row_line(o);
}

static int print_dead(void *ud, const struct sl_dead_letter *dl)
{
	struct rows_out *o = ud;

	row_start(&o->b, dl->processor, dl->stream);
	sl_buf_addf(&o->b, ",\"offset\":%lld,\"type\":", (long long)dl->offset);
	sl_buf_addjstr(&o->b, dl->type, strlen(dl->type));
	sl_buf_adds(&o->b, ",\"error\":");
	sl_buf_addjstr(&o->b, dl->error, strlen(dl->error));
	sl_buf_addf(&o->b, ",\"attempts\":%lld,\"at\":\"%s\"}", (long long)dl->attempts, dl->at);
	return row_line(o);
}

static void rows_init(struct rows_out *o, struct sl_diag *d)
{
	sl_buf_init(&o->b);
	o->d = d;
}

static int do_state(struct sl_host *h, struct args *a, struct sl_diag *d)
{
	struct rows_out o;
	int rc;

	rows_init(&o, d);
	rc = sl_host_state(h, a->pos[1], stream_arg(a), print_state, &o, d);
	sl_buf_release(&o.b);
	return rc;
}

static int do_status(struct sl_host *h, struct args *a, struct sl_diag *d)
{
	struct rows_out o;
	int rc;

	(void)a;
	rows_init(&o, d);
	rc = sl_host_status(h, print_status, &o, d);
	sl_buf_release(&o.b);
	return rc;
}

static int do_reset(struct sl_host *h, struct args *a, struct sl_diag *d)
{
	return sl_host_reset(h, a->pos[1], stream_arg(a), opt(a, "with-effects") != NULL, d);
}

static int do_resume(struct sl_host *h, struct args *a, struct sl_diag *d)
{
	struct rows_out o;
	int rc;

	rows_init(&o, d);
	rc = sl_host_resume(h, a->pos[1], stream_arg(a),
	                    opt(a, "skip-all") ? SL_RESUME_SKIP_ALL
	                    : opt(a, "skip")   ? SL_RESUME_SKIP
	                                       : 0,
	                    print_resumed, &o, d);
	sl_buf_release(&o.b);
	return rc;
}

/* dead-letters --processor P: only P's. */
struct dead_filter {
	struct rows_out o;
	const char *proc;
};

static int print_dead_of(void *ud, const struct sl_dead_letter *dl)
{
	struct dead_filter *f = ud;

	return f->proc && strcmp(f->proc, dl->processor) ? 0 : print_dead(&f->o, dl);
}

static int do_dead_letters(struct sl_host *h, struct args *a, struct sl_diag *d)
{
	struct dead_filter f;
	int64_t n;
	int rc;

	rows_init(&f.o, d);
	f.proc = opt(a, "processor");
	if (a->npos > 1) { /* clear */
		if ((rc = sl_host_dead_letters_clear(h, f.proc, &n, d)) == 0) {
			sl_buf_addf(&f.o.b, "{\"cleared\":%lld}", (long long)n);
			rc = put_line(&f.o.b);
		}
	} else if (f.proc && !sl_deploy_proc(sl_host_deploy(h), f.proc)) {
		rc = sl_diag_set(d, SL_EINVAL, "unknown processor '%.*s%s' (not in %s)",
		                 SL_ECHO(f.proc), a->pos[0]);
	} else {
		rc = sl_host_dead_letters(h, print_dead_of, &f, d);
	}
	sl_buf_release(&f.o.b);
	return rc;
}

static int cmd_state(struct args *a)
{
	return with_host(a, SL_HOST_LENIENT | SL_HOST_READONLY, do_state);
}

static int cmd_status(struct args *a)
{
	return with_host(a, SL_HOST_ROWS | SL_HOST_READONLY, do_status);
}

static int cmd_reset(struct args *a)
{
	return with_host(a, SL_HOST_ROWS, do_reset);
}

static int cmd_resume(struct args *a)
{
	return with_host(a, SL_HOST_WRITE, do_resume);
}

static int cmd_dead_letters(struct args *a)
{
	/* `dead-letters clear DEPLOYMENT` and `dead-letters DEPLOYMENT clear` alike */
	if (a->npos == 2 && !strcmp(a->pos[0], "clear")) {
		a->pos[0] = a->pos[1];
		a->pos[1] = "clear";
	}
	if (a->npos == 2 && strcmp(a->pos[1], "clear"))
		return fail("dead-letters: unexpected argument '%.*s%s' (see sluice dead-letters "
		            "--help)",
		            SL_ECHO(a->pos[1]));
	return with_host(a, SL_HOST_ROWS | (a->npos == 2 ? 0 : SL_HOST_READONLY), /* clear writes */
	                 do_dead_letters);
}

/* The arguments of repl and console: [TARGET] [-e CODE]. Returns 0, or 1 after the
 * error line. */
static int session_args(struct args *a, const char *cmd, const char **target, const char **code)
{
	int i;

	*target = NULL;
	*code = opt(a, "eval");
	for (i = 0; i < a->npos; i++) {
		if (!strcmp(a->pos[i], "-e")) {
			if (i + 1 >= a->npos)
				return fail("%s: -e needs CODE", cmd);
			*code = a->pos[++i];
		} else if (!*target) {
			*target = a->pos[i];
		} else {
			return fail("%s: unexpected argument '%.*s%s' (see sluice %s --help)", cmd,
			            SL_ECHO(a->pos[i]), cmd);
		}
	}
	return 0;
}

/* sluice repl [DEPLOYMENT] [-e CODE | --eval CODE] */
static int cmd_repl(struct args *a)
{
	const char *deployment, *code;

	return session_args(a, "repl", &deployment, &code) ? 1 : sl_repl_main(deployment, code);
}

/* sluice console [DEPLOYMENT|SOCKET] [-e CODE | --eval CODE] */
static int cmd_console(struct args *a)
{
	const char *target, *code;

	return session_args(a, "console", &target, &code) ? 1 : sl_console_main(target, code);
}

/* ---- the command table ------------------------------------------------------------- */

#define STORE_HELP                                                                                 \
	"  --store PATH         the store (default: $SLUICE_STORE, else ./sluice.db)\n"            \
	"  --deployment FILE    use the store named by a deployment file (and its namespace)\n"    \
	"  --namespace NS       the namespace of a nats:// store (default: $SLUICE_NAMESPACE,\n"   \
	"                       else sluice)\n"

static const struct cmd commands[] = {
	{"append",
         cmd_append,
         "append STREAM TYPE [PAYLOAD] [--key K] [--metadata JSON] [--offset N]\n"
         "       sluice append [STREAM] --jsonl [--batch-size N] < events.jsonl",
         "Appends one event, or with --jsonl one event per line of standard input.\n"
         "PAYLOAD and --metadata are JSON objects (PAYLOAD defaults to {}).\n"
         "Prints {\"stream\":..,\"offset\":..,\"position\":..} per event, once durable;\n"
         "an event whose idempotency key is already in the stream is not appended\n"
         "again: its line is the stored event's, with \"duplicate\":true.\n\n"
         "  --key K              idempotency key: a second append with K returns the first event\n"
         "  --metadata JSON      the event's metadata object\n"
         "  --offset N           append only if N is the stream's next offset\n"
         "  --jsonl              read lines {\"type\":..,\"payload\":..,\"metadata\":..,\n"
         "                       \"idempotencyKey\":..,\"offset\":..,\"stream\":..} from stdin;\n"
         "                       every line is validated before anything is written\n"
         "  --batch-size N       with --jsonl, commit N events per atomic chunk "
         "(50000)\n"
         "  --stream             with --jsonl, for a pipe that goes on: each line is checked\n"
         "                       as it arrives, and the pending lines commit when there are\n"
         "                       batch-size of them or --linger after the first (a bad line:\n"
         "                       the ones before it commit, then exit 1)\n"
         "  --linger T           with --stream, the longest wait before a commit (10ms)\n"
         "  --no-validate        with --deployment, do not check payloads against the\n"
         "                       deployment's contracts (by default a payload of a type\n"
         "                       they define must match each definition)\n" STORE_HELP,
         {STORE_OPTS, "key=", "metadata=", "offset=", "jsonl", "batch-size=", "no-validate",
          "stream", "linger="},
         0,
         3},
	{"events",
         cmd_events,
         "events STREAM [--from N] [--limit N] [--type T]",
         "Prints the events of STREAM with offset >= N (default 1), one JSON object per line.\n\n"
         "  --from N             first offset to print\n"
         "  --limit N            print at most N events\n"
         "  --type T             print only events of type T\n" STORE_HELP,
         {STORE_OPTS, "from=", "limit=", "type="},
         1,
         1},
	{"streams",
         cmd_streams,
         "streams [PREFIX]",
         "Prints {\"stream\":..,\"head\":..,\"paused\":..,\"metadata\":..} for every stream, or\n"
         "for PREFIX and the streams below it (\"orders\" lists orders and orders/..., not\n"
         "orders2).\n\n" STORE_HELP,
         {STORE_OPTS},
         0,
         1},
	{"check",
         cmd_check,
         "check DEPLOYMENT",
         "Validates the deployment, every contract and every script, listing each error as\n"
         "\"sluice: <file>: <field>: <message>\"; exits 1 if there is any.\n",
         {NULL},
         1,
         1},
	{"run",
         cmd_run,
         "run DEPLOYMENT [--until-caught-up] [--strict] [--shutdown-timeout T] [--progress]\n"
         "       [--http ADDR]",
         "Runs the deployment's processors over its store until SIGINT or SIGTERM.\n"
         "Changes to the deployment file, the scripts and the contracts are loaded,\n"
         "checked as `sluice check` does, and take over between batches (an invalid\n"
         "version is logged as `reload: ...` and shown as reloadError in status);\n"
         "SIGHUP reads the deployment file again at once.\n\n"
         "  --until-caught-up    exit once every instance has processed every event present\n"
         "                       (exit 1 if an instance is faulted)\n"
         "  --strict             fail a batch whose hook changed a table it was given, or\n"
         "                       whose events reduce to another state when reduced again\n"
         "  --shutdown-timeout T how long SIGINT/SIGTERM waits for batches in flight and\n"
         "                       their blocking work (default: the deployment's\n"
         "                       shutdownTimeout, else 10s); a second signal exits at once\n"
         "  --progress           show the catch-up progress line also when stderr is not\n"
         "                       a terminal (on a terminal it is always shown)\n"
         "  --http ADDR          serve the HTTP interface on ADDR (HOST:PORT, e.g.\n"
         "                       127.0.0.1:8428) instead of the deployment's `http`: appends,\n"
         "                       reads, /metrics, /healthz (see the README, HTTP interface);\n"
         "                       a non-loopback address needs the deployment's httpToken.\n"
         "                       Not with --until-caught-up\n"
         "  --log-format F       log lines on stderr as text or json (default: text on a\n"
         "                       terminal, else json); every command takes it\n"
         "  --log-level L        debug, info, warn or error (default: info): lower levels,\n"
         "                       ctx.log.* of the processors included, are not logged\n",
         {"until-caught-up", "strict", "shutdown-timeout=", "progress", "http="},
         1,
         1},
	{"state",
         cmd_state,
         "state DEPLOYMENT PROCESSOR [STREAM]",
         "Prints {\"processor\",\"stream\",\"offset\",\"status\",\"state\"} for the instance of\n"
         "STREAM, or for every instance of PROCESSOR. An instance that has not run shows\n"
         "offset 0, status \"new\" and the initial state.\n",
         {NULL},
         2,
         3},
	{"status",
         cmd_status,
         "status DEPLOYMENT",
         "Prints one line per instance: processor, stream, offset, head, lag, status\n"
         "(ok, faulted or new), lastError, backgroundFailures, runner (the process\n"
         "running the processor now, pid@host-suffix, or null), rate (events per\n"
         "second over the last 10 s, 0 when idle), reloadError (why the running\n"
         "engine could not load a changed script or contract, or null).\n",
         {NULL},
         1,
         1},
	{"reset",
         cmd_reset,
         "reset DEPLOYMENT PROCESSOR [STREAM] [--with-effects]",
         "Discards the state and checkpoint of the instance of STREAM, or of every instance\n"
         "and the processor's tables; the instances replay from the start on the next run.\n"
         "Side effects already run are not run again, unless --with-effects.\n\n"
         "  --with-effects       also forget which side effects ran\n",
         {"with-effects"},
         2,
         3},
	{"resume",
         cmd_resume,
         "resume DEPLOYMENT PROCESSOR [STREAM] [--skip | --skip-all]",
         "Clears the fault of the instance of STREAM, or of every faulted instance of\n"
         "PROCESSOR; they receive events again on the next run. An instance that is not\n"
         "faulted is left alone (exit 0).\n\n"
         "  --skip               run the failing batch again one event at a time; the first\n"
         "                       event that fails alone becomes a dead letter and is skipped\n"
         "  --skip-all           the same, and every event of the batch that fails alone\n"
         "                       becomes a dead letter, not only the first\n"
         "A dead letter is skipped by the processor from then on, also after a reset or\n"
         "a contract version bump (sluice dead-letters DEPLOYMENT clear forgets them).\n",
         {"skip", "skip-all"},
         2,
         3},
	{"dead-letters",
         cmd_dead_letters,
         "dead-letters DEPLOYMENT [--processor P]\n"
         "       sluice dead-letters DEPLOYMENT clear [--processor P]",
         "Prints one line per dead letter (oldest first): processor, stream, offset,\n"
         "type, error, attempts, at. Each event is a dead letter of a processor at most\n"
         "once; the processor skips it from then on, also after a reset or a rebuild.\n"
         "With clear, forgets them (of P, or of every processor of the deployment) and\n"
         "prints {\"cleared\":N}: a reset then processes those events again. Refused\n"
         "while a runner holds the processor.\n\n"
         "  --processor P        only the dead letters of processor P\n",
         {"processor="},
         1,
         2},
	{"repl",
         cmd_repl,
         "repl [DEPLOYMENT] [-e CODE]",
         "An interactive Lua 5.4 session over the deployment and its store (without\n"
         "DEPLOYMENT: the store of --store semantics, $SLUICE_STORE or ./sluice.db).\n"
         "help() lists the helpers (processors, instances, state, status, streams,\n"
         "events, append, reset, resume, deadLetters, check). On a terminal: line\n"
         "editing, history in ~/.sluice_history, Tab completion, multi-line input, a\n"
         "bare expression prints its value, Ctrl-C stops an evaluation, Ctrl-D leaves.\n"
         "Otherwise (standard input, or -e CODE) each result prints as one JSON line and\n"
         "an error exits 1.\n\n"
         "  -e CODE, --eval CODE evaluate CODE and exit\n",
         {"eval="},
         0,
         3},
	{"console",
         cmd_console,
         "console [DEPLOYMENT|SOCKET] [-e CODE]",
         "The REPL's session inside a running `sluice run`, over its console socket\n"
         "(the deployment's `console` path, else the store's path with .sock appended;\n"
         "without an argument: $SLUICE_STORE.sock or ./sluice.db.sock). Each input is\n"
         "evaluated by the runner between batches in a sandboxed session of its own,\n"
         "within 1 s and 256 MiB: a loop is stopped with an error and the session goes\n"
         "on. The helpers are the REPL's (help() lists them); reset and resume are done\n"
         "by the runner under its lease, reload() loads the deployment again now, tail\n"
         "follows until Ctrl-C. Several consoles may be attached at once. Off a terminal\n"
         "(standard input, or -e CODE) each result prints as one JSON line and an error\n"
         "exits 1.\n\n"
         "  -e CODE, --eval CODE evaluate CODE and exit\n",
         {"eval="},
         0,
         3},
	{"verify",
         cmd_verify,
         "verify [--store PATH | DEPLOYMENT] [--quick] [--progress]",
         "Checks the store: SQLite's integrity check of the file, then sluice's own rules:\n"
         "every stream's offsets run 1, 2, 3, ... without a hole and begin with its one\n"
         "stream/created; positions rise with offsets and no two events share one; each\n"
         "stream's recorded head is its last offset; no checkpoint is above its stream's\n"
         "head. Prints one line per problem found, {\"problem\":..,\"stream\":..,...,\n"
         "\"message\":..}, then a summary {\"ok\":..,\"problems\":..,...}; exits 1 if there\n"
         "is a problem. It only reads, so it also runs beside a running engine.\n\n"
         "  --quick              SQLite's quick check, heads and checkpoints only (what a\n"
         "                       store gets when it is opened after an unclean shutdown)\n"
         "  --progress           show progress also when stderr is not a terminal\n" STORE_HELP,
         {STORE_OPTS, "quick", "progress"},
         0,
         1},
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: sluice COMMAND [ARGS] [--help]\n\n"
	           "sluice is a stream processor engine: events are appended to ordered streams\n"
	           "and Lua processors fold them into state.\n\ncommands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  sluice %s\n", commands[i].usage);
	fprintf(f,
	        "\n  sluice --version\n  sluice help COMMAND\n\n"
	        "Every command also takes --log-format text|json and\n"
	        "--log-level debug|info|warn|error (the log on stderr; see sluice run --help).\n\n"
	        "environment:\n"
	        "  SLUICE_STORE   the store of the store commands when neither --store nor\n"
	        "                 --deployment is given (default ./sluice.db)\n"
	        "  SLUICE_NAMESPACE  the namespace of a nats:// store named without a\n"
	        "                 deployment, when --namespace is not given (default sluice)\n"
	        "  SLUICE_HOME    where the built-in schemas and Lua modules are (schemas/,\n"
	        "                 lua/); default: ../share/sluice beside the binary, else the\n"
	        "                 source tree it was built from\n");
}

static const struct cmd *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

int sl_cli_main(int argc, char **argv)
{
	const struct cmd *c;
	struct args a;
	int rc;

	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("sluice %s\n", SL_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help")) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		if (!(c = find_command(argv[2])))
			return fail("unknown command '%.*s%s' (see sluice --help)",
			            SL_ECHO(argv[2]));
		print_help(c);
		return 0;
	}
	if (!(c = find_command(argv[1])))
		return fail("unknown command '%.*s%s' (see sluice --help)", SL_ECHO(argv[1]));
	if ((rc = parse_args(c, argc, argv, 2, &a)) >= 0)
		return rc;
	rc = c->run(&a);
	if (fflush(stdout) || ferror(stdout))
		return rc ? rc : fail("cannot write standard output: %s", strerror(errno));
	return rc;
}
