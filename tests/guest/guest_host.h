/* SPDX-License-Identifier: MIT */
/* Host side of the guest-kit KVM tests: run a kit guest
 * ($VMKIT_GUEST_DIR/<name>.elf, loaded as Multiboot) on a vmkit machine,
 * capture its serial output, wait for its exit. One guest per test. */
#ifndef VMKIT_TESTS_GUEST_HOST_H
#define VMKIT_TESTS_GUEST_HOST_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "kvmtest.h"
#include "kit_abi.h"

/* Generous: boot-time CPL0 code is emulated on some hosts. */
#define GUEST_TIMEOUT_MS 60000

struct guest {
	vmkit_host *host;
	vmkit_machine_config *cfg;
	vmkit_machine *m;
	pthread_mutex_t lock;
	char out[65536];
	size_t len;
	vmkit_machine_exit exit;
};

static struct guest g = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void guest_on_serial(void *ud, const uint8_t *data, size_t len)
{
	struct guest *gr = ud;
	size_t i;

	pthread_mutex_lock(&gr->lock);
	for (i = 0; i < len && gr->len < sizeof(gr->out) - 1; i++)
		gr->out[gr->len++] = (char)data[i];
	gr->out[gr->len] = '\0';
	pthread_mutex_unlock(&gr->lock);
}

static inline void guest_path(char *buf, size_t size, const char *name)
{
	const char *dir = getenv("VMKIT_GUEST_DIR");

	cr_assert(dir && *dir, "VMKIT_GUEST_DIR is not set (run through meson test)");
	snprintf(buf, size, "%s/%s.elf", dir, name);
	cr_assert_eq(access(buf, R_OK), 0, "guest %s missing", buf);
}

/* A configuration for guest @name with @cmdline, 1 vCPU, 64 MiB, serial
 * captured. Tests adjust g.cfg before guest_start(). */
static inline void guest_config(const char *name, const char *cmdline)
{
	char path[4096];

	g.host = kvmtest_host();
	guest_path(path, sizeof(path), name);
	cr_assert_eq(vmkit_machine_config_new(&g.cfg), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_config_set_kernel(g.cfg, path), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_config_set_cmdline(g.cfg, cmdline), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_config_set_memory(g.cfg, 64 << 20), 0, "%s", vmkit_last_error());
	cr_assert_eq(vmkit_machine_config_set_serial_callback(g.cfg, guest_on_serial, &g), 0);
}

/* Assemble the machine (the guest is loaded; nothing runs yet). */
static inline void guest_create(void)
{
	cr_assert_eq(vmkit_machine_new(g.host, g.cfg, &g.m), 0, "%s", vmkit_last_error());
}

static inline void guest_start(void)
{
	if (!g.m)
		guest_create();
	cr_assert_eq(vmkit_machine_start(g.m), 0, "%s", vmkit_last_error());
}

/* Wait for the exit; fails the test on timeout (with the output so far). */
static inline const vmkit_machine_exit *guest_wait(int timeout_ms)
{
	int r;

	g.exit.size = sizeof(g.exit);
	r = vmkit_machine_wait(g.m, timeout_ms, &g.exit);
	cr_assert_eq(r, 0, "wait: %s; serial so far:\n%s", vmkit_last_error(), g.out);
	return &g.exit;
}

static inline const vmkit_machine_exit *guest_run(const char *name, const char *cmdline)
{
	guest_config(name, cmdline);
	guest_start();
	return guest_wait(GUEST_TIMEOUT_MS);
}

/* The exit-port status for value @v. */
static inline int32_t guest_status(uint32_t v)
{
	return (int32_t)((v << 1) | 1);
}

/* Assert an exit through the exit port with value @v. */
static inline void guest_assert_exit(uint32_t v)
{
	cr_assert_eq(g.exit.reason, VMKIT_EXIT_EXIT_PORT,
		     "exit reason %u (%s), wanted the exit port; serial:\n%s", g.exit.reason,
		     g.exit.detail, g.out);
	cr_assert_eq(g.exit.status, guest_status(v), "status 0x%x, wanted 0x%x (v=0x%x); serial:\n%s",
		     (unsigned)g.exit.status, (unsigned)guest_status(v), v, g.out);
}

static inline bool guest_has(const char *needle)
{
	bool r;

	pthread_mutex_lock(&g.lock);
	r = strstr(g.out, needle) != NULL;
	pthread_mutex_unlock(&g.lock);
	return r;
}

/* Assert the output holds @fmt as printf would format it. */
__attribute__((format(printf, 1, 2))) static inline void guest_expect(const char *fmt, ...)
{
	char want[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	cr_assert(guest_has(want), "serial output lacks \"%s\":\n%s", want, g.out);
}

static inline void guest_expect_not(const char *needle)
{
	cr_assert(!guest_has(needle), "serial output has \"%s\":\n%s", needle, g.out);
}

/* Wait up to @timeout_ms for @needle in the output. */
static inline bool guest_wait_output(const char *needle, int timeout_ms)
{
	struct timespec ts = { 0, 5 * 1000 * 1000 };
	int i;

	for (i = 0; i < timeout_ms / 5; i++) {
		if (guest_has(needle))
			return true;
		nanosleep(&ts, NULL);
	}
	return guest_has(needle);
}

static inline void guest_teardown(void)
{
	vmkit_machine_free(g.m);
	vmkit_machine_config_free(g.cfg);
	vmkit_host_free(g.host);
	g.m = NULL;
	g.cfg = NULL;
	g.host = NULL;
	g.len = 0;
	g.out[0] = '\0';
	memset(&g.exit, 0, sizeof(g.exit));
}

#endif
