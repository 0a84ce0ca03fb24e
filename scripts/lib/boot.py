"""Booting a target's distro kernel in QEMU (TCG) with its own root shared over 9p.

The guest's root is the target's build root, shared read-only with a tmpfs overlay on
top.  A tiny initramfs (static busybox, the 9p/overlay modules of the target kernel,
scripts/guest/init) mounts it and hands over to a script from the second share,
build/<target>/guest, which also carries ferrite.ko and receives the results.
"""

import gzip
import io
import os
import shutil
import signal
import subprocess
import time

from . import rootfs, targets, util

TOP = util.TOP

# Modules the initramfs needs, in the target kernel (with their dependencies).
INITRAMFS_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay"]

BUSYBOX = "/bin/busybox"

# Seconds a guest that has marked its run finished gets to power itself off.
POWEROFF_GRACE = 60


def _module_deps(moddir):
    """modules.dep as {name: (path, [dep paths])}."""
    out = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, deps = line.partition(":")
            name = os.path.basename(path).split(".ko")[0].replace("-", "_")
            out[name] = (path, deps.split())
    return out


def _resolve(moddir, wanted):
    """Module paths needed for `wanted`, dependencies first; builtins skipped."""
    deps = _module_deps(moddir)
    by_path = {v[0]: k for k, v in deps.items()}
    order, seen = [], set()

    def visit(path):
        if path in seen:
            return
        seen.add(path)
        for d in deps[by_path[path]][1]:
            visit(d)
        order.append(path)

    for w in wanted:
        if w in deps:
            # modules.dep lists a module's deps in load order reversed (deepest last).
            for d in reversed(deps[w][1]):
                visit(d)
            visit(deps[w][0])
    return order


def _cpio_newc(entries):
    """A newc cpio archive from (name, mode, data) entries; directories have data None."""
    buf = io.BytesIO()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        data = data or b""
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{x:08x}" for x in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        buf.write(hdr.encode() + nb)
        buf.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
        buf.write(data)
        buf.write(b"\0" * ((4 - len(data) % 4) % 4))
        ino += 1
    return buf.getvalue()


def _decompress(path):
    if path.endswith(".xz"):
        return subprocess.run(["xz", "-dc", path], check=True, capture_output=True).stdout
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
    if path.endswith(".gz"):
        return gzip.open(path).read()
    return open(path, "rb").read()


def make_initramfs(root, kver, out):
    if not os.path.exists(BUSYBOX):
        raise util.Fail(f"{BUSYBOX} missing: install busybox-static (scripts/setup-host)")
    moddir = rootfs.modules_dir(root, kver)
    mods = _resolve(moddir, INITRAMFS_MODULES)
    entries = [(d, 0o40755, None) for d in ("bin", "dev", "proc", "sys", "lib", "lib/mod",
                                            "lower", "upper", "newroot")]
    entries.append(("bin/busybox", 0o100755, open(BUSYBOX, "rb").read()))
    entries.append(("init", 0o100755,
                    open(os.path.join(TOP, "scripts", "guest", "init"), "rb").read()))
    names = []
    for m in mods:
        base = os.path.basename(m).split(".ko")[0]
        names.append(base)
        entries.append((f"lib/mod/{base}.ko", 0o100644, _decompress(os.path.join(moddir, m))))
    # A kernel with these built in (the debug target's) needs none: an empty list.
    entries.append(("lib/mod/order", 0o100644, "".join(n + "\n" for n in names).encode()))
    with open(out, "wb") as f:
        f.write(gzip.compress(_cpio_newc(entries), 6))


def boot(name, guest_dir, timeout, serial_log, memory="2G", net=None):
    """Boot target `name` with `guest_dir` as the ferrite share; returns QEMU's outcome.

    `net`: QEMU arguments of the guest's network devices; by default it has none
    (`-nic none`).  The pair test (scripts/lib/pair.py) joins two guests' NICs.
    """
    logdir = util.build_dir(name)
    root, res = rootfs.ensure(name, logdir)
    kver = res["kernel"]
    # A target may add to the command line (the debug kernel enforces signatures).
    extra_cmdline = targets.get(name).get("cmdline", "")
    initrd = os.path.join(logdir, "initrd.gz")
    make_initramfs(root, kver, initrd)
    kernel = rootfs.kernel_image(root, kver)
    cmd = [
        # Single-threaded TCG: two vCPUs (SMP kernel paths run), but no cross-vCPU
        # code-patching races, which made MTTCG guests oops in int3 while booting.
        "qemu-system-x86_64", "-accel", "tcg,thread=single", "-cpu", "max", "-smp", "2",
        "-m", memory,
        "-kernel", kernel, "-initrd", initrd,
        "-append", " ".join(["console=ttyS0 panic=-1 oops=panic loglevel=6 rw quiet"] +
                            ([extra_cmdline] if extra_cmdline else [])),
        "-display", "none", "-monitor", "none", "-no-reboot",
    ] + (net if net is not None else ["-nic", "none"]) + [
        "-serial", f"file:{serial_log}",
        "-virtfs", f"local,path={root},mount_tag=rootfs,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={guest_dir},mount_tag=ferrite,security_model=none,multidevs=remap",
    ]
    t0 = time.time()
    finished = os.path.join(guest_dir, "out", "finished")
    # Poll rather than wait: a guest that finished but cannot power off is stopped
    # POWEROFF_GRACE seconds later, not at the full timeout.
    timed_out = poweroff_hung = False
    finished_at = None
    with open(serial_log + ".qemu", "w+b") as qemu_log:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qemu_log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        while p.poll() is None:
            now = time.time()
            if finished_at is None and os.path.exists(finished):
                finished_at = now
            if now - t0 > timeout or (finished_at and now - finished_at > POWEROFF_GRACE):
                timed_out = finished_at is None
                poweroff_hung = finished_at is not None
                os.killpg(p.pid, signal.SIGKILL)
                break
            time.sleep(0.5)
        p.wait()
        qemu_log.seek(0)
        out = qemu_log.read()
    return {"seconds": round(time.time() - t0, 1), "timed_out": timed_out,
            "poweroff_hung": poweroff_hung,
            "rc": p.returncode, "qemu_output": out.decode(errors="replace")[-2000:],
            "cmd": cmd}
