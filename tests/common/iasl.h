/* SPDX-License-Identifier: MIT */
/* The ACPI tests cross-check our tables with Debian's iasl (acpica-tools). */
#ifndef VMKIT_TESTS_IASL_H
#define VMKIT_TESTS_IASL_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* true if iasl runs; otherwise skip, or fail under CI=true */
static inline bool have_iasl(void)
{
	const char *ci = getenv("CI");

	if (system("iasl -v >/dev/null 2>&1") == 0)
		return true;
	if (ci && strcmp(ci, "true") == 0)
		cr_assert_fail("CI=true but iasl (acpica-tools) is not installed");
	cr_skip_test("iasl (acpica-tools) is not installed");
	return false;
}

/* The whole text file @path (iasl's output), malloc'd and NUL-terminated. */
static inline char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s;
	long n;

	cr_assert(f, "%s missing", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s = calloc(1, (size_t)n + 1);
	cr_assert(s);
	cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return s;
}

#endif
