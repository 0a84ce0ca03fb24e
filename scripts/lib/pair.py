"""The pair test: two guests, the oldest target and the newest, joined by a virtual
wire, with ferrite on one end and the kernel's own rxe on the other, both ways.

Each guest gets one virtio NIC; QEMU joins the two with a socket netdev on the
host's 127.0.0.1 (the old guest's QEMU listens on a free port, the new one's
connects), so the traffic crosses a virtual NIC between two separate kernels and
never leaves this machine.  The old guest's QEMU also dumps the link's frames to a
pcap (filter-dump), which scripts/lib/wire.py checks on the host.  Both guests boot
at once and run tests/guest/pair.sh, which does the rest: ferrite on the old guest
and rxe on the new one, then rxe on the old and ferrite on the new, and in each
phase ibv_rc_pingpong and ferrite-testclient with each guest once the server.

It uses what the targets' builds made (build/<target>/: ferrite.ko, the provider,
ferrite-testclient) and their roots; a target not built in this run is built first.
The result is one KTAP entry named "pair", like a target's: the build, the boot of
both guests, each check of pair.sh (passed when both guests passed it; each side's
diagnostics prefixed with its target), the wire check, power-off and the serial
logs.  Everything is kept in build/pair/ (the pcap only when a check failed, or with
FERRITE_PAIR_KEEP_PCAP=1).

boottest.main runs it after the targets when both targets are among them;
`scripts/ferrite test pair` runs it alone.
"""

import os
import re
import shutil
import socket
import threading
import time

from . import boot, build, targets, util, wire

TOP = util.TOP
NAME = "pair"
OLD, NEW = "bullseye", "sid"

# Seconds each guest may run.  Normally both finish in a few minutes.
TIMEOUT = int(os.environ.get("FERRITE_PAIR_TIMEOUT", "900"))

# Per guest: the NIC's MAC and the addresses of phase 1 (ferrite on the old guest)
# and phase 2 (rxe on the old guest).  A documentation prefix, on a link no one else
# is on; the wire check tells the senders apart by these.
MAC = {OLD: "52:54:00:fe:00:01", NEW: "52:54:00:fe:00:02"}
ADDR = {OLD: ("198.51.100.1", "198.51.100.11"), NEW: ("198.51.100.2", "198.51.100.12")}

# The checks pair.sh reports, in order: each must come from both guests (one that
# stopped early fails the checks it did not reach).
PHASES = ("ferrite_old_rxe_new", "rxe_old_ferrite_new")
CHECKS = (["pair_guest_setup", "pair_link_up"]
          + [f"pair_{c}_{p}" for p in PHASES
             for c in ("devices", "rc_pingpong", "testclient", "counters")]
          + ["pair_teardown", "pair_dmesg_clean"])


def wanted(names):
    """Whether a test of `names` runs the pair stage: both targets are among them."""
    return OLD in names and NEW in names


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether something listens on 127.0.0.1:port (from /proc/net/tcp, without
    connecting: QEMU's listening netdev would take a probe for its peer)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def prepare(name, role, peer, peer_kver):
    """build/pair/<name>/, the guest's /ferrite share."""
    src = util.build_dir(name)
    g = os.path.join(util.build_dir(NAME), name)
    shutil.rmtree(g, ignore_errors=True)
    os.makedirs(os.path.join(g, "out"))
    provider = [f for f in os.listdir(src) if f.startswith("libferrite-rdmav") and f.endswith(".so")]
    for f in ["ferrite.ko", "ferrite-testclient"] + provider:
        if not os.path.exists(os.path.join(src, f)):
            raise util.Fail(f"{name}: build/{name}/{f} is missing")
        shutil.copy(os.path.join(src, f), g)
    shutil.copy(os.path.join(TOP, "tests", "guest", "lib.sh"), g)
    shutil.copy(os.path.join(TOP, "tests", "guest", "pair.sh"), os.path.join(g, "run"))
    os.chmod(os.path.join(g, "run"), 0o755)
    env = {"ROLE": role, "ME": name, "PEER": peer, "PEER_KVER": peer_kver, "MAC": MAC[name],
           "IP1": ADDR[name][0], "IP2": ADDR[name][1],
           "PEER_IP1": ADDR[peer][0], "PEER_IP2": ADDR[peer][1]}
    with open(os.path.join(g, "pair.env"), "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in env.items()))
    return g


def results(out):
    """pair.sh's result lines: [(ok, name, [diag lines])]."""
    sub, pending = [], []
    path = os.path.join(out, "results")
    if not os.path.exists(path):
        return sub
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("# "):
            pending.append(line[2:])
            continue
        m = re.match(r"^(ok|not ok) - (\S+)$", line)
        if m:
            sub.append((m.group(1) == "ok", m.group(2), pending))
            pending = []
    return sub


def merge(per_guest):
    """One subtest per check name (CHECKS, then any other a guest reported), passed
    when every guest passed it."""
    order, seen = list(CHECKS), {c: {} for c in CHECKS}
    for name, sub in per_guest.items():
        for ok, check, diag in sub:
            if check not in seen:
                order.append(check)
                seen[check] = {}
            seen[check][name] = (ok, diag)
    merged = []
    for check in order:
        ok, diag = True, []
        for name in per_guest:
            if name not in seen[check]:
                ok = False
                diag.append(f"{name}: no result")
                continue
            gok, gdiag = seen[check][name]
            ok = ok and gok
            diag += [f"{name}: {d}" for d in gdiag]
            if not gok:
                diag.append(f"{name}: failed")
        merged.append((ok, check, diag))
    return merged


def tail(path, n=25):
    if not os.path.exists(path):
        return [f"(no {os.path.basename(path)})"]
    return open(path, errors="replace").read().splitlines()[-n:]


def run(built):
    """The stage; `built`: {target: whether its build passed} for targets built in
    this run.  Returns (subtests, info) as boottest.run_target does."""
    from . import boottest
    sub, info = [], {"target": NAME}
    t0 = time.time()
    res, diag = {}, []
    try:
        for n in (OLD, NEW):
            if built.get(n) is False:
                raise util.Fail(f"{n}: its build failed (see its own entry)")
            if n not in built:
                util.log(f"{NAME}: building for {n}")
                build.build_target(n)
            res[n] = targets.resolve(n)
            diag.append(f"{n}: kernel {res[n]['kernel']} ({res[n]['kernel_pkg_version']}), "
                        f"rdma-core {res[n]['rdma_core']}")
        sub.append((True, "build", diag))
        guests = {OLD: prepare(OLD, "old", NEW, res[NEW]["kernel"]),
                  NEW: prepare(NEW, "new", OLD, res[OLD]["kernel"])}
    except util.Fail as e:
        sub.append((False, "build", diag + str(e).splitlines()[:20]))
        info["seconds"] = round(time.time() - t0, 1)
        return sub, info
    info["build_seconds"] = round(time.time() - t0, 1)

    logdir = util.build_dir(NAME)
    pcap = os.path.join(logdir, "wire.pcap")
    if os.path.exists(pcap):
        os.unlink(pcap)
    serial = {n: os.path.join(logdir, f"serial-{n}.log") for n in (OLD, NEW)}
    port = free_port()
    nic = "virtio-net-pci,netdev=n0,mac={},romfile="
    net = {
        OLD: ["-netdev", f"socket,id=n0,listen=127.0.0.1:{port}",
              "-device", nic.format(MAC[OLD]),
              "-object", f"filter-dump,id=d0,netdev=n0,file={pcap}"],
        NEW: ["-netdev", f"socket,id=n0,connect=127.0.0.1:{port}",
              "-device", nic.format(MAC[NEW])],
    }
    outcome = {}

    def guest(n):
        try:
            outcome[n] = boot.boot(n, guests[n], TIMEOUT, serial[n], net=net[n])
        except Exception as e:  # a harness error: reported as this guest's boot
            outcome[n] = {"error": repr(e)}

    util.log(f"{NAME}: booting {OLD} and {NEW}, joined on 127.0.0.1:{port}")
    t_boot = time.time()
    threads = {OLD: threading.Thread(target=guest, args=(OLD,), name=f"pair-{OLD}")}
    threads[OLD].start()
    # The connecting QEMU fails at once if nothing listens yet.
    deadline = time.time() + 120
    while not listening(port) and threads[OLD].is_alive() and time.time() < deadline:
        time.sleep(0.2)
    if listening(port):
        threads[NEW] = threading.Thread(target=guest, args=(NEW,), name=f"pair-{NEW}")
        threads[NEW].start()
    else:
        outcome[NEW] = {"error": f"not started: {OLD}'s QEMU never listened on 127.0.0.1:{port}"}
    for t in threads.values():
        t.join()
    info["boot_seconds"] = round(time.time() - t_boot, 1)

    # Both guests' boots, as one subtest.
    ok, diag, per_guest, timings = True, [f"joined by a socket netdev on 127.0.0.1:{port}, "
                                          f"both guests in {info['boot_seconds']} s"], {}, []
    for n in (OLD, NEW):
        q = outcome.get(n, {"error": "no outcome"})
        out = os.path.join(guests[n], "out")
        done = os.path.exists(os.path.join(out, "done"))
        if "error" in q:
            diag.append(f"{n}: {q['error']}")
        else:
            diag.append(f"{n}: QEMU {q['seconds']} s, exit {q['rc']}"
                        + (", timed out" if q["timed_out"] else ""))
            if q["rc"] not in (0, None) and not done:
                diag += [f"{n}: qemu: {ln}" for ln in q["qemu_output"].splitlines()[-5:]]
        if not done:
            ok = False
            diag += [f"{n}: did not finish; serial log tail:"] + \
                [f"{n}:   {ln}" for ln in tail(serial[n])]
        per_guest[n] = results(out)
        tf = os.path.join(out, "timings")
        if os.path.exists(tf):
            for line in open(tf, errors="replace"):
                f = line.split()
                if len(f) == 2 and f[1].isdigit():
                    timings.append((int(f[1]), f"{n}:{f[0]}"))
        for f in ("guest.log", "dmesg.txt"):
            p = os.path.join(out, f)
            if os.path.exists(p):
                shutil.copy(p, os.path.join(logdir, f"{n}-{f}"))
    if timings:
        timings.sort(reverse=True)
        diag.append("the slowest checks: " + ", ".join(f"{c} {t} s" for t, c in timings[:6]))
    sub.append((ok, "boot", diag))
    sub += merge(per_guest)

    # The wire, read independently of both stacks.
    senders = {ADDR[OLD][0]: f"ferrite@{OLD}", ADDR[NEW][0]: f"rxe@{NEW}",
               ADDR[OLD][1]: f"rxe@{OLD}", ADDR[NEW][1]: f"ferrite@{NEW}"}
    t_wire = time.time()
    wok, wdiag = wire.check(pcap, senders)
    wdiag.append(f"read in {time.time() - t_wire:.1f} s")
    sub.append((wok, "pair_wire", wdiag))
    if all(s[0] for s in sub) and not os.environ.get("FERRITE_PAIR_KEEP_PCAP") \
            and os.path.exists(pcap):
        os.unlink(pcap)

    hung = [n for n in (OLD, NEW) if outcome.get(n, {}).get("poweroff_hung")]
    sub.append((not hung, "poweroff",
                [f"{n} finished but did not power off within {boot.POWEROFF_GRACE} s"
                 for n in hung]))
    bad = []
    for n in (OLD, NEW):
        if os.path.exists(serial[n]):
            bad += [f"{n}: {ln}" for ln in open(serial[n], errors="replace").read().splitlines()
                    if boottest.SPLAT.search(ln)]
    sub.append((not bad, "serial_log_clean", bad[:20]))
    info["seconds"] = round(time.time() - t0, 1)
    return sub, info
