/* sl_progress.c - the catch-up progress lines (sl_progress.h). */
#include "sl_progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_buf.h"
#include "sl_log.h"

#define REDRAW_MS 100 /* at most 10 drawings a second */

struct line {
	char *proc;
	int64_t done, total;
	uint64_t start_ms, now_ms;
};

struct sl_progress {
	int fd, tty;
	pthread_mutex_t mu;
	struct line *l;
	size_t n, cap;
	size_t drawn;       /* lines on the terminal now */
	uint64_t last_draw; /* ms of the last drawing */
	uint64_t redraw_ms; /* REDRAW_MS (sluice-testing: SLUICE_PROGRESS_MS) */
	int have_drawn;
};

/* 1234567 -> "1 234 567" */
static void group(char *out, size_t n, int64_t v)
{
	char digits[32];
	size_t len, i, k = 0;

	snprintf(digits, sizeof(digits), "%lld", (long long)(v < 0 ? 0 : v));
	len = strlen(digits);
	for (i = 0; i < len && k + 2 < n; i++) {
		if (i && (len - i) % 3 == 0)
			out[k++] = ' ';
		out[k++] = digits[i];
	}
	out[k] = '\0';
}

static void human_rate(char *out, size_t n, double r)
{
	if (r >= 1e6)
		snprintf(out, n, "%.1fM", r / 1e6);
	else if (r >= 1e3)
		snprintf(out, n, "%.0fk", r / 1e3);
	else
		snprintf(out, n, "%.0f", r);
}

static void human_eta(char *out, size_t n, double s)
{
	if (s < 60)
		snprintf(out, n, "%.0fs", s < 1 ? 1 : s);
	else if (s < 3600)
		snprintf(out, n, "%.0fm", s / 60);
	else
		snprintf(out, n, "%.1fh", s / 3600);
}

void sl_progress_format(char *out, size_t n, const char *proc, int64_t done, int64_t total,
                        double rate)
{
	char d[32], t[32], r[32], e[32];

	group(d, sizeof(d), done);
	group(t, sizeof(t), total);
	human_rate(r, sizeof(r), rate);
	if (rate > 0 && total > done) {
		human_eta(e, sizeof(e), (double)(total - done) / rate);
		snprintf(out, n, "%s  %s / %s events  %s ev/s  ETA %s", proc, d, t, r, e);
	} else {
		snprintf(out, n, "%s  %s / %s events  %s ev/s", proc, d, t, r);
	}
}

/* Erases the lines drawn on the terminal (the cursor goes back to where they
 * began). Called with mu held. */
static void erase(struct sl_progress *pr)
{
	char seq[32];

	if (!pr->tty || !pr->drawn)
		return;
	snprintf(seq, sizeof(seq), "\033[%zuA\r\033[J", pr->drawn);
	sl_log_write(pr->fd, seq, strlen(seq));
	pr->drawn = 0;
}

/* Draws every line. Called with mu held. */
static void draw(struct sl_progress *pr)
{
	struct sl_buf b;
	size_t i;

	sl_buf_init(&b);
	erase(pr);
	for (i = 0; i < pr->n; i++) {
		const struct line *l = &pr->l[i];
		double secs = (double)(l->now_ms - l->start_ms) / 1000.0;
		char text[256];
		sl_progress_format(text, sizeof(text), l->proc, l->done, l->total,
		                   secs > 0 ? (double)l->done / secs : 0);
		sl_buf_adds(&b, text);
		sl_buf_adds(&b, pr->tty ? "\033[K\n" : "\n");
	}
	if (sl_buf_ok(&b) && b.len)
		sl_log_write(pr->fd, b.ptr, b.len);
	if (pr->tty)
		pr->drawn = pr->n;
	sl_buf_release(&b);
}

static void before_log(void *ud)
{
	struct sl_progress *pr = ud;

	pthread_mutex_lock(&pr->mu);
	erase(pr);
	pthread_mutex_unlock(&pr->mu);
}

struct sl_progress *sl_progress_new(int fd, int tty)
{
	struct sl_progress *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return NULL;
	pr->fd = fd;
	pr->tty = tty;
	pr->redraw_ms = REDRAW_MS;
#ifdef SL_TESTING
	/* A test switch: a drawing at every update (0), for tests whose catch-up may
	 * be over before the first tenth of a second. */
	if (getenv("SLUICE_PROGRESS_MS"))
		pr->redraw_ms = strtoull(getenv("SLUICE_PROGRESS_MS"), NULL, 10);
#endif
	pthread_mutex_init(&pr->mu, NULL);
	sl_log_set_before(before_log, pr);
	return pr;
}

void sl_progress_free(struct sl_progress *pr)
{
	size_t i;

	if (!pr)
		return;
	sl_log_set_before(NULL, NULL);
	erase(pr);
	for (i = 0; i < pr->n; i++)
		free(pr->l[i].proc);
	free(pr->l);
	pthread_mutex_destroy(&pr->mu);
	free(pr);
}

static struct line *find(struct sl_progress *pr, const char *proc)
{
	size_t i;

	for (i = 0; i < pr->n; i++)
		if (!strcmp(pr->l[i].proc, proc))
			return &pr->l[i];
	return NULL;
}

void sl_progress_update(struct sl_progress *pr, const char *proc, int64_t done, int64_t total,
                        uint64_t now_ms)
{
	struct line *l;

	if (!pr)
		return;
	pthread_mutex_lock(&pr->mu);
	if (!(l = find(pr, proc))) {
		char *name = strdup(proc);
		if (pr->n == pr->cap) {
			size_t cap = pr->cap ? pr->cap * 2 : 4;
			struct line *g = name ? realloc(pr->l, cap * sizeof(*g)) : NULL;
			if (g) {
				pr->l = g;
				pr->cap = cap;
			}
		}
		if (!name || pr->n == pr->cap) {
			free(name);
			pthread_mutex_unlock(&pr->mu);
			return;
		}
		l = &pr->l[pr->n++];
		l->proc = name;
		l->start_ms = now_ms;
		if (!pr->have_drawn) { /* the first drawing waits a tenth of a second */
			pr->last_draw = now_ms;
			pr->have_drawn = 1;
		}
	}
	l->done = done;
	l->total = total;
	l->now_ms = now_ms;
	if (now_ms - pr->last_draw >= pr->redraw_ms) {
		draw(pr);
		pr->last_draw = now_ms;
	}
	pthread_mutex_unlock(&pr->mu);
}

void sl_progress_done(struct sl_progress *pr, const char *proc)
{
	struct line *l;

	if (!pr)
		return;
	pthread_mutex_lock(&pr->mu);
	if ((l = find(pr, proc))) {
		free(l->proc);
		*l = pr->l[--pr->n];
		if (pr->tty)
			draw(pr);
	}
	pthread_mutex_unlock(&pr->mu);
}
