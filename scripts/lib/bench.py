"""`scripts/ferrite bench [TARGET] [--smoke] [--rounds N]`: ferrite against rxe.

One boot of TARGET (default: the demo's) measures ferrite and the kernel's own
soft-RoCE (rxe) the same way, in rounds that alternate ferrite, rxe, ferrite, rxe...
(tests/guest/bench.sh): bandwidth of RDMA WRITE, RDMA READ and SEND from 2 B to
1 MiB, the message rate of 64-byte WRITEs and SENDs with post lists, the latency of
WRITE, SEND and READ, guest CPU time per GB moved, system calls per WQE at saturation
(the kernel's syscall tracepoint, the same method for both devices), the guest's
one-core memcpy bandwidth, the physical limit, and the kernel's own UDP path over the
same veth with plain sockets (ferrite-bench udp), the ceiling under both devices.
The timing is ferrite-bench's (tests/client/src/bench/, CLOCK_MONOTONIC); perftest
runs with the same parameters as a cross-check and is reported beside it, never
trusted for timing: under TCG its cycle counter is not.

On the host this module builds what the guest needs, boots it, and turns the guest's
JSON lines (build/bench/bench.jsonl) into:

- build/bench/results.json: per figure and device the median, min, max and spread
  over rounds; a top-level "ratios" object (ferrite / rxe) with msg_rate_64B,
  write_bw_64KiB and write_lat_2B, and beside it syscalls_per_wqe (ferrite) and
  memcpy_fraction_64KiB (ferrite's 64 KiB WRITE bandwidth / one-core memcpy), and
  udp_ceiling: what UDP sockets move over the same veth, and each device's headline
  figures as a fraction of it;
- build/bench/results.md: the table of ratios and absolute figures, and the machine;
- build/bench/bench.png: bandwidth and latency against message size, both devices
  (matplotlib, installed into a venv under ~/.cache/ferrite/venv when missing).

Absolute figures under TCG mean little (the guest's CPU is emulated, the machine is
shared); ratios between two devices measured in the same boot, interleaved, do.
"""

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from . import util

TOP = util.TOP
SCRIPT = os.path.join(TOP, "tests", "guest", "bench.sh")
DEVICES = ("ferrite", "rxe")

# The goals (TCG, same boot, medians); reported, never asserted.
GOALS = {
    "msg_rate_64B": (">=", 2.0),
    "write_bw_64KiB": (">=", 1.5),
    "write_lat_2B": ("<=", 0.6),
    "syscalls_per_wqe": ("<=", 0.1),
    "memcpy_fraction_64KiB": (">=", 0.30),
}


def usage():
    return ("usage: scripts/ferrite bench [TARGET] [--smoke] [--rounds N]\n"
            "  --smoke     one round, a few sizes (what CI runs; never asserts a figure)\n"
            "  --rounds N  rounds of each device (default 5)")


def main(args, default_target):
    target, smoke, rounds = None, False, None
    it = iter(args)
    for a in it:
        if a == "--smoke":
            smoke = True
        elif a == "--rounds":
            v = next(it, None)
            if v is None or not v.isdigit() or int(v) < 1:
                raise util.Fail(f"--rounds needs a positive number\n{usage()}")
            rounds = int(v)
        elif a in ("-h", "--help"):
            print(usage())
            return 0
        elif a.startswith("-") or target:
            raise util.Fail(f"bench: unexpected argument {a!r}\n{usage()}")
        else:
            target = a
    if rounds is None:
        rounds = 1 if smoke else 5
    return run(target or default_target, smoke, rounds)


def guest_timeout(smoke, rounds):
    """Seconds QEMU may run: a smoke run takes about six minutes under TCG, a full
    round of both devices four to five more in the first round (perftest's)."""
    return 900 if smoke else 600 + 300 * rounds


def run(name, smoke, rounds):
    from . import boot, boottest, build, targets, testclient
    targets.get(name)  # an unknown target lists the known ones
    t_start = time.time()
    build.build_rust(os.path.join(util.build_dir("rust"), "build.log"))
    b = build.build_target(name)
    bench_bin = testclient.build_clients()[testclient.BENCH]
    g = boottest.prepare_guest_dir(name, os.path.join(util.build_dir(name), "ferrite.ko"), SCRIPT)
    shutil.copy(bench_bin, g)
    timeout = guest_timeout(smoke, rounds)
    with open(os.path.join(g, "bench.conf"), "w") as f:
        # No round starts after DEADLINE s of guest uptime (the guest stops in time,
        # keeping the rounds it finished).
        # perftest, a cross-check only, runs in the first round of each device: its 21
        # runs take over two minutes per device under TCG.
        f.write(f"ROUNDS={rounds}\nSMOKE={int(smoke)}\nPERFTEST_ROUNDS=1\n"
                f"DEADLINE={timeout - 90}\n")
    out = util.build_dir("bench")
    serial = os.path.join(out, "serial.log")
    util.log(f"bench: {name}: booting {b['resolved']['kernel']} under QEMU (TCG), "
             f"{rounds} round(s) of each device{' (smoke)' if smoke else ''}, "
             f"timeout {timeout} s")
    q = boot.boot(name, g, timeout, serial)
    util.log(f"bench: {name}: QEMU ran {q['seconds']} s" + (", timed out" if q["timed_out"] else ""))
    gout = os.path.join(g, "out")
    for f in ("bench.jsonl", "guest.log", "dmesg.txt"):
        if os.path.exists(os.path.join(gout, f)):
            shutil.copy(os.path.join(gout, f), out)
    shutil.rmtree(os.path.join(out, "logs"), ignore_errors=True)
    if os.path.isdir(os.path.join(gout, "logs")):
        shutil.copytree(os.path.join(gout, "logs"), os.path.join(out, "logs"))
    jsonl = os.path.join(out, "bench.jsonl")
    if not os.path.exists(jsonl) or not os.path.getsize(jsonl):
        tail = open(serial, errors="replace").read()[-3000:] if os.path.exists(serial) else ""
        raise util.Fail(f"bench: {name}: the guest wrote no results (serial log: {serial})\n{tail}")
    records = load(jsonl)
    res = analyse(records)
    res["run"] = {
        "target": name, "resolved": b["resolved"], "smoke": smoke, "rounds": rounds,
        "qemu_seconds": q["seconds"], "timed_out": q["timed_out"],
        "wall_seconds": round(time.time() - t_start, 1), "host": host_info(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=False)
        f.write("\n")
    md = markdown(res)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    png = os.path.join(out, "bench.png")
    try:
        plot_with_matplotlib(os.path.join(out, "results.json"), png)
    except util.Fail as e:
        util.log(f"bench: no plot: {e}")
    print(md)
    util.log(f"bench: results in {os.path.relpath(out, TOP)}/ (results.json, results.md, "
             f"bench.png, bench.jsonl); {len(res['errors'])} error(s)")
    return 0


def host_info():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}


# --- analysis ------------------------------------------------------------------------

def load(path):
    """The guest's JSON lines; a line that does not parse is kept as an error."""
    out = []
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                out.append({"kind": "error", "test": f"bench.jsonl line {n}",
                            "error": f"not JSON ({e}): {line[:200]}"})
    return out


def stats(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    med = statistics.median(v)
    return {"median": med, "min": v[0], "max": v[-1], "n": len(v),
            "spread": (v[-1] - v[0]) / med if med else None, "values": v}


def ratio(a, b):
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def figure_key(r):
    if r["kind"] in ("bw", "rate"):
        k = f"{r['kind']}.{r['op']}.{r['size']}"
        return k + (f".pl{r['post_list']}" if r["kind"] == "rate" else "")
    if r["kind"] == "lat":
        return f"lat.{r['op']}.{r['size']}"
    return None


def analyse(records):
    """Medians and spread per figure and device, ferrite/rxe ratios, and the headline."""
    meta = next((r for r in records if r.get("kind") == "meta"), {})
    errors = [r for r in records if r.get("kind") == "error"]
    # raw[figure][metric][device] = [values over rounds]
    raw = {}

    def add(fig, metric, dev, v):
        if v is not None:
            raw.setdefault(fig, {}).setdefault(metric, {}).setdefault(dev, []).append(v)

    fig_info = {}
    for r in records:
        kind, dev = r.get("kind"), r.get("device")
        if dev not in DEVICES:
            continue
        # The runs whose system calls were counted (traced, under strace) are left
        # out of the figures: tracing slows them.
        if kind in ("bw", "rate", "lat") and not r.get("strace") and not r.get("traced"):
            fig = figure_key(r)
            fig_info.setdefault(fig, {k: r[k] for k in ("kind", "op", "size") if k in r})
            if kind == "rate":
                fig_info[fig]["post_list"] = r["post_list"]
            if kind in ("bw", "rate"):
                add(fig, "bw_Bps", dev, r["bw_Bps"])
                add(fig, "msg_per_s", dev, r["msg_per_s"])
                add(fig, "cpu_s_per_GB", dev, r.get("cpu_s_per_GB"))
                add(fig, "kernel_cpu_s_per_GB", dev, r.get("kernel_cpu_s_per_GB"))
                c = r.get("counters") or {}
                if c.get("wqes_posted"):
                    add(fig, "doorbells_per_wqe", dev, c.get("doorbells", 0) / c["wqes_posted"])
            else:
                for m in ("median_us", "p99_us", "mean_us"):
                    add(fig, m, dev, r.get(m))
        elif kind == "memcpy":
            fig = f"memcpy.{r['size']}"
            fig_info.setdefault(fig, {"kind": "memcpy", "size": r["size"]})
            add(fig, "bw_Bps", "guest", r["bw_Bps"])
        elif kind == "udp":
            fig = f"udp.{r['test']}.{r['size']}"
            fig_info.setdefault(fig, {"kind": "udp", "test": r["test"], "size": r["size"]})
            if r["test"] == "flood":
                for m in ("pps", "payload_Bps", "kernel_cpu_s_per_Mpkt"):
                    add(fig, m, "guest", r.get(m))
            else:
                for m in ("median_us", "p99_us"):
                    add(fig, m, "guest", r.get(m))
        elif kind == "syscalls":
            fig = f"syscalls.{r['test']}"
            fig_info.setdefault(fig, {"kind": "syscalls", "test": r["test"]})
            add(fig, "per_wqe", dev, r["per_wqe"])
        elif kind == "perftest":
            fig = f"perftest.{r['tool']}.{r['size']}"
            fig_info.setdefault(fig, {"kind": "perftest", "tool": r["tool"], "size": r["size"]})
            if "bw_avg_MiBps" in r:
                # MiB/s (2^20 bytes) and millions of messages per second; null where
                # perftest printed no number.
                if r["bw_avg_MiBps"] is not None:
                    add(fig, "bw_Bps", dev, r["bw_avg_MiBps"] * 2 ** 20)
                if r["msg_rate_Mpps"] is not None:
                    add(fig, "msg_per_s", dev, r["msg_rate_Mpps"] * 1e6)
            else:
                add(fig, "typical_us", dev, r["t_typical_us"])
                add(fig, "p99_us", dev, r["p99_us"])
    figures = {}
    for fig, metrics in raw.items():
        f = dict(fig_info.get(fig, {}))
        for m, per_dev in metrics.items():
            entry = {d: stats(v) for d, v in per_dev.items()}
            if "ferrite" in entry and "rxe" in entry:
                entry["ratio"] = ratio(entry["ferrite"], entry["rxe"])
            f[m] = entry
        figures[fig] = f

    def med(fig, metric, dev):
        s = figures.get(fig, {}).get(metric, {}).get(dev)
        return s["median"] if s else None

    def rat(fig, metric):
        return figures.get(fig, {}).get(metric, {}).get("ratio")

    memcpy64 = med("memcpy.65536", "bw_Bps", "guest")
    fw64 = med("bw.write.65536", "bw_Bps", "ferrite")
    ratios = {
        "msg_rate_64B": rat("rate.write.64.pl1", "msg_per_s"),
        "write_bw_64KiB": rat("bw.write.65536", "bw_Bps"),
        "write_lat_2B": rat("lat.write.2", "median_us"),
        "msg_rate_64B_send": rat("rate.send.64.pl1", "msg_per_s"),
        "msg_rate_64B_postlist16": rat("rate.write.64.pl16", "msg_per_s"),
        "write_lat_2B_p99": rat("lat.write.2", "p99_us"),
        "read_bw_64KiB": rat("bw.read.65536", "bw_Bps"),
        "send_bw_64KiB": rat("bw.send.65536", "bw_Bps"),
    }
    res = {
        "ratios": ratios,
        "udp_ceiling": udp_ceiling(med),
        "syscalls_per_wqe": med("syscalls.rate.write.64.pl1", "per_wqe", "ferrite"),
        "syscalls_per_wqe_rxe": med("syscalls.rate.write.64.pl1", "per_wqe", "rxe"),
        "syscalls_per_wqe_strace": med("syscalls.rate.write.64.pl1.strace", "per_wqe", "ferrite"),
        "syscalls_per_wqe_strace_rxe": med("syscalls.rate.write.64.pl1.strace", "per_wqe", "rxe"),
        "doorbells_per_wqe": med("rate.write.64.pl1", "doorbells_per_wqe", "ferrite"),
        "memcpy_fraction_64KiB": fw64 / memcpy64 if fw64 and memcpy64 else None,
        "memcpy_Bps": {k.split(".")[1]: med(k, "bw_Bps", "guest")
                       for k in figures if k.startswith("memcpy.")},
        "definitions": {
            "msg_rate_64B": "64-byte RDMA WRITE messages per second, 128 outstanding, one WR "
                            "per ibv_post_send (perftest's default), a completion every 32",
            "write_bw_64KiB": "RDMA WRITE bandwidth at 64 KiB, 128 outstanding",
            "write_lat_2B": "median half round trip of a 2-byte RDMA WRITE ping-pong "
                            "(inline, polling the last byte)",
            "syscalls_per_wqe": "system calls the client's thread made in the measured "
                                "loop of msg_rate_64B, per WQE, counted by the kernel's "
                                "raw_syscalls:sys_enter tracepoint (the client runs at "
                                "full speed)",
            "syscalls_per_wqe_strace": "the same counted under strace -f, whose ptrace "
                                       "stops slow the client until the kernel idles "
                                       "between its posts: for comparison only",
            "doorbells_per_wqe": "ferrite's doorbells / wqes_posted counters during "
                                 "msg_rate_64B (without strace)",
            "memcpy_fraction_64KiB": "ferrite's write_bw_64KiB / the guest's one-core "
                                     "memcpy bandwidth of a 64 KiB buffer",
            "udp_ceiling": "UDP sockets over the same veth pair (ferrite-bench udp): "
                           "datagrams per second of 96 B (the UDP payload of a 64-byte "
                           "WRITE) and of 1040 B (a full packet at path MTU 1024), sent "
                           "32 per sendmmsg, and the half round trip of 34 B (a 2-byte "
                           "WRITE); of_ceiling gives each device's figure against it: "
                           "64 KiB WRITE bandwidth / (1040 B datagrams per second x "
                           "1024 B), 64 B WRITEs per second / 96 B datagrams per second, "
                           "2 B WRITE latency / the UDP half round trip",
            "ratio": "ferrite median / rxe median over the rounds",
            "spread": "(max - min) / median over the rounds",
        },
        "goals": {},
        "guest": meta,
        "figures": figures,
        "errors": errors,
    }
    for k, (cmp, goal) in GOALS.items():
        v = ratios.get(k) if k in ratios else res.get(k)
        text = f"{cmp} {goal * 100:.0f} %" if k == "memcpy_fraction_64KiB" else f"{cmp} {goal}"
        res["goals"][k] = {"goal": text.replace(">=", "≥").replace("<=", "≤"), "value": v,
                           "met": None if v is None else (v >= goal if cmp == ">=" else v <= goal)}
    return res


def udp_ceiling(med):
    """The kernel's UDP path over the same veth, and each device's headline figures
    against it: a RoCE v2 device's packets take that path, so none can pass it."""
    full = med("udp.flood.1040", "pps", "guest")
    small = med("udp.flood.96", "pps", "guest")
    half_rtt = med("udp.pingpong.34", "median_us", "guest")
    payload = full * 1024 if full else None

    def frac(fig, metric, ceiling):
        out = {}
        for d in DEVICES:
            v = med(fig, metric, d)
            out[d] = v / ceiling if v and ceiling else None
        return out

    return {
        "flood_pps_96B": small,
        "flood_pps_1040B": full,
        "rdma_payload_Bps_1040B": payload,
        "pingpong_half_rtt_34B_us": half_rtt,
        "kernel_cpu_s_per_Mpkt_1040B": med("udp.flood.1040", "kernel_cpu_s_per_Mpkt", "guest"),
        "of_ceiling": {
            "write_bw_64KiB": frac("bw.write.65536", "bw_Bps", payload),
            "msg_rate_64B": frac("rate.write.64.pl1", "msg_per_s", small),
            "msg_rate_64B_postlist16": frac("rate.write.64.pl16", "msg_per_s", small),
            "write_lat_2B": frac("lat.write.2", "median_us", half_rtt),
        },
    }


# --- the report -----------------------------------------------------------------------

def fmt_bw(v):
    if v is None:
        return "-"
    if v < 1e6:
        return f"{v / 1e3:.1f} kB/s"
    return f"{v / 1e6:.1f} MB/s" if v < 1e9 else f"{v / 1e9:.2f} GB/s"


def fmt_rate(v):
    return "-" if v is None else f"{v / 1e3:.1f} k/s"


def fmt_us(v):
    return "-" if v is None else f"{v:.1f} µs"


def fmt_num(v, digits=3):
    return "-" if v is None else f"{v:.{digits}g}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}×"


def fmt_size(n):
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def cell(fig, metric, dev, fmt):
    """A median with ± half its relative spread, or "-"."""
    s = fig.get(metric, {}).get(dev) if fig else None
    if not s:
        return "-"
    sp = f" ±{s['spread'] * 50:.0f}%" if s.get("spread") is not None and s["n"] > 1 else ""
    return fmt(s["median"]) + sp


def markdown(res):
    figs = res["figures"]
    run = res.get("run", {})
    g = res.get("guest", {})
    L = []
    L.append("# ferrite against rxe")
    L.append("")
    L.append(f"Target {run.get('target')} (kernel {g.get('kernel')}, {g.get('os')}), "
             f"{run.get('rounds')} round(s) of each device, interleaved ferrite, rxe, ..."
             + (" Smoke run: a few sizes, short runs." if run.get("smoke") else "")
             + f" {run.get('date', '')}.")
    L.append("")
    L.append("The figures are ratios because absolute numbers under QEMU's TCG say little: "
             "the guest's CPU is emulated and the host is shared, so both devices are "
             "measured in the same boot, in alternating rounds, with the same client, and "
             "compared as ferrite / rxe of the medians.")
    L.append("")
    L.append("| figure | ferrite | rxe | ferrite/rxe | goal |")
    L.append("|---|---|---|---|---|")
    goals = res["goals"]

    def goal(k):
        gg = goals.get(k)
        if not gg:
            return ""
        m = gg["met"]
        return f"{gg['goal']}" + ("" if m is None else (" (met)" if m else " (not met)"))

    head = [
        ("msg_rate_64B", "64 B WRITE message rate", "rate.write.64.pl1", "msg_per_s", fmt_rate),
        ("write_bw_64KiB", "64 KiB WRITE bandwidth", "bw.write.65536", "bw_Bps", fmt_bw),
        ("write_lat_2B", "2 B WRITE latency (median)", "lat.write.2", "median_us", fmt_us),
    ]
    for k, label, fk, m, f in head:
        fig = figs.get(fk)
        L.append(f"| {label} | {cell(fig, m, 'ferrite', f)} | {cell(fig, m, 'rxe', f)} | "
                 f"{fmt_ratio(res['ratios'].get(k))} | {goal(k)} |")
    L.append(f"| system calls per WQE (64 B WRITE, syscall tracepoint) | "
             f"{fmt_num(res['syscalls_per_wqe'])} | "
             f"{fmt_num(res['syscalls_per_wqe_rxe'])} | | {goal('syscalls_per_wqe')} |")
    L.append(f"| the same under strace (slowed by it; not the figure) | "
             f"{fmt_num(res['syscalls_per_wqe_strace'])} | "
             f"{fmt_num(res['syscalls_per_wqe_strace_rxe'])} | | |")
    frac = res["memcpy_fraction_64KiB"]
    frac = "-" if frac is None else f"{frac * 100:.1f} %"
    L.append(f"| 64 KiB WRITE / one-core memcpy (64 KiB) | {frac} | | | "
             f"{goal('memcpy_fraction_64KiB')} |")
    L.append(f"| doorbells per WQE (ferrite's counters) | {fmt_num(res['doorbells_per_wqe'])} | | | |")
    L.append("")
    L.append("Medians over the rounds, ± half the spread (max − min) relative to the median. "
             "Definitions are in results.json (\"definitions\").")
    L.append("")
    uc = res.get("udp_ceiling") or {}
    if uc.get("flood_pps_1040B") or uc.get("pingpong_half_rtt_34B_us"):
        oc = uc["of_ceiling"]

        def pct(k, d):
            v = oc[k][d]
            return "-" if v is None else f"{v * 100:.0f} %"

        def times(k, d):
            v = oc[k][d]
            return "-" if v is None else f"{v:.2f}×"

        L.append("## The ceiling: the kernel's UDP path over the same veth")
        L.append("")
        L.append("Both devices hand every packet to the kernel's IP, veth and UDP code. Plain "
                 "UDP sockets over the same veth pair, in the same rounds, show what that code "
                 "carries at most (the sender batches 32 datagrams a system call; nothing is "
                 "acknowledged). No device over this topology passes it.")
        L.append("")
        L.append("| datagrams | UDP sockets | ferrite | rxe |")
        L.append("|---|---|---|---|")
        L.append(f"| 1040 B datagrams (a full packet at path MTU 1024) | "
                 f"{cell(figs.get('udp.flood.1040'), 'pps', 'guest', fmt_rate)}, "
                 f"{fmt_bw(uc.get('rdma_payload_Bps_1040B'))} of RDMA payload | "
                 f"64 KiB WRITE: {pct('write_bw_64KiB', 'ferrite')} of it | "
                 f"{pct('write_bw_64KiB', 'rxe')} |")
        L.append(f"| 96 B datagrams (a 64-byte WRITE) | "
                 f"{cell(figs.get('udp.flood.96'), 'pps', 'guest', fmt_rate)} | "
                 f"64 B WRITEs: {pct('msg_rate_64B', 'ferrite')} of it "
                 f"({pct('msg_rate_64B_postlist16', 'ferrite')} with 16 per post) | "
                 f"{pct('msg_rate_64B', 'rxe')} ({pct('msg_rate_64B_postlist16', 'rxe')}) |")
        L.append(f"| half round trip of 34 B (a 2-byte WRITE) | "
                 f"{cell(figs.get('udp.pingpong.34'), 'median_us', 'guest', fmt_us)} | "
                 f"2 B WRITE latency: {times('write_lat_2B', 'ferrite')} it | "
                 f"{times('write_lat_2B', 'rxe')} |")
        L.append("")

    def table(title, rows, cols):
        if not rows:
            return
        L.append(f"## {title}")
        L.append("")
        L.append("| " + " | ".join(c[0] for c in cols) + " |")
        L.append("|" + "---|" * len(cols))
        for r in rows:
            L.append("| " + " | ".join(c[1](r) for c in cols) + " |")
        L.append("")

    def by(prefix):
        return sorted(((k, v) for k, v in figs.items() if k.startswith(prefix)),
                      key=lambda kv: (kv[1].get("op", kv[1].get("tool", "")), kv[1].get("size", 0),
                                      kv[1].get("post_list", 0)))

    bw = by("bw.")
    table("Bandwidth (ferrite-bench, 128 outstanding, a completion every 32)", bw, [
        ("op", lambda r: r[1]["op"].upper()), ("size", lambda r: fmt_size(r[1]["size"])),
        ("ferrite", lambda r: cell(r[1], "bw_Bps", "ferrite", fmt_bw)),
        ("rxe", lambda r: cell(r[1], "bw_Bps", "rxe", fmt_bw)),
        ("ratio", lambda r: fmt_ratio(r[1].get("bw_Bps", {}).get("ratio"))),
        ("ferrite CPU s/GB", lambda r: cell(r[1], "cpu_s_per_GB", "ferrite", fmt_num)),
        ("rxe CPU s/GB", lambda r: cell(r[1], "cpu_s_per_GB", "rxe", fmt_num)),
    ])
    table("Message rate", by("rate."), [
        ("op", lambda r: r[1]["op"].upper()), ("size", lambda r: fmt_size(r[1]["size"])),
        ("WRs per post", lambda r: str(r[1].get("post_list"))),
        ("ferrite", lambda r: cell(r[1], "msg_per_s", "ferrite", fmt_rate)),
        ("rxe", lambda r: cell(r[1], "msg_per_s", "rxe", fmt_rate)),
        ("ratio", lambda r: fmt_ratio(r[1].get("msg_per_s", {}).get("ratio"))),
        ("ferrite doorbells/WQE", lambda r: cell(r[1], "doorbells_per_wqe", "ferrite", fmt_num)),
    ])
    table("Latency (WRITE and SEND: half the round trip of a ping-pong; READ: the whole READ; "
          "one vCPU online, both ends yielding while they wait)", by("lat."), [
        ("op", lambda r: r[1]["op"].upper()), ("size", lambda r: fmt_size(r[1]["size"])),
        ("ferrite median", lambda r: cell(r[1], "median_us", "ferrite", fmt_us)),
        ("rxe median", lambda r: cell(r[1], "median_us", "rxe", fmt_us)),
        ("ratio", lambda r: fmt_ratio(r[1].get("median_us", {}).get("ratio"))),
        ("ferrite p99", lambda r: cell(r[1], "p99_us", "ferrite", fmt_us)),
        ("rxe p99", lambda r: cell(r[1], "p99_us", "rxe", fmt_us)),
    ])
    pt = by("perftest.")
    if pt:
        L.append("## perftest, the same parameters (a cross-check; its cycle-counter timing is "
                 "not trusted under TCG)")
        L.append("")
        L.append("perftest's receivers and latency peers spin on their own vCPUs. Under "
                 "single-threaded TCG two spinning vCPUs take turns at the guest's timer tick, "
                 "so its latencies sit near 1/HZ for both devices; ferrite-bench's latency runs "
                 "both ends on one vCPU and yields instead, and its SEND receiver sleeps on a "
                 "completion channel when idle.")
        L.append("")
        L.append("| tool | size | ferrite | rxe | ratio | ferrite-bench ratio |")
        L.append("|---|---|---|---|---|---|")
        for k, f in pt:
            tool, size = f["tool"], f["size"]
            op = tool.split("_")[1]
            if tool.endswith("_bw"):
                m, fm, ours = "bw_Bps", fmt_bw, figs.get(f"bw.{op}.{size}", {}).get("bw_Bps", {})
            else:
                m, fm, ours = "typical_us", fmt_us, figs.get(f"lat.{op}.{size}", {}).get("median_us", {})
            L.append(f"| {tool} | {fmt_size(size)} | {cell(f, m, 'ferrite', fm)} | "
                     f"{cell(f, m, 'rxe', fm)} | {fmt_ratio(f.get(m, {}).get('ratio'))} | "
                     f"{fmt_ratio(ours.get('ratio'))} |")
        L.append("")
    L.append("## The machine")
    L.append("")
    h = run.get("host", {})
    L.append(f"- host: {h.get('cpu_model', '?')}, {h.get('cpus', '?')} CPUs, Linux {h.get('kernel', '?')}, "
             "shared with other work")
    L.append("- latency runs with CPU 1 offline and both ends yielding while they wait: "
             "under single-threaded TCG a wake-up on the other vCPU waits for its next timer "
             "tick, which put every ping-pong near 1/HZ on both devices")
    L.append(f"- guest: QEMU TCG (single-threaded, -cpu max), {g.get('cpus', '?')} vCPUs, "
             f"{int(g.get('mem_kB', 0)) // 1024} MiB, kernel {g.get('kernel', '?')}, clocksource "
             f"{g.get('clocksource', '?')}, rdma-core {g.get('rdma_core', '?')}, perftest "
             f"{g.get('perftest', '?')}, strace {g.get('strace') or 'absent'}")
    L.append(f"- topology: one veth pair in the guest's initial namespace (netdev MTU "
             f"{g.get('netdev_mtu', '?')}), client device on v0, server device on v1; rxe "
             "and ferrite loaded in turns")
    mc = res.get("memcpy_Bps", {})
    if mc:
        L.append("- one-core memcpy in the guest: " + ", ".join(
            f"{fmt_size(int(s))} {fmt_bw(v)}" for s, v in sorted(mc.items(), key=lambda x: int(x[0]))))
    L.append(f"- QEMU ran {run.get('qemu_seconds', '?')} s; the whole command "
             f"{run.get('wall_seconds', '?')} s")
    L.append("")
    if res["errors"]:
        L.append("## Errors")
        L.append("")
        for e in res["errors"][:40]:
            L.append(f"- {e.get('device', '')} round {e.get('round', '')} {e.get('test', '')}: "
                     f"{str(e.get('error', ''))[:300]}")
        L.append("")
    return "\n".join(L)


# --- the plot ---------------------------------------------------------------------------

def venv_dir():
    return os.path.join(util.cache_dir(), "venv")


def plot_with_matplotlib(results_json, png):
    """Plot in this interpreter if it has matplotlib, else in a venv that has it."""
    try:
        import matplotlib  # noqa: F401
        plot(results_json, png)
        return
    except ImportError:
        pass
    vd = venv_dir()
    py = os.path.join(vd, "bin", "python")
    ok = os.path.exists(py) and subprocess.run(
        [py, "-c", "import matplotlib"], capture_output=True).returncode == 0
    if not ok:
        util.log(f"bench: installing matplotlib into {vd}")
        base = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        if not os.path.exists(py):
            r = subprocess.run([base, "-m", "venv", vd], capture_output=True, text=True)
            if r.returncode != 0:
                # Debian keeps ensurepip in python3-venv.
                util.run(["apt-get", "install", "-y", "-q", "python3-venv"], quiet=True,
                         env={"DEBIAN_FRONTEND": "noninteractive"})
                util.run([base, "-m", "venv", vd], quiet=True)
        util.run([py, "-m", "pip", "install", "-q", "matplotlib"], quiet=True)
    util.run([py, "-m", "scripts.lib.bench", "--plot", results_json, png], cwd=TOP)


def plot(results_json, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = json.load(open(results_json))
    figs = res["figures"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"write": "tab:blue", "read": "tab:green", "send": "tab:red"}
    styles = {"ferrite": "-", "rxe": "--"}
    markers = {"ferrite": "o", "rxe": "s"}

    def series(prefix, metric, op, dev):
        pts = []
        for k, f in figs.items():
            if k.startswith(prefix) and f.get("op") == op and f.get(metric, {}).get(dev):
                s = f[metric][dev]
                pts.append((f["size"], s["median"], s["min"], s["max"]))
        return sorted(pts)

    for ax, prefix, metric, scale, ylabel, title in (
            (ax1, "bw.", "bw_Bps", 1e6, "MB/s (10^6 bytes/s)", "Bandwidth"),
            (ax2, "lat.", "median_us", 1.0, "µs (median; WRITE/SEND: half round trip)", "Latency")):
        for op in ("write", "read", "send"):
            for dev in ("ferrite", "rxe"):
                pts = series(prefix, metric, op, dev)
                if not pts:
                    continue
                x = [p[0] for p in pts]
                y = [p[1] / scale for p in pts]
                lo = [(p[1] - p[2]) / scale for p in pts]
                hi = [(p[3] - p[1]) / scale for p in pts]
                ax.errorbar(x, y, yerr=[lo, hi], color=colors[op], linestyle=styles[dev],
                            marker=markers[dev], markersize=4, capsize=2,
                            label=f"{dev} {op.upper()}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    run = res.get("run", {})
    g = res.get("guest", {})
    fig.suptitle(f"ferrite vs rxe, {run.get('target', '')} (kernel {g.get('kernel', '')}), "
                 f"QEMU TCG, medians of {run.get('rounds', '?')} round(s), min-max bars")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--plot":
        plot(sys.argv[2], sys.argv[3])
    else:
        print("usage: python -m scripts.lib.bench --plot results.json out.png", file=sys.stderr)
        sys.exit(2)
