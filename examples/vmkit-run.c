/* SPDX-License-Identifier: MIT */
/* vmkit-run: a microVM launcher on the public vmkit API.
 *
 *   vmkit-run --kernel K [--initrd I]... [--cmdline C] [--mem MiB] [--cpus N]
 *             [--firmware F [--option-rom R]...] [--config file.json] [--kvm PATH] [--strict]
 *             [--disk PATH[,readonly][,transport=mmio|pci][,serial=S]]...
 *             [--console[=OPTS]] [--rng[=OPTS]] [--balloon[=OPTS]] [--control SOCKET]
 *             [--net tap=NAME|fd=N|stream=PATH|dgram=PATH[,mac=M][,transport=T]]...
 *             [--vsock cid=N,path=PATH[,transport=T]]
 *
 * Serial console on stdin/stdout (with --console the virtio console takes
 * stdin, and both write stdout). Exit status: 0 on guest power-off; the
 * exit-port status (v << 1) | 1 (always odd) for test guests; otherwise
 * the even codes below. Every bad input gets one line on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <vmkit/vmkit.h>

/* QEMU's option ROM (Debian's qemu-system-data) that has SeaBIOS load a
 * kernel from fw_cfg. */
#define LINUXBOOT_ROM "/usr/share/qemu/linuxboot_dma.bin"

enum {
	RC_POWEROFF = 0,
	RC_USAGE = 2,     /* bad arguments, configuration, files, no KVM */
	RC_REBOOT = 4,
	RC_PANIC = 6,
	RC_CRASH = 8,     /* triple fault */
	RC_ERROR = 10,    /* internal or emulation error */
	RC_STOPPED = 12,  /* SIGINT/SIGTERM */
};

static const char usage[] =
	"usage: vmkit-run --kernel FILE [options]\n"
	"       vmkit-run --firmware FILE [options]\n"
	"\n"
	"  --kernel FILE      bzImage, PVH ELF vmlinux or Multiboot kernel\n"
	"  --initrd FILE      initrd (Linux) or module (Multiboot); repeatable\n"
	"  --cmdline STRING   kernel command line\n"
	"  --mem MIB          guest memory in MiB (default 256)\n"
	"  --cpus N           vCPUs (default 1)\n"
	"  --firmware FILE    firmware image mapped below 4 GiB (SeaBIOS bios.bin); with\n"
	"                     --kernel (a bzImage), the firmware loads the kernel, initrds\n"
	"                     and command line from fw_cfg, as under QEMU\n"
	"  --option-rom FILE  an option ROM the firmware runs (fw_cfg genroms/); repeatable.\n"
	"                     --firmware with --kernel and none given adds QEMU's\n"
	"                     " LINUXBOOT_ROM ", which SeaBIOS needs for that\n"
	"  --config FILE      JSON machine configuration; flags override it\n"
	"  --kvm PATH         hypervisor device (default /dev/kvm)\n"
	"  --strict           accesses to unclaimed ports/MMIO stop the VM\n"
	"  --disk PATH[,readonly][,transport=mmio|pci][,serial=S][,block_size=N]\n"
	"                     a virtio-blk disk on a raw image; repeatable\n"
	"  --console[=pci|mmio]  a virtio console (hvc0) on stdin/stdout\n"
	"  --rng[=pci|mmio][,rate=BYTES_PER_SEC]  a virtio entropy device\n"
	"  --balloon[=pci|mmio]  a virtio memory balloon\n"
	"  --net tap=NAME|fd=N|stream=PATH|dgram=PATH[,mac=M][,transport=pci|mmio]\n"
	"        [,rx_bps=N][,tx_bps=N][,rx_fps=N][,tx_fps=N]\n"
	"                     a virtio-net device on a tap (by name, or an open tap fd),\n"
	"                     a UNIX stream socket (QEMU -netdev stream framing, passt)\n"
	"                     or a UNIX datagram socket; rate limits in bytes/frames per\n"
	"                     second, guest-bound (rx) and guest-sent (tx); repeatable\n"
	"  --vsock cid=N,path=PATH[,transport=pci|mmio]\n"
	"                     a virtio-vsock device; the host connects to PATH and writes\n"
	"                     'CONNECT <port>', guest connections to port P go to PATH_P\n"
	"  --debugcon FILE    write what the guest sends to port 0x402 (SeaBIOS's log)\n"
	"  --control SOCKET   a UNIX socket taking commands while the guest runs:\n"
	"                     'balloon MIB' sets the balloon target, 'balloon' tells\n"
	"                     its size and the guest's memory stats, 'net N' the\n"
	"                     counters of network device N, 'net N rate rx_bps=...'\n"
	"                     changes its limits (rx_bps, tx_bps, rx_fps, tx_fps), 'stop' stops\n"
	"  --version, --help\n"
	"\n"
	"exit status: 0 power-off, odd: exit port (v<<1)|1, 2 bad input,\n"
	"4 reboot, 6 guest panic, 8 triple fault, 10 internal error, 12 stopped\n";

static volatile sig_atomic_t stop_signal;
static struct termios saved_tio;
static int tio_saved;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void restore_tty(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

/* Raw mode so that keys reach the guest as typed; ^C still stops us. */
static void raw_tty(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return;
	tio_saved = 1;
	atexit(restore_tty);
	t = saved_tio;
	t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | IEXTEN);
	t.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

static int fail(const char *what)
{
	fprintf(stderr, "vmkit-run: %s%s%s\n", what ? what : "", what ? ": " : "",
		vmkit_last_error());
	return RC_USAGE;
}

static int parse_uint(const char *opt, const char *s, unsigned long long max,
		      unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-') {
		fprintf(stderr, "vmkit-run: %s: '%s' is not a number\n", opt, s);
		return -1;
	}
	if (*out > max) {
		fprintf(stderr, "vmkit-run: %s: %s is too large (maximum %llu)\n", opt, s, max);
		return -1;
	}
	return 0;
}

static void log_to_stderr(void *ud, vmkit_log_level level, const char *msg)
{
	(void)ud;
	if (level <= VMKIT_LOG_WARN)
		fprintf(stderr, "vmkit: %s\n", msg);
}

/* "pci" / "mmio" / "transport=pci|mmio" */
static int parse_transport(const char *opt, const char *tok, vmkit_virtio_transport *t)
{
	bool named = strncmp(tok, "transport=", 10) == 0;

	if (named)
		tok += 10;
	if (strcmp(tok, "pci") == 0)
		*t = VMKIT_VIRTIO_PCI;
	else if (strcmp(tok, "mmio") == 0)
		*t = VMKIT_VIRTIO_MMIO;
	else if (named) {
		fprintf(stderr, "vmkit-run: %s: unknown transport '%s' (pci or mmio)\n", opt, tok);
		return -1;
	} else {
		fprintf(stderr, "vmkit-run: %s: unknown option '%s'\n", opt, tok);
		return -1;
	}
	return 0;
}

/* --disk PATH[,readonly][,transport=T][,serial=S][,block_size=N] */
static int add_disk(vmkit_machine_config *cfg, const char *arg)
{
	vmkit_disk_config d = VMKIT_DISK_CONFIG_INIT;
	char *copy = strdup(arg), *save = NULL, *tok;
	unsigned long long v;
	int r = -1;

	if (!copy)
		return -1;
	d.path = strtok_r(copy, ",", &save);
	if (!d.path || !*d.path || arg[0] == ',') {
		fprintf(stderr, "vmkit-run: --disk: a path is needed\n");
		goto out;
	}
	while ((tok = strtok_r(NULL, ",", &save))) {
		vmkit_virtio_transport t;
		if (strcmp(tok, "readonly") == 0 || strcmp(tok, "ro") == 0)
			d.readonly = true;
		else if (strncmp(tok, "serial=", 7) == 0)
			d.serial = tok + 7;
		else if (strncmp(tok, "block_size=", 11) == 0) {
			if (parse_uint("--disk block_size", tok + 11, 4096, &v) < 0)
				goto out;
			d.block_size = (uint32_t)v;
		} else if (strncmp(tok, "transport=", 10) == 0) {
			if (parse_transport("--disk", tok, &t) < 0)
				goto out;
			d.transport = t;
		} else {
			fprintf(stderr, "vmkit-run: --disk: unknown option '%s'\n", tok);
			goto out;
		}
	}
	if (vmkit_machine_config_add_disk(cfg, &d) < 0) {
		fail("--disk");
		goto out;
	}
	r = 0;
out:
	free(copy);
	return r;
}

/* --console / --rng / --balloon [=pci|mmio|transport=T][,rate=N] */
static int add_simple(vmkit_machine_config *cfg, const char *opt, const char *arg)
{
	vmkit_virtio_transport t = VMKIT_VIRTIO_PCI;
	unsigned long long rate = 0;
	char *copy = strdup(arg ? arg : ""), *save = NULL, *tok;
	int r = -1;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(opt, "--rng") == 0 && strncmp(tok, "rate=", 5) == 0) {
			if (parse_uint("--rng rate", tok + 5, UINT64_MAX, &rate) < 0)
				goto out;
		} else if (parse_transport(opt, tok, &t) < 0) {
			goto out;
		}
	}
	if (strcmp(opt, "--console") == 0)
		r = vmkit_machine_config_set_virtio_console(cfg, t, STDIN_FILENO, STDOUT_FILENO);
	else if (strcmp(opt, "--rng") == 0)
		r = vmkit_machine_config_set_rng(cfg, t, rate);
	else
		r = vmkit_machine_config_set_balloon(cfg, t);
	if (r < 0) {
		fail(opt);
		r = -1;
	}
out:
	free(copy);
	return r;
}

/* "52:54:00:12:34:56" */
static int parse_mac(const char *opt, const char *s, uint8_t mac[6])
{
	unsigned b[6];
	char extra;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		   &extra) != 6 || strlen(s) != 17) {
		fprintf(stderr, "vmkit-run: %s: '%s' is not a MAC address like 52:54:00:12:34:56\n",
			opt, s);
		return -1;
	}
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

/* rx_bps=N / tx_bps=N / rx_fps=N / tx_fps=N (bytes or frames per second,
 * guest-bound or guest-sent) into @rx/@tx. 1: not such a token, 0: taken,
 * -1: not a number. Prints nothing (the control socket uses it too). */
static int rate_token(const char *tok, vmkit_rate_limit *rx, vmkit_rate_limit *tx)
{
	static const char *const names[] = { "rx_bps=", "tx_bps=", "rx_fps=", "tx_fps=" };

	for (int i = 0; i < 4; i++) {
		size_t n = strlen(names[i]);
		vmkit_rate_limit *rl = i % 2 ? tx : rx;
		unsigned long long v;
		char *end;

		if (strncmp(tok, names[i], n) != 0)
			continue;
		errno = 0;
		v = strtoull(tok + n, &end, 10);
		if (errno || end == tok + n || *end || tok[n] == '-')
			return -1;
		if (i < 2)
			rl->bytes_per_sec = v;
		else
			rl->frames_per_sec = v;
		return 0;
	}
	return 1;
}

/* --net tap=NAME|fd=N|stream=PATH|dgram=PATH[,mac=M][,transport=T][,rx_bps=N]... */
static int add_net(vmkit_machine_config *cfg, const char *arg)
{
	vmkit_net_config n = VMKIT_NET_CONFIG_INIT;
	char *copy = strdup(arg), *save = NULL, *tok;
	unsigned long long v;
	int backends = 0, r = -1;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int k;
		if (strncmp(tok, "tap=", 4) == 0) {
			n.backend = VMKIT_NET_TAP;
			n.ifname = tok + 4;
			backends++;
		} else if (strncmp(tok, "fd=", 3) == 0) {
			if (parse_uint("--net fd", tok + 3, INT32_MAX, &v) < 0)
				goto out;
			n.backend = VMKIT_NET_TAP;
			n.fd = (int)v;
			backends++;
		} else if (strncmp(tok, "stream=", 7) == 0) {
			n.backend = VMKIT_NET_STREAM;
			n.path = tok + 7;
			backends++;
		} else if (strncmp(tok, "dgram=", 6) == 0) {
			n.backend = VMKIT_NET_DGRAM;
			n.path = tok + 6;
			backends++;
		} else if (strncmp(tok, "mac=", 4) == 0) {
			if (parse_mac("--net mac", tok + 4, n.mac) < 0)
				goto out;
			n.mac_set = true;
		} else if (strncmp(tok, "transport=", 10) == 0) {
			vmkit_virtio_transport t;
			if (parse_transport("--net", tok, &t) < 0)
				goto out;
			n.transport = t;
		} else if ((k = rate_token(tok, &n.rx, &n.tx)) <= 0) {
			if (k < 0) {
				fprintf(stderr, "vmkit-run: --net: '%s' is not a number\n",
					strchr(tok, '=') + 1);
				goto out;
			}
		} else {
			fprintf(stderr, "vmkit-run: --net: unknown option '%s'\n", tok);
			goto out;
		}
	}
	if (backends != 1) {
		fprintf(stderr, "vmkit-run: --net: give exactly one of tap=NAME, fd=N, stream=PATH, "
				"dgram=PATH\n");
		goto out;
	}
	if (vmkit_machine_config_add_net(cfg, &n) < 0) {
		fail("--net");
		goto out;
	}
	r = 0;
out:
	free(copy);
	return r;
}

/* --vsock cid=N,path=PATH[,transport=T] */
static int set_vsock(vmkit_machine_config *cfg, const char *arg)
{
	vmkit_vsock_config vs = VMKIT_VSOCK_CONFIG_INIT;
	char *copy = strdup(arg), *save = NULL, *tok;
	unsigned long long v;
	int r = -1;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "cid=", 4) == 0) {
			if (parse_uint("--vsock cid", tok + 4, UINT32_MAX, &v) < 0)
				goto out;
			vs.guest_cid = v;
		} else if (strncmp(tok, "path=", 5) == 0) {
			vs.uds_path = tok + 5;
		} else if (strncmp(tok, "transport=", 10) == 0) {
			vmkit_virtio_transport t;
			if (parse_transport("--vsock", tok, &t) < 0)
				goto out;
			vs.transport = t;
		} else {
			fprintf(stderr, "vmkit-run: --vsock: unknown option '%s'\n", tok);
			goto out;
		}
	}
	if (!vs.guest_cid || !vs.uds_path) {
		fprintf(stderr, "vmkit-run: --vsock: cid=N and path=PATH are needed\n");
		goto out;
	}
	if (vmkit_machine_config_set_vsock(cfg, &vs) < 0) {
		fail("--vsock");
		goto out;
	}
	r = 0;
out:
	free(copy);
	return r;
}

/* ---- the control socket --------------------------------------------------- */

#define MAX_CLIENTS 8
struct control {
	int listen_fd;
	int fd[MAX_CLIENTS];
	char buf[MAX_CLIENTS][256];
	size_t len[MAX_CLIENTS];
	const char *path;
};

static int control_open(struct control *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	for (int i = 0; i < MAX_CLIENTS; i++)
		c->fd[i] = -1;
	c->path = path;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vmkit-run: --control: path too long: %s\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(c->listen_fd, 4) < 0) {
		fprintf(stderr, "vmkit-run: --control %s: %s\n", path, strerror(errno));
		if (c->listen_fd >= 0)
			close(c->listen_fd);
		c->listen_fd = -1;
		return -1;
	}
	return 0;
}

static void control_close(struct control *c)
{
	if (c->listen_fd < 0)
		return;
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (c->fd[i] >= 0)
			close(c->fd[i]);
	close(c->listen_fd);
	unlink(c->path);
	c->listen_fd = -1;
}

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Never wait for a client that does not read its replies. */
	if (n > 0 && send(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1,
			  MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* the client went away or is not reading: the reply is dropped */
	}
}

/* "N": the counters; "N rate rx_bps=... tx_fps=...": new limits (what is
 * not named is unlimited). */
static void control_net(vmkit_machine *m, int fd, char *args)
{
	vmkit_net_stats st = { .size = sizeof(st) };
	vmkit_rate_limit rx = { 0 }, tx = { 0 };
	unsigned long long index;
	char *end, *save = NULL, *tok;

	errno = 0;
	index = strtoull(args, &end, 10);
	if (errno || end == args || (*end && *end != ' ') || index > UINT32_MAX) {
		reply(fd, "error net: '%s' is not a device number\n", args);
		return;
	}
	while (*end == ' ')
		end++;
	if (!*end) {
		if (vmkit_machine_net_get_stats(m, (uint32_t)index, &st) < 0) {
			reply(fd, "error %s\n", vmkit_last_error());
			return;
		}
		reply(fd, "ok rx_frames %" PRIu64 " rx_bytes %" PRIu64 " rx_dropped %" PRIu64
			  " rx_no_buffer %" PRIu64 " rx_throttled %" PRIu64 " tx_frames %" PRIu64
			  " tx_bytes %" PRIu64 " tx_dropped %" PRIu64 " tx_backpressure %" PRIu64
			  " tx_throttled %" PRIu64 "\n",
		      st.rx_frames, st.rx_bytes, st.rx_dropped, st.rx_no_buffer, st.rx_throttled,
		      st.tx_frames, st.tx_bytes, st.tx_dropped, st.tx_backpressure, st.tx_throttled);
		return;
	}
	if (strncmp(end, "rate", 4) != 0 || (end[4] && end[4] != ' ')) {
		reply(fd, "error net: unknown request '%s' (net N, net N rate ...)\n", end);
		return;
	}
	for (tok = strtok_r(end + 4, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		int k = rate_token(tok, &rx, &tx);

		if (k) {
			reply(fd, k < 0 ? "error net: '%s': not a number\n" :
					  "error net: unknown limit '%s' (rx_bps, tx_bps, rx_fps, tx_fps)\n",
			      tok);
			return;
		}
	}
	if (vmkit_machine_net_set_rate_limit(m, (uint32_t)index, &rx, &tx) < 0)
		reply(fd, "error %s\n", vmkit_last_error());
	else
		reply(fd, "ok\n");
}

static void control_command(vmkit_machine *m, int fd, char *cmd)
{
	unsigned long long mib;
	char *end;

	while (*cmd == ' ')
		cmd++;
	if (strcmp(cmd, "stop") == 0) {
		vmkit_machine_stop(m);
		reply(fd, "ok\n");
	} else if (strcmp(cmd, "balloon") == 0) {
		vmkit_balloon_stats st = { .size = sizeof(st) };
		uint64_t actual;
		if (vmkit_machine_balloon_get_actual(m, &actual) < 0 ||
		    vmkit_machine_balloon_get_stats(m, &st) < 0) {
			reply(fd, "error %s\n", vmkit_last_error());
			return;
		}
		reply(fd, "ok actual_mib %" PRIu64 " stats_updates %" PRIu64
			  " free_kib %" PRIu64 " total_kib %" PRIu64 " available_kib %" PRIu64 "\n",
		      actual >> 20, st.updates,
		      st.free_memory == UINT64_MAX ? 0 : st.free_memory >> 10,
		      st.total_memory == UINT64_MAX ? 0 : st.total_memory >> 10,
		      st.available_memory == UINT64_MAX ? 0 : st.available_memory >> 10);
	} else if (strncmp(cmd, "balloon ", 8) == 0) {
		errno = 0;
		mib = strtoull(cmd + 8, &end, 10);
		if (errno || end == cmd + 8 || *end || mib > (VMKIT_MAX_MEMORY >> 20)) {
			reply(fd, "error balloon: '%s' is not a size in MiB\n", cmd + 8);
			return;
		}
		if (vmkit_machine_balloon_set_target(m, (uint64_t)mib << 20) < 0)
			reply(fd, "error %s\n", vmkit_last_error());
		else
			reply(fd, "ok\n");
	} else if (strncmp(cmd, "net ", 4) == 0) {
		control_net(m, fd, cmd + 4);
	} else {
		reply(fd, "error unknown command '%s' (balloon [MIB], net N [rate ...], stop)\n", cmd);
	}
}

/* Serve the socket for up to @ms milliseconds. */
static void control_poll(struct control *c, vmkit_machine *m, int ms)
{
	struct pollfd p[1 + MAX_CLIENTS];
	int n = 0;

	p[n++] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
	for (int i = 0; i < MAX_CLIENTS; i++)
		p[n++] = (struct pollfd){ .fd = c->fd[i], .events = POLLIN };
	if (poll(p, (nfds_t)n, ms) <= 0)
		return;
	if (p[0].revents & POLLIN) {
		int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		int slot = -1;
		for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
			if (c->fd[i] < 0)
				slot = i;
		if (fd >= 0 && slot < 0)
			close(fd);
		else if (fd >= 0) {
			c->fd[slot] = fd;
			c->len[slot] = 0;
		}
	}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		ssize_t r;
		char *nl;
		if (c->fd[i] < 0 || !(p[1 + i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		r = read(c->fd[i], c->buf[i] + c->len[i], sizeof(c->buf[i]) - 1 - c->len[i]);
		if (r <= 0) {
			close(c->fd[i]);
			c->fd[i] = -1;
			continue;
		}
		c->len[i] += (size_t)r;
		c->buf[i][c->len[i]] = 0;
		while ((nl = strchr(c->buf[i], '\n'))) {
			*nl = 0;
			if (nl > c->buf[i] && nl[-1] == '\r')
				nl[-1] = 0;
			control_command(m, c->fd[i], c->buf[i]);
			c->len[i] -= (size_t)(nl + 1 - c->buf[i]);
			memmove(c->buf[i], nl + 1, c->len[i] + 1);
		}
		if (c->len[i] == sizeof(c->buf[i]) - 1) {
			reply(c->fd[i], "error line too long\n");
			close(c->fd[i]);
			c->fd[i] = -1;
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'n' },
		{ "firmware", required_argument, NULL, 'f' },
		{ "option-rom", required_argument, NULL, 'O' },
		{ "config", required_argument, NULL, 'j' },
		{ "kvm", required_argument, NULL, 'K' },
		{ "strict", no_argument, NULL, 's' },
		{ "disk", required_argument, NULL, 'd' },
		{ "console", optional_argument, NULL, 'C' },
		{ "rng", optional_argument, NULL, 'R' },
		{ "balloon", optional_argument, NULL, 'B' },
		{ "control", required_argument, NULL, 'S' },
		{ "net", required_argument, NULL, 'N' },
		{ "vsock", required_argument, NULL, 'v' },
		{ "debugcon", required_argument, NULL, 'D' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *config_path = NULL, *kvm_path = NULL, *control_path = NULL;
	struct control ctl = { .listen_fd = -1 };
	bool virtio_console = false, kernel_flag = false, firmware_flag = false, rom_flag = false;
	int debugcon_fd = -1;
	vmkit_machine_config *cfg = NULL;
	vmkit_machine_exit ex = { .size = sizeof(ex) };
	vmkit_machine *m = NULL;
	vmkit_host *host = NULL;
	unsigned long long v;
	int c, rc = RC_USAGE;

	/* First pass: find --config, so the flags can override it. */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (c == 'j')
			config_path = optarg;
	if (config_path ? vmkit_machine_config_load(config_path, &cfg) :
			  vmkit_machine_config_new(&cfg))
		return fail(NULL);

	optind = 1;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case 'k':
			kernel_flag = true;
			r = vmkit_machine_config_set_kernel(cfg, optarg);
			break;
		case 'i': r = vmkit_machine_config_add_initrd(cfg, optarg); break;
		case 'c': r = vmkit_machine_config_set_cmdline(cfg, optarg); break;
		case 'f':
			firmware_flag = true;
			r = vmkit_machine_config_set_firmware(cfg, optarg);
			break;
		case 'O':
			rom_flag = true;
			r = vmkit_machine_config_add_option_rom(cfg, optarg);
			break;
		case 'm':
			if (parse_uint("--mem", optarg, VMKIT_MAX_MEMORY >> 20, &v) < 0) {
				rc = RC_USAGE;
				goto done;
			}
			r = vmkit_machine_config_set_memory(cfg, v << 20);
			break;
		case 'n':
			if (parse_uint("--cpus", optarg, VMKIT_MAX_CPUS, &v) < 0) {
				rc = RC_USAGE;
				goto done;
			}
			r = vmkit_machine_config_set_cpus(cfg, (uint32_t)v);
			break;
		case 'j': break;
		case 'K': kvm_path = optarg; break;
		case 's': r = vmkit_machine_config_set_unhandled_policy(cfg, VMKIT_UNHANDLED_STRICT); break;
		case 'd':
		case 'C':
		case 'R':
		case 'B':
			if (c == 'd' ? add_disk(cfg, optarg) :
				       add_simple(cfg, c == 'C' ? "--console" : c == 'R' ? "--rng" : "--balloon",
						  optarg) < 0) {
				rc = RC_USAGE;
				goto done;
			}
			virtio_console |= c == 'C';
			break;
		case 'S': control_path = optarg; break;
		case 'N':
		case 'v':
			if ((c == 'N' ? add_net(cfg, optarg) : set_vsock(cfg, optarg)) < 0) {
				rc = RC_USAGE;
				goto done;
			}
			break;
		case 'D':
			if (debugcon_fd >= 0)
				close(debugcon_fd);
			debugcon_fd = open(optarg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (debugcon_fd < 0) {
				fprintf(stderr, "vmkit-run: --debugcon %s: %s\n", optarg, strerror(errno));
				rc = RC_USAGE;
				goto done;
			}
			r = vmkit_machine_config_set_debugcon(cfg, 0x402, debugcon_fd);
			break;
		case 'V': printf("vmkit-run %s\n", vmkit_version()); rc = 0; goto done;
		case 'h': fputs(usage, stdout); rc = 0; goto done;
		case ':':
			fprintf(stderr, "vmkit-run: %s needs a value (see --help)\n", argv[optind - 1]);
			rc = RC_USAGE;
			goto done;
		default:
			fprintf(stderr, "vmkit-run: unknown option '%s' (see --help)\n", argv[optind - 1]);
			rc = RC_USAGE;
			goto done;
		}
		if (r < 0) {
			rc = fail(NULL);
			goto done;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmkit-run: unexpected argument '%s' (see --help)\n", argv[optind]);
		rc = RC_USAGE;
		goto done;
	}
	/* A kernel for the firmware: SeaBIOS boots it only through QEMU's
	 * linuxboot option ROM. Added when the flags ask for that and name
	 * no ROM (a JSON config lists its own "option_roms"). */
	if (firmware_flag && kernel_flag && !rom_flag) {
		if (access(LINUXBOOT_ROM, R_OK) != 0)
			fprintf(stderr, "vmkit-run: warning: no %s (Debian's qemu-system-data): "
				"SeaBIOS will not find the kernel; name a ROM with --option-rom\n",
				LINUXBOOT_ROM);
		else if (vmkit_machine_config_add_option_rom(cfg, LINUXBOOT_ROM) < 0) {
			rc = fail(NULL);
			goto done;
		}
	}
	/* With a virtio console, it takes the keyboard; the serial port
	 * still writes (boot messages before hvc0 is up). */
	vmkit_machine_config_set_serial_fds(cfg, virtio_console ? -1 : STDIN_FILENO, STDOUT_FILENO);

	if (vmkit_host_open(kvm_path, 0, &host) < 0) {
		rc = fail(NULL);
		goto done;
	}
	vmkit_host_set_log(host, log_to_stderr, NULL, VMKIT_LOG_WARN);
	if (vmkit_machine_new(host, cfg, &m) < 0) {
		rc = fail(NULL);
		goto done;
	}
	vmkit_machine_config_free(cfg);
	cfg = NULL;

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	raw_tty();

	if (control_path && control_open(&ctl, control_path) < 0) {
		rc = RC_USAGE;
		goto out;
	}
	if (vmkit_machine_start(m) < 0) {
		rc = fail("start");
		goto out;
	}
	for (;;) {
		int r;
		if (ctl.listen_fd >= 0)
			control_poll(&ctl, m, 100);
		r = vmkit_machine_wait(m, ctl.listen_fd >= 0 ? 100 : 200, &ex);
		if (r == 0)
			break;
		if (r != -ETIMEDOUT) {
			rc = fail("wait");
			goto out;
		}
		if (stop_signal)
			vmkit_machine_stop(m);
	}
	switch (ex.reason) {
	case VMKIT_EXIT_POWEROFF: rc = RC_POWEROFF; break;
	case VMKIT_EXIT_EXIT_PORT: rc = ex.status & 0xff; break;
	case VMKIT_EXIT_REBOOT: rc = RC_REBOOT; break;
	case VMKIT_EXIT_PANIC: rc = RC_PANIC; break;
	case VMKIT_EXIT_CRASH:
		fprintf(stderr, "vmkit-run: guest crashed: %s\n", ex.detail);
		rc = RC_CRASH;
		break;
	case VMKIT_EXIT_STOPPED: rc = RC_STOPPED; break;
	default:
		fprintf(stderr, "vmkit-run: %s\n", ex.detail);
		rc = RC_ERROR;
		break;
	}
out:
	control_close(&ctl);
	vmkit_machine_free(m);
	restore_tty();
done:
	if (debugcon_fd >= 0)
		close(debugcon_fd);
	vmkit_machine_config_free(cfg);
	vmkit_host_free(host);
	return rc;
}
