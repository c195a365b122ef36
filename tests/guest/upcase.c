/* SPDX-License-Identifier: MIT */
/* upcase: the driver side of examples/custom-device.c, the embedder's own
 * virtio device (id 63: each request's readable bytes come back upper-
 * cased in its writable buffer; config space holds the count served) and
 * its legacy port (0x520: reads the count).
 *
 *   transport=pci|mmio
 *
 * Prints "upcase reply=<text> served=<n> port=<n>" and exits with 0 when
 * two requests came back upper-cased and both counters say 2. */
#include "vdrv.h"

#define UPCASE_ID 63
#define UPCASE_PORT 0x520

long guest_main(const char *cmdline)
{
	static const char *const words[2] = { "hello vmkit", "Custom Device 42" };
	static const char *const want[2] = { "HELLO VMKIT", "CUSTOM DEVICE 42" };
	const char *t = kit_cmdline_value("transport");
	int transport = t && !strncmp(t, "mmio", 4) ? VDRV_MMIO : VDRV_PCI;
	struct vdrv d;
	char *out, *in;
	bool ok = true;

	(void)cmdline;
	vdrv_time_init();
	if (vdrv_find(&d, transport, UPCASE_ID, 0) < 0) {
		kit_printf("upcase: no device %u on %s\n", UPCASE_ID, vdrv_transport_name(transport));
		return 1;
	}
	if (vdrv_init(&d, 0) < 0 || vdrv_queue_setup(&d, 0, 16, VDRV_NO_VECTOR) < 0 ||
	    vdrv_driver_ok(&d) < 0)
		return 1;
	out = vdrv_alloc(64, 8);
	in = vdrv_alloc(64, 8);
	for (int i = 0; i < 2; i++) {
		size_t n = strlen(words[i]);
		struct vdrv_buf b[2] = { { out, (uint32_t)n, false }, { in, 64, true } };
		long got;

		memcpy(out, words[i], n);
		memset(in, 0, 64);
		got = vdrv_call(&d, &d.q[0], b, 2, 20000);
		in[got > 0 && got < 64 ? got : 0] = 0;
		kit_printf("upcase reply=%s len=%ld\n", in, got);
		if (got != (long)n || strncmp(in, want[i], n + 1) != 0)
			ok = false;
	}
	uint32_t served = vdrv_cfg32(&d, 0), port = inl(UPCASE_PORT);
	kit_printf("upcase served=%u port=%u\n", served, port);
	outl(UPCASE_PORT, 0xc0de);
	return ok && served == 2 && port == 2 ? 0 : 1;
}
