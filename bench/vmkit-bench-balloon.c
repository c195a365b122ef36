/* SPDX-License-Identifier: MIT */
/* vmkit-bench-balloon: how long vmkit's virtio-balloon takes to return
 * memory to the host, driven through the public API.
 *
 *   vmkit-bench-balloon [-m MEM_MIB] [-b BALLOON_MIB] [-t pci|mmio] [-T SECONDS] VIRTIO_ELF
 *
 * Boots the guest kit's virtio.elf (tests/guest/virtio.c, dev=balloon) in
 * a machine of MEM_MIB (default 1536) with a balloon on transport -t
 * (default pci). The guest touches BALLOON_MIB (default 1024) MiB and
 * prints "balloon touched"; then this program reads its own VmRSS (the
 * guest RAM is mapped in this process), sets the balloon target to
 * BALLOON_MIB and polls every 0.5 ms until
 *   - vmkit_machine_balloon_get_actual() reports the whole target, and
 *   - VmRSS has fallen by 98% of BALLOON_MIB.
 * One line on stdout:
 *   balloon-bench transport=T mib=M actual_s=S rss_s=S rss0_mib=R rss1_mib=R cpu_s=C
 *     host_cpu_s=H
 * (cpu_s: this process's utime + stime over the same interval, all threads:
 * vCPU, I/O thread, and the polling itself; host_cpu_s: the same less
 * guest_time, the vCPU running guest code; /proc/self/stat, clock ticks.)
 * Then the target goes
 * back to 0 and the machine is stopped. Exit status 0, or 1 with one line
 * on stderr. Every wait is bounded by -T (default 120 s). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmkit/vmkit.h>

#define MIB (1ull << 20)

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static char out[16384];
static size_t out_len;

/* Serial output (vCPU thread): keep it, NUL-terminated, for the waits. */
static void serial(void *userdata, const uint8_t *data, size_t len)
{
	(void)userdata;
	pthread_mutex_lock(&out_lock);
	if (len > sizeof(out) - 1 - out_len)
		len = sizeof(out) - 1 - out_len;
	memcpy(out + out_len, data, len);
	out_len += len;
	out[out_len] = '\0';
	pthread_mutex_unlock(&out_lock);
}

static int out_has(const char *s)
{
	int r;

	pthread_mutex_lock(&out_lock);
	r = strstr(out, s) != NULL;
	pthread_mutex_unlock(&out_lock);
	return r;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This process's CPU time: *@total = utime + stime, *@guest = guest_time
 * (the vCPU running guest code, part of utime), from /proc/self/stat. */
static int cpu_s(double *total, double *guest)
{
	char buf[1024], *p, *end;
	unsigned long long v[44] = { 0 };
	double tck = (double)sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) S 4 5 ...": fields 4..43 are numbers (some signed; only
	 * 14, 15 and 43 are used). */
	p = strrchr(buf, ')');
	if (!p || strlen(p) < 4 || tck <= 0)
		return -1;
	p += 4;
	for (int i = 4; i <= 43; i++) {
		v[i] = strtoull(p, &end, 10);
		if (end == p)
			return -1;
		p = end;
	}
	*total = (double)(v[14] + v[15]) / tck;
	*guest = (double)v[43] / tck;
	return 0;
}

static long rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static int die(const char *what)
{
	fprintf(stderr, "vmkit-bench-balloon: %s: %s\n", what, vmkit_last_error());
	return 1;
}

static int parse(const char *opt, const char *s, unsigned long lo, unsigned long hi,
		 unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	if (errno || *end || end == s || *v < lo || *v > hi) {
		fprintf(stderr, "vmkit-bench-balloon: %s: '%s' is not in %lu..%lu\n", opt, s, lo, hi);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long mem = 1536, mib = 1024, timeout = 120;
	vmkit_virtio_transport tr = VMKIT_VIRTIO_PCI;
	vmkit_machine_config *cfg = NULL;
	vmkit_machine *m = NULL;
	vmkit_host *host = NULL;
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	char cmdline[256];
	double t0, t_actual = -1, t_rss = -1, deadline, c0 = 0, g0 = 0, c1 = 0, g1 = 0;
	long rss0, rss1, want_drop;
	uint64_t actual = 0;
	int c, rc = 1;

	while ((c = getopt(argc, argv, "m:b:t:T:")) != -1) {
		if ((c == 'm' && parse("-m", optarg, 64, 65536, &mem) < 0) ||
		    (c == 'b' && parse("-b", optarg, 1, 65536, &mib) < 0) ||
		    (c == 'T' && parse("-T", optarg, 1, 3600, &timeout) < 0))
			return 2;
		if (c == 't') {
			if (!strcmp(optarg, "pci")) {
				tr = VMKIT_VIRTIO_PCI;
			} else if (!strcmp(optarg, "mmio")) {
				tr = VMKIT_VIRTIO_MMIO;
			} else {
				fprintf(stderr, "vmkit-bench-balloon: -t pci|mmio\n");
				return 2;
			}
		} else if (c == '?') {
			return 2;
		}
	}
	if (optind != argc - 1 || mib + 64 > mem) {
		fprintf(stderr, "usage: vmkit-bench-balloon [-m MEM_MIB] [-b BALLOON_MIB (<= MEM - 64)] "
			"[-t pci|mmio] [-T SECONDS] VIRTIO_ELF\n");
		return 2;
	}
	snprintf(cmdline, sizeof(cmdline), "dev=balloon transport=%s mib=%lu stats=0 timeout_ms=%lu",
		 tr == VMKIT_VIRTIO_PCI ? "pci" : "mmio", mib, timeout * 1000);

	if (vmkit_host_open(NULL, 0, &host) < 0)
		return die("open /dev/kvm");
	if (vmkit_machine_config_new(&cfg) < 0 ||
	    vmkit_machine_config_set_memory(cfg, (uint64_t)mem * MIB) < 0 ||
	    vmkit_machine_config_set_kernel(cfg, argv[optind]) < 0 ||
	    vmkit_machine_config_set_cmdline(cfg, cmdline) < 0 ||
	    vmkit_machine_config_set_serial_callback(cfg, serial, NULL) < 0 ||
	    vmkit_machine_config_set_balloon(cfg, tr) < 0) {
		die("configuration");
		goto out;
	}
	if (vmkit_machine_new(host, cfg, &m) < 0) {
		die("vmkit_machine_new");
		goto out;
	}
	if (vmkit_machine_start(m) < 0) {
		die("vmkit_machine_start");
		goto out;
	}
	deadline = now_s() + (double)timeout;
	while (!out_has("balloon touched")) {
		if (now_s() > deadline || vmkit_machine_get_state(m) == VMKIT_MACHINE_EXITED) {
			fprintf(stderr, "vmkit-bench-balloon: the guest did not touch its memory:\n%s\n",
				out);
			goto out;
		}
		sleep_us(1000);
	}
	sleep_us(200000);
	rss0 = rss_kib();
	want_drop = (long)(mib * 1024 * 98 / 100);

	if (cpu_s(&c0, &g0) < 0) {
		fprintf(stderr, "vmkit-bench-balloon: cannot read /proc/self/stat\n");
		goto out;
	}
	t0 = now_s();
	if (vmkit_machine_balloon_set_target(m, (uint64_t)mib * MIB) < 0) {
		die("vmkit_machine_balloon_set_target");
		goto out;
	}
	while (t_actual < 0 || t_rss < 0) {
		double t = now_s();

		if (t > deadline) {
			fprintf(stderr, "vmkit-bench-balloon: not done after %lu s (actual %llu bytes, "
				"RSS %ld -> %ld KiB)\n", timeout, (unsigned long long)actual, rss0,
				rss_kib());
			goto out;
		}
		/* Each time is taken after its probe returned (get_actual waits
		 * for the device lock while the device releases pages). */
		if (t_rss < 0 && rss0 - rss_kib() >= want_drop)
			t_rss = now_s() - t0;
		if (t_actual < 0) {
			if (vmkit_machine_balloon_get_actual(m, &actual) < 0) {
				die("vmkit_machine_balloon_get_actual");
				goto out;
			}
			if (actual >= (uint64_t)mib * MIB)
				t_actual = now_s() - t0;
		}
		if (t_actual >= 0 && t_rss >= 0)
			cpu_s(&c1, &g1);
		else
			sleep_us(500);
	}
	rss1 = rss_kib();
	printf("balloon-bench transport=%s mib=%lu actual_s=%.4f rss_s=%.4f rss0_mib=%.1f "
	       "rss1_mib=%.1f cpu_s=%.3f host_cpu_s=%.3f\n", tr == VMKIT_VIRTIO_PCI ? "pci" : "mmio",
	       mib, t_actual, t_rss, (double)rss0 / 1024, (double)rss1 / 1024, c1 - c0,
	       (c1 - c0) - (g1 - g0));
	fflush(stdout);
	rc = 0;
	vmkit_machine_balloon_set_target(m, 0);
out:
	if (m) {
		vmkit_machine_stop(m);
		vmkit_machine_wait(m, 10000, &ex);
		vmkit_machine_free(m);
	}
	vmkit_machine_config_free(cfg);
	vmkit_host_free(host);
	return rc;
}
