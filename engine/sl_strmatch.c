/* sl_strmatch.c - Lua 5.4's pattern matching (lstrlib.c) with a step budget.
 *
 * The matcher below follows the one in Lua 5.4's lstrlib.c: the same algorithm
 * (recursive backtracking with goto-based tail calls, a depth limit of 200), the
 * same semantics and error messages, so scripts see no difference. What is added:
 * every step of the matcher, every character of a repetition scan, of a %b scan and
 * every probe of a plain search counts; each STEP_CHUNK steps sl_sandbox_tick()
 * checks the processor's budgets and raises its budget error when one is exceeded.
 *
 * Lua's license covers the parts of this file that follow lstrlib.c:
 *
 * Copyright (C) 1994-2022 Lua.org, PUC-Rio.
 *
 * Permission is hereby granted, free of charge, to any person obtaining a copy of
 * this software and associated documentation files (the "Software"), to deal in the
 * Software without restriction, including without limitation the rights to use,
 * copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the
 * Software, and to permit persons to whom the Software is furnished to do so,
 * subject to the following conditions:
 *
 * The above copyright notice and this permission notice shall be included in all
 * copies or substantial portions of the Software.
 *
 * THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 * IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
 * FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
 * COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN
 * AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
 * WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
 */
#include "sl_strmatch.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>

#include "sl_sandbox.h"

#ifndef LUA_MAXCAPTURES
#define LUA_MAXCAPTURES 32 /* as lstrlib.c */
#endif
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define MAXMATCHDEPTH 200 /* recursion of match() (lstrlib's MAXCCALLS) */
#define L_ESC '%'
#define SPECIALS "^$*+?.([%-"
#define STEP_CHUNK 256u /* steps between two budget checks */

#define uchar(c) ((unsigned char)(c))

struct mstate {
	const char *src_init; /* start of the subject */
	const char *src_end;  /* its end */
	const char *p_end;    /* end of the pattern */
	lua_State *L;
	int matchdepth;      /* remaining recursion */
	unsigned steps;      /* steps since the last budget check */
	unsigned char level; /* captures, finished or not */
	struct {
		const char *init;
		ptrdiff_t len;
	} capture[LUA_MAXCAPTURES];
};

/* Counts n steps; every STEP_CHUNK of them the budgets are checked. [-0, +0, v] */
static void step(struct mstate *ms, unsigned n)
{
	ms->steps += n;
	if (ms->steps >= STEP_CHUNK) {
		sl_sandbox_tick(ms->L, ms->steps);
		ms->steps = 0;
	}
}

static const char *match(struct mstate *ms, const char *s, const char *p);

static int check_capture(struct mstate *ms, int l)
{
	l -= '1';
	if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
		return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
	return l;
}

static int capture_to_close(struct mstate *ms)
{
	int level = ms->level;

	for (level--; level >= 0; level--)
		if (ms->capture[level].len == CAP_UNFINISHED)
			return level;
	return luaL_error(ms->L, "invalid pattern capture");
}

static const char *class_end(struct mstate *ms, const char *p)
{
	switch (*p++) {
	case L_ESC:
		if (p == ms->p_end)
			luaL_error(ms->L, "malformed pattern (ends with '%%')");
		return p + 1;
	case '[':
		if (*p == '^')
			p++;
		do { /* look for a ']' */
			if (p == ms->p_end)
				luaL_error(ms->L, "malformed pattern (missing ']')");
			if (*(p++) == L_ESC && p < ms->p_end)
				p++; /* skip escapes (e.g. '%]') */
		} while (*p != ']');
		return p + 1;
	default:
		return p;
	}
}

static int match_class(int c, int cl)
{
	int res;

	switch (tolower(cl)) {
	case 'a':
		res = isalpha(c);
		break;
	case 'c':
		res = iscntrl(c);
		break;
	case 'd':
		res = isdigit(c);
		break;
	case 'g':
		res = isgraph(c);
		break;
	case 'l':
		res = islower(c);
		break;
	case 'p':
		res = ispunct(c);
		break;
	case 's':
		res = isspace(c);
		break;
	case 'u':
		res = isupper(c);
		break;
	case 'w':
		res = isalnum(c);
		break;
	case 'x':
		res = isxdigit(c);
		break;
	case 'z':
		res = (c == 0); /* deprecated in Lua 5.2, still a class in 5.4 */
		break;
	default:
		return cl == c;
	}
	if (isupper(cl))
		res = !res;
	return res;
}

static int match_bracket_class(int c, const char *p, const char *ec)
{
	int sig = 1;

	if (*(p + 1) == '^') {
		sig = 0;
		p++; /* skip the '^' */
	}
	while (++p < ec) {
		if (*p == L_ESC) {
			p++;
			if (match_class(c, uchar(*p)))
				return sig;
		} else if (*(p + 1) == '-' && p + 2 < ec) {
			p += 2;
			if (uchar(*(p - 2)) <= c && c <= uchar(*p))
				return sig;
		} else if (uchar(*p) == c) {
			return sig;
		}
	}
	return !sig;
}

static int single_match(struct mstate *ms, const char *s, const char *p, const char *ep)
{
	int c;

	if (s >= ms->src_end)
		return 0;
	c = uchar(*s);
	switch (*p) {
	case '.':
		return 1; /* matches any char */
	case L_ESC:
		return match_class(c, uchar(*(p + 1)));
	case '[':
		return match_bracket_class(c, p, ep - 1);
	default:
		return uchar(*p) == c;
	}
}

static const char *match_balance(struct mstate *ms, const char *s, const char *p)
{
	int b, e, cont = 1;

	if (p >= ms->p_end - 1)
		luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
	if (*s != *p) /* at the end *s is the string's terminating '\0' */
		return NULL;
	b = *p;
	e = *(p + 1);
	while (++s < ms->src_end) {
		step(ms, 1);
		if (*s == e) {
			if (--cont == 0)
				return s + 1;
		} else if (*s == b) {
			cont++;
		}
	}
	return NULL; /* string ends out of balance */
}

static const char *max_expand(struct mstate *ms, const char *s, const char *p, const char *ep)
{
	ptrdiff_t i = 0; /* counts maximum expand for item */

	while (single_match(ms, s + i, p, ep)) {
		step(ms, 1);
		i++;
	}
	/* keeps trying to match with the maximum repetitions */
	while (i >= 0) {
		const char *res = match(ms, s + i, ep + 1);
		if (res)
			return res;
		i--; /* else didn't match; reduce 1 repetition to try again */
	}
	return NULL;
}

static const char *min_expand(struct mstate *ms, const char *s, const char *p, const char *ep)
{
	for (;;) {
		const char *res = match(ms, s, ep + 1);
		if (res != NULL)
			return res;
		else if (single_match(ms, s, p, ep))
			s++; /* try with one more repetition */
		else
			return NULL;
	}
}

static const char *start_capture(struct mstate *ms, const char *s, const char *p, int what)
{
	const char *res;
	int level = ms->level;

	if (level >= LUA_MAXCAPTURES)
		luaL_error(ms->L, "too many captures");
	ms->capture[level].init = s;
	ms->capture[level].len = what;
	ms->level = (unsigned char)(level + 1);
	if ((res = match(ms, s, p)) == NULL) /* match failed? */
		ms->level--;                 /* undo capture */
	return res;
}

static const char *end_capture(struct mstate *ms, const char *s, const char *p)
{
	int l = capture_to_close(ms);
	const char *res;

	ms->capture[l].len = s - ms->capture[l].init; /* close capture */
	if ((res = match(ms, s, p)) == NULL)          /* match failed? */
		ms->capture[l].len = CAP_UNFINISHED;  /* undo capture */
	return res;
}

static const char *match_capture(struct mstate *ms, const char *s, int l)
{
	size_t len;

	l = check_capture(ms, l);
	len = (size_t)ms->capture[l].len; /* a position capture's is huge: no match */
	if ((size_t)(ms->src_end - s) < len)
		return NULL;
	step(ms, (unsigned)(len / 64)); /* the comparison below, only when it runs */
	if (memcmp(ms->capture[l].init, s, len) == 0)
		return s + len;
	return NULL;
}

/* %b, %f and back references: the escapes that are not a character class.
 * Returns 1 to go on matching at (*s, *p), 0 when done (*s is the result). */
static int match_escape(struct mstate *ms, const char **s, const char **p)
{
	const char *ep;
	char previous;

	switch (*(*p + 1)) {
	case 'b': /* balanced string? */
		*s = match_balance(ms, *s, *p + 2);
		if (*s != NULL) {
			*p += 4;
			return 1;
		}
		return 0;
	case 'f': /* frontier? */
		*p += 2;
		if (**p != '[')
			luaL_error(ms->L, "missing '[' after '%%f' in pattern");
		ep = class_end(ms, *p); /* points to what is next */
		previous = (*s == ms->src_init) ? '\0' : *(*s - 1);
		if (!match_bracket_class(uchar(previous), *p, ep - 1) &&
		    match_bracket_class(uchar(**s), *p, ep - 1)) {
			*p = ep;
			return 1;
		}
		*s = NULL; /* match failed */
		return 0;
	default: /* capture results (%0-%9) */
		*s = match_capture(ms, *s, uchar(*(*p + 1)));
		if (*s != NULL) {
			*p += 2;
			return 1;
		}
		return 0;
	}
}

/* A single class with an optional suffix (*, +, -, ?). Returns 1 to go on matching
 * at (*s, *p), 0 when done (*s is the result). */
static int match_class_item(struct mstate *ms, const char **s, const char **p)
{
	const char *ep = class_end(ms, *p); /* points to optional suffix */
	const char *res;

	if (!single_match(ms, *s, *p, ep)) {                  /* does not match at least once? */
		if (*ep == '*' || *ep == '?' || *ep == '-') { /* accept empty? */
			*p = ep + 1;
			return 1;
		}
		*s = NULL; /* '+' or no suffix: fail */
		return 0;
	}
	switch (*ep) { /* matched once: handle the optional suffix */
	case '?':
		if ((res = match(ms, *s + 1, ep + 1)) != NULL) {
			*s = res;
			return 0;
		}
		*p = ep + 1;
		return 1;
	case '+': /* 1 or more repetitions: 1 match already done */
		*s = max_expand(ms, *s + 1, *p, ep);
		return 0;
	case '*': /* 0 or more repetitions */
		*s = max_expand(ms, *s, *p, ep);
		return 0;
	case '-': /* 0 or more repetitions (minimum) */
		*s = min_expand(ms, *s, *p, ep);
		return 0;
	default: /* no suffix */
		(*s)++;
		*p = ep;
		return 1;
	}
}

static const char *match(struct mstate *ms, const char *s, const char *p)
{
	int more = 1;

	if (ms->matchdepth-- == 0)
		luaL_error(ms->L, "pattern too complex");
	while (more && p != ms->p_end) { /* a loop instead of tail calls */
		step(ms, 1);
		switch (*p) {
		case '(':                    /* start capture */
			if (*(p + 1) == ')') /* position capture? */
				s = start_capture(ms, s, p + 2, CAP_POSITION);
			else
				s = start_capture(ms, s, p + 1, CAP_UNFINISHED);
			more = 0;
			break;
		case ')': /* end capture */
			s = end_capture(ms, s, p + 1);
			more = 0;
			break;
		case '$':
			if (p + 1 != ms->p_end) { /* not the last char: a plain '$' */
				more = match_class_item(ms, &s, &p);
				break;
			}
			s = (s == ms->src_end) ? s : NULL; /* check end of string */
			more = 0;
			break;
		case L_ESC:
			switch (*(p + 1)) {
			case 'b':
			case 'f':
			case '0':
			case '1':
			case '2':
			case '3':
			case '4':
			case '5':
			case '6':
			case '7':
			case '8':
			case '9':
				more = match_escape(ms, &s, &p);
				break;
			default:
				more = match_class_item(ms, &s, &p);
			}
			break;
		default:
			more = match_class_item(ms, &s, &p);
		}
	}
	ms->matchdepth++;
	return s;
}

/* A plain search of s2 in s1, counting its probes. */
static const char *mem_find(struct mstate *ms, const char *s1, size_t l1, const char *s2, size_t l2)
{
	const char *init;

	if (l2 == 0)
		return s1; /* empty strings are everywhere */
	if (l2 > l1)
		return NULL; /* avoids a negative 'l1' */
	l2--;                /* 1st char will be checked by 'memchr' */
	l1 = l1 - l2;        /* 's2' cannot be found after that */
	while (l1 > 0 && (init = memchr(s1, *s2, l1)) != NULL) {
		step(ms, 1 + (unsigned)((size_t)(init - s1) / 64 + l2 / 64));
		init++; /* 1st char is already checked */
		if (memcmp(init, s2 + 1, l2) == 0)
			return init - 1;
		l1 -= (size_t)(init - s1); /* correct 'l1' and 's1' to try again */
		s1 = init;
	}
	return NULL;
}

static size_t get_onecapture(struct mstate *ms, int i, const char *s, const char *e,
                             const char **cap)
{
	ptrdiff_t capl;

	if (i >= ms->level) {
		if (i != 0)
			luaL_error(ms->L, "invalid capture index %%%d", i + 1);
		*cap = s;
		return (size_t)(e - s);
	}
	capl = ms->capture[i].len;
	*cap = ms->capture[i].init;
	if (capl == CAP_UNFINISHED)
		luaL_error(ms->L, "unfinished capture");
	else if (capl == CAP_POSITION)
		lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
	return (size_t)capl;
}

static void push_onecapture(struct mstate *ms, int i, const char *s, const char *e)
{
	const char *cap;
	ptrdiff_t l = (ptrdiff_t)get_onecapture(ms, i, s, e, &cap);

	if (l != CAP_POSITION)
		lua_pushlstring(ms->L, cap, (size_t)l);
	/* else the position was already pushed */
}

static int push_captures(struct mstate *ms, const char *s, const char *e)
{
	int i, nlevels = (ms->level == 0 && s) ? 1 : ms->level;

	luaL_checkstack(ms->L, nlevels, "too many captures");
	for (i = 0; i < nlevels; i++)
		push_onecapture(ms, i, s, e);
	return nlevels; /* number of strings pushed */
}

/* Whether the pattern has no special character (it may hold '\0's). */
static int no_specials(const char *p, size_t l)
{
	size_t upto = 0;

	do {
		if (strpbrk(p + upto, SPECIALS))
			return 0;             /* pattern has a special character */
		upto += strlen(p + upto) + 1; /* may have more after \0 */
	} while (upto <= l);
	return 1;
}

static void prep_state(struct mstate *ms, lua_State *L, const char *s, size_t ls, const char *p,
                       size_t lp)
{
	ms->L = L;
	ms->matchdepth = MAXMATCHDEPTH;
	ms->steps = 0;
	ms->src_init = s;
	ms->src_end = s + ls;
	ms->p_end = p + lp;
}

static void reprep_state(struct mstate *ms)
{
	ms->level = 0;
}

/* Translates a relative initial position (negative counts from the end) into an
 * absolute one in [1, inf). */
static size_t posrelat_init(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	else if (pos == 0)
		return 1;
	else if (pos < -(lua_Integer)len) /* inverted comparison */
		return 1;                 /* clip to 1 */
	return len + (size_t)pos + 1;
}

static int find_aux(lua_State *L, int find)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = posrelat_init(luaL_optinteger(L, 3, 1), ls) - 1;
	struct mstate ms;

	if (init > ls) {        /* start after string's end? */
		lua_pushnil(L); /* cannot find anything */
		return 1;
	}
	prep_state(&ms, L, s, ls, p, lp);
	if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) { /* a plain search */
		const char *s2 = mem_find(&ms, s + init, ls - init, p, lp);
		if (s2) {
			lua_pushinteger(L, (s2 - s) + 1);
			lua_pushinteger(L, (lua_Integer)((size_t)(s2 - s) + lp));
			return 2;
		}
	} else {
		const char *s1 = s + init;
		int anchor = (*p == '^');
		if (anchor) {
			p++, lp--; /* skip anchor character */
			prep_state(&ms, L, s, ls, p, lp);
		}
		do {
			const char *res;
			reprep_state(&ms);
			if ((res = match(&ms, s1, p)) != NULL) {
				if (find) {
					lua_pushinteger(L, (s1 - s) + 1); /* start */
					lua_pushinteger(L, res - s);      /* end */
					return push_captures(&ms, NULL, 0) + 2;
				}
				return push_captures(&ms, s1, res);
			}
		} while (s1++ < ms.src_end && !anchor);
	}
	lua_pushnil(L); /* not found */
	return 1;
}

int sl_strmatch_find(lua_State *L)
{
	return find_aux(L, 1);
}

int sl_strmatch_match(lua_State *L)
{
	return find_aux(L, 0);
}

/* State of a gmatch iterator, in a userdata upvalue of its closure. */
struct gmstate {
	const char *src;       /* current position */
	const char *p;         /* pattern */
	const char *lastmatch; /* end of last match */
	struct mstate ms;
};

static int gmatch_aux(lua_State *L)
{
	struct gmstate *gm = lua_touserdata(L, lua_upvalueindex(3));
	const char *src, *e;

	gm->ms.L = L;
	for (src = gm->src; src <= gm->ms.src_end; src++) {
		reprep_state(&gm->ms);
		if ((e = match(&gm->ms, src, gm->p)) != NULL && e != gm->lastmatch) {
			gm->src = gm->lastmatch = e;
			return push_captures(&gm->ms, src, e);
		}
	}
	return 0; /* not found */
}

int sl_strmatch_gmatch(lua_State *L)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = posrelat_init(luaL_optinteger(L, 3, 1), ls) - 1;
	struct gmstate *gm;

	lua_settop(L, 2); /* keep the strings on the closure so they stay alive */
	gm = lua_newuserdatauv(L, sizeof(*gm), 0);
	if (init > ls)         /* start after string's end? */
		init = ls + 1; /* avoid overflows in 's + init' */
	prep_state(&gm->ms, L, s, ls, p, lp);
	gm->src = s + init;
	gm->p = p;
	gm->lastmatch = NULL;
	lua_pushcclosure(L, gmatch_aux, 3);
	return 1;
}

static void add_s(struct mstate *ms, luaL_Buffer *b, const char *s, const char *e)
{
	size_t l;
	lua_State *L = ms->L;
	const char *news = lua_tolstring(L, 3, &l), *p;

	while ((p = memchr(news, L_ESC, l)) != NULL) {
		luaL_addlstring(b, news, (size_t)(p - news));
		p++;               /* skip ESC */
		if (*p == L_ESC) { /* '%%' */
			luaL_addchar(b, *p);
		} else if (*p == '0') { /* '%0' */
			luaL_addlstring(b, s, (size_t)(e - s));
		} else if (isdigit(uchar(*p))) { /* '%n' */
			const char *cap;
			ptrdiff_t resl = (ptrdiff_t)get_onecapture(ms, *p - '1', s, e, &cap);
			if (resl == CAP_POSITION)
				luaL_addvalue(b); /* add position to accumulated result */
			else
				luaL_addlstring(b, cap, (size_t)resl);
		} else {
			luaL_error(L, "invalid use of '%c' in replacement string", L_ESC);
		}
		l -= (size_t)(p + 1 - news);
		news = p + 1;
	}
	luaL_addlstring(b, news, l);
}

/* Adds the replacement of one match; returns whether it changed the text. */
static int add_value(struct mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr)
{
	lua_State *L = ms->L;

	switch (tr) {
	case LUA_TFUNCTION: { /* call the function */
		int n;
		lua_pushvalue(L, 3);
		n = push_captures(ms, s, e); /* all captures as arguments */
		lua_call(L, n, 1);
		break;
	}
	case LUA_TTABLE:                      /* index the table */
		push_onecapture(ms, 0, s, e); /* first capture is the index */
		lua_gettable(L, 3);
		break;
	default: /* LUA_TNUMBER or LUA_TSTRING */
		add_s(ms, b, s, e);
		return 1;
	}
	if (!lua_toboolean(L, -1)) { /* nil or false? */
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s)); /* keep original text */
		return 0;
	} else if (!lua_isstring(L, -1)) {
		return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	}
	luaL_addvalue(b); /* add result to accumulator */
	return 1;
}

int sl_strmatch_gsub(lua_State *L)
{
	size_t srcl, lp;
	const char *src = luaL_checklstring(L, 1, &srcl); /* subject */
	const char *p = luaL_checklstring(L, 2, &lp);     /* pattern */
	const char *lastmatch = NULL, *e;
	int tr = lua_type(L, 3); /* replacement type */
	lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
	int anchor = (*p == '^'), changed = 0;
	lua_Integer n = 0;
	struct mstate ms;
	luaL_Buffer b;

	luaL_argexpected(L,
	                 tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
	                         tr == LUA_TTABLE,
	                 3, "string/function/table");
	luaL_buffinit(L, &b);
	if (anchor)
		p++, lp--; /* skip anchor character */
	prep_state(&ms, L, src, srcl, p, lp);
	while (n < max_s) {
		reprep_state(&ms);
		if ((e = match(&ms, src, p)) != NULL && e != lastmatch) { /* match? */
			n++;
			changed = add_value(&ms, &b, src, e, tr) | changed;
			src = lastmatch = e;
		} else if (src < ms.src_end) { /* otherwise, skip one character */
			luaL_addchar(&b, *src++);
		} else {
			break; /* end of subject */
		}
		if (anchor)
			break;
	}
	if (!changed) {              /* no changes? */
		lua_pushvalue(L, 1); /* return original string */
	} else {
		luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
		luaL_pushresult(&b);
	}
	lua_pushinteger(L, n); /* number of substitutions */
	return 2;
}
