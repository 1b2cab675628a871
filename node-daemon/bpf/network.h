/* Records the network programs hand to user space: read by
 * node-daemon/src/collect/network/ebpf/record.rs, which must agree on every offset. */
#ifndef STS_NETWORK_H
#define STS_NETWORK_H

#define RECORD_OPEN 0   /* a socket found by the iterator */
#define RECORD_CLOSED 1 /* a TCP connection that reached TCP_CLOSE, final counters */

struct sock_record {
	__u64 sk;             /*   0: kernel address of the sock, its identity while it lives */
	__u64 inode;          /*   8: socket inode, 0 when unknown */
	__u64 owner_start_ns; /*  16: owner's start_boottime (ns since boot) */
	__u64 start_ns;       /*  24: boot-clock ns when the connection opened, 0 = before us */
	__u64 bytes_sent;     /*  32: TCP: bytes_sent - bytes_retrans; UDP: counted sends */
	__u64 bytes_received; /*  40 */
	__u32 pid;            /*  48: owner tgid, 0 when unknown */
	__u32 netns;          /*  52: inode of the network namespace */
	__u32 retransmits;    /*  56 */
	__u32 srtt_us;        /*  60 */
	__u32 tx_queue;       /*  64 */
	__u32 rx_queue;       /*  68 */
	__u8 local[16];       /*  72: IPv4 in the first 4 bytes */
	__u8 remote[16];      /*  88 */
	__u16 local_port;     /* 104: host order */
	__u16 remote_port;    /* 106: host order */
	__u8 family;          /* 108: AF_INET or AF_INET6 */
	__u8 protocol;        /* 109: IPPROTO_TCP or IPPROTO_UDP */
	__u8 state;           /* 110: the kernel's TCP state; UDP: 1 connected, 7 not */
	__u8 kind;            /* 111: RECORD_OPEN or RECORD_CLOSED */
};

/* Capacities of the maps kept under socket cookies. */
#define TCP_OPENED_MAX 262144 /* open TCP connections with a known start */
#define UDP_TRAFFIC_MAX 16384 /* UDP sockets with traffic; the least recent go first */

/* Indexes of the per-CPU drop counters. */
#define DROP_RING_FULL 0   /* a closed connection not delivered: ring buffer full */
#define DROP_NO_STORAGE 1  /* no room for a socket's state (storage or a map full) */
#define DROP_COUNTERS 2

#endif
