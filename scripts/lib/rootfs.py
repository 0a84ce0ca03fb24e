"""Per-target root file systems: the build root and, shared over 9p, the guest's root.

Each root is made with mmdebstrap from the target's own suites and holds that release's
compiler, the kernel's headers and kbuild, its rdma-core and test tools.  The kernel image
package is unpacked into the root without running its maintainer scripts (no initramfs is
ever made; the boot uses ferrite's own tiny one), then depmod indexes its modules.

Roots are cached under ~/.cache/ferrite/rootfs/<target>-<key>, where the key hashes the
resolved definition: a changed target, package list or this recipe makes a new root.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess

from . import kernel, targets, util

# Bump when the recipe below changes in a way that needs new roots.
RECIPE = 3

PACKAGES = [
    "rdma-core", "ibverbs-utils", "ibverbs-providers", "perftest", "rdmacm-utils",
    "libibverbs-dev", "librdmacm-dev",
    "iproute2", "kmod", "make", "gcc", "binutils", "procps", "libc6-dev", "busybox", "mount",
]

# Packages only some roots get.  The test client (tests/client, built by
# scripts/lib/testclient.py in the oldest root so that its binary runs on every target)
# uses rdma-sys, whose build runs pkg-config and bindgen (libclang).  A target that is
# not listed hashes exactly as before, so its root is not rebuilt.
EXTRA_PACKAGES = {
    "bullseye": ["pkg-config", "libclang-dev"],
    # `scripts/ferrite bench` counts system calls per WQE under strace on its default
    # target (tests/guest/bench.sh).
    "trixie": ["strace"],
}


def packages_of(res):
    extra = EXTRA_PACKAGES.get(res["target"], [])
    if kernel.is_source_target(res):
        # A kernel built in the root (kernel.py): its source and toolchain, no image.
        return PACKAGES + extra + kernel.BUILD_PACKAGES + [res["kernel_source"]]
    return PACKAGES + extra


def key_of(res):
    blob = json.dumps({"res": res, "pk": packages_of(res), "r": RECIPE}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def path_for(res):
    return os.path.join(util.cache_dir(), "rootfs", f"{res['target']}-{key_of(res)}")


def ensure(name, logdir, background=False):
    """Return (root path, resolution) for target `name`, building the root if needed.

    `background`: a kernel this target builds itself is built at low priority.
    """
    res = targets.resolve(name)
    root = path_for(res)
    if os.path.exists(os.path.join(root, ".ferrite-root-ok")):
        if kernel.is_source_target(res):
            kernel.ensure(root, res, logdir, background)
        return root, res
    util.log(f"{name}: building root file system for {res['kernel']} (log: {logdir}/rootfs.log)")
    logf = os.path.join(logdir, "rootfs.log")
    if os.path.exists(logf):
        os.unlink(logf)
    # Old roots of this target are replaced.
    # Only this target's: "trixie-*" would also match trixie-rt's and trixie-bpo's.
    for old in glob.glob(os.path.join(util.cache_dir(), "rootfs", f"{name}-*")):
        if old != root and re.fullmatch(re.escape(name) + r"-[0-9a-f]{12}(\.tmp)?",
                                        os.path.basename(old)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    kver = res["kernel"]
    idx = targets.AptIndex(res["suites"])
    pk = packages_of(res)
    if not kernel.is_source_target(res):
        pk.append(f"linux-headers-{kver}")
    cmd = ["mmdebstrap", "--variant=apt", "--mode=root", "--format=directory",
           # The registry may serve a suite whose Release is past Valid-Until.
           "--aptopt=Acquire::Check-Valid-Until \"false\"",
           "--include=" + ",".join(pk),
           "--dpkgopt=path-exclude=/usr/share/man/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*",
           "--dpkgopt=path-exclude=/usr/share/doc/*",
           "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           res["suites"][0], tmp] + targets.source_lines(res["suites"])
    util.run(cmd, logfile=logf)
    if kernel.is_source_target(res):
        return _finish(tmp, root, res, logdir, background)
    # The kernel image: unpacked, no maintainer scripts.
    debs = os.path.join(util.cache_dir(), "debs")
    os.makedirs(debs, exist_ok=True)
    idx.update()
    # Newer kernels split the image into linux-image, -binary and -modules packages.
    pkgs = [res["kernel_image_pkg"]] + [p for p in (f"linux-binary-{kver}", f"linux-modules-{kver}")
                                        if idx.candidate(p)]
    util.run(["apt-get", "-q"] + idx.opts() + ["download"] + pkgs, logfile=logf, cwd=debs)
    for p in pkgs:
        deb = sorted(glob.glob(os.path.join(debs, f"{p}_*.deb")))[-1]
        # Not `dpkg-deb -x`: tar must keep merged-/usr symlinks such as /lib -> usr/lib.
        util.run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2"',
                  "sh", deb, tmp], logfile=logf)
    # Some releases split modules into a package of their own.
    if not os.path.isdir(os.path.join(tmp, "lib/modules", kver, "kernel")) and \
       not os.path.isdir(os.path.join(tmp, "usr/lib/modules", kver, "kernel")):
        raise util.Fail(f"{name}: {pkgs} carry no modules for {kver}")
    util.run(["chroot", tmp, "/sbin/depmod", "-a", kver], logfile=logf)
    if not kernel_image(tmp, kver):
        raise util.Fail(f"{name}: no kernel image for {kver} in {pkgs}")
    return _finish(tmp, root, res, logdir, background)


def _finish(tmp, root, res, logdir, background=False):
    with open(os.path.join(tmp, ".ferrite-resolved.json"), "w") as f:
        json.dump(res, f, indent=1)
    open(os.path.join(tmp, ".ferrite-root-ok"), "w").close()
    os.rename(tmp, root)
    if kernel.is_source_target(res):
        kernel.ensure(root, res, logdir, background)
    return root, res


def kernel_image(root, kver):
    """The kernel image in a root: /boot/vmlinuz-K, or where 7.x packages put it."""
    for p in (f"boot/vmlinuz-{kver}", f"usr/lib/modules/{kver}/vmlinuz",
              f"lib/modules/{kver}/vmlinuz"):
        if os.path.isfile(os.path.join(root, p)):
            return os.path.join(root, p)
    return None


def modules_dir(root, kver):
    for d in ("lib/modules", "usr/lib/modules"):
        p = os.path.join(root, d, kver)
        if os.path.isdir(p):
            return p
    raise util.Fail(f"no module tree for {kver} in {root}")
