/* SPDX-License-Identifier: MIT */
/* virtio-net (VIRTIO 1.2, 5.1), modern only: queue 0 receiveq, queue 1
 * transmitq, no control queue, no multiqueue. With VERSION_1 every buffer
 * starts with the 12-byte struct virtio_net_hdr_v1. The host side is a
 * backend (net_backend.c): tap, UNIX stream or datagram socket, or the
 * embedder's callbacks.
 *
 * Features: MAC, STATUS and MRG_RXBUF always. A tap with a vnet header
 * also offers the checksum and segmentation offloads it supports (CSUM,
 * GUEST_CSUM, HOST/GUEST_TSO4/6, HOST/GUEST_ECN; HOST/GUEST_UFO when the
 * kernel takes TUN_F_UFO), and at activation the tap is told (TUNSETOFFLOAD)
 * which ones the guest accepted. Other backends offer none: the guest
 * sends complete frames and the header does not go on the wire.
 *
 * Transmit: a chain's readable part is header + frame, in any split.
 * Shorter than header + Ethernet header, or longer than header + 65550
 * bytes: dropped (tx_dropped) and returned with nothing written. Header
 * bits the guest was not allowed to set (offloads not negotiated) are
 * cleared before a tap sees them. When the backend cannot take a frame
 * (EAGAIN; the callback's -EAGAIN) the chain goes back to the ring
 * untouched (vmkit_virtq_unpop) and the queue waits for the backend fd to
 * become writable (the callback: for virtio_net_kick): nothing is dropped
 * or reordered, and no chain is ever kept popped between turns.
 *
 * Receive: a frame read from the backend is held in a host buffer until
 * the guest's buffers take it. With MRG_RXBUF it may span several chains
 * (num_buffers = their number); without it, one chain must hold header +
 * frame. When there are too few buffers the chains taken are given back
 * (unpop), the backend is no longer read (EPOLLIN off: back-pressure goes
 * to the backend, nothing is lost) and delivery resumes when the driver
 * notifies the receive queue (rx_no_buffer). A frame that can never fit is
 * dropped (rx_dropped): without MRG_RXBUF, a chain too small for it (the
 * chain stays for the next frame); with it, a whole ring of chains too
 * small. A frame whose header asks for an offload the guest did not
 * negotiate (a tap still holding frames from before a renegotiation) is
 * dropped too. Driver errors on the receive queue put the device in
 * NEEDS_RESET: a chain with no device-writable buffer, or (MRG_RXBUF) a
 * first chain too small for the header (QEMU does the same).
 *
 * Rate limits (vmkit_rate_limit, per direction): token buckets of bytes
 * and of frames; a frame passes when each holds min(its cost, the
 * bucket's burst), and its whole cost is taken, so a bucket may go into
 * debt (a frame larger than the burst still passes, and the long-run
 * rate holds). Throttled transmit stops taking chains; throttled receive
 * holds the frame and stops reading the backend; a timerfd resumes.
 * A reset does not refill the buckets (a guest cannot reset its way past
 * the limit); virtio_net_set_rate_limit starts them full.
 *
 * The backend going away (end of stream, a protocol error in the stream
 * framing, a dead tap) is logged once: the backend is closed, the link is
 * reported down (config status without LINK_UP, with a config change
 * interrupt) and the device stays usable: the guest's frames are dropped
 * and counted (tx_dropped), the receive queue gets nothing more. A
 * datagram socket without a peer only drops the frames sent meanwhile.
 *
 * Reset drops the frame held for the guest (counted in rx_dropped: it was
 * read for the old driver, whose offload settings it may carry) and
 * forgets waits and timers (no chain is ever held popped between turns,
 * so there is none to free); what the backend still buffers (socket and
 * tap queues, the stream reassembly buffer, the callback inbox) stays and
 * reaches the next driver. A callback's -EAGAIN hold survives a reset
 * until virtio_net_kick: it is the embedder's state, not the guest's.
 * Save/restore keeps the MAC, the backend kind, the offered and
 * negotiated features and offloads, and the rate limits; frames held by
 * the device or the backend are not saved (the network may lose frames
 * anyway). A restored device resumes when it learns its core: on its
 * first callback or control call (the machine kicks the queues once).
 *
 * Threads: queue_notify/activate/reset/save/restore run with the device
 * lock held, on the I/O thread or a vCPU thread; the loop callbacks
 * (backend fd, wake eventfd, two timerfds) run on the I/O thread and take
 * the lock; the control calls (virtio_net_*) run on any thread and take
 * it. All state is under the device lock. All data-path work (backend
 * I/O, tx_fn and ready_fn, loop registration changes) happens on the I/O
 * thread: from another thread the wake eventfd asks for it. A turn does
 * at most NET_BATCH chains or frames per direction; the wake eventfd
 * brings the rest on the next turn (rather than vmkit_virtq_kick_later,
 * as receiving continues from the backend, not from a queue). The loop
 * registrations are made at create and removed at destroy, except that
 * the I/O thread deregisters a backend fd that hung up (its EPOLLHUP
 * cannot be masked and would keep the loop busy). */
#include <linux/if_tun.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "devices/virtio/devutil.h"
#include "devices/virtio/net_backend.h"
#include "loop/loop.h"

/* Feature bits (5.1.3). */
#define NET_F_CSUM 0
#define NET_F_GUEST_CSUM 1
#define NET_F_MAC 5
#define NET_F_GUEST_TSO4 7
#define NET_F_GUEST_TSO6 8
#define NET_F_GUEST_ECN 9
#define NET_F_GUEST_UFO 10
#define NET_F_HOST_TSO4 11
#define NET_F_HOST_TSO6 12
#define NET_F_HOST_ECN 13
#define NET_F_HOST_UFO 14
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS 16
#define F(b) VIRTIO_BIT(NET_F_##b)

/* Config space (5.1.4): mac[6], le16 status, le16 max_virtqueue_pairs,
 * le16 mtu (F_MTU is not offered: 0). */
#define NET_CONFIG_SIZE 12u
#define CFG_STATUS 6u
#define CFG_PAIRS 8u
#define NET_S_LINK_UP 1u

/* struct virtio_net_hdr_v1 (5.1.6). */
#define HDR_FLAGS 0
#define HDR_GSO_TYPE 1
#define HDR_HDR_LEN 2
#define HDR_GSO_SIZE 4
#define HDR_CSUM_START 6
#define HDR_CSUM_OFFSET 8
#define HDR_NUM_BUFFERS 10
#define HDR_F_NEEDS_CSUM 1u
#define HDR_F_DATA_VALID 2u
#define GSO_NONE 0u
#define GSO_TCPV4 1u
#define GSO_UDP 3u
#define GSO_TCPV6 4u
#define GSO_ECN 0x80u

#define RXQ 0
#define TXQ 1
#define NET_QUEUE_SIZE 256u
/* Chains (transmit) or frames (receive) per turn of the I/O loop. */
#define NET_BATCH 256u
#define NET_STATE_VERSION 1u
#define NET_MAC_LEN 6u
#define NS_PER_SEC 1000000000ull
/* Buckets are signed (debt); keep them far from overflow. */
#define BUCKET_MAX (1ull << 62)

struct bucket {
	uint64_t rate;      /* per second; 0: no limit */
	uint64_t burst;
	int64_t tokens;     /* below zero: a debt from a frame larger than the burst */
	uint64_t last_ns;   /* refill clock */
};

struct limiter {
	vmkit_rate_limit cfg;  /* as given (for save) */
	struct bucket bytes, frames;
};

struct net {
	vmkit_virtio_ops ops;
	struct vmkit_loop *loop;
	struct net_backend be;
	int wake_fd, rx_timer, tx_timer;
	vmkit_virtio_dev *_Atomic dev;  /* the core, known from the first callback */
	uint8_t mac[NET_MAC_LEN];
	uint8_t config[NET_CONFIG_SIZE];
	vmkit_net_ready_fn ready_fn;
	void *userdata;

	bool live;                  /* activated, not reset since */
	uint64_t features;          /* negotiated (while live) */
	uint32_t tun_set;           /* TUN_F_* the tap was given */

	/* The backend fd on the loop (these two: I/O thread only). */
	bool be_registered;
	uint32_t be_events;
	_Atomic bool be_hup;        /* it hung up: read what is left, then it is gone */
	bool be_dead;               /* closed: link down */

	/* Transmit waits: for EPOLLOUT, for virtio_net_kick, for tokens. */
	bool tx_wait_out, tx_wait_kick, tx_wait_timer;
	uint8_t *tx_bounce;         /* a frame in too many pieces, made one */

	/* The frame read from the backend and not yet delivered. */
	uint8_t *rx_buf;            /* NET_RX_BUF: header, then the frame */
	size_t rx_len;              /* its frame length */
	bool rx_have;
	bool rx_wait_buf, rx_wait_timer;
	bool want_ready;            /* virtio_net_receive said -EAGAIN */

	struct limiter rx_lim, tx_lim;
	vmkit_net_stats st;
};

/* ---- rate limits ------------------------------------------------------------------ */

static void bucket_set(struct bucket *b, uint64_t rate, uint64_t burst, uint64_t min_burst,
		       uint64_t now)
{
	if (burst == 0) {
		burst = rate / 8;
		if (burst < min_burst)
			burst = min_burst;
	}
	if (burst > BUCKET_MAX)
		burst = BUCKET_MAX;
	b->rate = rate;
	b->burst = burst;
	b->tokens = (int64_t)burst;
	b->last_ns = now;
}

static void bucket_refill(struct bucket *b, uint64_t now)
{
	unsigned __int128 add, room;

	if (!b->rate || now <= b->last_ns)
		return;
	add = (unsigned __int128)(now - b->last_ns) * b->rate / NS_PER_SEC;
	if (add == 0)
		return;
	room = (unsigned __int128)((__int128)b->burst - b->tokens);
	if (add >= room) {
		b->tokens = (int64_t)b->burst;
		b->last_ns = now;
	} else {
		b->tokens += (int64_t)add;
		/* Advance by the time those tokens took: no fraction is lost. */
		b->last_ns += (uint64_t)(add * NS_PER_SEC / b->rate);
	}
}

static int64_t bucket_need(const struct bucket *b, uint64_t cost)
{
	return (int64_t)(cost < b->burst ? cost : b->burst);
}

static bool bucket_ok(const struct bucket *b, uint64_t cost)
{
	return !b->rate || b->tokens >= bucket_need(b, cost);
}

static void bucket_take(struct bucket *b, uint64_t cost)
{
	if (b->rate)
		b->tokens -= (int64_t)(cost < BUCKET_MAX ? cost : BUCKET_MAX);
}

/* How long until bucket_ok(@cost) holds. */
static uint64_t bucket_wait(const struct bucket *b, uint64_t cost, uint64_t now)
{
	unsigned __int128 deficit;
	uint64_t ready;

	if (bucket_ok(b, cost))
		return 0;
	deficit = (unsigned __int128)(bucket_need(b, cost) - b->tokens);
	ready = b->last_ns + (uint64_t)((deficit * NS_PER_SEC + b->rate - 1) / b->rate);
	return ready > now ? ready - now : 1;
}

static void limiter_set(struct limiter *l, const vmkit_rate_limit *cfg)
{
	uint64_t now = dv_now_ns();

	l->cfg = *cfg;
	/* Defaults (device.h): an eighth of a second, at least a 64 KiB
	 * frame / one frame. */
	bucket_set(&l->bytes, cfg->bytes_per_sec, cfg->bytes_burst, 65536, now);
	bucket_set(&l->frames, cfg->frames_per_sec, cfg->frames_burst, 1, now);
}

static bool limiter_pass(struct limiter *l, uint64_t len)
{
	uint64_t now;

	if (!l->bytes.rate && !l->frames.rate)
		return true;
	now = dv_now_ns();
	bucket_refill(&l->bytes, now);
	bucket_refill(&l->frames, now);
	return bucket_ok(&l->bytes, len) && bucket_ok(&l->frames, 1);
}

static void limiter_take(struct limiter *l, uint64_t len)
{
	bucket_take(&l->bytes, len);
	bucket_take(&l->frames, 1);
}

static uint64_t limiter_wait(const struct limiter *l, uint64_t len)
{
	uint64_t now = dv_now_ns(), a = bucket_wait(&l->bytes, len, now),
		 b = bucket_wait(&l->frames, 1, now);

	return a > b ? a : b;
}

static void timer_arm(int fd, uint64_t ns)
{
	struct itimerspec its = { 0 };

	if (ns == 0)
		ns = 1;
	its.it_value.tv_sec = (time_t)(ns / NS_PER_SEC);
	its.it_value.tv_nsec = (long)(ns % NS_PER_SEC);
	timerfd_settime(fd, 0, &its, NULL);
}

static void timer_disarm(int fd)
{
	struct itimerspec its = { 0 };

	timerfd_settime(fd, 0, &its, NULL);
}

/* ---- helpers ---------------------------------------------------------------------- */

static void wake(struct net *n)
{
	uint64_t one = 1;

	if (write(n->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: a wake-up is pending anyway */
	}
}

/* Learn the core from the first callback or control call. A device
 * restored live resumes then: its loop callbacks had no core to lock. */
static void attach(struct net *n, vmkit_virtio_dev *dev)
{
	if (dev && !atomic_load(&n->dev)) {
		atomic_store(&n->dev, dev);
		wake(n);
	}
}

static bool has(const struct net *n, uint64_t bits) { return (n->features & bits) == bits; }

/* The driver broke a queue: nothing moves until it resets the device. */
static bool broken(const vmkit_virtio_dev *dev)
{
	return (dev->status & VIRTIO_STATUS_NEEDS_RESET) != 0;
}

/* The tap offloads for what the guest accepts (5.1.3.1: TSO, ECN and UFO
 * depend on GUEST_CSUM, ECN on a TSO). */
static uint32_t tun_flags_for(uint64_t f)
{
	uint32_t t;

	if (!(f & F(GUEST_CSUM)))
		return 0;
	t = TUN_F_CSUM;
	if (f & F(GUEST_TSO4))
		t |= TUN_F_TSO4;
	if (f & F(GUEST_TSO6))
		t |= TUN_F_TSO6;
	if ((f & F(GUEST_ECN)) && (t & (TUN_F_TSO4 | TUN_F_TSO6)))
		t |= TUN_F_TSO_ECN;
	if (f & F(GUEST_UFO))
		t |= TUN_F_UFO;
	return t;
}

static uint64_t offered_features(const struct net_backend *be)
{
	uint64_t f = F(MAC) | F(STATUS) | F(MRG_RXBUF);
	uint32_t o = be->vnet_hdr ? be->tun_offloads : 0;

	if (!(o & TUN_F_CSUM))
		return f;
	f |= F(CSUM) | F(GUEST_CSUM);
	if (o & TUN_F_TSO4)
		f |= F(HOST_TSO4) | F(GUEST_TSO4);
	if (o & TUN_F_TSO6)
		f |= F(HOST_TSO6) | F(GUEST_TSO6);
	if (o & TUN_F_TSO_ECN)
		f |= F(HOST_ECN) | F(GUEST_ECN);
	if (o & TUN_F_UFO)
		f |= F(HOST_UFO) | F(GUEST_UFO);
	return f;
}

static void set_link(struct net *n, vmkit_virtio_dev *dev, bool up)
{
	vmkit__put_le16(n->config + CFG_STATUS, up ? NET_S_LINK_UP : 0);
	vmkit_virtio_config_changed(dev);
}

/* ---- the backend fd on the loop (I/O thread, device lock held) --------------------- */

static void sync_watch(struct net *n)
{
	uint32_t want = 0;

	if (!n->be_registered)
		return;
	if (n->live && !n->rx_have)
		want |= EPOLLIN;
	if (n->tx_wait_out || net_backend_out_pending(&n->be))
		want |= EPOLLOUT;
	if (want != n->be_events && vmkit__loop_mod(n->loop, n->be.fd, want) == 0)
		n->be_events = want;
}

static void unwatch(struct net *n)
{
	if (n->be_registered)
		vmkit__loop_del(n->loop, n->be.fd);
	n->be_registered = false;
	n->be_events = 0;
}

/* The backend is gone for good (@why: one line). */
static void backend_down(struct net *n, vmkit_virtio_dev *dev, const char *why)
{
	if (n->be_dead)
		return;
	dv_log(dev, VMKIT_LOG_WARN, "%s; the link is down, frames from the guest are dropped", why);
	n->be_dead = true;
	unwatch(n);
	net_backend_close(&n->be);
	n->tx_wait_out = false;
	set_link(n, dev, false);
}

/* ---- transmit (I/O thread, device lock held) ------------------------------------------ */

/* Clear what the guest was not allowed to set (5.1.6.2): the checksum
 * request without CSUM, a GSO type without its HOST_* feature, and the
 * flags a driver never sets on transmit. */
static void tx_fix_header(const struct net *n, uint8_t *h)
{
	uint8_t gso = h[HDR_GSO_TYPE] & (uint8_t)~GSO_ECN;
	bool gso_ok;

	h[HDR_FLAGS] &= HDR_F_NEEDS_CSUM;
	if (!has(n, F(CSUM))) {
		h[HDR_FLAGS] = 0;
		vmkit__put_le16(h + HDR_CSUM_START, 0);
		vmkit__put_le16(h + HDR_CSUM_OFFSET, 0);
	}
	switch (gso) {
	case GSO_TCPV4:
		gso_ok = has(n, F(HOST_TSO4));
		break;
	case GSO_TCPV6:
		gso_ok = has(n, F(HOST_TSO6));
		break;
	case GSO_UDP:
		gso_ok = has(n, F(HOST_UFO));
		break;
	default:
		gso_ok = false;
		break;
	}
	if ((h[HDR_GSO_TYPE] & GSO_ECN) && !has(n, F(HOST_ECN)))
		gso_ok = false;
	if (!gso_ok) {
		h[HDR_GSO_TYPE] = GSO_NONE;
		vmkit__put_le16(h + HDR_HDR_LEN, 0);
		vmkit__put_le16(h + HDR_GSO_SIZE, 0);
	}
	vmkit__put_le16(h + HDR_NUM_BUFFERS, 0);
}

/* The frame part of @e (after the header) as iovecs in @v; a frame in
 * more than NET_IOV_MAX pieces is copied into one buffer. Returns the
 * count. */
static unsigned tx_frame_iov(struct net *n, const vmkit_virtq_elem *e, struct iovec *v,
			     size_t len)
{
	uint64_t skip = NET_HDR_LEN;
	unsigned c = 0;

	for (uint32_t i = 0; i < e->n_out; i++) {
		size_t l = e->out[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		if (c == NET_IOV_MAX) {
			dv_iov_read(e->out, e->n_out, NET_HDR_LEN, n->tx_bounce, len);
			v[0] = (struct iovec){ n->tx_bounce, len };
			return 1;
		}
		v[c++] = (struct iovec){ (uint8_t *)e->out[i].iov_base + skip, l - (size_t)skip };
		skip = 0;
	}
	return c;
}

static void give_back(vmkit_virtio_dev *dev, vmkit_virtq_elem *e)
{
	if (vmkit_virtq_unpop(dev, e) < 0) {
		/* Cannot happen (LIFO is kept); never lose the chain silently. */
		dv_log(dev, VMKIT_LOG_ERROR, "%s", vmkit_last_error());
		vmkit_virtq_push(dev, e, 0);
	}
}

static void tx_pump(struct net *n, vmkit_virtio_dev *dev)
{
	struct iovec v[NET_IOV_MAX];
	bool pushed = false;
	unsigned done = 0;

	if (!n->live || n->tx_wait_out || n->tx_wait_kick || n->tx_wait_timer || broken(dev))
		return;
	while (done < NET_BATCH) {
		vmkit_virtq_elem *e;
		uint8_t hdr[NET_HDR_LEN];
		size_t len;
		unsigned c;
		int r;

		if (vmkit_virtq_pop(dev, TXQ, &e) <= 0)
			break;
		done++;
		if (e->out_len < NET_HDR_LEN + NET_MIN_FRAME ||
		    e->out_len > NET_HDR_LEN + NET_MAX_FRAME || n->be_dead) {
			n->st.tx_dropped++;
			vmkit_virtq_push(dev, e, 0);
			pushed = true;
			continue;
		}
		len = (size_t)e->out_len - NET_HDR_LEN;
		if (!limiter_pass(&n->tx_lim, len)) {
			give_back(dev, e);
			n->st.tx_throttled++;
			n->tx_wait_timer = true;
			timer_arm(n->tx_timer, limiter_wait(&n->tx_lim, len));
			break;
		}
		/* The header is copied once and fixed in the copy. */
		dv_iov_read(e->out, e->n_out, 0, hdr, NET_HDR_LEN);
		tx_fix_header(n, hdr);
		c = tx_frame_iov(n, e, v, len);
		r = net_backend_send(&n->be, hdr, v, c, len);
		if (r == -EAGAIN && atomic_load(&n->be_hup))
			r = vmkit__err(-EPIPE, "virtio-net: %s hung up", n->be.what);
		if (r == -EAGAIN) {
			give_back(dev, e);
			n->st.tx_backpressure++;
			if (n->be.kind == VMKIT_NET_CALLBACK)
				n->tx_wait_kick = true;
			else
				n->tx_wait_out = true;
			break;
		}
		if (r == 0) {
			limiter_take(&n->tx_lim, len);
			n->st.tx_frames++;
			n->st.tx_bytes += len;
		} else {
			n->st.tx_dropped++;
			if (r == -EPIPE)
				backend_down(n, dev, vmkit_last_error());
		}
		vmkit_virtq_push(dev, e, 0);
		pushed = true;
	}
	if (done == NET_BATCH)
		wake(n); /* more on the next turn */
	if (pushed)
		vmkit_virtq_notify(dev, TXQ);
}

/* ---- receive (I/O thread, device lock held) -------------------------------------------- */

/* A header from a tap: drop the frame (false) when it needs an offload
 * the guest did not accept; clear what it need not see. */
static bool rx_fix_header(const struct net *n, uint8_t *h)
{
	uint8_t gso = h[HDR_GSO_TYPE] & (uint8_t)~GSO_ECN;
	bool csum = has(n, F(GUEST_CSUM));

	if ((h[HDR_FLAGS] & HDR_F_NEEDS_CSUM) && !csum)
		return false;
	h[HDR_FLAGS] &= (uint8_t)(HDR_F_NEEDS_CSUM | (csum ? HDR_F_DATA_VALID : 0));
	switch (gso) {
	case GSO_NONE:
		h[HDR_GSO_TYPE] = GSO_NONE;
		return true;
	case GSO_TCPV4:
		if (!has(n, F(GUEST_TSO4)))
			return false;
		break;
	case GSO_TCPV6:
		if (!has(n, F(GUEST_TSO6)))
			return false;
		break;
	case GSO_UDP:
		if (!has(n, F(GUEST_UFO)))
			return false;
		break;
	default:
		return false;
	}
	return !(h[HDR_GSO_TYPE] & GSO_ECN) || has(n, F(GUEST_ECN));
}

enum rx_result { RX_DONE, RX_WAIT, RX_DROP, RX_BROKEN };

static void give_back_all(vmkit_virtio_dev *dev, vmkit_virtq_elem **el, unsigned k)
{
	while (k-- > 0)
		give_back(dev, el[k]);
}

/* Put the held frame into the guest's receive buffers. */
static enum rx_result rx_deliver(struct net *n, vmkit_virtio_dev *dev)
{
	vmkit_virtq_elem *el[NET_QUEUE_SIZE];
	size_t total = NET_HDR_LEN + n->rx_len, off = 0;
	bool mrg = has(n, F(MRG_RXBUF));
	unsigned k = 0, max = mrg ? dev->vq[RXQ].size : 1;
	uint64_t cap = 0;

	if (max > NET_QUEUE_SIZE)
		max = NET_QUEUE_SIZE;
	while (cap < total) {
		int r;

		if (k == max) {
			/* One chain (no MRG_RXBUF) or a whole ring too small:
			 * waiting cannot help. */
			give_back_all(dev, el, k);
			return RX_DROP;
		}
		r = vmkit_virtq_pop(dev, RXQ, &el[k]);
		if (r <= 0) {
			give_back_all(dev, el, k);
			return r < 0 ? RX_BROKEN : RX_WAIT;
		}
		if (el[k]->in_len == 0 || (mrg && k == 0 && el[k]->in_len < NET_HDR_LEN)) {
			dv_log(dev, VMKIT_LOG_WARN,
			       "receive buffer of %llu writable bytes: driver error, device needs reset",
			       (unsigned long long)el[k]->in_len);
			give_back_all(dev, el, k + 1);
			vmkit_virtio_set_needs_reset(dev);
			return RX_BROKEN;
		}
		cap += el[k]->in_len;
		k++;
	}
	vmkit__put_le16(n->rx_buf + HDR_NUM_BUFFERS, (uint16_t)k);
	for (unsigned i = 0; i < k; i++) {
		size_t want = total - off, w;

		if (want > el[i]->in_len)
			want = (size_t)el[i]->in_len;
		w = dv_iov_write(el[i]->in, el[i]->n_in, 0, n->rx_buf + off, want);
		off += w;
		vmkit_virtq_push(dev, el[i], (uint32_t)w);
	}
	return RX_DONE;
}

/* Read the next frame from the backend into rx_buf. false: none now (or
 * the backend is gone). */
static bool rx_read(struct net *n, vmkit_virtio_dev *dev, unsigned *done)
{
	while (*done < NET_BATCH) {
		ssize_t r;

		if (n->be_dead && n->be.kind != VMKIT_NET_CALLBACK)
			return false;
		r = net_backend_recv(&n->be, n->rx_buf);
		if (r == -EAGAIN) {
			if (atomic_load(&n->be_hup) && n->be.kind != VMKIT_NET_CALLBACK)
				backend_down(n, dev, "the backend hung up");
			return false;
		}
		if (r == -EMSGSIZE) {
			n->st.rx_dropped++;
			(*done)++;
			continue;
		}
		if (r < 0) {
			if (r == -EPROTO)
				n->st.rx_dropped++;
			backend_down(n, dev, vmkit_last_error());
			return false;
		}
		if (n->be.vnet_hdr && !rx_fix_header(n, n->rx_buf)) {
			n->st.rx_dropped++;
			(*done)++;
			continue;
		}
		n->rx_len = (size_t)r;
		n->rx_have = true;
		return true;
	}
	return false;
}

static void rx_pump(struct net *n, vmkit_virtio_dev *dev)
{
	bool pushed = false;
	unsigned done = 0;

	if (!n->live || n->rx_wait_buf || n->rx_wait_timer || broken(dev))
		return;
	while (done < NET_BATCH) {
		enum rx_result d;

		if (!n->rx_have && !rx_read(n, dev, &done))
			break;
		if (!limiter_pass(&n->rx_lim, n->rx_len)) {
			n->st.rx_throttled++;
			n->rx_wait_timer = true;
			timer_arm(n->rx_timer, limiter_wait(&n->rx_lim, n->rx_len));
			break;
		}
		d = rx_deliver(n, dev);
		if (d == RX_WAIT) {
			n->st.rx_no_buffer++;
			n->rx_wait_buf = true;
			break;
		}
		if (d == RX_BROKEN)
			break;
		done++;
		n->rx_have = false;
		if (d == RX_DROP) {
			n->st.rx_dropped++;
			continue;
		}
		limiter_take(&n->rx_lim, n->rx_len);
		n->st.rx_frames++;
		n->st.rx_bytes += n->rx_len;
		pushed = true;
	}
	if (done >= NET_BATCH)
		wake(n); /* more on the next turn */
	if (pushed)
		vmkit_virtq_notify(dev, RXQ);
}

/* ---- the work of a turn (I/O thread, device lock held) ----------------------------------- */

static void maybe_ready(struct net *n)
{
	if (!n->want_ready || !net_backend_inbox_has_room(&n->be))
		return;
	n->want_ready = false;
	if (n->ready_fn)
		n->ready_fn(n->userdata);
}

/* @writable: the backend fd reported EPOLLOUT (or hung up). */
static void work(struct net *n, vmkit_virtio_dev *dev, bool writable)
{
	if (writable && net_backend_out_pending(&n->be)) {
		int r = net_backend_flush(&n->be);

		if (r == -EAGAIN && atomic_load(&n->be_hup))
			r = vmkit__err(-EPIPE, "virtio-net: %s hung up", n->be.what);
		if (r == -EPIPE)
			backend_down(n, dev, vmkit_last_error());
	}
	if (writable && !net_backend_out_pending(&n->be))
		n->tx_wait_out = false;
	if (n->live) {
		tx_pump(n, dev);
		rx_pump(n, dev);
	}
	maybe_ready(n);
	sync_watch(n);
}

/* Do the work now on the I/O thread, else ask it to. */
static void kick_work(struct net *n, vmkit_virtio_dev *dev)
{
	if (vmkit__loop_on_thread(n->loop))
		work(n, dev, false);
	else
		wake(n);
}

static void on_backend(void *opaque, int fd, uint32_t events)
{
	struct net *n = opaque;
	vmkit_virtio_dev *dev = atomic_load(&n->dev);
	bool hup = (events & (EPOLLHUP | EPOLLERR)) != 0;

	(void)fd; /* n->be.fd */
	if (!dev) {
		/* Never attached: only a hang-up is reported (events are
		 * off until activation). Stop watching; what is left is read
		 * once there is a driver. (The fd is closed only under the
		 * device lock, so using it here is safe.) */
		if (hup && net_backend_hangup(&n->be)) {
			unwatch(n);
			atomic_store(&n->be_hup, true);
		}
		return;
	}
	vmkit_virtio_lock(dev);
	if (hup && n->be_registered && net_backend_hangup(&n->be)) {
		unwatch(n);
		atomic_store(&n->be_hup, true);
	}
	work(n, dev, (events & EPOLLOUT) || hup);
	vmkit_virtio_unlock(dev);
}

static void on_wake(void *opaque, int fd, uint32_t events)
{
	struct net *n = opaque;
	vmkit_virtio_dev *dev = atomic_load(&n->dev);
	uint64_t v;

	(void)events;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* nothing pending */
	}
	if (!dev)
		return;
	vmkit_virtio_lock(dev);
	work(n, dev, false);
	vmkit_virtio_unlock(dev);
}

static void on_timer(struct net *n, int fd, bool rx)
{
	vmkit_virtio_dev *dev = atomic_load(&n->dev);
	uint64_t ticks;

	/* Nothing to read: re-armed or disarmed since it fired; a wait that
	 * is still on has its own expiry to come. */
	if (read(fd, &ticks, sizeof(ticks)) != (ssize_t)sizeof(ticks) || !dev)
		return;
	vmkit_virtio_lock(dev);
	if (rx)
		n->rx_wait_timer = false;
	else
		n->tx_wait_timer = false;
	work(n, dev, false);
	vmkit_virtio_unlock(dev);
}

static void on_rx_timer(void *opaque, int fd, uint32_t events)
{
	(void)events;
	on_timer(opaque, fd, true);
}

static void on_tx_timer(void *opaque, int fd, uint32_t events)
{
	(void)events;
	on_timer(opaque, fd, false);
}

/* ---- device callbacks (device lock held) --------------------------------------------------- */

static void net_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
	struct net *n = opaque;

	memcpy(data, n->config + offset, len);
}

static void apply_offloads(struct net *n, vmkit_virtio_dev *dev)
{
	uint32_t want = n->live ? tun_flags_for(n->features) & n->be.tun_offloads : 0;

	n->tun_set = 0;
	if (!n->be.vnet_hdr)
		return;
	if (net_backend_set_offloads(&n->be, want) < 0) {
		/* Plain frames then; any with offloads left are dropped. */
		dv_log(dev, VMKIT_LOG_WARN, "%s", vmkit_last_error());
		return;
	}
	n->tun_set = want;
}

static int net_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct net *n = opaque;

	attach(n, dev);
	n->features = features;
	n->live = true;
	apply_offloads(n, dev);
	/* Transmit chains queued before DRIVER_OK were never notified. */
	kick_work(n, dev);
	return 0;
}

static void net_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct net *n = opaque;

	attach(n, dev);
	if (queue == RXQ)
		n->rx_wait_buf = false;
	kick_work(n, dev);
}

/* Forget the driver's state; see the top of the file for what stays. */
static void forget_driver(struct net *n)
{
	if (n->rx_have)
		n->st.rx_dropped++;
	n->rx_have = false;
	n->rx_wait_buf = false;
	n->rx_wait_timer = false;
	n->tx_wait_out = false;
	n->tx_wait_timer = false;
	timer_disarm(n->rx_timer);
	timer_disarm(n->tx_timer);
}

static void net_reset(void *opaque, vmkit_virtio_dev *dev)
{
	struct net *n = opaque;

	attach(n, dev);
	n->live = false;
	n->features = 0;
	forget_driver(n);
	kick_work(n, dev);
}

/* State "VNET" version 1: u8 backend kind, u8 MAC length (6), the MAC,
 * u64 offered features, u8 live, u64 negotiated features, u32 tap
 * offloads set, then the rx and tx limits (4 x u64 each, as configured). */
static void put_limit(struct dev_state_writer *w, const vmkit_rate_limit *l)
{
	dev_state_put_u64(w, l->bytes_per_sec);
	dev_state_put_u64(w, l->bytes_burst);
	dev_state_put_u64(w, l->frames_per_sec);
	dev_state_put_u64(w, l->frames_burst);
}

static void get_limit(struct dev_state_reader *r, vmkit_rate_limit *l)
{
	l->bytes_per_sec = dev_state_get_u64(r);
	l->bytes_burst = dev_state_get_u64(r);
	l->frames_per_sec = dev_state_get_u64(r);
	l->frames_burst = dev_state_get_u64(r);
}

static long net_save(void *opaque, void *buf, size_t cap)
{
	struct net *n = opaque;
	struct dev_state_writer *w = malloc(sizeof(*w));
	long ret;

	if (!w)
		return vmkit__err(-ENOMEM, "virtio-net: out of memory saving state");
	dev_state_begin(w, "VNET");
	dev_state_put_u8(w, (uint8_t)n->be.kind);
	dev_state_put_u8(w, NET_MAC_LEN);
	dev_state_put_bytes(w, n->mac, NET_MAC_LEN);
	dev_state_put_u64(w, n->ops.features);
	dev_state_put_u8(w, n->live);
	dev_state_put_u64(w, n->features);
	dev_state_put_u32(w, n->tun_set);
	put_limit(w, &n->rx_lim.cfg);
	put_limit(w, &n->tx_lim.cfg);
	ret = dv_save_out(w, NET_STATE_VERSION, buf, cap);
	free(w);
	return ret;
}

static bool mac_ok(const uint8_t *mac)
{
	static const uint8_t zero[NET_MAC_LEN];

	return !(mac[0] & 1) && memcmp(mac, zero, NET_MAC_LEN) != 0;
}

static int bad_state(const char *what)
{
	return vmkit__err(-EINVAL, "VNET state: %s", what);
}

static int net_restore(void *opaque, const void *buf, size_t len)
{
	struct net *n = opaque;
	struct dev_state_reader r;
	vmkit_rate_limit rxl, txl;
	uint8_t kind, mac_len, live, mac[NET_MAC_LEN];
	uint64_t offered, features;
	uint32_t tun, want_tun;
	int ret = dev_state_open(&r, buf, len, "VNET", NET_STATE_VERSION);

	if (ret < 0)
		return ret;
	kind = dev_state_get_u8(&r);
	mac_len = dev_state_get_u8(&r);
	if (!r.bad && mac_len != NET_MAC_LEN)
		return bad_state("MAC address length is not 6");
	dev_state_get_bytes(&r, mac, NET_MAC_LEN);
	offered = dev_state_get_u64(&r);
	live = dev_state_get_u8(&r);
	features = dev_state_get_u64(&r);
	tun = dev_state_get_u32(&r);
	get_limit(&r, &rxl);
	get_limit(&r, &txl);
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	if (kind != n->be.kind)
		return bad_state("saved with another kind of backend");
	if (!mac_ok(mac))
		return bad_state("MAC address is multicast or zero");
	if (offered != n->ops.features)
		return bad_state("saved by a device offering other features");
	if (live > 1)
		return bad_state("bad live flag");
	if (features & ~(offered | VIRTIO_TRANSPORT_FEATURES))
		return bad_state("negotiated features were not offered");
	if (live != ((features & VIRTIO_BIT(VIRTIO_F_VERSION_1)) != 0))
		return bad_state("negotiated features do not match the live flag");
	want_tun = live && n->be.vnet_hdr ? tun_flags_for(features) & n->be.tun_offloads : 0;
	if (tun & ~want_tun)
		return bad_state("tap offloads beyond the negotiated features");

	memcpy(n->mac, mac, NET_MAC_LEN);
	memcpy(n->config, mac, NET_MAC_LEN);
	n->live = live;
	n->features = live ? features : 0;
	forget_driver(n);
	limiter_set(&n->rx_lim, &rxl);
	limiter_set(&n->tx_lim, &txl);
	if (n->be.vnet_hdr && n->be.fd >= 0 && net_backend_set_offloads(&n->be, tun) == 0)
		n->tun_set = tun;
	else
		n->tun_set = 0;
	wake(n);
	return 0;
}

static void net_destroy(void *opaque)
{
	struct net *n = opaque;

	if (!n)
		return;
	unwatch(n);
	net_backend_close(&n->be);
	if (n->wake_fd >= 0) {
		vmkit__loop_del(n->loop, n->wake_fd);
		close(n->wake_fd);
	}
	if (n->rx_timer >= 0) {
		vmkit__loop_del(n->loop, n->rx_timer);
		close(n->rx_timer);
	}
	if (n->tx_timer >= 0) {
		vmkit__loop_del(n->loop, n->tx_timer);
		close(n->tx_timer);
	}
	free(n->rx_buf);
	free(n->tx_bounce);
	free(n);
}

static const vmkit_virtio_ops net_ops_template = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = VMKIT_VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max = NET_QUEUE_SIZE,
	.config_size = NET_CONFIG_SIZE,
	.config_read = net_config_read,
	/* config_write NULL: the config space is read-only (no CTRL_MAC_ADDR). */
	.activate = net_activate,
	.queue_notify = net_notify,
	.reset = net_reset,
	.save = net_save,
	.restore = net_restore,
	.destroy = net_destroy,
};

/* ---- creation --------------------------------------------------------------------------- */

static void random_mac(uint8_t *mac)
{
	if (getrandom(mac, NET_MAC_LEN, GRND_NONBLOCK) != (ssize_t)NET_MAC_LEN) {
		/* Entropy not ready this early: distinct enough per process. */
		uint64_t x = dv_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)mac;

		for (unsigned i = 0; i < NET_MAC_LEN; i++)
			mac[i] = (uint8_t)(x >> (8 * i));
	}
	/* Locally administered, unicast. */
	mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02);
}

static int check_config(const vmkit_net_config *cfg, struct vmkit_loop *loop)
{
	if (!cfg || cfg->size < sizeof(*cfg))
		return vmkit__err(-EINVAL, "virtio-net: configuration missing or of size %u (expected %zu)",
				  cfg ? cfg->size : 0, sizeof(*cfg));
	if (!loop)
		return vmkit__err(-EINVAL, "virtio-net: needs an event loop");
	if (cfg->backend > VMKIT_NET_CALLBACK)
		return vmkit__err(-EINVAL, "virtio-net: unknown backend %u", cfg->backend);
	if (cfg->mac_set && !mac_ok(cfg->mac))
		return vmkit__err(-EINVAL, "virtio-net: MAC %02x:%02x:%02x:%02x:%02x:%02x is multicast or zero",
				  cfg->mac[0], cfg->mac[1], cfg->mac[2], cfg->mac[3], cfg->mac[4],
				  cfg->mac[5]);
	return 0;
}

int virtio_net_create(const vmkit_net_config *cfg, struct vmkit_loop *loop,
		      const vmkit_virtio_ops **ops, void **opaque)
{
	struct net *n;
	int ret;

	if ((ret = check_config(cfg, loop)) < 0)
		return ret;
	n = calloc(1, sizeof(*n));
	if (!n)
		return vmkit__err(-ENOMEM, "virtio-net: out of memory");
	n->ops = net_ops_template;
	n->loop = loop;
	n->be.fd = n->wake_fd = n->rx_timer = n->tx_timer = -1;
	n->ready_fn = cfg->ready_fn;
	n->userdata = cfg->userdata;
	if ((ret = net_backend_open(&n->be, cfg)) < 0) {
		n->be.fd = -1;
		goto fail;
	}
	n->ops.features = offered_features(&n->be);
	n->rx_buf = malloc(NET_RX_BUF);
	n->tx_bounce = malloc(NET_MAX_FRAME);
	if (!n->rx_buf || !n->tx_bounce) {
		ret = vmkit__err(-ENOMEM, "virtio-net: out of memory");
		goto fail;
	}
	if (cfg->mac_set)
		memcpy(n->mac, cfg->mac, NET_MAC_LEN);
	else
		random_mac(n->mac);
	memcpy(n->config, n->mac, NET_MAC_LEN);
	vmkit__put_le16(n->config + CFG_STATUS, NET_S_LINK_UP);
	vmkit__put_le16(n->config + CFG_PAIRS, 1);
	limiter_set(&n->rx_lim, &cfg->rx);
	limiter_set(&n->tx_lim, &cfg->tx);

	n->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->wake_fd < 0) {
		ret = vmkit__err(-errno, "virtio-net: eventfd: %s", strerror(errno));
		goto fail;
	}
	if ((ret = vmkit__loop_add(loop, n->wake_fd, EPOLLIN, on_wake, n)) < 0) {
		close(n->wake_fd);
		n->wake_fd = -1;
		goto fail;
	}
	if ((ret = dv_timer_new(loop, "virtio-net", on_rx_timer, n, &n->rx_timer)) < 0 ||
	    (ret = dv_timer_new(loop, "virtio-net", on_tx_timer, n, &n->tx_timer)) < 0)
		goto fail;
	if (n->be.fd >= 0) {
		/* Nothing is watched until there is a driver. */
		if ((ret = vmkit__loop_add(loop, n->be.fd, 0, on_backend, n)) < 0)
			goto fail;
		n->be_registered = true;
	}
	*ops = &n->ops;
	*opaque = n;
	return 0;
fail:
	net_destroy(n);
	return ret;
}

/* ---- control calls (any thread) ----------------------------------------------------------- */

int virtio_net_get_stats(void *opaque, vmkit_virtio_dev *dev, vmkit_net_stats *st)
{
	struct net *n = opaque;
	uint32_t size;

	if (!n || !dev || !st)
		return vmkit__err(-EINVAL, "virtio-net stats: bad arguments");
	if (st->size < sizeof(*st))
		return vmkit__err(-EINVAL, "virtio-net stats: size %u, expected at least %zu", st->size,
				  sizeof(*st));
	size = st->size;
	vmkit_virtio_lock(dev);
	attach(n, dev);
	*st = n->st;
	vmkit_virtio_unlock(dev);
	st->size = size;
	st->reserved = 0;
	return 0;
}

int virtio_net_set_rate_limit(void *opaque, vmkit_virtio_dev *dev, const vmkit_rate_limit *rx,
			      const vmkit_rate_limit *tx)
{
	struct net *n = opaque;

	if (!n || !dev)
		return vmkit__err(-EINVAL, "virtio-net rate limit: bad arguments");
	vmkit_virtio_lock(dev);
	attach(n, dev);
	if (rx) {
		limiter_set(&n->rx_lim, rx);
		n->rx_wait_timer = false;
		timer_disarm(n->rx_timer);
	}
	if (tx) {
		limiter_set(&n->tx_lim, tx);
		n->tx_wait_timer = false;
		timer_disarm(n->tx_timer);
	}
	kick_work(n, dev);
	vmkit_virtio_unlock(dev);
	return 0;
}

int virtio_net_receive(void *opaque, vmkit_virtio_dev *dev, const void *frame, size_t len)
{
	struct net *n = opaque;
	int ret;

	if (!n || !dev || (!frame && len))
		return vmkit__err(-EINVAL, "virtio-net receive: bad arguments");
	if (n->be.kind != VMKIT_NET_CALLBACK)
		return vmkit__err(-ENOTSUP, "virtio-net: frames are given only to a callback backend");
	if (len < NET_MIN_FRAME || len > 65535)
		return vmkit__err(-EMSGSIZE, "virtio-net: a frame of %zu bytes (%u..65535)", len,
				  NET_MIN_FRAME);
	vmkit_virtio_lock(dev);
	attach(n, dev);
	ret = net_backend_inbox_put(&n->be, frame, len);
	if (ret == -EAGAIN) {
		n->want_ready = true;
		ret = vmkit__err(-EAGAIN, "virtio-net: the receive queue is full");
	} else if (ret == 0) {
		kick_work(n, dev);
	}
	vmkit_virtio_unlock(dev);
	return ret;
}

int virtio_net_kick(void *opaque, vmkit_virtio_dev *dev)
{
	struct net *n = opaque;

	if (!n || !dev)
		return vmkit__err(-EINVAL, "virtio-net kick: bad arguments");
	if (n->be.kind != VMKIT_NET_CALLBACK)
		return vmkit__err(-ENOTSUP, "virtio-net: only a callback backend is kicked");
	vmkit_virtio_lock(dev);
	attach(n, dev);
	n->tx_wait_kick = false;
	kick_work(n, dev);
	vmkit_virtio_unlock(dev);
	return 0;
}
