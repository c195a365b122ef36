/* SPDX-License-Identifier: MIT */
/* virtio-vsock (VIRTIO 1.2, 5.10): stream sockets between the guest and
 * host programs, the host side on UNIX sockets by the protocol of
 * Firecracker's vsock device. Queues: 0 rx (device to driver), 1 tx
 * (driver to device), 2 event. Only VIRTIO_VSOCK_F_STREAM is offered.
 *
 * Host side:
 *  - host to guest: a host program connects to @uds_path (we listen
 *    there) and writes `CONNECT <port>\n`. We pick a host port of our own
 *    (a counter from 2^30 up, never one a live connection uses) and send
 *    the guest an OP_REQUEST; its OP_RESPONSE makes us write
 *    `OK <hostport>\n` and the socket carries the stream from then on;
 *    its OP_RST, or no answer within VSOCK_CONNECT_TIMEOUT, closes the
 *    socket. The line is read with MSG_PEEK up to its '\n', so bytes the
 *    program sends right after it are stream data.
 *  - guest to host: an OP_REQUEST for CID 2 port P connects (non-blocking)
 *    to `<uds_path>_P`: OP_RESPONSE when it connects, OP_RST when not.
 *
 * Flow control (5.10.6.3): each connection advertises VSOCK_BUF_ALLOC
 * bytes. Guest data goes to the socket with a non-blocking send; what it
 * does not take waits in a ring of at most VSOCK_BUF_ALLOC bytes that
 * EPOLLOUT drains, so the credit we advertised is exactly the room left
 * in that ring, and fwd_cnt counts bytes the socket took. A guest that
 * sends beyond it is reset. We send OP_CREDIT_UPDATE once half of the
 * buffer has been forwarded since the guest last heard our fwd_cnt (any
 * packet carries it), and on OP_CREDIT_REQUEST. Host data is read only
 * into the guest's receive buffers, never more than the guest's credit
 * allows: a socket whose data cannot go anywhere (no credit, no receive
 * buffer) is not watched until a CREDIT_UPDATE or an rx notify comes.
 * Packets a connection owes the guest (REQUEST, RESPONSE, CREDIT_UPDATE,
 * SHUTDOWN) are flags on the connection, so they are bounded by the
 * connection count; RSTs for packets with no connection wait in a ring of
 * VSOCK_RST_QUEUE entries and are dropped when it is full (the guest's
 * connect then times out rather than failing fast).
 *
 * Closing, as Linux does it: the guest's SHUTDOWN SEND becomes
 * shutdown(SHUT_WR) once the buffered data is written, RCV stops reading,
 * both together close the socket (after the flush, within
 * VSOCK_CLOSE_TIMEOUT) and are answered with RST. The host program's EOF
 * becomes SHUTDOWN SEND, or SEND|RCV when the socket is closed for good
 * (POLLHUP: nobody will read what the guest sends) or the guest has
 * stopped sending already; after SEND|RCV we wait VSOCK_CLOSE_TIMEOUT for
 * the guest's RST, then send one. A socket error (ECONNRESET: the program
 * closed with data of ours unread) resets the connection once the data
 * it sent before has gone to the guest.
 *
 * Guest packets are hostile: the header is copied out once and checked
 * there. A wrong source CID (not the guest's) or destination CID (not 2)
 * is dropped; another socket type, an unknown op, a length beyond the
 * buffer (or a payload on anything but RW), or a packet for no
 * connection is answered with an RST (an RST never is); on a connection
 * the packet resets that connection and no other.
 *
 * Limits: VSOCK_MAX_CONNS connections, VSOCK_MAX_LINES host sockets still
 * sending their CONNECT line (VSOCK_LINE_MAX bytes, VSOCK_LINE_TIMEOUT);
 * beyond that new host sockets are closed and guest REQUESTs reset. The
 * output ring is allocated only while it holds data, so memory is at
 * most VSOCK_MAX_CONNS * VSOCK_BUF_ALLOC (256 MiB) with a guest that
 * fills every connection towards a host program that reads nothing.
 *
 * Reset closes every host socket (the programs see EOF) and keeps
 * listening. Snapshots carry no connections: the blob is only the guest
 * CID, and a restore closes every host socket and puts
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue (as soon as the
 * driver has a buffer there and we know the device core, i.e. from its
 * next callback), so the guest drops its connections too.
 *
 * Threads and locks: queue_notify/activate/reset/save/restore run with
 * the device lock held (I/O or vCPU thread); the loop callbacks run on the
 * I/O thread and take the device lock once the core is known (from its
 * first callback). All state is under our own mutex @lock, taken after
 * the device lock, never before it; a loop callback that runs before the
 * core is known holds only @lock and touches no queue. Loop registrations
 * change only on the I/O thread: elsewhere, state changes mark the
 * connection dirty and the wake eventfd has the I/O thread bring its
 * registration up to date (and free closed connections: a connection is
 * shut down at once, so the host sees EOF, but freed only there). Every
 * fd is non-blocking; nothing here waits. */
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/devices.h"
#include "devices/virtio/devutil.h"
#include "loop/loop.h"

/* The specification's numbers (5.10). */
#define VSOCK_F_STREAM 0
#define VSOCK_HOST_CID 2u
#define VSOCK_TYPE_STREAM 1u
#define OP_REQUEST 1u
#define OP_RESPONSE 2u
#define OP_RST 3u
#define OP_SHUTDOWN 4u
#define OP_RW 5u
#define OP_CREDIT_UPDATE 6u
#define OP_CREDIT_REQUEST 7u
#define SHUT_F_RCV 1u
#define SHUT_F_SEND 2u
#define SHUT_F_BOTH 3u
#define EVENT_TRANSPORT_RESET 0u
#define HDR_LEN 44u
#define Q_RX 0
#define Q_TX 1
#define Q_EVENT 2

#define VSOCK_QUEUE_SIZE 256u
#define VSOCK_CONFIG_SIZE 8u /* le64 guest_cid */
#define VSOCK_STATE_VERSION 1u
#define VSOCK_MIN_CID 3ull
#define VSOCK_MAX_CID 0xfffffffeull

#define VSOCK_MAX_CONNS 1024u
#define VSOCK_MAX_LINES 64u
#define VSOCK_LINE_MAX 64u
#define VSOCK_BUF_ALLOC (256u * 1024u)
#define VSOCK_CREDIT_UPDATE_AT (VSOCK_BUF_ALLOC / 2)
/* Payload of one packet to the guest at most (Linux's own packet limit). */
#define VSOCK_MAX_RX_PAYLOAD (64u * 1024u)
#define VSOCK_RST_QUEUE 64u
/* Packets handled per queue per turn before the I/O thread moves on. */
#define VSOCK_BATCH 256u
#define VSOCK_ACCEPT_BATCH 16u
#define NS_PER_MS 1000000ull
#define VSOCK_CONNECT_TIMEOUT (5000 * NS_PER_MS) /* a slow (emulated, loaded) guest still answers in time */
#define VSOCK_CLOSE_TIMEOUT (2000 * NS_PER_MS)
#define VSOCK_LINE_TIMEOUT (10000 * NS_PER_MS)
/* After accept() ran out of fds, listening pauses this long. */
#define VSOCK_ACCEPT_RETRY (100 * NS_PER_MS)
#define VSOCK_FIRST_HOST_PORT (1u << 30)
#define VSOCK_HASH 2048u /* buckets, a power of two */
#define VSOCK_MAX_IOV 64u
/* "_4294967295": what a port adds to @uds_path for a guest connect. */
#define PORT_SUFFIX_MAX 11u
#define UDS_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1 - PORT_SUFFIX_MAX)

/* Packets a connection owes the guest. */
#define P_REQUEST 1u
#define P_RESPONSE 2u
#define P_CREDIT_UPDATE 4u

struct pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

enum conn_state {
	CS_LINE,    /* accepted host socket; its CONNECT line is not complete */
	CS_REQUEST, /* host-initiated: REQUEST owed or sent, no RESPONSE yet */
	CS_OPEN,    /* established */
	CS_DEAD,    /* shut down, out of the table; freed by the I/O thread */
};

struct vsock;

struct conn {
	struct vsock *v;
	TAILQ_ENTRY(conn) all_link, rx_link, dirty_link;
	struct conn *hnext;         /* hash chain */
	int fd;
	enum conn_state state;
	bool line_slot;             /* counted in n_lines, not n_conns */
	bool in_table, listed, dirty, registered;
	uint32_t reg_events;
	uint32_t lport, pport;      /* our port, the guest's */
	uint64_t deadline;          /* CLOCK_MONOTONIC ns, 0: none */
	uint8_t line_len;
	char line[VSOCK_LINE_MAX];
	uint8_t pend;               /* P_* */
	uint8_t shut_want, shut_sent; /* SHUTDOWN flags for the guest */
	uint8_t guest_shut;         /* SHUTDOWN flags from the guest */
	bool data_pending;          /* the socket signalled input not read yet */
	bool host_eof;
	bool out_dead;              /* nobody reads the socket: guest data dropped */
	bool wr_shut;               /* shutdown(SHUT_WR) done */
	/* Host to guest: the guest's credit. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* Guest to host: bytes the socket took, and the last we told. */
	uint32_t fwd_cnt, adv_fwd_cnt;
	uint8_t *obuf;              /* ring of VSOCK_BUF_ALLOC, NULL when empty */
	uint32_t ohead, olen;
	char ok[24];                /* "OK <port>\n" still to write */
	uint8_t ok_len, ok_off;
};

struct rst_entry {
	uint32_t src_port, dst_port; /* ours, the guest's */
	uint16_t type;
};

struct vsock {
	vmkit_virtio_ops ops;
	struct vmkit_loop *loop;
	pthread_mutex_t lock;
	vmkit_virtio_dev *_Atomic dev; /* the core, known from its first callback */
	uint64_t guest_cid;
	uint8_t config[VSOCK_CONFIG_SIZE];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t path_len;
	dev_t path_dev;             /* the socket file we created */
	ino_t path_ino;
	int listen_fd, wake_fd, timer_fd;
	bool listen_registered;     /* on the loop (EPOLLIN or, paused, nothing) */
	bool listen_watched, listen_paused;
	uint64_t listen_retry_at;
	bool event_pending;         /* TRANSPORT_RESET owed (after a restore) */
	bool more;                  /* a batch limit was hit: the wake callback goes on */
	uint64_t timer_at;          /* armed for this time, 0: not armed */
	uint32_t next_port;
	unsigned n_conns, n_lines;
	TAILQ_HEAD(, conn) conns, rxq, dirtyq;
	struct conn *table[VSOCK_HASH];
	struct rst_entry rst[VSOCK_RST_QUEUE];
	unsigned rst_head, rst_len;
};

static void hdr_parse(const uint8_t *b, struct pkt *p)
{
	p->src_cid = vmkit__get_le64(b);
	p->dst_cid = vmkit__get_le64(b + 8);
	p->src_port = vmkit__get_le32(b + 16);
	p->dst_port = vmkit__get_le32(b + 20);
	p->len = vmkit__get_le32(b + 24);
	p->type = vmkit__get_le16(b + 28);
	p->op = vmkit__get_le16(b + 30);
	p->flags = vmkit__get_le32(b + 32);
	p->buf_alloc = vmkit__get_le32(b + 36);
	p->fwd_cnt = vmkit__get_le32(b + 40);
}

static void hdr_build(uint8_t *b, const struct pkt *p)
{
	vmkit__put_le64(b, p->src_cid);
	vmkit__put_le64(b + 8, p->dst_cid);
	vmkit__put_le32(b + 16, p->src_port);
	vmkit__put_le32(b + 20, p->dst_port);
	vmkit__put_le32(b + 24, p->len);
	vmkit__put_le16(b + 28, p->type);
	vmkit__put_le16(b + 30, p->op);
	vmkit__put_le32(b + 32, p->flags);
	vmkit__put_le32(b + 36, p->buf_alloc);
	vmkit__put_le32(b + 40, p->fwd_cnt);
}

/* The iovecs covering [@off, @off + @len) of @iov[0..@n), at most @max of
 * them; returns how many. */
static unsigned iov_slice(const struct iovec *iov, uint32_t n, uint64_t off, uint64_t len,
			  struct iovec *out, unsigned max)
{
	unsigned k = 0;

	for (uint32_t i = 0; i < n && len > 0 && k < max; i++) {
		size_t l = iov[i].iov_len, take;

		if (off >= l) {
			off -= l;
			continue;
		}
		take = l - (size_t)off < len ? l - (size_t)off : (size_t)len;
		out[k].iov_base = (uint8_t *)iov[i].iov_base + off;
		out[k].iov_len = take;
		k++;
		len -= take;
		off = 0;
	}
	return k;
}

/* ---- wake-ups, timer -------------------------------------------------------------- */

static void wake(struct vsock *v)
{
	uint64_t one = 1;

	if (write(v->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: a wake-up is pending anyway */
	}
}

static void arm_timer(struct vsock *v, uint64_t at)
{
	struct itimerspec its = { 0 };

	if (v->timer_at && v->timer_at <= at)
		return;
	its.it_value.tv_sec = (time_t)(at / 1000000000ull);
	its.it_value.tv_nsec = (long)(at % 1000000000ull);
	if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1;
	if (timerfd_settime(v->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		v->timer_at = at;
}

static void set_deadline(struct vsock *v, struct conn *c, uint64_t delay)
{
	c->deadline = dv_now_ns() + delay;
	arm_timer(v, c->deadline);
}

/* ---- the connection table --------------------------------------------------------- */

static unsigned hash(uint32_t lport, uint32_t pport)
{
	uint32_t h = lport * 0x9e3779b1u ^ pport * 0x85ebca6bu;

	return (h ^ h >> 15) & (VSOCK_HASH - 1);
}

static struct conn *lookup(struct vsock *v, uint32_t lport, uint32_t pport)
{
	for (struct conn *c = v->table[hash(lport, pport)]; c; c = c->hnext)
		if (c->lport == lport && c->pport == pport)
			return c;
	return NULL;
}

static void table_add(struct vsock *v, struct conn *c)
{
	unsigned h = hash(c->lport, c->pport);

	c->hnext = v->table[h];
	v->table[h] = c;
	c->in_table = true;
}

static void table_remove(struct vsock *v, struct conn *c)
{
	struct conn **pp = &v->table[hash(c->lport, c->pport)];

	if (!c->in_table)
		return;
	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	c->in_table = false;
}

/* A host port no live connection uses as its own. */
static uint32_t alloc_port(struct vsock *v)
{
	for (;;) {
		uint32_t p = v->next_port++;
		bool used = false;
		struct conn *c;

		if (v->next_port == 0)
			v->next_port = VSOCK_FIRST_HOST_PORT;
		TAILQ_FOREACH(c, &v->conns, all_link)
			if (c->in_table && c->lport == p) {
				used = true;
				break;
			}
		if (!used)
			return p;
	}
}

/* ---- connection state ------------------------------------------------------------- */

static void touch(struct vsock *v, struct conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		TAILQ_INSERT_TAIL(&v->dirtyq, c, dirty_link);
	}
}

static uint32_t peer_credit(const struct conn *c)
{
	uint32_t used = c->tx_cnt - c->peer_fwd_cnt;

	return used >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - used;
}

static bool can_read(const struct conn *c)
{
	return c->state == CS_OPEN && !c->host_eof && !(c->guest_shut & SHUT_F_RCV);
}

static bool has_output(const struct conn *c) { return c->ok_off < c->ok_len || c->olen > 0; }

/* Does @c have a packet for the guest (or input to look at) now? */
static bool has_packet(const struct conn *c)
{
	if (c->state != CS_OPEN && c->state != CS_REQUEST)
		return false;
	if (c->pend || (c->shut_want & ~c->shut_sent))
		return true;
	return c->data_pending && can_read(c) && peer_credit(c) > 0;
}

static void unlist(struct vsock *v, struct conn *c)
{
	if (c->listed) {
		TAILQ_REMOVE(&v->rxq, c, rx_link);
		c->listed = false;
	}
}

static void relist(struct vsock *v, struct conn *c)
{
	if (!c->listed && has_packet(c)) {
		TAILQ_INSERT_TAIL(&v->rxq, c, rx_link);
		c->listed = true;
	}
}

static uint32_t want_events(const struct conn *c)
{
	uint32_t ev = 0;

	switch (c->state) {
	case CS_LINE:
		return EPOLLIN;
	case CS_OPEN:
		if (can_read(c) && !c->data_pending)
			ev |= EPOLLIN;
		if (has_output(c) && !c->out_dead)
			ev |= EPOLLOUT;
		return ev;
	default:
		return 0;
	}
}

static void rst_queue(struct vsock *v, uint32_t src_port, uint32_t dst_port, uint16_t type)
{
	if (v->rst_len == VSOCK_RST_QUEUE) {
		dv_log(atomic_load(&v->dev), VMKIT_LOG_DEBUG, "reset queue full: RST to port %u dropped",
		       dst_port);
		return;
	}
	v->rst[(v->rst_head + v->rst_len) % VSOCK_RST_QUEUE] =
		(struct rst_entry){ src_port, dst_port, type };
	v->rst_len++;
}

/* Answer a guest packet that has no connection with an RST. */
static void rst_reply(struct vsock *v, const struct pkt *p)
{
	if (p->op != OP_RST)
		rst_queue(v, p->dst_port, p->src_port, p->type);
}

static void free_obuf(struct conn *c)
{
	free(c->obuf);
	c->obuf = NULL;
	c->ohead = c->olen = 0;
}

/* Close @c: its host socket sees EOF now; the I/O thread frees it. With
 * @rst the guest is told (an established or connecting connection). */
static void conn_kill(struct vsock *v, struct conn *c, bool rst)
{
	if (c->state == CS_DEAD)
		return;
	if (rst && c->state != CS_LINE)
		rst_queue(v, c->lport, c->pport, VSOCK_TYPE_STREAM);
	table_remove(v, c);
	unlist(v, c);
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	free_obuf(c);
	c->state = CS_DEAD;
	c->deadline = 0;
	touch(v, c);
}

static struct conn *conn_new(struct vsock *v, int fd, enum conn_state state)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->v = v;
	c->fd = fd;
	c->state = state;
	c->line_slot = state == CS_LINE;
	if (c->line_slot)
		v->n_lines++;
	else
		v->n_conns++;
	TAILQ_INSERT_TAIL(&v->conns, c, all_link);
	touch(v, c);
	return c;
}

/* Free a dead connection. I/O thread (or no loop running). */
static void conn_reap(struct vsock *v, struct conn *c)
{
	if (c->registered)
		vmkit__loop_del(v->loop, c->fd);
	if (c->fd >= 0)
		close(c->fd);
	if (c->line_slot)
		v->n_lines--;
	else
		v->n_conns--;
	unlist(v, c);
	TAILQ_REMOVE(&v->conns, c, all_link);
	free_obuf(c);
	free(c);
}

static void reset_all(struct vsock *v)
{
	struct conn *c;

	TAILQ_FOREACH(c, &v->conns, all_link)
		conn_kill(v, c, false);
	v->rst_len = 0;
	v->rst_head = 0;
	v->more = false;
}

/* ---- host socket I/O -------------------------------------------------------------- */

static ssize_t send_iov(int fd, struct iovec *iov, unsigned n)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t r;

	do
		r = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r;
}

static void maybe_credit_update(struct vsock *v, struct conn *c)
{
	if (c->fwd_cnt - c->adv_fwd_cnt >= VSOCK_CREDIT_UPDATE_AT) {
		c->pend |= P_CREDIT_UPDATE;
		relist(v, c);
	}
}

/* Nobody will read what the guest sends: drop it (counted as forwarded,
 * so the guest's credit keeps moving) and tell the guest. */
static void out_gone(struct vsock *v, struct conn *c)
{
	c->out_dead = true;
	c->fwd_cnt += c->olen;
	free_obuf(c);
	c->ok_off = c->ok_len;
	c->shut_want |= SHUT_F_RCV;
	relist(v, c);
}

/* The guest asked for both directions to close: done once the output is
 * written (or VSOCK_CLOSE_TIMEOUT). */
static bool guest_closing(const struct conn *c) { return c->guest_shut == SHUT_F_BOTH; }

/* Write what the socket takes; once all is out, the guest's close or
 * half-close follows. */
static void flush(struct vsock *v, struct conn *c)
{
	while (has_output(c) && !c->out_dead) {
		struct iovec iov[3];
		unsigned n = 0;
		uint32_t first;
		ssize_t r;
		size_t ok = c->ok_len - c->ok_off;

		if (ok)
			iov[n++] = (struct iovec){ c->ok + c->ok_off, ok };
		if (c->olen) {
			first = VSOCK_BUF_ALLOC - c->ohead < c->olen ? VSOCK_BUF_ALLOC - c->ohead : c->olen;
			iov[n++] = (struct iovec){ c->obuf + c->ohead, first };
			if (first < c->olen)
				iov[n++] = (struct iovec){ c->obuf, c->olen - first };
		}
		r = send_iov(c->fd, iov, n);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0) {
			out_gone(v, c);
			break;
		}
		if ((size_t)r <= ok) {
			c->ok_off = (uint8_t)(c->ok_off + r);
			continue;
		}
		c->ok_off = c->ok_len;
		r -= (ssize_t)ok;
		c->ohead = (uint32_t)((c->ohead + (uint32_t)r) % VSOCK_BUF_ALLOC);
		c->olen -= (uint32_t)r;
		c->fwd_cnt += (uint32_t)r;
		if (c->olen == 0)
			free_obuf(c);
	}
	maybe_credit_update(v, c);
	if (has_output(c) && !c->out_dead)
		return;
	if (guest_closing(c)) {
		conn_kill(v, c, true);
		return;
	}
	if ((c->guest_shut & SHUT_F_SEND) && !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
}

/* The host program's EOF: everything it sent has been read. */
static void host_eof(struct vsock *v, struct conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = 0 };

	c->host_eof = true;
	c->data_pending = false;
	c->shut_want |= SHUT_F_SEND;
	if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) && !c->out_dead)
		out_gone(v, c);
	if (c->guest_shut & SHUT_F_SEND)
		c->shut_want |= SHUT_F_RCV;
	relist(v, c);
}

/* What is waiting on @c's socket: 1 data, 0 EOF, -EAGAIN nothing, < 0 an
 * error. */
static int peek_input(struct conn *c)
{
	uint8_t b;
	ssize_t r;

	do
		r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		return 1;
	if (r == 0)
		return 0;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* ---- packets to the guest (rx queue) ---------------------------------------------- */

static uint32_t put_packet(vmkit_virtq_elem *e, const struct pkt *p)
{
	uint8_t h[HDR_LEN];

	hdr_build(h, p);
	dv_iov_write(e->in, e->n_in, 0, h, HDR_LEN);
	return HDR_LEN + p->len;
}

static void conn_hdr(const struct vsock *v, struct conn *c, struct pkt *p, uint16_t op)
{
	*p = (struct pkt){
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = v->guest_cid,
		.src_port = c->lport,
		.dst_port = c->pport,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
		.buf_alloc = VSOCK_BUF_ALLOC,
		.fwd_cnt = c->fwd_cnt,
	};
	/* Every header tells the guest our credit. */
	c->adv_fwd_cnt = c->fwd_cnt;
	c->pend &= (uint8_t)~P_CREDIT_UPDATE;
}

/* Read host data straight into the guest's buffer @e. */
static uint32_t data_packet(struct vsock *v, struct conn *c, vmkit_virtq_elem *e)
{
	struct iovec iov[VSOCK_MAX_IOV];
	uint64_t room = e->in_len - HDR_LEN;
	uint32_t max = peer_credit(c);
	struct msghdr m = { .msg_iov = iov };
	struct pkt p;
	ssize_t r;

	if (max > VSOCK_MAX_RX_PAYLOAD)
		max = VSOCK_MAX_RX_PAYLOAD;
	if (max > room)
		max = (uint32_t)room;
	if (max == 0)
		return 0; /* a buffer with no room for data: returned empty */
	m.msg_iovlen = iov_slice(e->in, e->n_in, HDR_LEN, max, iov, VSOCK_MAX_IOV);
	do
		r = recvmsg(c->fd, &m, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		host_eof(v, c);
		return 0;
	}
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->data_pending = false;
			touch(v, c);
		} else {
			conn_kill(v, c, true);
		}
		return 0;
	}
	conn_hdr(v, c, &p, OP_RW);
	p.len = (uint32_t)r;
	c->tx_cnt += (uint32_t)r;
	return put_packet(e, &p);
}

/* Fill @e with the next packet @c owes the guest: connection set-up
 * first, then data, then a credit update, a shutdown last. */
static uint32_t conn_packet(struct vsock *v, struct conn *c, vmkit_virtq_elem *e)
{
	struct pkt p;

	if (c->pend & (P_REQUEST | P_RESPONSE)) {
		uint16_t op = (c->pend & P_REQUEST) ? OP_REQUEST : OP_RESPONSE;

		c->pend &= (uint8_t)~(P_REQUEST | P_RESPONSE);
		conn_hdr(v, c, &p, op);
		return put_packet(e, &p);
	}
	if (c->data_pending && can_read(c) && peer_credit(c) > 0)
		return data_packet(v, c, e);
	if (c->pend & P_CREDIT_UPDATE) {
		conn_hdr(v, c, &p, OP_CREDIT_UPDATE);
		return put_packet(e, &p);
	}
	if (c->shut_want & ~c->shut_sent) {
		conn_hdr(v, c, &p, OP_SHUTDOWN);
		p.flags = c->shut_want;
		c->shut_sent = c->shut_want;
		/* Both ways closed: the guest answers with RST (or we do). */
		if (c->shut_sent == SHUT_F_BOTH && !c->deadline)
			set_deadline(v, c, VSOCK_CLOSE_TIMEOUT);
		return put_packet(e, &p);
	}
	return 0;
}

static uint32_t rst_packet(struct vsock *v, vmkit_virtq_elem *e)
{
	struct rst_entry r = v->rst[v->rst_head];
	struct pkt p = {
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = v->guest_cid,
		.src_port = r.src_port,
		.dst_port = r.dst_port,
		.type = r.type,
		.op = OP_RST,
	};

	v->rst_head = (v->rst_head + 1) % VSOCK_RST_QUEUE;
	v->rst_len--;
	return put_packet(e, &p);
}

/* The next connection with a packet, after a look at its socket for
 * data: a receive buffer is taken only for a packet that exists. */
static struct conn *next_sender(struct vsock *v)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&v->rxq))) {
		int r;

		if (!has_packet(c)) {
			unlist(v, c);
			touch(v, c);
			continue;
		}
		if (c->pend || !(c->data_pending && can_read(c) && peer_credit(c) > 0))
			return c;
		r = peek_input(c);
		if (r > 0)
			return c;
		if (r == 0) {
			host_eof(v, c);
		} else if (r == -EAGAIN) {
			c->data_pending = false;
			unlist(v, c);
			relist(v, c);
		} else {
			conn_kill(v, c, true);
		}
		touch(v, c);
	}
	return NULL;
}

static void rx_pump(struct vsock *v, vmkit_virtio_dev *dev)
{
	unsigned n = 0;
	bool pushed = false;

	while (n < VSOCK_BATCH) {
		struct conn *c = v->rst_len ? NULL : next_sender(v);
		vmkit_virtq_elem *e;
		uint32_t len;

		if (!v->rst_len && !c)
			break;
		if (vmkit_virtq_pop(dev, Q_RX, &e) <= 0)
			break; /* no buffer: the driver's rx notify brings us back */
		n++;
		if (e->in_len < HDR_LEN) {
			len = 0; /* cannot hold a header: returned unused */
		} else if (!c) {
			len = rst_packet(v, e);
		} else {
			len = conn_packet(v, c, e);
			unlist(v, c);
			relist(v, c);
			touch(v, c);
		}
		vmkit_virtq_push(dev, e, len);
		pushed = true;
	}
	if (n == VSOCK_BATCH)
		v->more = true;
	if (pushed)
		vmkit_virtq_notify(dev, Q_RX);
}

static void event_pump(struct vsock *v, vmkit_virtio_dev *dev)
{
	unsigned n = 0;

	while (v->event_pending && n++ < VSOCK_BATCH) {
		vmkit_virtq_elem *e;
		uint8_t ev[4];

		if (vmkit_virtq_pop(dev, Q_EVENT, &e) <= 0)
			return;
		if (e->in_len < sizeof(ev)) {
			vmkit_virtq_push(dev, e, 0); /* too small for the event: try the next */
		} else {
			vmkit__put_le32(ev, EVENT_TRANSPORT_RESET);
			dv_iov_write(e->in, e->n_in, 0, ev, sizeof(ev));
			vmkit_virtq_push(dev, e, sizeof(ev));
			v->event_pending = false;
		}
		vmkit_virtq_notify(dev, Q_EVENT);
	}
}

/* ---- packets from the guest (tx queue) -------------------------------------------- */

static void guest_rw(struct vsock *v, struct conn *c, const vmkit_virtq_elem *e, uint32_t len)
{
	uint64_t off = HDR_LEN;

	if (c->guest_shut & SHUT_F_SEND || len > VSOCK_BUF_ALLOC - c->olen) {
		dv_log(atomic_load(&v->dev), VMKIT_LOG_DEBUG,
		       "port %u: %u bytes beyond the credit or after SHUTDOWN: reset", c->lport, len);
		conn_kill(v, c, true);
		return;
	}
	if (len == 0)
		return;
	if (c->out_dead) {
		c->fwd_cnt += len;
		maybe_credit_update(v, c);
		return;
	}
	if (!has_output(c)) {
		struct iovec iov[VSOCK_MAX_IOV];
		unsigned n = iov_slice(e->out, e->n_out, off, len, iov, VSOCK_MAX_IOV);
		ssize_t r = send_iov(c->fd, iov, n);

		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			out_gone(v, c);
			c->fwd_cnt += len;
			maybe_credit_update(v, c);
			return;
		}
		if (r > 0) {
			c->fwd_cnt += (uint32_t)r;
			off += (uint64_t)r;
			len -= (uint32_t)r;
		}
	}
	if (len) {
		uint32_t tail, first;

		if (!c->obuf && !(c->obuf = malloc(VSOCK_BUF_ALLOC))) {
			dv_log(atomic_load(&v->dev), VMKIT_LOG_WARN,
			       "port %u: out of memory for buffered output: reset", c->lport);
			conn_kill(v, c, true);
			return;
		}
		tail = (c->ohead + c->olen) % VSOCK_BUF_ALLOC;
		first = VSOCK_BUF_ALLOC - tail < len ? VSOCK_BUF_ALLOC - tail : len;
		dv_iov_read(e->out, e->n_out, off, c->obuf + tail, first);
		if (first < len)
			dv_iov_read(e->out, e->n_out, off + first, c->obuf, len - first);
		c->olen += len;
	}
	maybe_credit_update(v, c);
}

static void guest_shutdown(struct vsock *v, struct conn *c, uint32_t flags)
{
	c->guest_shut |= (uint8_t)(flags & SHUT_F_BOTH);
	if (guest_closing(c) && has_output(c) && !c->out_dead && !c->deadline)
		set_deadline(v, c, VSOCK_CLOSE_TIMEOUT);
	if (c->guest_shut & SHUT_F_SEND && c->host_eof)
		c->shut_want |= SHUT_F_RCV;
	flush(v, c);
	if (c->state == CS_OPEN)
		relist(v, c);
}

/* A REQUEST for the host: connect to <uds_path>_<port>. */
static void guest_connect(struct vsock *v, const struct pkt *p)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct conn *c;
	int fd;

	if (v->n_conns >= VSOCK_MAX_CONNS) {
		dv_log(atomic_load(&v->dev), VMKIT_LOG_DEBUG, "connection limit: port %u refused",
		       p->dst_port);
		rst_reply(v, p);
		return;
	}
	/* Fits: create checked the path against the longest suffix. */
	memcpy(a.sun_path, v->path, v->path_len);
	snprintf(a.sun_path + v->path_len, sizeof(a.sun_path) - v->path_len, "_%u", p->dst_port);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		/* Refused, no listener, or a full backlog (EAGAIN): we never wait. */
		dv_log(atomic_load(&v->dev), VMKIT_LOG_DEBUG, "connect %s: %s", a.sun_path,
		       strerror(errno));
		if (fd >= 0)
			close(fd);
		rst_reply(v, p);
		return;
	}
	c = conn_new(v, fd, CS_OPEN);
	if (!c) {
		close(fd);
		rst_reply(v, p);
		return;
	}
	c->lport = p->dst_port;
	c->pport = p->src_port;
	c->peer_buf_alloc = p->buf_alloc;
	c->peer_fwd_cnt = p->fwd_cnt;
	table_add(v, c);
	c->pend = P_RESPONSE;
	relist(v, c);
}

static void established(struct vsock *v, struct conn *c)
{
	int n = snprintf(c->ok, sizeof(c->ok), "OK %u\n", c->lport);

	c->state = CS_OPEN;
	c->deadline = 0;
	c->ok_len = (uint8_t)n;
	c->ok_off = 0;
	flush(v, c);
}

static void conn_packet_in(struct vsock *v, struct conn *c, const struct pkt *p,
			   const vmkit_virtq_elem *e)
{
	/* Every header carries the guest's credit. */
	c->peer_buf_alloc = p->buf_alloc;
	c->peer_fwd_cnt = p->fwd_cnt;
	if (c->state == CS_REQUEST) {
		if (p->op == OP_RESPONSE)
			established(v, c);
		else
			conn_kill(v, c, p->op != OP_RST);
		return;
	}
	switch (p->op) {
	case OP_RW:
		guest_rw(v, c, e, p->len);
		break;
	case OP_CREDIT_UPDATE:
		break;
	case OP_CREDIT_REQUEST:
		c->pend |= P_CREDIT_UPDATE;
		break;
	case OP_SHUTDOWN:
		guest_shutdown(v, c, p->flags);
		break;
	case OP_RST:
		conn_kill(v, c, false);
		break;
	default:
		/* REQUEST or RESPONSE on an open connection, or an unknown op. */
		dv_log(atomic_load(&v->dev), VMKIT_LOG_DEBUG, "port %u: unexpected op %u: reset",
		       c->lport, p->op);
		conn_kill(v, c, true);
		break;
	}
	if (c->state == CS_OPEN)
		relist(v, c);
}

static void tx_packet(struct vsock *v, const vmkit_virtq_elem *e)
{
	uint8_t h[HDR_LEN];
	struct conn *c;
	struct pkt p;

	/* Copied once; everything below looks at the copy. */
	if (dv_iov_read(e->out, e->n_out, 0, h, HDR_LEN) < HDR_LEN)
		return;
	hdr_parse(h, &p);
	if (p.src_cid != v->guest_cid || p.dst_cid != VSOCK_HOST_CID) {
		dv_log(atomic_load(&v->dev), VMKIT_LOG_DEBUG,
		       "packet from CID %llu to CID %llu dropped", (unsigned long long)p.src_cid,
		       (unsigned long long)p.dst_cid);
		return;
	}
	if (p.type != VSOCK_TYPE_STREAM) {
		rst_reply(v, &p);
		return;
	}
	c = lookup(v, p.dst_port, p.src_port);
	if (p.len > e->out_len - HDR_LEN || (p.len && p.op != OP_RW)) {
		dv_log(atomic_load(&v->dev), VMKIT_LOG_DEBUG,
		       "port %u: op %u with %u payload bytes in a %llu-byte buffer: reset",
		       p.dst_port, p.op, p.len, (unsigned long long)e->out_len);
		if (c)
			conn_kill(v, c, true);
		else
			rst_reply(v, &p);
		return;
	}
	if (c) {
		conn_packet_in(v, c, &p, e);
		touch(v, c);
	} else if (p.op == OP_REQUEST) {
		guest_connect(v, &p);
	} else {
		rst_reply(v, &p);
	}
}

static void tx_pump(struct vsock *v, vmkit_virtio_dev *dev)
{
	unsigned n = 0;
	vmkit_virtq_elem *e;

	while (n < VSOCK_BATCH && vmkit_virtq_pop(dev, Q_TX, &e) > 0) {
		n++;
		tx_packet(v, e);
		vmkit_virtq_push(dev, e, 0);
	}
	if (n == VSOCK_BATCH)
		v->more = true;
	if (n)
		vmkit_virtq_notify(dev, Q_TX);
}

/* ---- host connections: the CONNECT line ------------------------------------------- */

/* "CONNECT <port>\n" with a decimal port that fits 32 bits. */
static bool parse_connect(const char *s, size_t len, uint32_t *port)
{
	static const char pre[] = "CONNECT ";
	uint64_t v = 0;
	size_t i = sizeof(pre) - 1, digits = 0;

	if (len < i + 2 || memcmp(s, pre, i) != 0 || s[len - 1] != '\n')
		return false;
	for (; i < len - 1; i++, digits++) {
		if (s[i] < '0' || s[i] > '9' || digits == 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (digits == 0 || v > UINT32_MAX)
		return false;
	*port = (uint32_t)v;
	return true;
}

static void host_request(struct vsock *v, struct conn *c, uint32_t port)
{
	if (v->n_conns >= VSOCK_MAX_CONNS) {
		conn_kill(v, c, false);
		return;
	}
	c->line_slot = false;
	v->n_lines--;
	v->n_conns++;
	c->state = CS_REQUEST;
	c->lport = alloc_port(v);
	c->pport = port;
	table_add(v, c);
	c->pend = P_REQUEST;
	set_deadline(v, c, VSOCK_CONNECT_TIMEOUT);
	relist(v, c);
}

static void line_input(struct vsock *v, struct conn *c)
{
	char buf[VSOCK_LINE_MAX];
	size_t room = VSOCK_LINE_MAX - c->line_len, take;
	const char *nl;
	uint32_t port;
	ssize_t r;

	/* Look first, then take only the line: what follows is stream data. */
	do
		r = recv(c->fd, buf, room, MSG_PEEK | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (r <= 0) {
		conn_kill(v, c, false);
		return;
	}
	nl = memchr(buf, '\n', (size_t)r);
	take = nl ? (size_t)(nl - buf) + 1 : (size_t)r;
	if (recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT) != (ssize_t)take) {
		conn_kill(v, c, false);
		return;
	}
	c->line_len = (uint8_t)(c->line_len + take);
	if (!nl) {
		if (c->line_len == VSOCK_LINE_MAX)
			conn_kill(v, c, false); /* no line within the bound */
		return;
	}
	if (!parse_connect(c->line, c->line_len, &port)) {
		conn_kill(v, c, false);
		return;
	}
	host_request(v, c, port);
}

/* ---- loop registrations ----------------------------------------------------------- */

static void on_conn(void *opaque, int fd, uint32_t events);
static void on_listen(void *opaque, int fd, uint32_t events);

static void update_watch(struct vsock *v, struct conn *c)
{
	uint32_t want = want_events(c);

	if (want == 0) {
		if (c->registered)
			vmkit__loop_del(v->loop, c->fd);
		c->registered = false;
		return;
	}
	if (!c->registered) {
		if (vmkit__loop_add(v->loop, c->fd, want, on_conn, c) < 0) {
			dv_log(atomic_load(&v->dev), VMKIT_LOG_WARN, "cannot watch a socket: %s",
			       vmkit_last_error());
			conn_kill(v, c, true);
			return;
		}
		c->registered = true;
	} else if (want != c->reg_events && vmkit__loop_mod(v->loop, c->fd, want) < 0) {
		conn_kill(v, c, true);
		return;
	}
	c->reg_events = want;
}

/* Bring the registrations of changed connections up to date and free the
 * dead ones. I/O thread, or while the loop does not run. */
static void sync_watches(struct vsock *v)
{
	struct conn *c;
	bool want_listen = !v->listen_paused;

	while ((c = TAILQ_FIRST(&v->dirtyq))) {
		TAILQ_REMOVE(&v->dirtyq, c, dirty_link);
		c->dirty = false;
		if (c->state == CS_DEAD)
			conn_reap(v, c);
		else
			update_watch(v, c);
	}
	if (want_listen != v->listen_watched &&
	    vmkit__loop_mod(v->loop, v->listen_fd, want_listen ? EPOLLIN : 0) == 0)
		v->listen_watched = want_listen;
}

/* ---- entering and leaving --------------------------------------------------------- */

/* From a loop callback: the device lock (once the core is known), then
 * ours. Returns the core, or NULL when it is not known yet. */
static vmkit_virtio_dev *enter(struct vsock *v)
{
	vmkit_virtio_dev *d = atomic_load(&v->dev);

	vmkit_virtio_lock(d);
	pthread_mutex_lock(&v->lock);
	return d;
}

/* After any change: send what the guest is owed, then have the I/O
 * thread update the registrations (now, when this is it). */
static void settle(struct vsock *v, vmkit_virtio_dev *d)
{
	if (d) {
		event_pump(v, d);
		rx_pump(v, d);
	} else if (atomic_load(&v->dev)) {
		wake(v); /* the core appeared meanwhile: do the queue work with it */
	}
	if (vmkit__loop_on_thread(v->loop))
		sync_watches(v);
	else if (!TAILQ_EMPTY(&v->dirtyq) || !v->listen_paused != v->listen_watched)
		wake(v);
	if (v->more)
		wake(v);
}

static void leave(struct vsock *v, vmkit_virtio_dev *d)
{
	settle(v, d);
	pthread_mutex_unlock(&v->lock);
	vmkit_virtio_unlock(d);
}

/* ---- loop callbacks (I/O thread) -------------------------------------------------- */

static void on_conn(void *opaque, int fd, uint32_t events)
{
	struct conn *c = opaque;
	struct vsock *v = c->v;
	vmkit_virtio_dev *d = enter(v);

	(void)fd;
	if (c->state == CS_LINE) {
		line_input(v, c);
	} else if (c->state == CS_OPEN) {
		if (has_output(c))
			flush(v, c);
		/* An error (the program closed with our data unread) comes after
		 * the data it sent, as reads return them: both reach the guest,
		 * the data, then an RST. */
		if (c->state == CS_OPEN && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && can_read(c)) {
			/* Not watched again until it is read. */
			c->data_pending = true;
			relist(v, c);
		}
	}
	touch(v, c);
	leave(v, d);
}

static void on_listen(void *opaque, int fd, uint32_t events)
{
	struct vsock *v = opaque;
	vmkit_virtio_dev *d = enter(v);

	(void)events;
	for (unsigned i = 0; i < VSOCK_ACCEPT_BATCH; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The connection stays in the backlog: stop watching
				 * for a moment instead of spinning on it. */
				dv_log(d, VMKIT_LOG_WARN, "accept: %s", strerror(errno));
				v->listen_paused = true;
				v->listen_retry_at = dv_now_ns() + VSOCK_ACCEPT_RETRY;
				arm_timer(v, v->listen_retry_at);
			}
			break;
		}
		if (v->n_lines >= VSOCK_MAX_LINES || v->n_conns >= VSOCK_MAX_CONNS ||
		    !(c = conn_new(v, cfd, CS_LINE))) {
			dv_log(d, VMKIT_LOG_DEBUG, "host connection refused: too many");
			close(cfd);
			continue;
		}
		set_deadline(v, c, VSOCK_LINE_TIMEOUT);
	}
	leave(v, d);
}

static void on_timer(void *opaque, int fd, uint32_t events)
{
	struct vsock *v = opaque;
	vmkit_virtio_dev *d;
	uint64_t ticks, now, next = 0;
	struct conn *c;

	(void)events;
	if (read(fd, &ticks, sizeof(ticks)) < 0) {
		/* re-armed meanwhile: nothing to drain */
	}
	d = enter(v);
	now = dv_now_ns();
	v->timer_at = 0;
	TAILQ_FOREACH(c, &v->conns, all_link) {
		if (!c->deadline || c->state == CS_DEAD)
			continue;
		if (c->deadline <= now) {
			/* No CONNECT line, no answer to our REQUEST, no RST
			 * after a close, or output that would not drain. */
			conn_kill(v, c, c->state != CS_LINE);
		} else if (!next || c->deadline < next) {
			next = c->deadline;
		}
	}
	if (v->listen_paused) {
		if (v->listen_retry_at <= now)
			v->listen_paused = false;
		else if (!next || v->listen_retry_at < next)
			next = v->listen_retry_at;
	}
	if (next)
		arm_timer(v, next);
	leave(v, d);
}

static void on_wake(void *opaque, int fd, uint32_t events)
{
	struct vsock *v = opaque;
	vmkit_virtio_dev *d;
	uint64_t n;

	(void)events;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* nothing pending */
	}
	d = enter(v);
	if (d && v->more) {
		v->more = false;
		tx_pump(v, d);
	}
	leave(v, d);
}

/* ---- device callbacks (device lock held) ------------------------------------------ */

static void attach(struct vsock *v, vmkit_virtio_dev *dev)
{
	if (!atomic_load(&v->dev))
		atomic_store(&v->dev, dev);
}

static void vsock_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
	struct vsock *v = opaque;

	memcpy(data, v->config + offset, len);
}

static int vsock_activate(void *opaque, vmkit_virtio_dev *dev, uint64_t features)
{
	struct vsock *v = opaque;

	(void)features;
	pthread_mutex_lock(&v->lock);
	attach(v, dev);
	/* A fresh driver has no connections to reset. */
	v->event_pending = false;
	tx_pump(v, dev);
	settle(v, dev);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static void vsock_notify(void *opaque, vmkit_virtio_dev *dev, uint16_t queue)
{
	struct vsock *v = opaque;

	pthread_mutex_lock(&v->lock);
	attach(v, dev);
	if (queue == Q_TX)
		tx_pump(v, dev);
	/* rx (new buffers) and event: settle sends what waits for them. */
	settle(v, dev);
	pthread_mutex_unlock(&v->lock);
}

static void vsock_reset(void *opaque, vmkit_virtio_dev *dev)
{
	struct vsock *v = opaque;

	pthread_mutex_lock(&v->lock);
	attach(v, dev);
	reset_all(v);
	v->event_pending = false;
	settle(v, NULL);
	pthread_mutex_unlock(&v->lock);
}

/* State: the guest CID (u64). Connections are not saved: they belong to
 * host sockets that a snapshot cannot carry. */
static long vsock_save(void *opaque, void *buf, size_t cap)
{
	struct vsock *v = opaque;
	struct dev_state_writer *w = malloc(sizeof(*w));
	long ret;

	if (!w)
		return vmkit__err(-ENOMEM, "virtio-vsock: out of memory saving state");
	pthread_mutex_lock(&v->lock);
	dev_state_begin(w, "VSCK");
	dev_state_put_u64(w, v->guest_cid);
	pthread_mutex_unlock(&v->lock);
	ret = dv_save_out(w, VSOCK_STATE_VERSION, buf, cap);
	free(w);
	return ret;
}

/* A restore resets every connection and owes the guest a
 * TRANSPORT_RESET event, sent from the core's next callback on (the
 * queues are restored after this returns). */
static int vsock_restore(void *opaque, const void *buf, size_t len)
{
	struct vsock *v = opaque;
	struct dev_state_reader r;
	uint64_t cid;
	int ret = dev_state_open(&r, buf, len, "VSCK", VSOCK_STATE_VERSION);

	if (ret < 0)
		return ret;
	cid = dev_state_get_u64(&r);
	if ((ret = dev_state_close(&r)) < 0)
		return ret;
	if (cid != v->guest_cid)
		return vmkit__err(-EINVAL, "VSCK state: guest CID %llu, this device has %llu",
				  (unsigned long long)cid, (unsigned long long)v->guest_cid);
	pthread_mutex_lock(&v->lock);
	reset_all(v);
	v->event_pending = true;
	settle(v, NULL);
	wake(v);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static void vsock_destroy(void *opaque)
{
	struct vsock *v = opaque;
	struct conn *c;
	struct stat st;

	if (!v)
		return;
	while ((c = TAILQ_FIRST(&v->conns))) {
		if (c->state != CS_DEAD)
			conn_kill(v, c, false);
		if (c->dirty) {
			TAILQ_REMOVE(&v->dirtyq, c, dirty_link);
			c->dirty = false;
		}
		conn_reap(v, c);
	}
	if (v->listen_fd >= 0) {
		if (v->listen_registered)
			vmkit__loop_del(v->loop, v->listen_fd);
		close(v->listen_fd);
		/* Only our own socket file: another device may have replaced it. */
		if (stat(v->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == v->path_dev &&
		    st.st_ino == v->path_ino)
			unlink(v->path);
	}
	if (v->wake_fd >= 0) {
		vmkit__loop_del(v->loop, v->wake_fd);
		close(v->wake_fd);
	}
	if (v->timer_fd >= 0) {
		vmkit__loop_del(v->loop, v->timer_fd);
		close(v->timer_fd);
	}
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static const vmkit_virtio_ops vsock_ops_template = {
	.size = sizeof(vmkit_virtio_ops),
	.device_id = VMKIT_VIRTIO_ID_VSOCK,
	.num_queues = 3,
	.queue_max = VSOCK_QUEUE_SIZE,
	.config_size = VSOCK_CONFIG_SIZE,
	.features = VIRTIO_BIT(VSOCK_F_STREAM),
	.config_read = vsock_config_read,
	.activate = vsock_activate,
	.queue_notify = vsock_notify,
	.reset = vsock_reset,
	.save = vsock_save,
	.restore = vsock_restore,
	.destroy = vsock_destroy,
};

/* Does something listen at @a? (A stale socket file refuses.) */
static bool socket_is_live(const struct sockaddr_un *a)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0 || errno == EAGAIN ||
	       errno == EINPROGRESS;
	close(fd);
	return live;
}

/* Listen at @v->path, replacing a socket file left there by an earlier
 * run, but neither a socket somebody still listens on (another VM's) nor
 * anything that is not a socket. */
static int listen_at(struct vsock *v)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;

	memcpy(a.sun_path, v->path, strlen(v->path) + 1);
	if (lstat(v->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return vmkit__err(-EEXIST, "virtio-vsock: %s exists and is not a socket",
					  v->path);
		if (socket_is_live(&a))
			return vmkit__err(-EADDRINUSE, "virtio-vsock: %s is in use (something "
					  "listens there)", v->path);
		if (unlink(v->path) < 0)
			return vmkit__err(-errno, "virtio-vsock: cannot replace %s: %s", v->path,
					  strerror(errno));
	} else if (errno != ENOENT) {
		return vmkit__err(-errno, "virtio-vsock: %s: %s", v->path, strerror(errno));
	}
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (v->listen_fd < 0)
		return vmkit__err(-errno, "virtio-vsock: socket: %s", strerror(errno));
	if (bind(v->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return vmkit__err(-errno, "virtio-vsock: bind %s: %s", v->path, strerror(errno));
	if (stat(v->path, &st) < 0 || listen(v->listen_fd, SOMAXCONN) < 0) {
		int e = errno;

		unlink(v->path);
		return vmkit__err(-e, "virtio-vsock: listen %s: %s", v->path, strerror(e));
	}
	v->path_dev = st.st_dev;
	v->path_ino = st.st_ino;
	return 0;
}

int virtio_vsock_create(const vmkit_vsock_config *cfg, struct vmkit_loop *loop,
			const vmkit_virtio_ops **ops, void **opaque)
{
	struct vsock *v;
	size_t plen;
	int ret;

	if (!cfg || cfg->size < sizeof(*cfg))
		return vmkit__err(-EINVAL, "virtio-vsock: no configuration or an old one");
	if (!loop)
		return vmkit__err(-EINVAL, "virtio-vsock: needs an event loop");
	if (cfg->guest_cid < VSOCK_MIN_CID || cfg->guest_cid > VSOCK_MAX_CID)
		return vmkit__err(-EINVAL, "virtio-vsock: guest CID %llu (3..%llu)",
				  (unsigned long long)cfg->guest_cid, VSOCK_MAX_CID);
	if (!cfg->uds_path || !cfg->uds_path[0])
		return vmkit__err(-EINVAL, "virtio-vsock: no socket path");
	plen = strlen(cfg->uds_path);
	if (plen > UDS_PATH_MAX)
		return vmkit__err(-ENAMETOOLONG,
				  "virtio-vsock: socket path of %zu bytes (at most %zu, so that "
				  "\"_<port>\" fits)",
				  plen, UDS_PATH_MAX);
	v = calloc(1, sizeof(*v));
	if (!v)
		return vmkit__err(-ENOMEM, "virtio-vsock: out of memory");
	v->ops = vsock_ops_template;
	v->loop = loop;
	v->listen_fd = v->wake_fd = v->timer_fd = -1;
	v->guest_cid = cfg->guest_cid;
	vmkit__put_le64(v->config, cfg->guest_cid);
	v->next_port = VSOCK_FIRST_HOST_PORT;
	memcpy(v->path, cfg->uds_path, plen + 1);
	v->path_len = plen;
	TAILQ_INIT(&v->conns);
	TAILQ_INIT(&v->rxq);
	TAILQ_INIT(&v->dirtyq);
	if (pthread_mutex_init(&v->lock, NULL) != 0) {
		free(v);
		return vmkit__err(-ENOMEM, "virtio-vsock: mutex");
	}
	if ((ret = listen_at(v)) < 0)
		goto fail;
	v->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (v->wake_fd < 0) {
		ret = vmkit__err(-errno, "virtio-vsock: eventfd: %s", strerror(errno));
		goto fail;
	}
	if ((ret = vmkit__loop_add(loop, v->wake_fd, EPOLLIN, on_wake, v)) < 0) {
		close(v->wake_fd);
		v->wake_fd = -1;
		goto fail;
	}
	if ((ret = dv_timer_new(loop, "virtio-vsock", on_timer, v, &v->timer_fd)) < 0)
		goto fail;
	if ((ret = vmkit__loop_add(loop, v->listen_fd, EPOLLIN, on_listen, v)) < 0)
		goto fail;
	v->listen_registered = v->listen_watched = true;
	*ops = &v->ops;
	*opaque = v;
	return 0;
fail:
	vsock_destroy(v);
	return ret;
}
