/* SPDX-License-Identifier: MIT */
/* The I/O thread's event loop: epoll over eventfds (ioeventfds, device
 * completions), timerfds and backends' fds, each with a callback.
 *
 * Registration (add/del) is made while the loop is not running, or from
 * the loop's own thread (inside a callback); deleting from a callback is
 * safe even for an fd whose event is pending in the same batch. Callbacks
 * run on the loop thread, one at a time, with no loop lock held. */
#ifndef VMKIT_LOOP_H
#define VMKIT_LOOP_H

#include "internal.h"

struct vmkit_loop;

/* @events: the EPOLLIN/EPOLLOUT/... bits that fired. */
typedef void (*vmkit_loop_fn)(void *opaque, int fd, uint32_t events);

int vmkit__loop_new(struct vmkit_loop **out);
/* Frees the loop (not the fds). The loop must not be running. */
void vmkit__loop_free(struct vmkit_loop *l);
/* Watch @fd for @events (EPOLLIN, EPOLLOUT; level-triggered). One
 * registration per fd: a second is -EEXIST. */
int vmkit__loop_add(struct vmkit_loop *l, int fd, uint32_t events, vmkit_loop_fn fn, void *opaque);
/* Change the events watched for @fd. */
int vmkit__loop_mod(struct vmkit_loop *l, int fd, uint32_t events);
int vmkit__loop_del(struct vmkit_loop *l, int fd);
/* Run callbacks until vmkit__loop_stop(); on the calling thread. */
int vmkit__loop_run(struct vmkit_loop *l);
/* From any thread: make vmkit__loop_run return (after the callback in
 * progress). Async-signal-safe. */
void vmkit__loop_stop(struct vmkit_loop *l);
/* Is the caller the thread inside vmkit__loop_run? */
bool vmkit__loop_on_thread(const struct vmkit_loop *l);

#endif
