"""Kernel style for compat/: the kernel's own scripts/checkpatch.pl over every C file.

checkpatch.pl is not in the kernel header packages; it comes from Debian's
linux-source-6.12 package (the source the debug target builds), fetched once into
~/.cache/ferrite/checkpatch/<version>.  Every ERROR and WARNING fails, except the
few in ALLOWED, each with the reason it stays.
"""

import glob
import os
import re
import subprocess

from . import targets, util

TOP = util.TOP

SOURCE_PKG = "linux-source-6.12"
SUITES = ["trixie", "trixie-security"]
FILES = ["scripts/checkpatch.pl", "scripts/spelling.txt", "scripts/const_structs.checkpatch"]

# (file, message pattern): findings that are right as they are.
ALLOWED = [
    # The bindgen-only view of the interface header defines the kernel's integer types,
    # because the Rust side is built with no kernel or libc headers.
    ("compat/ferrite_compat.h", r"do not add new typedefs"),
    # The fallback for kernels before 5.11, which have no kmap_local_page().
    ("compat/qp.c", r"Deprecated use of 'k(un)?map_atomic'"),
]


def checkpatch():
    """Path of checkpatch.pl, fetched from the linux-source package on first use."""
    idx = targets.AptIndex(SUITES)
    idx.update()
    ver = idx.candidate(SOURCE_PKG)
    if not ver:
        raise util.Fail(f"{', '.join(SUITES)} serve no {SOURCE_PKG}: no checkpatch.pl")
    d = os.path.join(util.cache_dir(), "checkpatch", ver)
    script = os.path.join(d, "scripts", "checkpatch.pl")
    if os.path.exists(script):
        return script
    debs = os.path.join(util.cache_dir(), "debs")
    os.makedirs(debs, exist_ok=True)
    if not glob.glob(os.path.join(debs, f"{SOURCE_PKG}_{ver.replace(':', '%3a')}_*.deb")):
        util.run(["apt-get", "-q", "-q"] + idx.opts() + ["download", f"{SOURCE_PKG}={ver}"],
                 quiet=True, cwd=debs)
    deb = sorted(glob.glob(os.path.join(debs, f"{SOURCE_PKG}_*.deb")))[-1]
    tmp = d + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    tarball = f"./usr/src/{SOURCE_PKG}.tar.xz"
    util.run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -xO "$2" | '
              'tar -xJ -C "$3" --strip-components=1 --wildcards "$4" "$5" "$6"',
              "sh", deb, tarball, tmp] + [f"*/{f}" for f in FILES], quiet=True)
    os.rename(tmp, d)
    return script


def run():
    """checkpatch.pl over compat/; returns the findings that are not allowed."""
    files = sorted(glob.glob(os.path.join(TOP, "compat", "*.[ch]")) +
                   glob.glob(os.path.join(TOP, "compat", "probes", "*.c")))
    r = subprocess.run(["perl", checkpatch(), "--no-tree", "--terse", "--show-types", "-f"] +
                       [os.path.relpath(f, TOP) for f in files],
                       cwd=TOP, capture_output=True, text=True)
    bad = []
    for line in r.stdout.splitlines():
        m = re.match(r"^([^:]+):\d+: (ERROR|WARNING|CHECK):", line)
        if not m:
            continue
        if any(m.group(1) == f and re.search(pat, line) for f, pat in ALLOWED):
            continue
        bad.append(line)
    return bad
