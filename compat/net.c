// SPDX-License-Identifier: GPL-2.0
/*
 * net.c - RoCE v2 over UDP: ferrite's sockets, packets out and packets in.
 *
 * Each network namespace that holds a ferrite device gets one UDP tunnel socket
 * on port 4791 per address family, shared by every ferrite device there; it is
 * made with the first device and released with the last (or when the namespace
 * goes away).  Only one socket can own the port in a namespace: where another
 * driver has it (rdma_rxe up to Linux 7.0 binds it in the initial namespace), a
 * device cannot be made there and "rdma link add" fails with EADDRINUSE.
 *
 * Out: Rust fills the transport headers and payload; this file adds UDP and IP,
 * asks Rust for the ICRC and routes the packet (ip_local_out/ip6_local_out).
 * In: the socket's encap_rcv, in softirq, finds the device the packet is for (the
 * netdev it came in on, or for local traffic the device owning the destination
 * GID) and hands it to qp.c.
 */
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/mutex.h>
#include <linux/rculist.h>
#include <linux/skbuff.h>
#include <linux/udp.h>
#include <net/ip.h>
#include <net/ip6_route.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>
#include <net/route.h>
#include <net/udp_tunnel.h>
#include <rdma/ib_cache.h>
#include <rdma/ib_verbs.h>

#include "ferrite.h"
#include "uverbs.h"

/* The sockets of one network namespace. */
struct ferrite_net {
	struct list_head list;		/* on ferrite_nets */
	struct net *net;
	struct socket *sock4;
	struct socket *sock6;		/* NULL where IPv6 is off */
	struct list_head devs;		/* ferrite_dev.net_node, RCU */
	int users;
};

/* ferrite_net_lock guards ferrite_nets (read under RCU), each entry's sockets
 * and users.
 */
static LIST_HEAD(ferrite_nets);
static DEFINE_MUTEX(ferrite_net_lock);

static struct ferrite_dev *ferrite_net_find_dev(struct ferrite_net *fnet,
						struct sk_buff *skb)
{
	struct ferrite_dev *fdev;
	union ib_gid dgid;

	list_for_each_entry_rcu(fdev, &fnet->devs, net_node)
		if (fdev->ndev == skb->dev)
			return fdev;
	/* Local traffic arrives on the loopback device: match the address. */
	if (ip_hdr(skb)->version == 4)
		ipv6_addr_set_v4mapped(ip_hdr(skb)->daddr,
				       (struct in6_addr *)dgid.raw);
	else
		memcpy(dgid.raw, &ipv6_hdr(skb)->daddr, sizeof(dgid.raw));
	list_for_each_entry_rcu(fdev, &fnet->devs, net_node) {
		const struct ib_gid_attr *attr;

		attr = rdma_find_gid_by_port(&fdev->ibdev, &dgid,
					     IB_GID_TYPE_ROCE_UDP_ENCAP, 1,
					     NULL);
		if (!IS_ERR(attr)) {
			rdma_put_gid_attr(attr);
			return fdev;
		}
	}
	return NULL;
}

static int ferrite_udp_encap_recv(struct sock *sk, struct sk_buff *skb)
{
	struct ferrite_net *fnet;
	struct ferrite_dev *fdev;

	/* Rust reads the whole datagram from its IP header, in one piece. */
	if (skb_linearize(skb))
		goto drop;
	rcu_read_lock();
	fnet = rcu_dereference_sk_user_data(sk);
	fdev = fnet ? ferrite_net_find_dev(fnet, skb) : NULL;
	if (fdev)
		ferrite_qp_rx(fdev, skb, true);
	rcu_read_unlock();
	if (!fdev)
		goto drop;
	return 0;
drop:
	kfree_skb(skb);
	return 0;
}

static struct socket *ferrite_udp_sock(struct ferrite_net *fnet, bool v6)
{
	struct udp_tunnel_sock_cfg tcfg = {};
	struct udp_port_cfg cfg = {};
	struct socket *sock;
	int err;

	if (v6) {
		cfg.family = AF_INET6;
		cfg.ipv6_v6only = 1;
		/* RoCE sends a zero UDP checksum, as rxe does. */
		cfg.use_udp6_rx_checksums = false;
	} else {
		cfg.family = AF_INET;
	}
	cfg.local_udp_port = htons(ROCE_V2_UDP_DPORT);
	err = udp_sock_create(fnet->net, &cfg, &sock);
	if (err)
		return ERR_PTR(err);
	tcfg.sk_user_data = fnet;
	tcfg.encap_type = 1;
	tcfg.encap_rcv = ferrite_udp_encap_recv;
#ifdef HAVE_UDP_TUNNEL_SK
	setup_udp_tunnel_sock(fnet->net, sock->sk, &tcfg);
#else
	setup_udp_tunnel_sock(fnet->net, sock, &tcfg);
#endif
	return sock;
}

static void ferrite_udp_release(struct socket *sock)
{
#ifdef HAVE_UDP_TUNNEL_SK
	udp_tunnel_sock_release(sock->sk);
#else
	udp_tunnel_sock_release(sock);
#endif
}

static void ferrite_net_release_socks(struct ferrite_net *fnet)
{
	if (fnet->sock6)
		ferrite_udp_release(fnet->sock6);
	if (fnet->sock4)
		ferrite_udp_release(fnet->sock4);
	fnet->sock4 = NULL;
	fnet->sock6 = NULL;
}

/* Join the device to its netdev's namespace, making the sockets if needed. */
int ferrite_net_attach(struct ferrite_dev *fdev)
{
	struct net *net = dev_net(fdev->ndev);
	struct ferrite_net *fnet;
	struct socket *sock;
	int err = 0;

	mutex_lock(&ferrite_net_lock);
	list_for_each_entry(fnet, &ferrite_nets, list)
		if (net_eq(fnet->net, net))
			goto found;
	fnet = kzalloc(sizeof(*fnet), GFP_KERNEL);
	if (!fnet) {
		err = -ENOMEM;
		goto out;
	}
	fnet->net = net;
	INIT_LIST_HEAD(&fnet->devs);
	sock = ferrite_udp_sock(fnet, false);
	if (IS_ERR(sock)) {
		err = PTR_ERR(sock);
		if (err == -EADDRINUSE)
			pr_err("ferrite: UDP port %d is taken in the network namespace of %s (by rdma_rxe?): ferrite cannot share it\n",
			       ROCE_V2_UDP_DPORT, netdev_name(fdev->ndev));
		kfree(fnet);
		goto out;
	}
	fnet->sock4 = sock;
	sock = ferrite_udp_sock(fnet, true);
	if (IS_ERR(sock)) {
		err = PTR_ERR(sock);
		if (err != -EAFNOSUPPORT) {
			if (err == -EADDRINUSE)
				pr_err("ferrite: UDP port %d (IPv6) is taken in the network namespace of %s\n",
				       ROCE_V2_UDP_DPORT,
				       netdev_name(fdev->ndev));
			ferrite_net_release_socks(fnet);
			kfree(fnet);
			goto out;
		}
		err = 0;
		sock = NULL;
	}
	fnet->sock6 = sock;
	list_add_rcu(&fnet->list, &ferrite_nets);
found:
	fnet->users++;
	fdev->fnet = fnet;
	list_add_rcu(&fdev->net_node, &fnet->devs);
out:
	mutex_unlock(&ferrite_net_lock);
	return err;
}

/* Leave the namespace; the last device releases the sockets. */
void ferrite_net_detach(struct ferrite_dev *fdev)
{
	struct ferrite_net *fnet = fdev->fnet;

	if (!fnet)
		return;
	mutex_lock(&ferrite_net_lock);
	list_del_rcu(&fdev->net_node);
	fdev->fnet = NULL;
	if (--fnet->users == 0) {
		list_del_rcu(&fnet->list);
		ferrite_net_release_socks(fnet);
	} else {
		fnet = NULL;
	}
	mutex_unlock(&ferrite_net_lock);
	/* The receive path may still be looking at the device (or the entry). */
	synchronize_rcu();
	kfree(fnet);
}

/* A namespace is going away: its sockets go first, whatever devices remain. */
static void __net_exit ferrite_net_ns_exit(struct net *net)
{
	struct ferrite_net *fnet;

	mutex_lock(&ferrite_net_lock);
	list_for_each_entry(fnet, &ferrite_nets, list)
		if (net_eq(fnet->net, net))
			ferrite_net_release_socks(fnet);
	mutex_unlock(&ferrite_net_lock);
}

static struct pernet_operations ferrite_net_ops = {
	.exit = ferrite_net_ns_exit,
};

int ferrite_net_init(void)
{
	return register_pernet_subsys(&ferrite_net_ops);
}

void ferrite_net_exit(void)
{
	unregister_pernet_subsys(&ferrite_net_ops);
}

/* ---- packets out ---- */

/*
 * A packet to an address of this host: hand it to the receive path directly,
 * as rxe does, instead of through the loopback device.  The destination GID
 * names the device (perhaps the sender itself).
 */
static int ferrite_loopback(struct sk_buff *skb)
{
	struct net_device *lo = skb_dst(skb)->dev;
	struct ferrite_net *fnet = NULL, *f;
	struct ferrite_dev *fdev = NULL;

	skb_dst_drop(skb);
	skb->dev = lo;
	rcu_read_lock();
	list_for_each_entry_rcu(f, &ferrite_nets, list)
		if (net_eq(f->net, dev_net(lo)))
			fnet = f;
	if (fnet)
		fdev = ferrite_net_find_dev(fnet, skb);
	if (fdev)
		ferrite_qp_rx(fdev, skb, false);
	rcu_read_unlock();
	if (!fdev) {
		kfree_skb(skb);
		return -EHOSTUNREACH;
	}
	return 0;
}

void *ferrite_k_tx_alloc(void *cookie, u32 len, u8 **data)
{
	struct ferrite_qp *qp = cookie;
	struct net_device *ndev = qp->fdev->ndev;
	unsigned int head = LL_RESERVED_SPACE(ndev) + sizeof(struct ipv6hdr) +
			    sizeof(struct udphdr);
	struct sk_buff *skb;

	/* Under the QP's spin lock, perhaps in the receive softirq. */
	skb = alloc_skb(head + len + ndev->needed_tailroom, GFP_ATOMIC);
	if (!skb)
		return NULL;
	skb_reserve(skb, head);
	skb->dev = ndev;
	*data = skb_put(skb, len);
	return skb;
}

void ferrite_k_tx_free(void *skb)
{
	kfree_skb(skb);
}

static void ferrite_push_udp(struct sk_buff *skb,
			     const struct ferrite_path *p)
{
	struct udphdr *uh;

	uh = skb_push(skb, sizeof(*uh));
	skb_reset_transport_header(skb);
	uh->source = htons(p->sport);
	uh->dest = htons(ROCE_V2_UDP_DPORT);
	uh->len = htons(skb->len);
	uh->check = 0;
}

static int ferrite_xmit4(struct net *net, struct net_device *ndev,
			 struct sk_buff *skb, const struct ferrite_path *p)
{
	struct flowi4 fl = {};
	struct rtable *rt;
	struct iphdr *iph;
	int err;

	fl.flowi4_oif = ndev->ifindex;
	fl.flowi4_proto = IPPROTO_UDP;
	memcpy(&fl.saddr, p->sip + 12, 4);
	memcpy(&fl.daddr, p->dip + 12, 4);
	rt = ip_route_output_key(net, &fl);
	if (IS_ERR(rt)) {
		kfree_skb(skb);
		return PTR_ERR(rt);
	}
	ferrite_push_udp(skb, p);
	iph = skb_push(skb, sizeof(*iph));
	skb_reset_network_header(skb);
	iph->version = 4;
	iph->ihl = 5;
	iph->tos = p->traffic_class;
	iph->tot_len = htons(skb->len);
	iph->id = 0;
	iph->frag_off = htons(IP_DF);
	iph->ttl = p->hop_limit;
	iph->protocol = IPPROTO_UDP;
	iph->saddr = fl.saddr;
	iph->daddr = fl.daddr;
	ip_send_check(iph);
	skb->protocol = htons(ETH_P_IP);
	skb->ip_summed = CHECKSUM_NONE;
	memset(IPCB(skb), 0, sizeof(*IPCB(skb)));
	skb_dst_set(skb, &rt->dst);
	ferrite_rs_icrc_fill(skb->data, skb->len);
	if (rt->dst.dev->flags & IFF_LOOPBACK)
		return ferrite_loopback(skb);
	err = ip_local_out(net, NULL, skb);
	return net_xmit_eval(err);
}

static int ferrite_xmit6(struct net *net, struct net_device *ndev,
			 struct sock *sk, struct sk_buff *skb,
			 const struct ferrite_path *p)
{
	struct flowi6 fl6 = {};
	struct dst_entry *dst;
	struct ipv6hdr *ip6h;
	int err;

	fl6.flowi6_oif = ndev->ifindex;
	fl6.flowi6_proto = IPPROTO_UDP;
	memcpy(&fl6.saddr, p->sip, 16);
	memcpy(&fl6.daddr, p->dip, 16);
	dst = ip6_dst_lookup_flow(net, sk, &fl6, NULL);
	if (IS_ERR(dst)) {
		kfree_skb(skb);
		return PTR_ERR(dst);
	}
	ferrite_push_udp(skb, p);
	ip6h = skb_push(skb, sizeof(*ip6h));
	skb_reset_network_header(skb);
	ip6_flow_hdr(ip6h, p->traffic_class, htonl(p->flow_label));
	ip6h->payload_len = htons(skb->len - sizeof(*ip6h));
	ip6h->nexthdr = IPPROTO_UDP;
	ip6h->hop_limit = p->hop_limit;
	ip6h->saddr = fl6.saddr;
	ip6h->daddr = fl6.daddr;
	skb->protocol = htons(ETH_P_IPV6);
	skb->ip_summed = CHECKSUM_NONE;
	memset(IP6CB(skb), 0, sizeof(*IP6CB(skb)));
	skb_dst_set(skb, dst);
	ferrite_rs_icrc_fill(skb->data, skb->len);
	if (dst->dev->flags & IFF_LOOPBACK)
		return ferrite_loopback(skb);
	err = ip6_local_out(net, NULL, skb);
	return net_xmit_eval(err);
}

int ferrite_k_tx_send(void *cookie, void *skbp, const struct ferrite_path *p)
{
	struct ferrite_qp *qp = cookie;
	struct net_device *ndev = qp->fdev->ndev;
	struct sk_buff *skb = skbp;

	if (p->v6)
		return ferrite_xmit6(dev_net(ndev), ndev, NULL, skb, p);
	return ferrite_xmit4(dev_net(ndev), ndev, skb, p);
}
