/* SPDX-License-Identifier: MIT */
/* Helpers shared by the KVM tests. */
#ifndef VMKIT_TESTS_KVMTEST_H
#define VMKIT_TESTS_KVMTEST_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmkit/vmkit.h"

/* Open /dev/kvm or skip the test with the reason. Under CI (CI=true) a
 * missing KVM is a failure, so a green CI means VMs really ran. */
static inline vmkit_host *kvmtest_host(void)
{
	vmkit_host *h = NULL;
	const char *ci = getenv("CI");

	if (vmkit_host_open(NULL, 0, &h) == 0)
		return h;
	if (ci && strcmp(ci, "true") == 0)
		cr_assert_fail("CI=true but KVM is unusable: %s", vmkit_last_error());
	cr_skip_test("skipped, needs /dev/kvm: %s", vmkit_last_error());
	return NULL;
}

#endif
