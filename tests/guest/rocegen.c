// SPDX-License-Identifier: GPL-2.0
/*
 * rocegen: sends malformed and forged RoCE v2 packets to UDP port 4791, for the
 * boot test's malformed-packet checks (tests/guest/malformed.sh).  Libc only;
 * built inside each target's root.
 *
 *   rocegen [-6] -d ADDR [-q QPN] [-p PSN] [-P PSN] [-r RKEY] [-v VA]
 *           [-S ADDR] [-n COUNT] [-w FILE -s ADDR] CASE
 *   rocegen selftest
 *
 * -d is the address of the device under test, -q and -p the QPN and expected
 * PSN of a live RC QP there (its rq_psn), -P that QP's next send PSN (sq_psn),
 * -r and -v a remote key and address of that QP's peer-writable memory; -S is a
 * source address that is not the peer's; -n sends each kind of packet COUNT
 * times.  Each CASE sends a few kinds of packet (listed in cases[]) and prints
 * "sent N": how many packets ferrite must drop and count.  With -w nothing is
 * sent: each datagram (from its IP header, as the receiver sees it) goes to
 * FILE after its length (2 bytes, big-endian), with -s as its source address.
 *
 * Packets that must pass the ICRC check carry a correct one, computed here as
 * the RoCE v2 annex defines it: CRC-32 (reflected, polynomial 0xedb88320) over
 * 8 bytes of 0xff for the LRH, the IP header with its variant fields as ones
 * (IPv4: TOS, TTL, checksum; IPv6: traffic class, flow label, hop limit), the
 * UDP header with its checksum as ones, the BTH with its resv8a byte as ones,
 * then the rest of the packet; the ICRC is the CRC inverted, least significant
 * byte first.
 *
 * IPv4 goes out through a raw socket (IP_HDRINCL): the identification field is
 * covered by the ICRC, so this program writes the whole IP header itself, and
 * only a raw socket can send a wrong UDP length, IP options or another source.
 * IPv6 goes through a connected UDP socket: every field the ICRC covers is known
 * (the kernel's source address from getsockname()).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROCE_PORT	4791
#define SPORT		0xc0de
#define BTH_LEN		12
#define ICRC_LEN	4
#define MAX_PKT		2048
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* Opcodes (IBTA transport opcodes: RC 0x00-0x1f, UC 0x20-0x3f). */
#define RC_SEND_ONLY		0x04
#define RC_WRITE_ONLY		0x0a
#define RC_READ_REQUEST		0x0c
#define RC_READ_RESPONSE_ONLY	0x10
#define RC_ACK			0x11
#define RC_ATOMIC_ACK		0x12
#define RC_FETCH_ADD		0x14
#define UC_SEND_ONLY		0x24

/* AETH syndrome of an ACK with "invalid credit count". */
#define SYN_ACK		0x1f

static uint32_t crc_table[256];

static void crc_init(void)
{
	uint32_t c;
	int i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0xedb88320 : c >> 1;
		crc_table[i] = c;
	}
}

/* The kernel's crc32_le(): no inversion before or after. */
static uint32_t crc32_le(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/*
 * The ICRC of the datagram `ip` of `len` bytes (IP header to ICRC), whose IP
 * header is `ihl` bytes (20 or more for IPv4, 40 for IPv6).
 */
static uint32_t icrc(const uint8_t *ip, size_t len, size_t ihl)
{
	static const uint8_t lrh[8] = { 0xff, 0xff, 0xff, 0xff,
					0xff, 0xff, 0xff, 0xff };
	uint8_t h[128];
	size_t n = ihl + 8 + BTH_LEN;
	uint32_t c;

	memcpy(h, ip, n);
	if ((ip[0] >> 4) == 4) {
		h[1] = 0xff;			/* TOS */
		h[8] = 0xff;			/* TTL */
		h[10] = h[11] = 0xff;		/* header checksum */
	} else {
		h[0] |= 0x0f;			/* traffic class, flow label */
		h[1] = h[2] = h[3] = 0xff;
		h[7] = 0xff;			/* hop limit */
	}
	h[ihl + 6] = h[ihl + 7] = 0xff;		/* UDP checksum */
	h[ihl + 8 + 4] = 0xff;			/* BTH resv8a */
	c = crc32_le(0xffffffff, lrh, sizeof(lrh));
	c = crc32_le(c, h, n);
	c = crc32_le(c, ip + n, len - n - ICRC_LEN);
	return ~c;
}

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put24(uint8_t *p, uint32_t v)
{
	p[0] = v >> 16;
	p[1] = v >> 8;
	p[2] = v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, v);
}

/* Where packets go, and what the cases need to know of the QP there. */
struct target {
	int v6;
	int fd;
	struct sockaddr_in dst4;
	uint8_t src[16], dst[16];	/* IPv4: the first 4 bytes */
	uint8_t spoof[4];
	int have_spoof;
	uint16_t sport;			/* IPv6: the kernel's, of fd */
	uint32_t qpn, epsn, sq_psn, rkey;
	uint64_t va;
	unsigned int sent;
	FILE *w;			/* -w: datagrams go here */
};

/* The transport part of a packet being built: BTH to the ICRC. */
struct pkt {
	uint8_t t[MAX_PKT];
	size_t len;
};

/* Ways to spoil a packet on its way out, after its ICRC is made. */
enum {
	F_ICRC = 1 << 0,	/* flip a bit of the ICRC */
	F_PAYLOAD = 1 << 1,	/* flip a bit after the BTH */
	F_IPID = 1 << 2,	/* change the IPv4 identification */
	F_QPN = 1 << 3,		/* ICRC made for QPN ^ 1, sent to QPN */
	F_UDPLEN = 1 << 4,	/* UDP length 4 short of the IP payload */
	F_IPOPT = 1 << 5,	/* an IPv4 header with 4 bytes of options */
	F_SPOOF = 1 << 6,	/* the -S source address */
	F_NOICRC = 1 << 7,	/* no ICRC: the transport bytes as they are */
	F_MASKED = 1 << 8,	/* TOS, TTL (or traffic class) not the usual */
};

static void bth(struct pkt *p, uint8_t op, uint8_t pad, uint16_t pkey,
		uint32_t qpn, uint32_t psn)
{
	memset(p->t, 0, BTH_LEN);
	p->t[0] = op;
	p->t[1] = (pad & 3) << 4;
	put16(p->t + 2, pkey);
	put24(p->t + 5, qpn);
	p->t[8] = 0x80;			/* AckReq */
	put24(p->t + 9, psn);
	p->len = BTH_LEN;
}

static void add(struct pkt *p, const void *b, size_t n)
{
	memcpy(p->t + p->len, b, n);
	p->len += n;
}

static void add_bytes(struct pkt *p, uint8_t v, size_t n)
{
	memset(p->t + p->len, v, n);
	p->len += n;
}

static void add_reth(struct pkt *p, uint64_t va, uint32_t rkey, uint32_t len)
{
	uint8_t r[16];

	put64(r, va);
	put32(r + 8, rkey);
	put32(r + 12, len);
	add(p, r, sizeof(r));
}

static void add_aeth(struct pkt *p, uint8_t syndrome, uint32_t msn)
{
	uint8_t a[4];

	a[0] = syndrome;
	put24(a + 1, msn);
	add(p, a, sizeof(a));
}

static size_t ip_header(const struct target *tg, uint8_t *ip, size_t udp_len,
			unsigned int f)
{
	size_t ihl = f & F_IPOPT ? 24 : 20;

	if (tg->v6) {
		memset(ip, 0, 40);
		ip[0] = 0x60;
		put16(ip + 4, udp_len);
		ip[6] = IPPROTO_UDP;
		ip[7] = 64;
		memcpy(ip + 8, tg->src, 16);
		memcpy(ip + 24, tg->dst, 16);
		return 40;
	}
	memset(ip, 0, ihl);
	ip[0] = 0x40 | ihl / 4;
	ip[1] = f & F_MASKED ? 0xb8 : 0;
	put16(ip + 2, ihl + udp_len);
	put16(ip + 4, 0x4d46);		/* identification: never 0 (raw(7)) */
	ip[6] = 0x40;			/* DF */
	ip[8] = f & F_MASKED ? 3 : 64;
	ip[9] = IPPROTO_UDP;
	memcpy(ip + 12, f & F_SPOOF ? tg->spoof : tg->src, 4);
	memcpy(ip + 16, tg->dst, 4);
	if (f & F_IPOPT)
		memset(ip + 20, 1, 4);	/* four NOPs */
	return ihl;
}

static int xmit(struct target *tg, struct pkt *p, unsigned int f)
{
	uint8_t ip[MAX_PKT + 64];
	size_t udp_len = 8 + p->len + (f & F_NOICRC ? 0 : ICRC_LEN);
	size_t ihl = ip_header(tg, ip, udp_len, f);
	size_t len = ihl + udp_len;
	uint8_t *udp = ip + ihl;
	uint32_t c;
	ssize_t r = -1;
	int tries;

	put16(udp, tg->v6 ? tg->sport : SPORT);
	put16(udp + 2, ROCE_PORT);
	put16(udp + 4, udp_len);
	put16(udp + 6, 0);
	memcpy(udp + 8, p->t, p->len);
	if (!(f & F_NOICRC)) {
		if (f & F_QPN)
			udp[8 + 7] ^= 1;
		c = icrc(ip, len, ihl);
		if (f & F_QPN)
			udp[8 + 7] ^= 1;
		udp[8 + p->len] = c;
		udp[8 + p->len + 1] = c >> 8;
		udp[8 + p->len + 2] = c >> 16;
		udp[8 + p->len + 3] = c >> 24;
	}
	if (f & F_ICRC)
		ip[len - 1] ^= 0x20;
	if (f & F_PAYLOAD)
		udp[8 + BTH_LEN] ^= 0x01;
	if (f & F_IPID)
		ip[5] ^= 0x01;
	if (f & F_UDPLEN)
		put16(udp + 4, udp_len - 4);
	if (tg->w) {
		if (tg->v6 && (f & (F_IPID | F_UDPLEN | F_IPOPT | F_SPOOF)))
			return 0;
		if (fputc(len >> 8, tg->w) == EOF || fputc(len & 0xff, tg->w) == EOF ||
		    fwrite(ip, len, 1, tg->w) != 1) {
			fprintf(stderr, "rocegen: -w: %s\n", strerror(errno));
			exit(1);
		}
		tg->sent++;
		return 0;
	}
	if (tg->v6 && (f & (F_IPID | F_UDPLEN | F_IPOPT | F_SPOOF)))
		return 0;	/* IPv4 (raw socket) only: not sent */
	for (tries = 0; tries < 1000; tries++) {
		if (tg->v6)
			r = send(tg->fd, udp + 8, udp_len - 8, 0);
		else
			r = sendto(tg->fd, ip, len, 0, (struct sockaddr *)&tg->dst4,
				   sizeof(tg->dst4));
		/* A flood can fill the socket's buffer: wait for it to drain. */
		if (r >= 0 || (errno != ENOBUFS && errno != EAGAIN))
			break;
		usleep(1000);
	}
	if (r != (ssize_t)(tg->v6 ? udp_len - 8 : len)) {
		fprintf(stderr, "rocegen: send: %s\n", strerror(errno));
		exit(1);
	}
	tg->sent++;
	return 0;
}

/* ---- the cases: each builds its kinds of packet and sends them ---- */

/* A SEND ONLY of 16 bytes to the QP at its expected PSN: valid but for `f`. */
static void send_only(struct target *tg, uint32_t qpn, uint32_t psn,
		      unsigned int f)
{
	struct pkt p;

	bth(&p, RC_SEND_ONLY, 0, 0xffff, qpn, psn);
	add_bytes(&p, 0x5a, 16);
	xmit(tg, &p, f);
}

/* Shorter than a BTH, or a BTH without the ICRC after it. */
static void c_short(struct target *tg)
{
	static const size_t lens[] = { 1, 8, 11, 12, 15 };
	struct pkt p;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		bth(&p, RC_SEND_ONLY, 0, 0xffff, tg->qpn, tg->epsn);
		add_bytes(&p, 0x5a, 16);
		p.len = lens[i];
		xmit(tg, &p, F_NOICRC);
	}
}

/* Extension headers cut short (with a correct ICRC): RETH, AtomicETH. */
static void c_reth_cut(struct target *tg)
{
	struct pkt p;

	bth(&p, RC_WRITE_ONLY, 0, 0xffff, tg->qpn, tg->epsn);
	add_reth(&p, tg->va, tg->rkey, 16);
	p.len = BTH_LEN + 8;
	xmit(tg, &p, 0);
	bth(&p, RC_READ_REQUEST, 0, 0xffff, tg->qpn, tg->epsn);
	add_reth(&p, tg->va, tg->rkey, 16);
	p.len = BTH_LEN + 12;
	xmit(tg, &p, 0);
	bth(&p, RC_FETCH_ADD, 0, 0xffff, tg->qpn, tg->epsn);
	add_bytes(&p, 0, 20);		/* of the AtomicETH's 28 */
	xmit(tg, &p, 0);
}

/* Opcodes ferrite does not know: reserved RC codes, RD, CNP, others. */
static void c_opcode(struct target *tg)
{
	static const uint8_t ops[] = { 0x15, 0x18, 0x19, 0x1a, 0x1b, 0x1e,
				       0x1f, 0x40, 0x44, 0x81, 0xc0, 0xff };
	struct pkt p;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ops); i++) {
		bth(&p, ops[i], 0, 0xffff, tg->qpn, tg->epsn);
		add_bytes(&p, 0, 16);
		xmit(tg, &p, 0);
	}
}

/*
 * Valid packets to QPNs no QP has: QP0 and QP1 (ferrite has neither), the
 * reserved ones below 17, the top of the range.  Half of them with TOS and TTL
 * other than usual, which the ICRC does not cover.
 */
static void c_qpn(struct target *tg)
{
	static const uint32_t qpns[] = { 0, 1, 2, 16, 0xfffff0, 0xffffff };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(qpns); i++)
		send_only(tg, qpns[i], tg->epsn, i & 1 ? F_MASKED : 0);
}

/* To the QP at its expected PSN, with the ICRC not matching. */
static void c_icrc(struct target *tg)
{
	send_only(tg, tg->qpn, tg->epsn, F_ICRC);
	send_only(tg, tg->qpn, tg->epsn, F_PAYLOAD);
	send_only(tg, tg->qpn, tg->epsn, F_QPN);
	if (!tg->v6)
		send_only(tg, tg->qpn, tg->epsn, F_IPID);
}

/* PadCnt that does not fit: more pad than bytes, pad where no payload goes. */
static void c_pad(struct target *tg)
{
	struct pkt p;

	bth(&p, RC_SEND_ONLY, 3, 0xffff, tg->qpn, tg->epsn);
	add_bytes(&p, 0x5a, 2);
	xmit(tg, &p, 0);
	bth(&p, RC_SEND_ONLY, 1, 0xffff, tg->qpn, tg->epsn);
	xmit(tg, &p, 0);
	bth(&p, RC_ACK, 2, 0xffff, tg->qpn, (tg->sq_psn - 1) & 0xffffff);
	add_aeth(&p, SYN_ACK, 0);
	add_bytes(&p, 0, 2);
	xmit(tg, &p, 0);
	bth(&p, RC_READ_REQUEST, 1, 0xffff, tg->qpn, tg->epsn);
	add_reth(&p, tg->va, tg->rkey, 8);
	add_bytes(&p, 0, 1);
	xmit(tg, &p, 0);
}

/* Lengths that disagree: payload on opcodes without any, a short UDP length. */
static void c_length(struct target *tg)
{
	struct pkt p;

	bth(&p, RC_ACK, 0, 0xffff, tg->qpn, (tg->sq_psn - 1) & 0xffffff);
	add_aeth(&p, SYN_ACK, 0);
	add_bytes(&p, 0, 4);
	xmit(tg, &p, 0);
	bth(&p, RC_READ_REQUEST, 0, 0xffff, tg->qpn, tg->epsn);
	add_reth(&p, tg->va, tg->rkey, 8);
	add_bytes(&p, 0, 8);
	xmit(tg, &p, 0);
	/* The kernel trims the datagram to the UDP length: IP says more. */
	send_only(tg, tg->qpn, tg->epsn, F_UDPLEN);
}

/* Headers ferrite does not take: BTH transport version 1, IPv4 options. */
static void c_header(struct target *tg)
{
	struct pkt p;

	bth(&p, RC_SEND_ONLY, 0, 0xffff, tg->qpn, tg->epsn);
	p.t[1] |= 1;
	add_bytes(&p, 0x5a, 16);
	xmit(tg, &p, 0);
	send_only(tg, tg->qpn, tg->epsn, F_IPOPT);
}

/* Valid to the QP, but not from its peer: another address, UC, a P_Key. */
static void c_foreign(struct target *tg)
{
	struct pkt p;

	if (tg->have_spoof)
		send_only(tg, tg->qpn, tg->epsn, F_SPOOF);
	bth(&p, UC_SEND_ONLY, 0, 0xffff, tg->qpn, tg->epsn);
	add_bytes(&p, 0x5a, 16);
	xmit(tg, &p, 0);
	bth(&p, RC_SEND_ONLY, 0, 0x1234, tg->qpn, tg->epsn);
	add_bytes(&p, 0x5a, 16);
	xmit(tg, &p, 0);
}

/* A WRITE ONLY of 16 bytes into the QP's own memory at PSN `psn`. */
static void write_only(struct target *tg, uint32_t psn)
{
	struct pkt p;

	bth(&p, RC_WRITE_ONLY, 0, 0xffff, tg->qpn, psn);
	add_reth(&p, tg->va, tg->rkey, 16);
	add_bytes(&p, 0xa5, 16);
	xmit(tg, &p, 0);
}

/* Requests ahead of the expected PSN, near and far: out of sequence. */
static void c_psn_ahead(struct target *tg)
{
	static const uint32_t ahead[] = { 1, 2, 1000, 1 << 22, (1 << 23) - 1 };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ahead); i++)
		send_only(tg, tg->qpn, (tg->epsn + ahead[i]) & 0xffffff, 0);
	write_only(tg, (tg->epsn + 3) & 0xffffff);
}

/*
 * Requests behind it: duplicates.  The WRITE has the real key and address, the
 * READ and the FETCH_ADD have nothing to be replayed from.
 */
static void c_psn_behind(struct target *tg)
{
	static const uint32_t behind[] = { 1, 1000, 1 << 23 };
	struct pkt p;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(behind); i++)
		send_only(tg, tg->qpn, (tg->epsn - behind[i]) & 0xffffff, 0);
	write_only(tg, (tg->epsn - 1) & 0xffffff);
	bth(&p, RC_READ_REQUEST, 0, 0xffff, tg->qpn, (tg->epsn - 2) & 0xffffff);
	add_reth(&p, tg->va, tg->rkey, 16);
	xmit(tg, &p, 0);
	bth(&p, RC_FETCH_ADD, 0, 0xffff, tg->qpn, (tg->epsn - 3) & 0xffffff);
	add_bytes(&p, 0, 28);
	put64(p.t + BTH_LEN, tg->va);
	put32(p.t + BTH_LEN + 8, tg->rkey);
	xmit(tg, &p, 0);
}

/*
 * Requests ahead of the expected PSN, as fast as they go (-n of them): each is
 * either seen by the QP (out of sequence) or dropped at its full receive queue.
 */
static void c_flood(struct target *tg)
{
	send_only(tg, tg->qpn, (tg->epsn + 1 + tg->sent) & 0xffffff, 0);
}

/* Responses for PSNs the QP never sent: ACK, READ response, atomic ACK. */
static void c_response(struct target *tg)
{
	static const uint32_t ahead[] = { 0, 1, 1 << 22 };
	struct pkt p;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ahead); i++) {
		bth(&p, RC_ACK, 0, 0xffff, tg->qpn,
		    (tg->sq_psn + ahead[i]) & 0xffffff);
		add_aeth(&p, SYN_ACK, 0);
		xmit(tg, &p, 0);
	}
	bth(&p, RC_READ_RESPONSE_ONLY, 0, 0xffff, tg->qpn,
	    (tg->sq_psn + 5) & 0xffffff);
	add_aeth(&p, SYN_ACK, 0);
	add_bytes(&p, 0xa5, 16);
	xmit(tg, &p, 0);
	bth(&p, RC_ATOMIC_ACK, 0, 0xffff, tg->qpn, (tg->sq_psn + 7) & 0xffffff);
	add_aeth(&p, SYN_ACK, 0);
	add_bytes(&p, 0xa5, 8);
	xmit(tg, &p, 0);
}

static const struct {
	const char *name;
	void (*fn)(struct target *tg);
} cases[] = {
	{ "short", c_short },
	{ "reth_cut", c_reth_cut },
	{ "opcode", c_opcode },
	{ "qpn", c_qpn },
	{ "icrc", c_icrc },
	{ "pad", c_pad },
	{ "length", c_length },
	{ "header", c_header },
	{ "foreign", c_foreign },
	{ "psn_ahead", c_psn_ahead },
	{ "psn_behind", c_psn_behind },
	{ "response", c_response },
	{ "flood", c_flood },
};

/* ---- selftest: the ICRC of packets whose ICRC is known ---- */

/*
 * A CNP from a ConnectX-4 Lx and a UC SEND ONLY over IPv4 and IPv6, the
 * vectors kmod/src/wire/icrc.rs tests against (their sources are named there).
 */
static const uint8_t cnp_cx4[60] = {
	0x45, 0xc2, 0x00, 0x3c, 0x71, 0x8c, 0x40, 0x00, 0x40, 0x11, 0x91, 0x61,
	0x0a, 0x00, 0x11, 0x01, 0x0a, 0x00, 0x12, 0x01,
	0x00, 0x00, 0x12, 0xb7, 0x00, 0x28, 0x00, 0x00,
	0x81, 0x00, 0xff, 0xff, 0x40, 0x00, 0x01, 0x18, 0x00, 0x00, 0x00, 0x00,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0x82, 0xfd, 0x00, 0x2a,
};

static const uint8_t uc_send_v4[64] = {
	0x45, 0x01, 0x00, 0x40, 0x04, 0x78, 0x40, 0x00, 0x40, 0x11, 0xb4, 0xd5,
	0xc0, 0xa8, 0x00, 0x07, 0xc0, 0xa8, 0x00, 0x07,
	0xc0, 0x00, 0x12, 0xb7, 0x00, 0x2c, 0xac, 0xa2,
	0x24, 0x60, 0xff, 0xff, 0x00, 0x00, 0x00, 0xd3, 0x00, 0xcf, 0x17, 0x10,
	0x46, 0x30, 0x81, 0x8b, 0xe2, 0x89, 0x35, 0xd9, 0x0e, 0x9a, 0x95, 0x50,
	0x54, 0x01, 0xbe, 0x88, 0x5e, 0x50, 0x00, 0x00,
	0x78, 0xf3, 0x53, 0xf3,
};

static const uint8_t uc_send_v6[84] = {
	0x6e, 0x21, 0xfa, 0xce, 0x00, 0x2c, 0x11, 0xff,
	0x20, 0x22, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x23,
	0x20, 0x23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x24,
	0xc0, 0x00, 0x12, 0xb7, 0x00, 0x2c, 0xe7, 0xc5,
	0x24, 0x60, 0xff, 0xff, 0x00, 0x00, 0x00, 0xd3, 0x00, 0xcf, 0x17, 0x10,
	0x46, 0x30, 0x81, 0x8b, 0xe2, 0x89, 0x35, 0xd9, 0x0e, 0x9a, 0x95, 0x50,
	0x54, 0x01, 0xbe, 0x88, 0x5e, 0x50, 0x00, 0x00,
	0x3e, 0x5b, 0x74, 0x3b,
};

static int check_vector(const char *name, const uint8_t *ip, size_t len,
			size_t ihl)
{
	const uint8_t *s = ip + len - ICRC_LEN;
	uint32_t want = s[0] | s[1] << 8 | s[2] << 16 | (uint32_t)s[3] << 24;
	uint32_t got = icrc(ip, len, ihl);

	printf("%s: ICRC %08x, want %08x\n", name, got, want);
	return got != want;
}

static int self_test(void)
{
	static const uint8_t check[] = "123456789";
	int bad = 0;

	/* The CRC-32 check value, from the usual all-ones start, inverted. */
	bad |= ~crc32_le(0xffffffff, check, 9) != 0xcbf43926;
	bad |= check_vector("cnp_cx4", cnp_cx4, sizeof(cnp_cx4), 20);
	bad |= check_vector("uc_send_v4", uc_send_v4, sizeof(uc_send_v4), 20);
	bad |= check_vector("uc_send_v6", uc_send_v6, sizeof(uc_send_v6), 40);
	printf("selftest: %s\n", bad ? "FAILED" : "ok");
	return bad;
}

/* ---- main ---- */

static void bad_usage(void)
{
	size_t i;

	fprintf(stderr, "usage: rocegen [-6] -d ADDR [-q QPN] [-p PSN] [-P PSN] [-r RKEY] [-v VA] [-S ADDR] [-n COUNT] [-w FILE -s ADDR] CASE\n"
		"       rocegen selftest\ncases:");
	for (i = 0; i < ARRAY_SIZE(cases); i++)
		fprintf(stderr, " %s", cases[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

static void open_target(struct target *tg, const char *dst)
{
	struct sockaddr_in6 d6 = { .sin6_family = AF_INET6 }, s6;
	struct sockaddr_in s4;
	socklen_t sl;
	int fd;

	if (tg->v6) {
		if (inet_pton(AF_INET6, dst, &d6.sin6_addr) != 1)
			bad_usage();
		d6.sin6_port = htons(ROCE_PORT);
		tg->fd = socket(AF_INET6, SOCK_DGRAM, 0);
		if (tg->fd < 0 || connect(tg->fd, (struct sockaddr *)&d6, sizeof(d6)))
			goto fail;
		sl = sizeof(s6);
		if (getsockname(tg->fd, (struct sockaddr *)&s6, &sl))
			goto fail;
		memcpy(tg->src, &s6.sin6_addr, 16);
		memcpy(tg->dst, &d6.sin6_addr, 16);
		tg->sport = ntohs(s6.sin6_port);
		return;
	}
	tg->dst4.sin_family = AF_INET;
	tg->dst4.sin_port = htons(ROCE_PORT);
	if (inet_pton(AF_INET, dst, &tg->dst4.sin_addr) != 1)
		bad_usage();
	/* The source the kernel would take: from a connected UDP socket. */
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&tg->dst4, sizeof(tg->dst4)))
		goto fail;
	sl = sizeof(s4);
	if (getsockname(fd, (struct sockaddr *)&s4, &sl))
		goto fail;
	close(fd);
	memcpy(tg->src, &s4.sin_addr, 4);
	memcpy(tg->dst, &tg->dst4.sin_addr, 4);
	tg->fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (tg->fd < 0)
		goto fail;
	return;
fail:
	fprintf(stderr, "rocegen: %s: %s\n", dst, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	struct target tg = { 0 };
	const char *dst = NULL, *src = NULL, *wfile = NULL;
	unsigned long n = 1, k;
	size_t i;
	int c;

	crc_init();
	while ((c = getopt(argc, argv, "6d:q:p:P:r:v:S:n:s:w:")) != -1) {
		switch (c) {
		case '6':
			tg.v6 = 1;
			break;
		case 'd':
			dst = optarg;
			break;
		case 'q':
			tg.qpn = strtoul(optarg, NULL, 0) & 0xffffff;
			break;
		case 'p':
			tg.epsn = strtoul(optarg, NULL, 0) & 0xffffff;
			break;
		case 'P':
			tg.sq_psn = strtoul(optarg, NULL, 0) & 0xffffff;
			break;
		case 'r':
			tg.rkey = strtoul(optarg, NULL, 0);
			break;
		case 'v':
			tg.va = strtoull(optarg, NULL, 0);
			break;
		case 'S':
			if (inet_pton(AF_INET, optarg, tg.spoof) != 1)
				bad_usage();
			tg.have_spoof = 1;
			break;
		case 'n':
			n = strtoul(optarg, NULL, 0);
			break;
		case 's':
			src = optarg;
			break;
		case 'w':
			wfile = optarg;
			break;
		default:
			bad_usage();
		}
	}
	if (optind + 1 != argc)
		bad_usage();
	if (!strcmp(argv[optind], "selftest"))
		return self_test();
	for (i = 0; i < ARRAY_SIZE(cases); i++)
		if (!strcmp(argv[optind], cases[i].name))
			break;
	if (i == ARRAY_SIZE(cases) || !dst)
		bad_usage();
	if (wfile) {
		int af = tg.v6 ? AF_INET6 : AF_INET;

		tg.w = fopen(wfile, "w");
		if (!tg.w || !src || inet_pton(af, src, tg.src) != 1 ||
		    inet_pton(af, dst, tg.dst) != 1)
			bad_usage();
		tg.sport = SPORT;
	} else {
		open_target(&tg, dst);
	}
	for (k = 0; k < n; k++)
		cases[i].fn(&tg);
	if (tg.w && fclose(tg.w)) {
		fprintf(stderr, "rocegen: -w: %s\n", strerror(errno));
		return 1;
	}
	printf("sent %u\n", tg.sent);
	return 0;
}
