"""RoCE v2 packets as they crossed a virtual wire: a QEMU filter-dump pcap, read on
the host, independently of both stacks.

check(pcap, senders) returns (ok, diag lines).  Every UDP datagram to port 4791 in
the capture must be a whole, well-formed RoCE v2 packet: not truncated by the
capture, IPv4 header checksum right (or IPv6), UDP length matching, UDP checksum
zero or right, BTH transport version 0, and an ICRC that verifies.  The ICRC is
computed here as IBTA's RoCE v2 annex says (what kmod/src/wire/icrc.rs describes),
with rxe's variant for RC FLUSH also accepted.  `senders` maps a source address to
a label (e.g. "ferrite@bullseye"): each must have sent RoCE packets.

The diagnostics summarise, per sender, how it fills the fields a receiver does not
check the same way: IPv4 DF, TTL, TOS and IP ID, the UDP source ports and checksum,
the BTH's P_Key, pad counts and AckReq, the opcodes, ACKs and NAKs, and requests
and READ response packets sent again with a PSN already seen (retransmissions).
A last line names the fields in which ferrite's packets and rxe's differ.
"""

import collections
import ipaddress
import struct
import zlib

ROCE_PORT = 4791
# Seconds within which a request with a PSN already seen is a retransmission.
RESEND_WINDOW = 30

OPCODES = {
    0x00: "SEND_FIRST", 0x01: "SEND_MIDDLE", 0x02: "SEND_LAST", 0x03: "SEND_LAST_IMM",
    0x04: "SEND_ONLY", 0x05: "SEND_ONLY_IMM", 0x06: "WRITE_FIRST", 0x07: "WRITE_MIDDLE",
    0x08: "WRITE_LAST", 0x09: "WRITE_LAST_IMM", 0x0a: "WRITE_ONLY", 0x0b: "WRITE_ONLY_IMM",
    0x0c: "READ_REQ", 0x0d: "READ_RESP_FIRST", 0x0e: "READ_RESP_MIDDLE",
    0x0f: "READ_RESP_LAST", 0x10: "READ_RESP_ONLY", 0x11: "ACK", 0x12: "ATOMIC_ACK",
    0x13: "CMP_SWAP", 0x14: "FETCH_ADD", 0x16: "SEND_LAST_INV", 0x17: "SEND_ONLY_INV",
    0x1c: "FLUSH", 0x1d: "ATOMIC_WRITE",
}
RC_FLUSH = 0x1c
# Opcodes (low 5 bits) that carry an AETH: ACK, ATOMIC ACK, the READ responses that
# have one.
AETH_OPS = {0x11, 0x12, 0x0d, 0x0f, 0x10}
# Responses; everything else an RC/UC QP sends is a request.
RESPONSE_OPS = {0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12}
READ_RESPONSE_OPS = {0x0d, 0x0e, 0x0f, 0x10}
NAK_CODES = {0: "PSN sequence error", 1: "invalid request", 2: "remote access error",
             3: "remote operational error", 4: "invalid RD request"}


def opname(op):
    if op == 0x81:
        return "CNP"
    kind = {0x00: "RC", 0x20: "UC", 0x40: "RD", 0x60: "UD"}.get(op & 0xe0, f"0x{op & 0xe0:02x}")
    return f"{kind}_{OPCODES.get(op & 0x1f, f'0x{op & 0x1f:02x}')}"


def frames(path):
    """(seconds, frame bytes, original length) of every record of a pcap file."""
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            raise ValueError("no pcap header")
        magic = struct.unpack("<I", hdr[:4])[0]
        if magic in (0xa1b2c3d4, 0xa1b23c4d):
            end = "<"
        elif magic in (0xd4c3b2a1, 0x4d3cb2a1):
            end = ">"
        else:
            raise ValueError(f"not a pcap file (magic {magic:#x})")
        nano = magic in (0xa1b23c4d, 0x4d3cb2a1)
        linktype = struct.unpack(end + "I", hdr[20:24])[0]
        if linktype != 1:
            raise ValueError(f"link type {linktype}, not Ethernet")
        rec = struct.Struct(end + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield sec + frac / (1e9 if nano else 1e6), data, orig


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def icrc(ip_pkt, ip_hlen, flush_variant=False):
    """The ICRC of a whole IP datagram (its last 4 bytes, the ICRC itself, not read)."""
    pre = bytearray(ip_pkt[:ip_hlen + 8 + 12])
    if ip_hlen == 20:
        pre[1] = 0xff          # TOS
        pre[8] = 0xff          # TTL
        pre[10:12] = b"\xff\xff"   # header checksum
    else:
        pre[0] |= 0x0f         # traffic class and flow label
        pre[1:4] = b"\xff\xff\xff"
        pre[7] = 0xff          # hop limit
    u = ip_hlen
    pre[u + 6:u + 8] = b"\xff\xff"   # UDP checksum
    pre[u + 8 + 4] = 0xff            # BTH resv8a (FECN, BECN)
    body = b"\xff" * 8 + bytes(pre) + ip_pkt[ip_hlen + 20:-4]
    if flush_variant:
        body += ip_pkt[ip_hlen + 8:-4]
    return zlib.crc32(body)


class Sender:
    """What one source address sent."""

    def __init__(self, label):
        self.label = label
        self.n = 0
        self.bytes = 0
        self.max_frame = 0
        self.first = self.last = None
        self.df = collections.Counter()
        self.ttl = collections.Counter()
        self.tos = collections.Counter()
        self.ip_ids = []
        self.sports = collections.Counter()
        self.udp_csum = collections.Counter()   # "zero" or "set"
        self.pkeys = collections.Counter()
        self.pad = collections.Counter()
        self.fecn_becn = 0
        self.ops = collections.Counter()
        self.ackreq = collections.Counter()     # over requests: True/False
        self.acks = 0
        self.naks = collections.Counter()
        self.rnr_naks = 0
        self.seen_psn = {}
        self.resent = 0
        self.seen_resp = {}
        self.resent_resp = 0
        self.qps = set()

    def features(self):
        """Comparable facts about this sender's header fields."""
        ids = self.ip_ids
        if not ids:
            id_mode = "none"
        elif all(i == 0 for i in ids):
            id_mode = "always 0"
        elif len(set(ids)) == 1:
            id_mode = f"always {ids[0]:#06x}"
        else:
            id_mode = "varies"
        return {
            "DF": "/".join(sorted({"set" if d else "clear" for d in self.df})),
            "TTL": ",".join(str(t) for t in sorted(self.ttl)),
            "TOS": ",".join(f"{t:#04x}" for t in sorted(self.tos)),
            "IP ID": id_mode,
            "UDP checksum": "/".join(sorted(self.udp_csum)),
            "P_Key": ",".join(f"{p:#06x}" for p in sorted(self.pkeys)),
        }

    def summary(self):
        f = self.features()
        span = f"{self.last - self.first:.1f} s" if self.first is not None else "-"
        sp = sorted(self.sports)
        reqs = sum(self.ackreq.values())
        lines = [
            f"{self.label}: {self.n} RoCE packets, {self.bytes} bytes over {span}, "
            f"largest frame {self.max_frame} bytes, {len(self.qps)} destination QPs",
            f"{self.label}:   IPv4 DF {f['DF']}, TTL {f['TTL']}, TOS {f['TOS']}, IP ID {f['IP ID']}; "
            f"UDP checksum {f['UDP checksum']}, {len(sp)} source ports"
            + (f" ({sp[0]:#06x}..{sp[-1]:#06x})" if sp else ""),
            f"{self.label}:   P_Key {f['P_Key']}, pad counts "
            + ",".join(f"{p}:{c}" for p, c in sorted(self.pad.items()))
            + f", FECN/BECN set {self.fecn_becn}; AckReq on {self.ackreq[True]} of {reqs} requests",
            f"{self.label}:   ACKs {self.acks}, RNR NAKs {self.rnr_naks}, NAKs "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.naks.items())) or "0")
            + f"; sent again with a PSN already sent: {self.resent} requests, "
            f"{self.resent_resp} READ response packets",
            f"{self.label}:   opcodes " + ", ".join(
                f"{opname(o)} {c}" for o, c in sorted(self.ops.items())),
        ]
        return lines


def check(path, senders):
    """(ok, diag lines) for the capture at `path`; `senders`: {address: label}."""
    bad = []
    by_src = {ipaddress.ip_address(a): Sender(l) for a, l in senders.items()}
    others = collections.Counter()
    frames_seen = 0

    def fail(t, src, why):
        if len(bad) < 20:
            bad.append(f"at {t:.3f} s from {src}: {why}")
        else:
            bad.append(None)

    def one(t, fr, orig):
        if len(fr) < 14:
            return
        etype = struct.unpack("!H", fr[12:14])[0]
        off = 14
        if etype == 0x8100 and len(fr) >= 18:
            etype = struct.unpack("!H", fr[16:18])[0]
            off = 18
        ip = fr[off:]
        if etype == 0x0800 and len(ip) >= 20 and ip[9] == 17:
            hlen = (ip[0] & 0x0f) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            src = ipaddress.ip_address(ip[12:16])
            if len(ip) < hlen + 8 or struct.unpack("!H", ip[hlen + 2:hlen + 4])[0] != ROCE_PORT:
                return
            if len(fr) < orig:
                fail(t, src, f"captured {len(fr)} of {orig} bytes (truncated capture)")
                return
            if hlen != 20:
                fail(t, src, f"IPv4 header of {hlen} bytes (options)")
                return
            if total > len(ip) or total < hlen + 8 + 12 + 4:
                fail(t, src, f"IPv4 total length {total} for {len(ip)} bytes")
                return
            ip = ip[:total]  # Ethernet padding off
            if _csum(ip[:20]) != 0xffff:
                fail(t, src, "IPv4 header checksum wrong")
            pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, total - hlen)
        elif etype == 0x86dd and len(ip) >= 48 and ip[6] == 17:
            hlen = 40
            plen = struct.unpack("!H", ip[4:6])[0]
            src = ipaddress.ip_address(ip[8:24])
            if struct.unpack("!H", ip[42:44])[0] != ROCE_PORT:
                return
            if len(fr) < orig:
                fail(t, src, f"captured {len(fr)} of {orig} bytes (truncated capture)")
                return
            total = hlen + plen
            if total > len(ip) or plen < 8 + 12 + 4:
                fail(t, src, f"IPv6 payload length {plen} for {len(ip)} bytes")
                return
            ip = ip[:total]
            pseudo = ip[8:40] + struct.pack("!IxxxB", plen, 17)
        else:
            return
        s = by_src.get(src)
        if s is None:
            others[str(src)] += 1
            s = by_src[src] = Sender(f"unexpected sender {src}")
        udp = ip[hlen:hlen + 8]
        sport, _, ulen, ucsum = struct.unpack("!HHHH", udp)
        if ulen != total - hlen:
            fail(t, src, f"UDP length {ulen}, IP says {total - hlen}")
            return
        if ucsum == 0:
            if hlen == 40:
                fail(t, src, "UDP checksum 0 over IPv6")
            s.udp_csum["zero"] += 1
        else:
            if _csum(pseudo + ip[hlen:]) != 0xffff:
                fail(t, src, f"UDP checksum {ucsum:#06x} wrong")
            s.udp_csum["set"] += 1
        bth = ip[hlen + 8:hlen + 20]
        op, flags, pkey, resv8a = bth[0], bth[1], struct.unpack("!H", bth[2:4])[0], bth[4]
        dqpn = int.from_bytes(bth[5:8], "big")
        areq = bool(bth[8] & 0x80)
        psn = int.from_bytes(bth[9:12], "big")
        if flags & 0x0f:
            fail(t, src, f"BTH transport version {flags & 0x0f}")
        have = struct.unpack("<I", ip[-4:])[0]
        if have != icrc(ip, hlen) and not (
                (op & 0x1f) == RC_FLUSH and have == icrc(ip, hlen, flush_variant=True)):
            fail(t, src, f"{opname(op)} PSN {psn}: ICRC {have:#010x}, computed "
                         f"{icrc(ip, hlen):#010x}")
        # The summary.
        s.n += 1
        s.bytes += len(fr)
        s.max_frame = max(s.max_frame, len(fr))
        s.first = t if s.first is None else s.first
        s.last = t
        if hlen == 20:
            s.df[bool(ip[6] & 0x40)] += 1
            s.ttl[ip[8]] += 1
            s.tos[ip[1]] += 1
            if len(s.ip_ids) < 100000:
                s.ip_ids.append(struct.unpack("!H", ip[4:6])[0])
        else:
            s.ttl[ip[7]] += 1
            s.tos[((ip[0] & 0x0f) << 4) | (ip[1] >> 4)] += 1
        s.sports[sport] += 1
        s.pkeys[pkey] += 1
        s.pad[(flags >> 4) & 3] += 1
        if resv8a & 0xc0:
            s.fecn_becn += 1
        s.ops[op] += 1
        s.qps.add(dqpn)
        low = op & 0x1f
        # A QP number (and so a PSN) may come back in a later run: a PSN counts as
        # sent again only within RESEND_WINDOW seconds of its first sending.  ACKs
        # repeat PSNs by design (coalesced and duplicate ACKs): only READ response
        # data is counted among the responses.
        key = (dqpn, psn)
        if low not in RESPONSE_OPS:
            s.ackreq[areq] += 1
            if t - s.seen_psn.get(key, -RESEND_WINDOW) < RESEND_WINDOW:
                s.resent += 1
            else:
                s.seen_psn[key] = t
        elif low in READ_RESPONSE_OPS:
            if t - s.seen_resp.get(key, -RESEND_WINDOW) < RESEND_WINDOW:
                s.resent_resp += 1
            else:
                s.seen_resp[key] = t
        if low in AETH_OPS and len(ip) >= hlen + 20 + 4 + 4:
            syn = ip[hlen + 20]
            kind = syn >> 5
            if kind == 0:
                s.acks += 1
            elif kind == 1:
                s.rnr_naks += 1
            elif kind == 3:
                s.naks[NAK_CODES.get(syn & 0x1f, f"code {syn & 0x1f}")] += 1

    t0 = None
    try:
        for ts, fr, orig in frames(path):
            t0 = ts if t0 is None else t0
            frames_seen += 1
            one(ts - t0, fr, orig)
    except (OSError, ValueError) as e:
        return False, [f"{path}: {e}"]
    ok = True
    diag = [f"{path}: {frames_seen} frames"]
    if any(b is None for b in bad):
        n_more = sum(1 for b in bad if b is None)
        bad = [b for b in bad if b is not None] + [f"... and {n_more} more"]
    if bad:
        ok = False
        diag += ["malformed RoCE v2 packets:"] + bad
    for a, label in senders.items():
        if by_src[ipaddress.ip_address(a)].n == 0:
            ok = False
            diag.append(f"{label} ({a}) sent no RoCE v2 packet")
    if others:
        ok = False
        diag.append("RoCE v2 packets from addresses no guest had: "
                    + ", ".join(f"{a} ({n})" for a, n in others.items()))
    for s in by_src.values():
        if s.n:
            diag += s.summary()
    diag += differences([s for s in by_src.values() if s.n])
    return ok, diag


def differences(senders):
    """One line naming the header fields in which ferrite's senders and rxe's differ."""
    groups = {}
    for s in senders:
        stack = s.label.split("@")[0]
        for k, v in s.features().items():
            groups.setdefault(k, {}).setdefault(stack, set()).add(v)
    stacks = {s.label.split("@")[0] for s in senders}
    if not {"ferrite", "rxe"} <= stacks:
        return []
    diffs = []
    for k, per in groups.items():
        f, r = per.get("ferrite"), per.get("rxe")
        if f is not None and r is not None and f != r:
            diffs.append(f"{k}: ferrite {'; '.join(sorted(f))}, rxe {'; '.join(sorted(r))}")
    if not diffs:
        return ["ferrite and rxe fill DF, TTL, TOS, IP ID, the UDP checksum and the P_Key alike"]
    return ["ferrite and rxe differ in " + " | ".join(diffs)]
