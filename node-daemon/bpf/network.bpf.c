// SPDX-License-Identifier: GPL-2.0
/* The network tracer's kernel side.
 *
 * - iter/task_file `sockets`: one pass over every descriptor of every process in every
 *   namespace; each TCP/UDP socket becomes a sock_record with its owner and counters.
 * - tp_btf inet_sock_set_state: when a connection opens, remember when and (for connect)
 *   by whom; when it reaches TCP_CLOSE, send its final counters through the ring buffer.
 * - tp_btf sock_send_length / sock_recv_length (Linux 6.3+): UDP byte counters, and (on
 *   reads) the owner of accepted TCP connections (these run in the process's context).
 * - Where those two tracepoints are missing: fexit udp_sendmsg / udpv6_sendmsg and fentry
 *   skb_consume_udp count UDP bytes.
 * - fexit inet_csk_accept: the owner of an accepted TCP connection.
 *
 * The iterator's sock is walked from the socket that bpf_sock_from_file() returns, and
 * kernels since late 2026 mark such a walked pointer untrusted: a helper refuses it. So
 * `sockets` hands its sock to no helper. It reads the fields itself (tcp_sock's with CO-RE
 * probe reads) and finds what the other programs learnt in maps keyed by the socket's
 * cookie, which it reads from the sock (the other programs create the cookie with
 * bpf_get_socket_cookie before they store anything under it).
 *
 * State kept per socket:
 * - TCP, in socket-local storage (freed by the kernel with the socket): owner, inode,
 *   local port and start, for the close record; the start also under the cookie in
 *   `tcp_opened`, for the iterator, deleted at TCP_CLOSE.
 * - UDP, under the cookie in the LRU map `udp_traffic`: cookies never repeat, and a
 *   socket that is gone stops being used, so the least recently used entries are the
 *   dead sockets' ones. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "network.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define MSG_PEEK 2
#define EEXIST 17

/* TCP_ESTABLISHED, TCP_CLOSE ... come from vmlinux.h (include/net/tcp_states.h). */

char LICENSE[] SEC("license") = "GPL";

struct tcp_meta {
	__u64 start_ns;
	__u64 owner_start_ns;
	__u64 inode;
	__u32 pid;
	/* The kernel clears the port before the close tracepoint runs: kept from when the
	 * connection was established. */
	__u16 local_port;
	__u16 pad;
};

struct udp_traffic {
	__u64 start_ns;
	__u64 sent;
	__u64 received;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tcp_meta);
} tcp_meta SEC(".maps");

/* Socket cookie -> start (boot-clock ns) of an open TCP connection. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, TCP_OPENED_MAX);
	__type(key, __u64);
	__type(value, __u64);
} tcp_opened SEC(".maps");

/* Socket cookie -> UDP bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, UDP_TRAFFIC_MAX);
	__type(key, __u64);
	__type(value, struct udp_traffic);
} udp_traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} closed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &index);
	if (n)
		*n += 1;
}

/* IPPROTO_TCP or IPPROTO_UDP for a TCP or UDP socket of an inet family, else 0 (raw
 * sockets of those protocols included: they carry no connection). */
static __always_inline __u16 transport(struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u16 protocol = sk->sk_protocol;
	__u16 type = sk->sk_type;
	if (protocol == IPPROTO_TCP && type == SOCK_STREAM)
		return IPPROTO_TCP;
	if (protocol == IPPROTO_UDP && type == SOCK_DGRAM)
		return IPPROTO_UDP;
	return 0;
}

static __always_inline __u64 socket_inode(struct socket *sock)
{
	if (!sock)
		return 0;
	struct file *file = sock->file;
	if (!file)
		return 0;
	return file->f_inode->i_ino;
}

/* The owner is the thread group of `task`: its tgid and its leader's start time. */
static __always_inline void set_owner(struct tcp_meta *meta, struct task_struct *task)
{
	meta->pid = task->tgid;
	meta->owner_start_ns = task->group_leader->start_boottime;
}

static __always_inline struct tcp_meta *meta_of(struct sock *sk, int create)
{
	struct tcp_meta *meta = bpf_sk_storage_get(&tcp_meta, sk, 0,
						   create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!meta && create)
		count_drop(DROP_NO_STORAGE);
	return meta;
}

/* Addresses, family, protocol, state and counters of `sk`, a socket transport() named. */
static __always_inline void fill_record(struct sock_record *r, struct sock *sk, __u16 protocol)
{
	struct sock_common *c = &sk->__sk_common;
	r->sk = (__u64)sk;
	r->netns = c->skc_net.net->ns.inum;
	r->family = c->skc_family;
	r->protocol = protocol;
	r->state = c->skc_state;
	r->local_port = c->skc_num;
	r->remote_port = bpf_ntohs(c->skc_dport);
	if (r->family == AF_INET) {
		__builtin_memcpy(r->local, &c->skc_rcv_saddr, 4);
		__builtin_memcpy(r->remote, &c->skc_daddr, 4);
	} else {
		BPF_CORE_READ_INTO(&r->local, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&r->remote, c, skc_v6_daddr.in6_u.u6_addr8);
	}
	if (protocol != IPPROTO_TCP)
		return;
	/* A full TCP socket: probe reads, which an untrusted pointer allows too. */
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	r->bytes_sent = BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans);
	r->bytes_received = BPF_CORE_READ(tp, bytes_received);
	/* bytes_received follows rcv_nxt, which counts the peer's FIN: not data. */
	if ((c->skc_flags & (1UL << SOCK_DONE)) && r->bytes_received)
		r->bytes_received -= 1;
	r->retransmits = BPF_CORE_READ(tp, total_retrans);
	r->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	if (r->state != TCP_LISTEN) {
		r->tx_queue = BPF_CORE_READ(tp, write_seq) - BPF_CORE_READ(tp, snd_una);
		r->rx_queue = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	}
}

SEC("iter/task_file")
int sockets(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	/* Threads share the descriptors of their group: read each table once. */
	if (task->pid != task->tgid)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	__u16 protocol = transport(sk);
	if (!protocol)
		return 0;

	struct sock_record r = {};
	fill_record(&r, sk, protocol);
	r.kind = RECORD_OPEN;
	r.pid = task->tgid;
	r.owner_start_ns = task->group_leader->start_boottime;
	r.inode = file->f_inode->i_ino;
	/* 0 until a program below created it: then nothing is stored under it. */
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	if (cookie && protocol == IPPROTO_TCP) {
		__u64 *start_ns = bpf_map_lookup_elem(&tcp_opened, &cookie);
		if (start_ns)
			r.start_ns = *start_ns;
	} else if (cookie) {
		struct udp_traffic *t = bpf_map_lookup_elem(&udp_traffic, &cookie);
		if (t) {
			r.start_ns = t->start_ns;
			r.bytes_sent = t->sent;
			r.bytes_received = t->received;
		}
	}
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

/* Opened now, unless an earlier state change said so already. */
static __always_inline void opened(struct sock *sk, struct tcp_meta *meta)
{
	if (meta->start_ns)
		return;
	meta->start_ns = bpf_ktime_get_boot_ns();
	__u64 cookie = bpf_get_socket_cookie(sk);
	if (bpf_map_update_elem(&tcp_opened, &cookie, &meta->start_ns, BPF_ANY))
		count_drop(DROP_NO_STORAGE);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(state_change, struct sock *sk, int oldstate, int newstate)
{
	if (transport(sk) != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT) {
		/* connect(): the caller owns the socket. */
		struct tcp_meta *meta = meta_of(sk, 1);
		if (!meta)
			return 0;
		meta->start_ns = 0;
		opened(sk, meta);
		set_owner(meta, bpf_get_current_task_btf());
		meta->inode = socket_inode(sk->sk_socket);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED) {
		/* A passive open runs in softirq: its owner is known when it first reads, when
		 * it is accepted, or from the iterator (user space). */
		struct tcp_meta *meta = meta_of(sk, oldstate == TCP_SYN_RECV);
		if (!meta)
			return 0;
		opened(sk, meta);
		meta->local_port = sk->__sk_common.skc_num;
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);
	bpf_map_delete_elem(&tcp_opened, &cookie);
	if (oldstate == TCP_LISTEN || oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)
		return 0;
	struct sock_record *r = bpf_ringbuf_reserve(&closed, sizeof(*r), 0);
	if (!r) {
		count_drop(DROP_RING_FULL);
		return 0;
	}
	__builtin_memset(r, 0, sizeof(*r));
	fill_record(r, sk, IPPROTO_TCP);
	r->kind = RECORD_CLOSED;
	r->state = TCP_CLOSE;
	struct tcp_meta *meta = meta_of(sk, 0);
	if (meta) {
		r->start_ns = meta->start_ns;
		r->pid = meta->pid;
		r->owner_start_ns = meta->owner_start_ns;
		r->inode = meta->inode;
		if (!r->local_port)
			r->local_port = meta->local_port;
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* The current task reads from or accepted `sk`: it owns it, if nobody was known. */
static __always_inline void owned_by_current(struct sock *sk, int create)
{
	struct tcp_meta *meta = meta_of(sk, create);
	if (meta && !meta->pid) {
		set_owner(meta, bpf_get_current_task_btf());
		meta->inode = socket_inode(sk->sk_socket);
	}
}

/* Process context. */
static __always_inline void count_udp(struct sock *sk, int bytes, int sent)
{
	if (bytes <= 0)
		return;
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct udp_traffic *t = bpf_map_lookup_elem(&udp_traffic, &cookie);
	if (!t) {
		struct udp_traffic fresh = {.start_ns = bpf_ktime_get_boot_ns()};
		long err = bpf_map_update_elem(&udp_traffic, &cookie, &fresh, BPF_NOEXIST);
		if (err && err != -EEXIST)
			count_drop(DROP_NO_STORAGE);
		t = bpf_map_lookup_elem(&udp_traffic, &cookie);
		if (!t)
			return;
	}
	if (sent)
		__sync_fetch_and_add(&t->sent, bytes);
	else
		__sync_fetch_and_add(&t->received, bytes);
}

/* Process context: the current task owns the socket. */
static __always_inline void on_transfer(struct sock *sk, int bytes, int sent)
{
	if (bytes <= 0)
		return;
	__u16 protocol = transport(sk);
	if (protocol == IPPROTO_UDP) {
		count_udp(sk, bytes, sent);
		return;
	}
	/* The owner of an accepted connection the iterator may never see, from a read in
	 * its context. Not from sends: the storage lookup on every TCP send made this
	 * program 65 ns a run instead of 46, and a loopback request/response load 3.4-3.8%
	 * slower instead of 1.8-2.6%. Where fexit works, inet_csk_accept below covers the
	 * servers that only send. */
	if (protocol == IPPROTO_TCP && !sent)
		owned_by_current(sk, 0);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sent, struct sock *sk, int ret, int flags)
{
	on_transfer(sk, ret, 1);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(received, struct sock *sk, int ret, int flags)
{
	if (flags & MSG_PEEK)
		return 0;
	on_transfer(sk, ret, 0);
	return 0;
}

/* Kernels without sock_send_length / sock_recv_length (before Linux 6.3). udpv6_sendmsg
 * hands IPv4-mapped destinations to udp_sendmsg with the same AF_INET6 sock: each counts
 * only its own family, so such a send is counted once. */
static __always_inline void udp_sent(struct sock *sk, int ret, __u16 family)
{
	if (sk->__sk_common.skc_family == family && transport(sk) == IPPROTO_UDP)
		count_udp(sk, ret, 1);
}

SEC("fexit/udp_sendmsg")
int BPF_PROG(udp4_sent, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	udp_sent(sk, ret, AF_INET);
	return 0;
}

SEC("fexit/udpv6_sendmsg")
int BPF_PROG(udp6_sent, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	udp_sent(sk, ret, AF_INET6);
	return 0;
}

/* udp_recvmsg and udpv6_recvmsg pass the bytes copied to the reader (negative when
 * peeking). */
SEC("fentry/skb_consume_udp")
int BPF_PROG(udp_received, struct sock *sk, struct sk_buff *skb, int len)
{
	if (transport(sk) == IPPROTO_UDP)
		count_udp(sk, len, 0);
	return 0;
}

/* The owner of an accepted connection, in the accepting process's context: also for a
 * server that only ever sends on it. inet_csk_accept took (sk, flags, err, kern) before
 * Linux 6.10 and (sk, arg) since: one program per signature, and the kernel's BTF decides
 * which one loads. */
static __always_inline void accepted(struct sock *sk)
{
	if (sk && transport(sk) == IPPROTO_TCP)
		owned_by_current(sk, 1);
}

SEC("fexit/inet_csk_accept")
int BPF_PROG(accepted_4, struct sock *listener, int flags, int *err, bool kern, struct sock *sk)
{
	accepted(sk);
	return 0;
}

SEC("fexit/inet_csk_accept")
int BPF_PROG(accepted_2, struct sock *listener, void *arg, struct sock *sk)
{
	accepted(sk);
	return 0;
}
