/* SPDX-License-Identifier: MIT */
/* The I/O thread's event loop: callbacks fire for ready fds, deletion
 * inside a callback drops events already fetched for that fd, and stop
 * works from another thread. */
#include <criterion/criterion.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop/loop.h"

struct counter {
	struct vmkit_loop *loop;
	int fired;
	int other_fd;     /* deleted by the first callback */
	bool stop_after;
};

static void on_ready(void *opaque, int fd, uint32_t events)
{
	struct counter *c = opaque;
	uint64_t v;

	cr_assert(events & EPOLLIN);
	cr_assert_eq(read(fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	c->fired++;
	cr_assert(vmkit__loop_on_thread(c->loop));
	if (c->other_fd >= 0) {
		cr_assert_eq(vmkit__loop_del(c->loop, c->other_fd), 0);
		c->other_fd = -1;
	}
	if (c->stop_after)
		vmkit__loop_stop(c->loop);
}

Test(loop, fires_and_deletes_within_a_batch)
{
	struct vmkit_loop *l;
	struct counter a = { 0 }, b = { 0 };
	int fa = eventfd(1, EFD_NONBLOCK), fb = eventfd(1, EFD_NONBLOCK);
	uint64_t one = 1;

	cr_assert_eq(vmkit__loop_new(&l), 0);
	a.loop = b.loop = l;
	a.other_fd = fb;   /* whichever runs first deletes the other */
	b.other_fd = fa;
	a.stop_after = b.stop_after = true;
	cr_assert_eq(vmkit__loop_add(l, fa, EPOLLIN, on_ready, &a), 0);
	cr_assert_eq(vmkit__loop_add(l, fb, EPOLLIN, on_ready, &b), 0);
	cr_assert_eq(vmkit__loop_add(l, fa, EPOLLIN, on_ready, &a), -EEXIST);
	cr_assert_eq(vmkit__loop_run(l), 0);
	cr_assert_eq(a.fired + b.fired, 1, "the deleted fd's pending event must be dropped");
	cr_assert_not(vmkit__loop_on_thread(l));
	/* the survivor keeps working; the deleted one can be added again */
	cr_assert_eq(write(fa, &one, 8), 8);
	cr_assert_eq(write(fb, &one, 8), 8);
	if (a.fired) {
		cr_assert_eq(vmkit__loop_add(l, fb, EPOLLIN, on_ready, &b), 0);
	} else {
		cr_assert_eq(vmkit__loop_add(l, fa, EPOLLIN, on_ready, &a), 0);
	}
	a.stop_after = b.stop_after = false;
	a.other_fd = b.other_fd = -1;
	while (a.fired + b.fired < 3) {
		struct counter s = { .loop = l, .stop_after = true, .other_fd = -1 };
		int fs = eventfd(1, EFD_NONBLOCK);
		cr_assert_eq(vmkit__loop_add(l, fs, EPOLLIN, on_ready, &s), 0);
		cr_assert_eq(vmkit__loop_run(l), 0);
		vmkit__loop_del(l, fs);
		close(fs);
	}
	cr_assert_eq(a.fired + b.fired, 3);
	cr_assert_eq(vmkit__loop_del(l, 12345), -ENOENT);
	vmkit__loop_free(l);
	close(fa);
	close(fb);
}

static void *stopper(void *arg)
{
	usleep(20000);
	vmkit__loop_stop(arg);
	return NULL;
}

Test(loop, stop_from_another_thread)
{
	struct vmkit_loop *l;
	pthread_t t;

	cr_assert_eq(vmkit__loop_new(&l), 0);
	cr_assert_eq(pthread_create(&t, NULL, stopper, l), 0);
	cr_assert_eq(vmkit__loop_run(l), 0, "returns once stopped, with nothing watched");
	pthread_join(t, NULL);
	/* a stop before run makes the next run return at once */
	vmkit__loop_stop(l);
	cr_assert_eq(vmkit__loop_run(l), 0);
	vmkit__loop_free(l);
}

Test(loop, many_registrations)
{
	struct vmkit_loop *l;
	struct counter c = { .other_fd = -1 };
	int fds[100];

	cr_assert_eq(vmkit__loop_new(&l), 0);
	c.loop = l;
	for (int i = 0; i < 100; i++) {
		fds[i] = eventfd(1, EFD_NONBLOCK);
		cr_assert_eq(vmkit__loop_add(l, fds[i], EPOLLIN, on_ready, &c), 0);
	}
	while (c.fired < 100) {
		struct counter s = { .loop = l, .stop_after = true, .other_fd = -1 };
		int fs = eventfd(0, EFD_NONBLOCK);
		uint64_t one = 1;
		cr_assert_eq(vmkit__loop_add(l, fs, EPOLLIN, on_ready, &s), 0);
		cr_assert_eq(write(fs, &one, 8), 8);
		cr_assert_eq(vmkit__loop_run(l), 0);
		vmkit__loop_del(l, fs);
		close(fs);
	}
	cr_assert_eq(c.fired, 100, "each fd fired exactly once");
	for (int i = 0; i < 100; i++)
		close(fds[i]);
	vmkit__loop_free(l);
}
