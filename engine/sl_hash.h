/* sl_hash.h - the engine's one hash: 64-bit FNV-1a, for hash tables and file digests.
 *
 * Not cryptographic. Incremental use: start from SL_HASH_INIT and feed bytes with
 * sl_hash_bytes(h, p, n); the result of one call is the seed of the next.
 */
#ifndef SL_HASH_H
#define SL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SL_HASH_INIT 1469598103934665603ull

/* Continues hash h over n bytes at p. */
static inline uint64_t sl_hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ c[i]) * 1099511628211ull;
	return h;
}

/* The hash of a NUL-terminated string. */
static inline uint64_t sl_hash_str(const char *s)
{
	uint64_t h = SL_HASH_INIT;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

#endif
