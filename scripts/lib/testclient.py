"""Building tests/client once, for every target's guest.

The crate has two binaries: ferrite-testclient, the byte-checking test client, and
ferrite-bench, the benchmark client of `scripts/ferrite bench`; both use the crate's
library for their connection set-up.  They must run on the oldest target, so they are
built inside the bullseye root (glibc 2.31, rdma-core 33.2) against that root's
libibverbs: rdma-sys runs bindgen over its <infiniband/verbs.h> (the root has pkg-config
and libclang-dev for that, see rootfs.EXTRA_PACKAGES).  The compiler is the host's rustup toolchain, bind-mounted
read-only into the root (rustc and cargo themselves need only glibc 2.17).

Crates are downloaded on the host (`cargo fetch`, the host has the network) into a
CARGO_HOME under build/testclient/, so the build in the root runs --offline --locked.
The target directory stays there too, and a stamp (sources, Cargo.lock, toolchain,
root) skips the whole step when nothing changed.
"""

import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess

from . import rootfs, util

TOP = util.TOP
SRC = os.path.join(TOP, "tests", "client")
BUILD_TARGET = "bullseye"
BINARY = "ferrite-testclient"
BENCH = "ferrite-bench"
BINARIES = (BINARY, BENCH)

# Newest glibc symbol version the binary may need: bullseye's.
GLIBC_MAX = (2, 31)
# Libraries it may link: libibverbs and glibc's own (and the unwinder's libgcc_s).
ALLOWED_NEEDED = re.compile(
    r"^(libibverbs\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|"
    r"librt\.so\.1|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2)$")


def _sources():
    files = [os.path.join(SRC, "Cargo.toml"), os.path.join(SRC, "Cargo.lock")]
    files += sorted(glob.glob(os.path.join(SRC, "src", "**", "*.rs"), recursive=True))
    return files


def _stamp(root, sysroot):
    h = hashlib.sha256()
    for f in _sources():
        h.update(os.path.relpath(f, SRC).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(fh.read())
    h.update(subprocess.run(["rustc", "-vV"], capture_output=True, check=True).stdout)
    h.update(sysroot.encode() + b"\0" + os.path.basename(root).encode())
    return h.hexdigest()


def _in_root(root, binds, script, env, logf):
    """Run `script` (sh) in `root` with (host dir, dir in root, read-only) bind mounts,
    in a private mount namespace, with exactly the environment `env`."""
    q = shlex.quote
    lines = ["set -e"]
    for host, inside, ro in binds:
        lines.append(f"mount --bind {q(host)} {q(root + inside)}")
        if ro:
            lines.append(f"mount -o remount,bind,ro {q(root + inside)}")
    lines.append(f"mount -t proc proc {q(root + '/proc')}")
    envs = " ".join(q(f"{k}={v}") for k, v in env.items())
    lines.append(f"exec chroot {q(root)} /usr/bin/env -i {envs} /bin/sh -c {q(script)}")
    return util.run(["unshare", "-m", "sh", "-c", "\n".join(lines)], logfile=logf, check=False)


def check_binary(path):
    """Refuse a binary that would not load on every target."""
    dyn = subprocess.run(["objdump", "-T", path], capture_output=True, text=True,
                         check=True).stdout
    newest = max(((int(a), int(b)) for a, b in re.findall(r"GLIBC_(\d+)\.(\d+)", dyn)),
                 default=(0, 0))
    if newest > GLIBC_MAX:
        raise util.Fail(f"{path}: needs GLIBC_{newest[0]}.{newest[1]}; bullseye has "
                        f"{GLIBC_MAX[0]}.{GLIBC_MAX[1]}")
    elf = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True,
                         check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", elf)
    bad = [n for n in needed if not ALLOWED_NEEDED.match(n)]
    if bad or "libibverbs.so.1" not in needed:
        raise util.Fail(f"{path}: links {needed}; only libibverbs.so.1 and glibc are allowed")
    return {"glibc_max": f"GLIBC_{newest[0]}.{newest[1]}", "needed": needed}


def build_clients():
    """Build (or reuse) both binaries in build/testclient/; returns {name: path}."""
    with util.step_lock("testclient"):
        return _build_clients()


def _build_clients():
    out = util.build_dir("testclient")
    binaries = {b: os.path.join(out, b) for b in BINARIES}
    logf = os.path.join(out, "build.log")
    root, _res = rootfs.ensure(BUILD_TARGET, out)
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                             check=True).stdout.strip()
    stamp = _stamp(root, sysroot)
    stamp_file = os.path.join(out, "stamp")
    if all(os.path.exists(p) for p in binaries.values()) and os.path.exists(stamp_file) and \
            open(stamp_file).read().strip() == stamp:
        return binaries
    if os.path.exists(logf):
        os.unlink(logf)
    cargo_home = os.path.join(out, "cargo-home")
    # Downloads happen here, on the host; the root's build is offline.
    util.run(["cargo", "fetch", "--locked", "--target", "x86_64-unknown-linux-gnu",
              "--manifest-path", os.path.join(SRC, "Cargo.toml")],
             env={"CARGO_HOME": cargo_home}, logfile=logf)
    for d in ("src", "rust", "tmp"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    env = {"PATH": "/mnt/rust/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "CARGO_HOME": "/mnt/cargo-home", "CARGO_TARGET_DIR": "/mnt/target",
           "TMPDIR": "/mnt/tmp", "RUSTC": "/mnt/rust/bin/rustc"}
    clang = sorted(glob.glob(os.path.join(root, "usr/lib/llvm-*/lib/libclang.so*")))
    if clang:
        env["LIBCLANG_PATH"] = os.path.dirname(clang[-1])[len(root):]
    util.log(f"testclient: building {' and '.join(BINARIES)} in the {BUILD_TARGET} root "
             f"(log: {os.path.relpath(logf, TOP)})")
    r = _in_root(root, [(out, "/mnt", False), (SRC, "/mnt/src", True), (sysroot, "/mnt/rust", True)],
                 "cargo build --release --offline --locked --bins --manifest-path /mnt/src/Cargo.toml",
                 env, logf)
    built = {b: os.path.join(out, "target", "release", b) for b in BINARIES}
    if r.returncode != 0 or not all(os.path.exists(p) for p in built.values()):
        tail = "\n".join(open(logf, errors="replace").read().splitlines()[-15:])
        raise util.Fail(f"testclient: the build failed (log: {logf})\n{tail}")
    infos = {b: check_binary(built[b]) for b in BINARIES}
    for b, info in infos.items():
        shutil.copy(built[b], binaries[b] + ".tmp")
        os.rename(binaries[b] + ".tmp", binaries[b])
        util.log(f"testclient: built {os.path.relpath(binaries[b], TOP)} "
                 f"({info['glibc_max']}, needs {' '.join(info['needed'])})")
    with open(stamp_file, "w") as f:
        f.write(stamp + "\n")
    return binaries


def build_testclient():
    """Build (or reuse) build/testclient/ferrite-testclient; returns its path."""
    return build_clients()[BINARY]


def boot_rxe_pair(name, runs=None, timeout=1200):
    """Boot target `name` and run tests/guest/testclient-rxe.sh there: the test client
    between two rxe devices.  `runs` replaces the script's default list of runs (one
    "name server-dev client-dev server-addr [options]" per line).  Returns the guest's
    output directory (summary, <run>.client, <run>.server, guest.log, dmesg.txt)."""
    from . import boot
    binary = build_testclient()
    g = os.path.join(util.build_dir("testclient"), f"guest-{name}")
    shutil.rmtree(g, ignore_errors=True)
    os.makedirs(os.path.join(g, "out"))
    shutil.copy(binary, g)
    shutil.copy(os.path.join(TOP, "tests", "guest", "lib.sh"), g)
    shutil.copy(os.path.join(TOP, "tests", "guest", "testclient-rxe.sh"), os.path.join(g, "run"))
    os.chmod(os.path.join(g, "run"), 0o755)
    if runs:
        with open(os.path.join(g, "runs"), "w") as f:
            f.write(runs.strip() + "\n")
    serial = os.path.join(util.build_dir("testclient"), f"serial-{name}.log")
    q = boot.boot(name, g, timeout, serial)
    util.log(f"testclient: {name}: QEMU ran {q['seconds']} s"
             + (", timed out" if q["timed_out"] else ""))
    return os.path.join(g, "out")
