/* SPDX-License-Identifier: MIT */
/* The I/O thread's event loop (see loop.h). One epoll fd; each
 * registration is a slot in a table, and epoll carries the slot index and
 * a generation number, so an event for an fd deleted earlier in the same
 * batch is recognised and dropped. */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop/loop.h"

#define LOOP_MAX_EVENTS 32

struct loop_slot {
	int fd;           /* -1: free */
	uint32_t gen;
	vmkit_loop_fn fn;
	void *opaque;
};

struct vmkit_loop {
	int epfd;
	int stop_fd; /* eventfd */
	_Atomic bool stop;
	_Atomic pthread_t thread;
	_Atomic bool running;
	struct loop_slot *slots;
	size_t n_slots;
};

int vmkit__loop_new(struct vmkit_loop **out)
{
	struct vmkit_loop *l = calloc(1, sizeof(*l));
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };

	if (!l)
		return vmkit__err(-ENOMEM, "event loop: out of memory");
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->stop_fd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stop_fd, &ev) < 0) {
		int e = errno;
		if (l->epfd >= 0)
			close(l->epfd);
		if (l->stop_fd >= 0)
			close(l->stop_fd);
		free(l);
		return vmkit__err(-e, "event loop: %s", strerror(e));
	}
	*out = l;
	return 0;
}

void vmkit__loop_free(struct vmkit_loop *l)
{
	if (!l)
		return;
	close(l->epfd);
	close(l->stop_fd);
	free(l->slots);
	free(l);
}

static struct loop_slot *find(struct vmkit_loop *l, int fd)
{
	for (size_t i = 0; i < l->n_slots; i++)
		if (l->slots[i].fd == fd)
			return &l->slots[i];
	return NULL;
}

int vmkit__loop_add(struct vmkit_loop *l, int fd, uint32_t events, vmkit_loop_fn fn, void *opaque)
{
	struct loop_slot *s = NULL;
	struct epoll_event ev;

	if (fd < 0 || !fn)
		return vmkit__err(-EINVAL, "event loop: bad fd %d", fd);
	if (find(l, fd))
		return vmkit__err(-EEXIST, "event loop: fd %d already watched", fd);
	for (size_t i = 0; i < l->n_slots && !s; i++)
		if (l->slots[i].fd < 0)
			s = &l->slots[i];
	if (!s) {
		size_t n = l->n_slots ? l->n_slots * 2 : 16;
		struct loop_slot *ns = realloc(l->slots, n * sizeof(*ns));
		if (!ns)
			return vmkit__err(-ENOMEM, "event loop: out of memory");
		for (size_t i = l->n_slots; i < n; i++)
			ns[i] = (struct loop_slot){ .fd = -1 };
		s = &ns[l->n_slots];
		l->slots = ns;
		l->n_slots = n;
	}
	s->gen++;
	ev.events = events;
	ev.data.u64 = ((uint64_t)s->gen << 32) | (uint64_t)(s - l->slots);
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return vmkit__err(-errno, "event loop: watching fd %d: %s", fd, strerror(errno));
	s->fd = fd;
	s->fn = fn;
	s->opaque = opaque;
	return 0;
}

int vmkit__loop_mod(struct vmkit_loop *l, int fd, uint32_t events)
{
	struct loop_slot *s = find(l, fd);
	struct epoll_event ev;

	if (!s)
		return vmkit__err(-ENOENT, "event loop: fd %d not watched", fd);
	ev.events = events;
	ev.data.u64 = ((uint64_t)s->gen << 32) | (uint64_t)(s - l->slots);
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return vmkit__err(-errno, "event loop: fd %d: %s", fd, strerror(errno));
	return 0;
}

int vmkit__loop_del(struct vmkit_loop *l, int fd)
{
	struct loop_slot *s = find(l, fd);

	if (!s)
		return vmkit__err(-ENOENT, "event loop: fd %d not watched", fd);
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	s->fd = -1;
	s->fn = NULL;
	s->opaque = NULL;
	s->gen++;
	return 0;
}

bool vmkit__loop_on_thread(const struct vmkit_loop *l)
{
	return l->running && pthread_equal(l->thread, pthread_self());
}

int vmkit__loop_run(struct vmkit_loop *l)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];
	int ret = 0;

	l->thread = pthread_self();
	l->running = true;
	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = vmkit__err(-errno, "event loop: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			uint64_t d = evs[i].data.u64;
			size_t idx = (size_t)(uint32_t)d;
			struct loop_slot *s;

			if (d == UINT64_MAX)
				continue; /* the stop eventfd */
			if (idx >= l->n_slots)
				continue;
			s = &l->slots[idx];
			if (s->fd < 0 || s->gen != (uint32_t)(d >> 32))
				continue; /* deleted earlier in this batch */
			s->fn(s->opaque, s->fd, evs[i].events);
		}
	}
	l->running = false;
	{
		uint64_t v;
		if (read(l->stop_fd, &v, sizeof(v)) < 0) {
			/* nothing pending: fine */
		}
	}
	l->stop = false;
	return ret;
}

void vmkit__loop_stop(struct vmkit_loop *l)
{
	uint64_t one = 1;

	l->stop = true;
	if (write(l->stop_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: a stop is pending anyway */
	}
}
