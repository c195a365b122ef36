/* SPDX-License-Identifier: MIT */
/* For device unit tests: the I/O loop run on a thread of its own, as the
 * machine's I/O thread would, and a bounded wait for a condition that the
 * loop thread makes true. */
#ifndef VMKIT_TESTS_LOOPTHREAD_H
#define VMKIT_TESTS_LOOPTHREAD_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop.h"

struct loop_thread {
	struct vmkit_loop *loop;
	pthread_t th;
	bool running;
};

static inline void *loop_thread_main(void *arg)
{
	struct loop_thread *lt = arg;

	cr_assert_eq(vmkit__loop_run(lt->loop), 0);
	return NULL;
}

static inline void loop_thread_new(struct loop_thread *lt)
{
	lt->running = false;
	cr_assert_eq(vmkit__loop_new(&lt->loop), 0);
}

static inline void loop_thread_start(struct loop_thread *lt)
{
	cr_assert_eq(pthread_create(&lt->th, NULL, loop_thread_main, lt), 0);
	lt->running = true;
}

static inline void loop_thread_stop(struct loop_thread *lt)
{
	if (!lt->running)
		return;
	vmkit__loop_stop(lt->loop);
	pthread_join(lt->th, NULL);
	lt->running = false;
}

/* Stop the thread (if running) and free the loop. */
static inline void loop_thread_free(struct loop_thread *lt)
{
	loop_thread_stop(lt);
	vmkit__loop_free(lt->loop);
	lt->loop = NULL;
}

static inline double lt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Evaluate @cond every millisecond for up to @ms milliseconds; true as
 * soon as it holds. */
#define LT_WAIT(cond, ms)                                                   \
	({                                                                  \
		bool lt_ok_ = false;                                        \
		double lt_end_ = lt_now() + (ms) / 1000.0;                  \
		for (;;) {                                                  \
			if (cond) {                                         \
				lt_ok_ = true;                              \
				break;                                      \
			}                                                   \
			if (lt_now() > lt_end_)                             \
				break;                                      \
			usleep(1000);                                       \
		}                                                           \
		lt_ok_;                                                     \
	})

#endif
