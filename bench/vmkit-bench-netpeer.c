/* SPDX-License-Identifier: MIT */
/* vmkit-bench-netpeer: the far end of a virtio-net backend for
 * bench/virtio (part "net"), the same program for vmkit and for QEMU.
 *
 *   vmkit-bench-netpeer sink KIND WHERE N        count frames until N test
 *                                                frames arrived
 *   vmkit-bench-netpeer source KIND WHERE N SIZE send N test frames of
 *                                                SIZE bytes as fast as the
 *                                                socket takes them
 * KIND / WHERE:
 *   stream PATH   listen on a UNIX stream socket, take one connection;
 *                 frames carry a 4-byte big-endian length (QEMU's
 *                 -netdev stream, vmkit's stream backend)
 *   dgram PATH    bind a UNIX datagram socket; a source answers the
 *                 address the first datagram came from
 *   packet IFNAME an AF_PACKET socket on a tap in this network namespace
 * A source (stream, dgram) sends nothing before the guest's first frame
 * arrived (the guest sends one once its receive queue is set up): frames
 * that reach a VMM before its driver is ready are not the VMM's to keep
 * (QEMU drops them; vmkit holds them).
 * Test frames have the ethertype 0x88b5 (tests/guest/netframe.h); other
 * frames are ignored. Prints "netpeer ready" once it listens, "netpeer
 * done frames=N bytes=B" at the end; a source then waits for SIGTERM so
 * that its socket stays open while the guest drains. Exit status 0, or 1
 * with a line on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ETHERTYPE 0x88b5u
#define MAX_FRAME 65550u

static int die(const char *what)
{
	fprintf(stderr, "vmkit-bench-netpeer: %s: %s\n", what, strerror(errno));
	return 1;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static bool is_test(const uint8_t *f, size_t len)
{
	return len >= 14 && f[12] == (ETHERTYPE >> 8) && f[13] == (ETHERTYPE & 0xff);
}

int main(int argc, char **argv)
{
	static uint8_t f[4 + MAX_FRAME];
	struct sockaddr_un a = { .sun_family = AF_UNIX }, peer;
	socklen_t peer_len = sizeof(peer);
	unsigned long long n, size = 0, got = 0, bytes = 0;
	bool source, stream, packet;
	int fd, c = -1;

	if (argc < 5 || (strcmp(argv[1], "sink") && strcmp(argv[1], "source")) ||
	    (!strcmp(argv[1], "source") && argc != 6)) {
		fprintf(stderr, "usage: vmkit-bench-netpeer sink|source stream|dgram|packet WHERE N "
				"[SIZE]\n");
		return 2;
	}
	source = !strcmp(argv[1], "source");
	stream = !strcmp(argv[2], "stream");
	packet = !strcmp(argv[2], "packet");
	n = strtoull(argv[4], NULL, 10);
	if (source) {
		size = strtoull(argv[5], NULL, 10);
		if (size < 14 || size > MAX_FRAME) {
			fprintf(stderr, "vmkit-bench-netpeer: SIZE %llu not in 14..%u\n", size, MAX_FRAME);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (packet) {
		struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE) };
		int big = 16 << 20;

		fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE));
		if (fd < 0)
			return die("AF_PACKET socket");
		sll.sll_ifindex = (int)if_nametoindex(argv[3]);
		if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
			return die(argv[3]);
		setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
		c = fd;
		printf("netpeer ready\n");
		fflush(stdout);
	} else {
		fd = socket(AF_UNIX, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return die("socket");
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[3]);
		unlink(a.sun_path);
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || (stream && listen(fd, 1) < 0))
			return die(argv[3]);
		printf("netpeer ready\n");
		fflush(stdout);
		if (stream) {
			c = accept(fd, NULL, NULL);
			if (c < 0)
				return die("accept");
		} else {
			c = fd;
		}
	}
	if (!source) {
		while (got < n) {
			size_t len;

			if (stream) {
				if (read_all(c, f, 4) < 0)
					break;
				len = (size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3];
				if (len > MAX_FRAME || read_all(c, f, len) < 0)
					break;
			} else {
				ssize_t r = recv(c, f, MAX_FRAME, 0);
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0)
					break;
				len = (size_t)r;
			}
			if (is_test(f, len)) {
				got++;
				bytes += len;
			}
		}
	} else {
		uint8_t *fr = f + 4;

		memset(fr, 0xff, 6);
		memset(fr + 6, 0x02, 6);
		fr[12] = ETHERTYPE >> 8;
		fr[13] = ETHERTYPE & 0xff;
		for (size_t i = 14; i < size; i++)
			fr[i] = (uint8_t)i;
		f[0] = (uint8_t)(size >> 24), f[1] = (uint8_t)(size >> 16);
		f[2] = (uint8_t)(size >> 8), f[3] = (uint8_t)size;
		if (stream) {
			static uint8_t first[4 + MAX_FRAME];
			size_t len;

			if (read_all(c, first, 4) < 0)
				return die("the guest's first frame");
			len = (size_t)first[0] << 24 | (size_t)first[1] << 16 | (size_t)first[2] << 8 |
			      first[3];
			if (len > MAX_FRAME || read_all(c, first + 4, len) < 0)
				return die("the guest's first frame");
		} else if (!packet) {
			/* The guest's first frame also tells us where it is. */
			if (recvfrom(c, f + 4 + MAX_FRAME / 2, MAX_FRAME / 2, 0, (struct sockaddr *)&peer,
				     &peer_len) < 0)
				return die("recvfrom");
		}
		while (got < n) {
			int r;

			if (stream)
				r = write_all(c, f, 4 + size);
			else if (packet)
				r = send(c, fr, size, 0) == (ssize_t)size ? 0 : -1;
			else
				r = sendto(c, fr, size, 0, (struct sockaddr *)&peer, peer_len) ==
						    (ssize_t)size ? 0 : -1;
			if (r < 0) {
				if (errno == EINTR || errno == ENOBUFS)
					continue;
				return die("send");
			}
			got++;
			bytes += size;
		}
	}
	printf("netpeer done frames=%llu bytes=%llu\n", got, bytes);
	fflush(stdout);
	if (source)
		pause();
	return got == n ? 0 : 1;
}
