"""Per-target root file systems: the build root and, shared over 9p, the guest's root.

Each root is made with mmdebstrap from the target's own suites and holds that release's
compiler, the kernel's headers and kbuild, its rdma-core and test tools.  The kernel image
package is unpacked into the root without running its maintainer scripts (no initramfs is
ever made; the boot uses ferrite's own tiny one), then depmod indexes its modules.  The
image packages are then recorded in the root's dpkg database, as installed, so that
packages which depend on the running kernel's image (ferrite-modules-<abi>) install in
the guest as on a machine that runs that kernel (register_kernel_packages()).

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


# Packages every root of a distro kernel gets for the package tests
# (tests/guest/package.sh): openssl checks a module's signature against a certificate.
# The debug target's root has openssl already (kernel.BUILD_PACKAGES).
DISTRO_PACKAGES = ["openssl"]

# Targets whose boot test also builds and installs ferrite-dkms in the guest, and what
# that needs beyond the root: DKMS itself (which brings dpkg-dev and patch).
DKMS_TARGETS = ["bookworm-6.12", "trixie"]
DKMS_PACKAGES = ["dkms"]

# Bump when register_kernel_packages() or the steps after mmdebstrap change in a way
# that needs new distro-kernel roots.  It is not in the key of a root whose kernel
# ferrite builds (the debug target's), which those steps do not touch.
DISTRO_RECIPE = 1


def packages_of(res):
    extra = EXTRA_PACKAGES.get(res["target"], [])
    if kernel.is_source_target(res):
        # A kernel built in the root (kernel.py): its source and toolchain, no image.
        return PACKAGES + extra + kernel.BUILD_PACKAGES + [res["kernel_source"]]
    if res["target"] in DKMS_TARGETS:
        extra = extra + DKMS_PACKAGES
    return PACKAGES + extra + DISTRO_PACKAGES


def key_of(res):
    d = {"res": res, "pk": packages_of(res), "r": RECIPE}
    if not kernel.is_source_target(res):
        d["dr"] = DISTRO_RECIPE
    blob = json.dumps(d, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def path_for(res):
    return os.path.join(util.cache_dir(), "rootfs", f"{res['target']}-{key_of(res)}")


def ensure(name, logdir, background=False):
    """Return (root path, resolution) for target `name`, building the root if needed.

    `background`: a kernel this target builds itself is built at low priority.
    """
    with util.step_lock(f"rootfs-{name}"):
        return _ensure(name, logdir, background)


def _ensure(name, logdir, background=False):
    res = targets.resolve(name)
    root = path_for(res)
    if os.path.exists(os.path.join(root, ".ferrite-root-ok")):
        damaged = damage(root)
        if damaged:
            # A cached root that lost part of itself (seen in CI: a root without /mnt)
            # is rebuilt, not used: every later step would fail on it less clearly.
            util.log(f"{name}: the cached root {root} is damaged ({damaged}); rebuilding it")
            shutil.rmtree(root, ignore_errors=True)
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
    with idx.lock:
        util.run(["apt-get", "-q"] + idx.opts() + ["download"] + pkgs, logfile=logf, cwd=debs)
    image_debs = []
    for p in pkgs:
        deb = sorted(glob.glob(os.path.join(debs, f"{p}_*.deb")))[-1]
        image_debs.append(deb)
        # Not `dpkg-deb -x`: tar must keep merged-/usr symlinks such as /lib -> usr/lib.
        util.run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2"',
                  "sh", deb, tmp], logfile=logf)
    register_kernel_packages(tmp, image_debs, logf)
    # Some releases split modules into a package of their own.
    if not os.path.isdir(os.path.join(tmp, "lib/modules", kver, "kernel")) and \
       not os.path.isdir(os.path.join(tmp, "usr/lib/modules", kver, "kernel")):
        raise util.Fail(f"{name}: {pkgs} carry no modules for {kver}")
    util.run(["chroot", tmp, "/sbin/depmod", "-a", kver], logfile=logf)
    if not kernel_image(tmp, kver):
        raise util.Fail(f"{name}: no kernel image for {kver} in {pkgs}")
    return _finish(tmp, root, res, logdir, background)


# What every finished root has; ferrite's build binds its directories onto /mnt.
ROOT_ENTRIES = ["mnt", "proc", "tmp", "etc/apt", "usr/bin/make", "usr/bin/gcc",
                "var/lib/dpkg/status", ".ferrite-resolved.json"]


def damage(root):
    """What a cached root lacks of ROOT_ENTRIES, as text ("" when it is whole)."""
    missing = [e for e in ROOT_ENTRIES if not os.path.lexists(os.path.join(root, e))]
    return ("no " + ", ".join("/" + m for m in missing)) if missing else ""


def _finish(tmp, root, res, logdir, background=False):
    # The mount points ferrite's steps use, whatever the release's base-files ships.
    for d in ("mnt", "proc", "tmp"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    bad = [e for e in ROOT_ENTRIES[:-1] if not os.path.lexists(os.path.join(tmp, e))]
    bad = ("no " + ", ".join("/" + m for m in bad)) if bad else ""
    if bad:
        raise util.Fail(f"{res['target']}: the new root has {bad} (log: {logdir}/rootfs.log)")
    with open(os.path.join(tmp, ".ferrite-resolved.json"), "w") as f:
        json.dump(res, f, indent=1)
    open(os.path.join(tmp, ".ferrite-root-ok"), "w").close()
    os.rename(tmp, root)
    if kernel.is_source_target(res):
        kernel.ensure(root, res, logdir, background)
    return root, res


def _paragraphs(text):
    return [p for p in text.split("\n\n") if p.strip()]


def _fields(par):
    """An RFC 822 paragraph as [(name, value)], continuation lines kept in the value."""
    out = []
    for line in par.splitlines():
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + "\n" + line)
        elif ":" in line:
            k, _, v = line.partition(":")
            out.append((k, v.strip()))
    return out


def register_kernel_packages(root, debs, logf):
    """Record the unpacked kernel image packages in the root's dpkg database.

    Each gets its status entry ("install ok installed", the package's own control
    fields), its file list and its md5sums, as dpkg would leave them; its maintainer
    scripts are neither run nor kept.  A dependency group none of whose packages is in
    the root (initramfs-tools, linux-base: the image was unpacked so that no initramfs
    is ever made) is left out of the entry, so that apt finds the root consistent;
    everything else is as the package says.  `apt-get check` must agree.  A package
    dpkg installed already is left as it is: from trixie on, the headers depend on
    the image, so mmdebstrap installed it with its maintainer scripts.
    """
    status = os.path.join(root, "var", "lib", "dpkg", "status")
    text = open(status).read()
    have, versions = set(), {}
    for par in _paragraphs(text):
        f = dict(_fields(par))
        if f.get("Status", "").endswith(" installed"):
            have.add(f["Package"])
            versions[f["Package"]] = f.get("Version", "")

    def satisfied(alt):
        """One alternative, "name [(op version)]", met by what the root holds.  A
        package recorded here (no version known yet) meets any version."""
        m = re.match(r"\s*([^\s(:]+)(?::\S+)?\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?", alt)
        if not m or m.group(1) not in have:
            return False
        if not m.group(2) or m.group(1) not in versions:
            return True
        op = {"<<": "lt", "<=": "le", "=": "eq", ">=": "ge", ">>": "gt", "<": "le", ">": "ge"}[m.group(2)]
        return subprocess.run(["dpkg", "--compare-versions", versions[m.group(1)], op, m.group(3)]
                              ).returncode == 0
    ctrls, todo = [], []
    for deb in debs:
        ctrl = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True,
                              check=True).stdout
        fields = _fields(ctrl)
        pkg = dict(fields)["Package"]
        if pkg in have:
            with open(logf, "a") as f:
                f.write(f"{pkg}: installed by dpkg already\n")
            continue
        ctrls.append(fields)
        todo.append(deb)
    have.update(dict(c)["Package"] for c in ctrls)
    info = os.path.join(root, "var", "lib", "dpkg", "info")
    entries = []
    for deb, fields in zip(todo, ctrls):
        pkg = dict(fields)["Package"]
        out = []
        for k, v in fields:
            if k in ("Depends", "Pre-Depends"):
                groups = [g.strip() for g in v.replace("\n", " ").split(",")]
                # A group the root cannot meet (a package it lacks, or holds too old:
                # a backports image wants backports' linux-base) is left out.
                keep = [g for g in groups if any(satisfied(a) for a in g.split("|"))]
                dropped = [g for g in groups if g not in keep]
                if dropped:
                    with open(logf, "a") as f:
                        f.write(f"{pkg}: recorded without {k}: {', '.join(dropped)}\n")
                if not keep:
                    continue
                v = ", ".join(keep)
            out.append((k, v))
            if k == "Package":
                out.append(("Status", "install ok installed"))
        entries.append("\n".join(f"{k}: {v}" if not v.startswith("\n") else f"{k}:{v}"
                                 for k, v in out))
        names = subprocess.run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -t', "sh", deb],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        paths = ["/."] + ["/" + n[2:].rstrip("/") for n in names if n.startswith("./") and n[2:]]
        with open(os.path.join(info, f"{pkg}.list"), "w") as f:
            f.write("\n".join(paths) + "\n")
        tmpd = os.path.join(root, "tmp", f"ferrite-ctrl-{pkg}")
        shutil.rmtree(tmpd, ignore_errors=True)
        util.run(["dpkg-deb", "-e", deb, tmpd], logfile=logf)
        if os.path.exists(os.path.join(tmpd, "md5sums")):
            shutil.copy(os.path.join(tmpd, "md5sums"), os.path.join(info, f"{pkg}.md5sums"))
        shutil.rmtree(tmpd)
    if entries:
        with open(status + ".ferrite", "w") as f:
            f.write(text.rstrip("\n") + "\n\n" + "\n\n".join(entries) + "\n")
        os.rename(status + ".ferrite", status)
    util.run(["chroot", root, "dpkg-query", "-W"] + [subprocess.run(
        ["dpkg-deb", "-f", d, "Package"], capture_output=True, text=True).stdout.strip()
        for d in debs], logfile=logf)
    r = util.run(["chroot", root, "apt-get", "check", "-q"], logfile=logf, check=False)
    if r.returncode != 0:
        raise util.Fail(f"the root's dpkg database is inconsistent after recording the kernel "
                        f"packages (log: {logf})")


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
