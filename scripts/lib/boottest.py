"""The boot test: for each target, build ferrite.ko, boot the target's kernel, run
tests/guest/boot-test.sh inside, and report KTAP.

Output: one KTAP test per target (named after it) with one subtest per check, a summary
table of targets, and the closing line "N passed, N failed" counting targets.  Each
target's serial log, guest log and dmesg stay in build/<target>/.

After the targets, when the oldest and the newest are among them (or when asked), the
pair stage (scripts/lib/pair.py: two guests on one virtual wire, ferrite against rxe
across kernels) is one more entry, named "pair", counted like a target.
"""

import concurrent.futures
import json
import os
import re
import shutil
import sys
import threading
import time

from . import boot, build, rootfs, targets, util

TOP = util.TOP

# What must never appear in a guest's serial log (the guest script checks dmesg too).
# BUG: covers KASAN, KFENCE, sleeping in atomic context and workqueue lockups;
# WARNING: covers lockdep's reports; the rest name themselves.
SPLAT = re.compile(r"WARNING:|BUG:|Oops|general protection|Call Trace|objtool|lockdep|"
                   r"possible (recursive|circular) locking|inconsistent lock state|"
                   r"suspicious RCU|UBSAN|KASAN|KFENCE|suspected memory leak|"
                   r"blocked for more than|soft lockup|"
                   r"rcu.*(stall|detected)|Kernel panic|unregister_netdevice: waiting")

BOOT_TIMEOUT = int(os.environ.get("FERRITE_BOOT_TIMEOUT", "1800"))

# How many targets' boot tests run at once.  Each guest is single-threaded TCG and
# keeps one core busy, so one per core, at most 2 (beyond that, memory and 9p I/O
# make every guest slower).  FERRITE_JOBS sets it.
JOBS = int(os.environ.get("FERRITE_JOBS", str(min(2, os.cpu_count() or 1))))


def boot_timeout(name):
    """The target's own boot_timeout (targets.toml), else BOOT_TIMEOUT."""
    if "FERRITE_BOOT_TIMEOUT" in os.environ:
        return BOOT_TIMEOUT
    return int(targets.get(name).get("boot_timeout", BOOT_TIMEOUT))


def prepare_guest_dir(name, ko, script):
    """The guest's /ferrite: module, provider, test programs, script, out/."""
    logdir = util.build_dir(name)
    g = os.path.join(logdir, "guest")
    shutil.rmtree(g, ignore_errors=True)
    os.makedirs(os.path.join(g, "out"))
    shutil.copy(ko, os.path.join(g, "ferrite.ko"))
    for f in os.listdir(logdir):
        if f.startswith("libferrite-rdmav") and f.endswith(".so") \
                or f in ("verbs-ctl", "dlopen-local", "rocegen", "rc-hold",
                         "ferrite-testclient", "ferrite-unsigned.ko", "ferrite-wrongkey.ko"):
            shutil.copy(os.path.join(logdir, f), g)
    # The guest scripts of each area, sourced by the boot test.
    for f in ("lib.sh", "data.sh", "malformed.sh", "interop.sh", "lifetime.sh", "debug.sh",
              "package.sh"):
        shutil.copy(os.path.join(TOP, "tests", "guest", f), g)
    # The target's signed apt repositories and the keys the package checks use.
    from . import package
    for src, dst in package.guest_files(name):
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(g, dst))
        else:
            shutil.copy(src, os.path.join(g, dst))
    shutil.copy(script, os.path.join(g, "run"))
    os.chmod(os.path.join(g, "run"), 0o755)
    return g


def run_target(name):
    """Returns (subtests, info): subtests is [(ok, name, [diag lines])]."""
    sub, info = [], {"target": name}
    t0 = time.time()
    try:
        b = build.build_target(name)
        info["resolved"] = b["resolved"]
        info["probes"] = b["probes"]
        diag = [f"probes: " + ", ".join(
            f"{k}={'y' if v else 'n'}" for k, v in b["probes"].items())]
        k = b.get("kernel_record")
        if k:
            info["kernel_record"] = k
            diag.append(f"kernel built from {k['source_package']} {k['source_version']}, "
                        f"{k['base']} + {k['fragment']} (sha256 {k['fragment_sha256'][:12]}), "
                        + ", ".join(f"{p} {v}" for p, v in sorted(k["toolchain"].items())))
        if b.get("signer"):
            diag.append(f"ferrite.ko signed by '{b['signer']}'")
        sub.append((True, "build", diag))
        # lintian over the target's packages: an error or a warning fails; the
        # informational tags are shown.
        tags = b["package"].get("lintian", [])
        bad = [t for t in tags if t[:2] in ("E:", "W:")]
        sub.append((not bad, "package_lintian",
                    [f"lintian {b['package'].get('seconds_lintian')} s over "
                     f"{len(b['package']['packages'])} packages: "
                     + (f"{len(tags)} tag lines" if tags else "no tags")] + tags[:30]))
    except util.Fail as e:
        sub.append((False, "build", str(e).splitlines()[:20]))
        info["seconds"] = round(time.time() - t0, 1)
        return sub, info
    info["build_seconds"] = round(time.time() - t0, 1)
    logdir = util.build_dir(name)
    g = prepare_guest_dir(name, os.path.join(logdir, "ferrite.ko"),
                          os.path.join(TOP, "tests", "guest", "boot-test.sh"))
    serial = os.path.join(logdir, "serial.log")
    q = boot.boot(name, g, boot_timeout(name), serial)
    info["boot_seconds"] = q["seconds"]
    out = os.path.join(g, "out")
    done = os.path.exists(os.path.join(out, "done"))
    diag = [f"QEMU {q['seconds']} s, exit {q['rc']}" + (", timed out" if q["timed_out"] else "")]
    if not done:
        diag += ["guest did not finish; serial log tail:"] + \
            open(serial, errors="replace").read().splitlines()[-25:]
    timings = os.path.join(out, "timings")
    if os.path.exists(timings):
        spent = []
        for line in open(timings, errors="replace"):
            f = line.split()
            if len(f) == 2 and f[1].isdigit():
                spent.append((int(f[1]), f[0]))
        spent.sort(reverse=True)
        diag.append(f"checks took {sum(t for t, _ in spent)} s; the slowest: "
                    + ", ".join(f"{c} {t} s" for t, c in spent[:6]))
    sub.append((done, "boot", diag))
    pending = []
    if os.path.exists(os.path.join(out, "results")):
        for line in open(os.path.join(out, "results"), errors="replace"):
            line = line.rstrip("\n")
            if line.startswith("# "):
                pending.append(line[2:])
                continue
            m = re.match(r"^(ok|not ok) - (\S+)$", line)
            if m:
                sub.append((m.group(1) == "ok", m.group(2), pending))
                pending = []
    if done:
        sub.append((not q["poweroff_hung"], "poweroff",
                    [f"the guest finished but did not power off within "
                     f"{boot.POWEROFF_GRACE} s"] if q["poweroff_hung"] else []))
    serial_text = open(serial, errors="replace").read() if os.path.exists(serial) else ""
    bad = [ln for ln in serial_text.splitlines() if SPLAT.search(ln)]
    sub.append((not bad, "serial_log_clean", bad[:20]))
    for f in ("guest.log", "dmesg.txt", "kmemleak.txt"):
        p = os.path.join(out, f)
        if os.path.exists(p):
            shutil.copy(p, os.path.join(logdir, f))
    info["seconds"] = round(time.time() - t0, 1)
    return sub, info


def ktap_target(idx, name, sub, info, w):
    w("    KTAP version 1")
    w(f"    # Subtest: {name}")
    r = info.get("resolved")
    if r:
        w(f"    # kernel {r['kernel']} ({r['kernel_pkg_version']}, {r['kernel_note']}), "
          f"rdma-core {r['rdma_core']}" + (f" ({r['rdma_core_note']})" if r.get("rdma_core_note") else ""))
    w(f"    1..{len(sub)}")
    for i, (ok, sname, diag) in enumerate(sub, 1):
        for d in diag:
            w(f"    # {d}")
        w(f"    {'ok' if ok else 'not ok'} {i} {sname}")
    passed = all(ok for ok, _, _ in sub)
    w(f"{'ok' if passed else 'not ok'} {idx} {name}")
    return passed


def start_kernel_builds(names):
    """Build self-built kernels (the debug target's) in the background, at low priority.

    Such a kernel takes many minutes of CPU, while the boot tests of the targets before
    it keep one core busy with single-threaded TCG and leave the other mostly idle.  The
    kernel is built in that gap; its target's turn waits for it.  A failure here is not
    reported: the target's own build repeats the step in the foreground and reports it.
    """
    later = [n for n in names[1:] if targets.get(n).get("source")]
    if not later:
        return {}
    # Resolve everything first: resolution refreshes shared apt indices.
    for n in names:
        targets.resolve(n)
    threads = {}
    for n in later:
        def work(n=n):
            try:
                rootfs.ensure(n, util.build_dir(n), background=True)
            except util.Fail as e:
                util.log(f"{n}: background kernel build failed, retrying in its turn: "
                         f"{str(e).splitlines()[0]}")
        t = threading.Thread(target=work, name=f"kernel-{n}", daemon=True)
        t.start()
        threads[n] = t
    return threads


def main(names, results_path=None, pair_stage=None):
    """Boot-test `names`; then the pair stage if `pair_stage`, or by default when
    pair.wanted(names).  True when everything passed."""
    from . import pair
    if pair_stage is None:
        pair_stage = pair.wanted(names)
    lines = []

    def w(s):
        print(s, flush=True)
        lines.append(s)

    w("KTAP version 1")
    w(f"1..{len(names) + (1 if pair_stage else 0)}")
    summary = []
    early = start_kernel_builds(names)
    # Resolve everything first, here too: resolution refreshes shared apt indices.
    for n in names:
        targets.resolve(n)

    def one(n):
        if n in early:
            early[n].join()
        util.log(f"{n}: boot test")
        return run_target(n)

    # Targets run JOBS at a time (each guest's single-threaded TCG keeps one core
    # busy); their KTAP is printed in the order of `names`, as each one's turn comes.
    jobs = max(1, min(JOBS, len(names)))
    if jobs > 1:
        util.log(f"boot tests: {jobs} targets at a time (FERRITE_JOBS)")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    futures = [pool.submit(one, n) for n in names]
    built = {}
    for i, (n, fut) in enumerate(zip(names, futures), 1):
        try:
            sub, info = fut.result()
        except Exception as e:  # a bug in the harness: this target fails, the rest go on
            sub, info = [(False, "build", [f"harness error: {e!r}"])], {"target": n}
        built[n] = bool(sub) and sub[0][1] == "build" and sub[0][0]
        ok = ktap_target(i, n, sub, info, w)
        r = info.get("resolved") or {}
        summary.append((n, r.get("kernel", "?"), r.get("rdma_core", "?"), ok,
                        sum(1 for s in sub if s[0]), len(sub), info.get("seconds", 0)))
        with open(os.path.join(util.build_dir(n), "result.json"), "w") as f:
            json.dump({"ok": ok, "info": info, "subtests": sub}, f, indent=1)
    if pair_stage:
        # After the targets: its two guests keep both cores busy.
        util.log(f"{pair.NAME}: {pair.OLD} and {pair.NEW} on one virtual wire")
        try:
            sub, info = pair.run(built)
        except Exception as e:  # a bug in the harness
            sub, info = [(False, "build", [f"harness error: {e!r}"])], {"target": pair.NAME}
        ok = ktap_target(len(names) + 1, pair.NAME, sub, info, w)
        summary.append((pair.NAME, f"{pair.OLD} + {pair.NEW}", "-", ok,
                        sum(1 for s in sub if s[0]), len(sub), info.get("seconds", 0)))
        with open(os.path.join(util.build_dir(pair.NAME), "result.json"), "w") as f:
            json.dump({"ok": ok, "info": info, "subtests": sub}, f, indent=1)
    w("# target          kernel                      rdma-core  result  checks  seconds")
    for n, k, rc, ok, good, total, secs in summary:
        w(f"# {n:<15} {k:<27} {rc:<10} {'ok' if ok else 'FAIL':<7} {good:>2}/{total:<4} {secs:>7}")
    npass = sum(1 for s in summary if s[3])
    w(f"{npass} passed, {len(summary) - npass} failed")
    pool.shutdown()
    if results_path:
        with open(results_path, "w") as f:
            f.write("\n".join(lines) + "\n")
    return npass == len(summary)
