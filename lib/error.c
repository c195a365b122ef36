/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[512];

const char *vmkit_last_error(void)
{
	return last_error;
}

void vmkit__clear_error(void)
{
	last_error[0] = '\0';
}

/* Messages become exceptions in bindings: keep them to one line. */
static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

int vmkit__err(int code, const char *fmt, ...)
{
	char msg[sizeof(last_error)];
	va_list ap;

	/* Format aside: callers may pass vmkit_last_error() to prefix it. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	one_line(msg);
	memcpy(last_error, msg, sizeof(last_error));
	return code;
}

void vmkit__log(const struct vmkit_logger *lg, vmkit_log_level level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!lg || !lg->fn || level > lg->max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	one_line(buf);
	lg->fn(lg->userdata, level, buf);
}

const char *vmkit_version(void)
{
	return VMKIT_VERSION_STRING;
}

uint32_t vmkit_version_hex(void)
{
	return VMKIT_VERSION_HEX;
}

bool vmkit_has_feature(const char *feature)
{
	static const char *const features[] = {
		"host", "vm", "vcpu", "machine", "json-config", "acpi", "bzimage", "pvh",
		"multiboot", "flat", "firmware", "uart8250", "i8042", "rtc", "fw_cfg",
		"exit-port",
	};

	if (!feature)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(features); i++)
		if (strcmp(features[i], feature) == 0)
			return true;
	return false;
}
