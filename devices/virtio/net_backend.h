/* SPDX-License-Identifier: MIT */
/* The host side of a virtio-net device (net_backend.c): where the frames
 * the guest sends go and where the frames it receives come from. One
 * small interface over four kinds (vmkit_net_backend):
 *
 *  - TAP: /dev/net/tun (IFF_TAP | IFF_NO_PI, IFF_VNET_HDR when it has
 *    it); with the vnet header, frames on the wire carry the 12-byte
 *    struct virtio_net_hdr_v1 and offloads pass through;
 *  - STREAM: a UNIX stream socket, each frame preceded by its length as
 *    a 4-byte big-endian number (QEMU's -netdev stream, passt); partial
 *    reads are reassembled, a partial write keeps its remainder here and
 *    the backend takes nothing more until it is written;
 *  - DGRAM: a UNIX datagram socket, one frame per datagram;
 *  - CALLBACK: the embedder's tx_fn, and a bounded inbox of frames given
 *    with net_backend_inbox_put().
 *
 * Every fd is non-blocking (sockets use MSG_DONTWAIT, so a caller's
 * duplicated socket keeps its flags; a duplicated tap fd is set
 * O_NONBLOCK, on the description the caller shares). None of these calls
 * ever waits. The backend has no lock: its owner (net.c) calls it with
 * the device lock held. */
#ifndef VMKIT_DEVICES_VIRTIO_NET_BACKEND_H
#define VMKIT_DEVICES_VIRTIO_NET_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "vmkit/device.h"

/* struct virtio_net_hdr_v1 (VIRTIO 1.2, 5.1.6): flags, gso_type,
 * le16 hdr_len, gso_size, csum_start, csum_offset, num_buffers. */
#define NET_HDR_LEN 12u
/* Ethernet frames (without the virtio-net header): at least the
 * Ethernet header; at most a 64 KiB GSO frame with its headers. */
#define NET_MIN_FRAME 14u
#define NET_MAX_FRAME 65550u
/* The buffer net_backend_recv() fills: header + largest frame, and one
 * byte more, so that a longer frame shows as such instead of being cut. */
#define NET_RX_BUF (NET_HDR_LEN + NET_MAX_FRAME + 1)
/* Most iovecs net_backend_send() takes for one frame. */
#define NET_IOV_MAX 128u
/* The callback backend's inbox: at most this many frames and bytes. */
#define NET_INBOX_FRAMES 256u
#define NET_INBOX_BYTES (2u << 20)

struct net_inbox_frame {
	uint8_t *data;
	uint32_t len;
};

struct net_backend {
	uint32_t kind;          /* vmkit_net_backend */
	int fd;                 /* -1: none (CALLBACK, or closed) */
	bool vnet_hdr;          /* frames on the wire start with the 12-byte header */
	uint32_t tun_offloads;  /* TUN_F_* the tap accepts (probed at open) */
	bool is_dup;            /* works on the embedder's fd (its description) */
	char what[80];          /* for messages: "tap vmk0", "stream /run/x.sock" */
	/* STREAM: reassembly of incoming frames, rbuf[rhead, rtail). */
	uint8_t *rbuf;
	size_t rhead, rtail;
	/* STREAM: what a partial write left, wbuf[woff, wlen). */
	uint8_t *wbuf;
	size_t woff, wlen;
	/* CALLBACK */
	vmkit_net_tx_fn tx_fn;
	void *userdata;
	struct net_inbox_frame inbox[NET_INBOX_FRAMES];
	unsigned in_head, in_count;
	size_t in_bytes;
};

/* Open the backend @cfg names: duplicate @cfg->fd (F_DUPFD_CLOEXEC), or
 * create/attach the tap @cfg->ifname, or connect to @cfg->path. A tap gets
 * a vnet header size of 12 and its offloads probed (then all turned off
 * until net_backend_set_offloads). Errors name the backend. On failure
 * nothing is left open. */
int net_backend_open(struct net_backend *b, const vmkit_net_config *cfg);
/* Close the fd and free the buffers and inbox (idempotent). */
void net_backend_close(struct net_backend *b);

/* TAP with a vnet header: the TUN_F_* offloads frames read from the tap
 * may use (what the guest accepted). 0 elsewhere. */
int net_backend_set_offloads(struct net_backend *b, uint32_t tun_flags);

/* Send one frame: @hdr (NET_HDR_LEN bytes, put on the wire only when
 * b->vnet_hdr) then the Ethernet frame @iov[0..@n) of @len bytes (@n <=
 * NET_IOV_MAX). Returns:
 *   0        taken (STREAM: maybe partly, the rest is kept and written by
 *            net_backend_flush),
 *  -EAGAIN   the backend cannot take it now; nothing was consumed (wait
 *            for the fd to be writable, or for a kick with CALLBACK),
 *  -EPIPE    the backend is gone for good (the frame is lost; message set),
 *   other <0 this frame was refused and dropped; the backend lives on. */
int net_backend_send(struct net_backend *b, const uint8_t *hdr, const struct iovec *iov,
		     unsigned n, size_t len);
/* STREAM: part of a frame still waits to be written. */
bool net_backend_out_pending(const struct net_backend *b);
/* Write what waits: 0 (all written, or nothing waited), -EAGAIN, -EPIPE. */
int net_backend_flush(struct net_backend *b);

/* Receive one frame into @buf (NET_RX_BUF bytes): the virtio-net header
 * first (from the wire with a vnet header, else zero), then the frame.
 * Returns the frame's length without the header, or:
 *  -EAGAIN   nothing to read now,
 *  -EMSGSIZE a frame was read and dropped: shorter than NET_MIN_FRAME or
 *            longer than NET_MAX_FRAME (the backend goes on),
 *  -EPROTO   STREAM: the peer sent a length out of range (the stream
 *            cannot be resynchronised: treat as gone; message set),
 *  -EPIPE    the backend is gone: end of stream, a dead tap (message set). */
ssize_t net_backend_recv(struct net_backend *b, uint8_t *buf);
/* Buffered input that needs no further read from the fd (STREAM
 * reassembly holding a whole frame, CALLBACK inbox not empty). */
bool net_backend_rx_buffered(const struct net_backend *b);

/* The loop saw EPOLLHUP/EPOLLERR on the fd. true: the peer is gone and
 * only what is already readable is left (stop watching the fd; read until
 * -EPIPE or -EAGAIN). false: a transient condition that was cleared (a
 * datagram socket's pending error). */
bool net_backend_hangup(struct net_backend *b);

/* CALLBACK: copy @frame into the inbox. -EAGAIN when it is full. */
int net_backend_inbox_put(struct net_backend *b, const void *frame, size_t len);
/* CALLBACK: the inbox is at most half full (frames and bytes), so that a
 * producer told -EAGAIN gets room for more than one frame. */
bool net_backend_inbox_has_room(const struct net_backend *b);

#endif
