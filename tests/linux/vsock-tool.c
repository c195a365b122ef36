/* SPDX-License-Identifier: MIT */
/* vsock-tool: AF_VSOCK stream sockets from the test initramfs's shell
 * (busybox has none). Built static by tests/linux/mkinitramfs.
 *
 *   vsock-tool connect CID PORT   connect; stdin goes to the socket (then
 *                                 shutdown(SHUT_WR)), the socket to stdout
 *                                 until EOF
 *   vsock-tool listen PORT        accept one connection; like connect from
 *                                 then on; prints "listening" on stderr
 *                                 once it listens
 * Exit status 0 when both directions ended cleanly, 1 otherwise (with a
 * line on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int die(const char *what)
{
	fprintf(stderr, "vsock-tool: %s: %s\n", what, strerror(errno));
	return 1;
}

static unsigned parse(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);

	if (!*s || *end || v > 0xffffffffu) {
		fprintf(stderr, "vsock-tool: '%s' is not a number\n", s);
		exit(2);
	}
	return (unsigned)v;
}

/* Copy stdin to @fd and @fd to stdout at once (a peer may wait for our
 * data before it sends, or the other way round). */
static int pump(int fd)
{
	static char buf[65536];
	bool in_open = true, out_open = true;

	while (out_open) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = 0, .events = in_open ? POLLIN : 0 } };

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return die("poll");
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(0, buf, sizeof(buf));
			if (n < 0)
				return die("read stdin");
			if (n == 0) {
				in_open = false;
				if (shutdown(fd, SHUT_WR) < 0)
					return die("shutdown");
			}
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(fd, buf + off, (size_t)(n - off));
				if (w < 0)
					return die("write socket");
				off += w;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n < 0)
				return die("read socket");
			if (n == 0)
				out_open = false;
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(1, buf + off, (size_t)(n - off));
				if (w < 0)
					return die("write stdout");
				off += w;
			}
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK };
	int fd, c;

	if (argc == 4 && !strcmp(argv[1], "connect")) {
		a.svm_cid = parse(argv[2]);
		a.svm_port = parse(argv[3]);
		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return die("socket");
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			return die("connect");
		return pump(fd);
	}
	if (argc == 3 && !strcmp(argv[1], "listen")) {
		a.svm_cid = VMADDR_CID_ANY;
		a.svm_port = parse(argv[2]);
		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return die("socket");
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0)
			return die("bind/listen");
		fprintf(stderr, "listening\n");
		c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			return die("accept");
		close(fd);
		return pump(c);
	}
	fprintf(stderr, "usage: vsock-tool connect CID PORT | listen PORT\n");
	return 2;
}
