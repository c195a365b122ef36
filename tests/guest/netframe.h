/* SPDX-License-Identifier: MIT */
/* The test frames of the virtio-net KVM tests, computed the same way by
 * the guest (tests/guest/net.c) and the host test
 * (tests/kvm/test_guest_net.c): frame @seq of a stream seeded @seed has a
 * size and content both sides derive, so each side checks every frame it
 * receives, and its place in the order, without a copy of what was sent.
 *
 * Layout: Ethernet header (dst, src, ethertype NETF_ETHERTYPE, the IEEE
 * "local experimental" type, so a real stack ignores it), le32 seed, le32
 * seq, then kit_pattern-style bytes from netf_key(seed, seq). Sizes are
 * 60..1514 bytes; with @jumbo, every 61st frame is NETF_JUMBO bytes. */
#ifndef VMKIT_GUEST_NETFRAME_H
#define VMKIT_GUEST_NETFRAME_H

#include <stdbool.h>

#include "kit_abi.h"

#define NETF_ETHERTYPE 0x88b5u
#define NETF_HDR 22u
#define NETF_MIN 60u
#define NETF_MAX 1514u
#define NETF_JUMBO 9014u

enum netf_error { NETF_OK = 0, NETF_BAD_TYPE, NETF_BAD_SEED, NETF_BAD_SEQ, NETF_BAD_SIZE,
		  NETF_BAD_DATA };

static inline uint32_t netf_key(uint32_t seed, uint32_t seq)
{
	uint32_t x = (seed ^ (seq * 2654435761u)) | 1u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

static inline uint32_t netf_size(uint32_t seed, uint32_t seq, bool jumbo)
{
	if (jumbo && seq % 61u == 7u)
		return NETF_JUMBO;
	return NETF_MIN + netf_key(seed, seq) % (NETF_MAX - NETF_MIN + 1u);
}

static inline void netf_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t netf_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Write frame @seq (netf_size bytes) into @f. */
static inline void netf_fill(uint8_t *f, uint32_t len, uint32_t seed, uint32_t seq,
			     const uint8_t dst[6], const uint8_t src[6])
{
	uint32_t i;

	for (i = 0; i < 6; i++) {
		f[i] = dst[i];
		f[6 + i] = src[i];
	}
	f[12] = (uint8_t)(NETF_ETHERTYPE >> 8);
	f[13] = (uint8_t)NETF_ETHERTYPE;
	netf_put32(f + 14, seed);
	netf_put32(f + 18, seq);
	kit_pattern(f + NETF_HDR, len - NETF_HDR, netf_key(seed, seq));
}

/* Is @f (@len bytes) a test frame at all (our ethertype)? */
static inline bool netf_is_test(const uint8_t *f, uint32_t len)
{
	return len >= NETF_HDR && f[12] == (uint8_t)(NETF_ETHERTYPE >> 8) &&
	       f[13] == (uint8_t)NETF_ETHERTYPE;
}

/* Check that @f is frame @seq of stream @seed, whole and unchanged. */
static inline enum netf_error netf_check(const uint8_t *f, uint32_t len, uint32_t seed,
					 uint32_t seq, bool jumbo)
{
	uint32_t x, i;

	if (!netf_is_test(f, len))
		return NETF_BAD_TYPE;
	if (netf_get32(f + 14) != seed)
		return NETF_BAD_SEED;
	if (netf_get32(f + 18) != seq)
		return NETF_BAD_SEQ;
	if (len != netf_size(seed, seq, jumbo))
		return NETF_BAD_SIZE;
	x = netf_key(seed, seq);
	for (i = NETF_HDR; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		if (f[i] != (uint8_t)(x >> 24))
			return NETF_BAD_DATA;
	}
	return NETF_OK;
}

#endif
