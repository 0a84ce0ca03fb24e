"""Kernels ferrite builds itself (the `debug` target), from Debian's linux-source package.

A target with `source = "linux-source-X.Y"` in targets.toml gets no distro kernel.  Its
root carries that source package, and this module builds the kernel inside the root,
with the root's own compiler and Rust toolchain:

  make tinyconfig, then the target's fragment (`config`, a file under kernel/) merged
  by the kernel's merge_config.sh, then olddefconfig; every option the fragment names
  must end with the value it asks for, or the build stops and names the option.

The result is cached in ~/.cache/ferrite/kernel/<target>-<key>.  The key hashes the
source package's version, the fragment, the built-in signing certificate, the root's
compiler and Rust versions and this recipe; nothing else rebuilds the kernel.
build.json there records exactly what it was built from.

The cache directory is bound into the root at MOUNT whenever the root builds against
the kernel; /usr/src/linux-headers-<release> in the root points at its build tree, so
module builds find it where they find a distro kernel's headers.  The kernel is then
installed in the root the way a distro kernel is (/boot/vmlinuz-<release>,
/lib/modules/<release>), and the boot and the boot test treat it like any other.
"""

import hashlib
import json
import os
import re
import shutil
import time

from . import keys, util

TOP = util.TOP

# Bump when the recipe below changes in a way that needs a new kernel.
RECIPE = 1

# Where the kernel's cache directory appears inside the root.
MOUNT = "/usr/src/ferrite-kernel"

# Packages whose versions go into the key and the record: what compiles the kernel.
TOOLCHAIN = ("gcc", "gcc-14", "binutils", "clang", "clang-19", "lld", "llvm", "rustc", "rust-src",
             "bindgen", "libclang-dev")

# Packages a root needs to build a kernel (beyond rootfs.PACKAGES).
BUILD_PACKAGES = ["bc", "bison", "flex", "libssl-dev", "libelf-dev", "cpio", "openssl", "python3",
                  "rsync", "xz-utils", "zstd", "rustc", "rust-src", "bindgen", "libclang-dev",
                  # 6.12 has Rust beside KASAN only in a clang build (LLVM=1); rustc's
                  # LLVM and the root's clang are the same release (19).
                  "clang", "lld", "llvm"]


def is_source_target(res):
    return bool(res.get("kernel_source"))


def fragment_path(res):
    return os.path.join(TOP, res["kernel_config"])


def _dpkg_versions(root, names):
    """{package: version} from the root's dpkg status, for the packages named."""
    out, cur = {}, None
    with open(os.path.join(root, "var", "lib", "dpkg", "status"), errors="replace") as f:
        for line in f:
            if line.startswith("Package: "):
                cur = line.split(":", 1)[1].strip()
            elif line.startswith("Version: ") and cur in names:
                out[cur] = line.split(":", 1)[1].strip()
    return out


def record_of(root, res):
    """What the kernel is built from: the inputs its cache key hashes."""
    pem, _ = keys.key("test")
    cert = open(pem, "rb").read().split(b"-----BEGIN CERTIFICATE-----")[1]
    return {
        "recipe": RECIPE,
        "release": res["kernel"],
        "source_package": res["kernel_source"],
        "source_version": res["kernel_source_version"],
        "base": "tinyconfig",
        "make_vars": res.get("make_vars", ""),
        "fragment": res["kernel_config"],
        "fragment_sha256": hashlib.sha256(open(fragment_path(res), "rb").read()).hexdigest(),
        "signing_cert_sha256": hashlib.sha256(cert).hexdigest(),
        "toolchain": _dpkg_versions(root, TOOLCHAIN),
    }


def cache_path(root, res):
    rec = record_of(root, res)
    key = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(util.cache_dir(), "kernel", f"{res['target']}-{key}"), rec


def binds(res, root):
    """Extra bind mounts a build in the root needs for this target's kernel tree."""
    if not is_source_target(res):
        return []
    return [(cache_path(root, res)[0], MOUNT)]


def _fragment_options(path):
    """{CONFIG_X: value} the fragment asks for; 'n' for '# CONFIG_X is not set'."""
    want = {}
    for line in open(path):
        line = line.strip()
        m = re.match(r"^# (CONFIG_\w+) is not set$", line)
        if m:
            want[m.group(1)] = "n"
        elif line.startswith("CONFIG_"):
            k, _, v = line.partition("=")
            want[k] = v
    return want


def _config_values(path):
    have = {}
    for line in open(path):
        line = line.strip()
        m = re.match(r"^# (CONFIG_\w+) is not set$", line)
        if m:
            have[m.group(1)] = "n"
        elif line.startswith("CONFIG_"):
            k, _, v = line.partition("=")
            have[k] = v
    return have


def check_config(fragment, config):
    """Options of the fragment that the final .config does not have as asked."""
    have = _config_values(config)
    bad = []
    for k, v in _fragment_options(fragment).items():
        got = have.get(k, "n")
        if got != v:
            bad.append(f"{k}={v} (got {got})")
    return bad


def ensure(root, res, logdir, background=False):
    """Build the target's kernel if its cache is missing, then install it in the root.

    `background`: build at the lowest CPU priority (scripts/lib/boottest.py builds it
    while other targets' boot tests run).
    """
    from . import build
    kdir, rec = cache_path(root, res)
    kver = res["kernel"]
    if not os.path.exists(os.path.join(kdir, "build.json")):
        _build(root, res, kdir, rec, logdir, background)
    stamp = os.path.join(root, "usr", "lib", "modules", kver, ".ferrite-kernel")
    if os.path.exists(stamp) and open(stamp).read() == os.path.basename(kdir):
        return kdir
    logf = os.path.join(logdir, "kernel-install.log")
    if os.path.exists(logf):
        os.unlink(logf)
    script = (f"set -e; rm -rf /usr/lib/modules/{kver}; "
              f"make -s -C {MOUNT}/src O={MOUNT}/obj {res.get('make_vars', '')} "
              f"INSTALL_MOD_PATH=/ modules_install; "
              f"cp {MOUNT}/obj/arch/x86/boot/bzImage /boot/vmlinuz-{kver}; "
              f"ln -sfn {MOUNT}/obj /usr/src/linux-headers-{kver}; "
              f"depmod -a {kver}")
    r = build.in_root(root, kdir, script, logf, binds=[(kdir, MOUNT)])
    if r.returncode != 0:
        raise util.Fail(f"{res['target']}: installing the kernel in the root failed (log: {logf})")
    with open(stamp, "w") as f:
        f.write(os.path.basename(kdir))
    return kdir


def _build(root, res, kdir, rec, logdir, background):
    from . import build
    logf = os.path.join(logdir, "kernel.log")
    if os.path.exists(logf):
        os.unlink(logf)
    tmp = kdir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # An older kernel of this target from the same source is the new build's starting
    # point: Kbuild rebuilds exactly what the changed options touch (a fragment
    # change takes minutes, not a whole build).  Any other old kernel just goes.
    parent = os.path.dirname(kdir)
    os.makedirs(parent, exist_ok=True)
    reuse = None
    for old in sorted(os.listdir(parent)):
        path = os.path.join(parent, old)
        # A finished kernel has build.json; an interrupted build (.tmp) has the
        # record it started from in build.partial.json, and is as good a start.
        interrupted = re.fullmatch(re.escape(res["target"]) + r"-[0-9a-f]{12}\.tmp", old)
        if not interrupted and (not re.fullmatch(re.escape(res["target"]) + r"-[0-9a-f]{12}", old)
                                or path == kdir):
            continue
        try:
            prev = json.load(open(os.path.join(
                path, "build.partial.json" if interrupted else "build.json")))
        except (OSError, ValueError):
            prev = {}
        if reuse is None and prev.get("source_version") == rec["source_version"] and \
                prev.get("toolchain") == rec["toolchain"] and \
                os.path.isdir(os.path.join(path, "obj")) and os.path.isdir(os.path.join(path, "src")):
            reuse = path
            os.rename(path, tmp)
            for f in ("build.json", "build.partial.json"):
                if os.path.exists(os.path.join(tmp, f)):
                    os.unlink(os.path.join(tmp, f))
        else:
            shutil.rmtree(path, ignore_errors=True)
    if reuse is None:
        os.makedirs(tmp)
    with open(os.path.join(tmp, "build.partial.json"), "w") as f:
        json.dump(rec, f, indent=1)
    pem, _ = keys.key("test")
    shutil.copy(pem, os.path.join(tmp, "signing_key.pem"))
    os.chmod(os.path.join(tmp, "signing_key.pem"), 0o600)
    frag = os.path.join(tmp, "fragment.config")
    with open(frag, "w") as f:
        f.write(open(fragment_path(res)).read())
        # The key that signs the in-tree modules; its certificate is built in.
        f.write(f'\nCONFIG_MODULE_SIG_KEY="{MOUNT}/signing_key.pem"\n')
    series = res["kernel_source"].split("linux-source-")[1]
    jobs = os.cpu_count() or 2
    mk = f"make -C {MOUNT}/src O={MOUNT}/obj ARCH=x86_64 {res.get('make_vars', '')}".rstrip()
    script = "\n".join([
        "set -e",
        f"cd {MOUNT}",
        f"[ -d src ] || {{ mkdir src.new && tar -xf /usr/src/linux-source-{series}.tar.xz "
        f"-C src.new --strip-components=1 && mv src.new src; }}",
        "rm -f obj/.config",
        f"{mk} tinyconfig",
        f"src/scripts/kconfig/merge_config.sh -m -O obj obj/.config fragment.config",
        f"{mk} olddefconfig",
        f"{mk} rustavailable || true",
    ])
    util.log(f"{res['target']}: configuring {res['kernel']} from {res['kernel_source']} "
             f"{res['kernel_source_version']} + {res['kernel_config']}"
             + (f", starting from the build tree of {os.path.basename(reuse)}" if reuse else "")
             + f" (log: {logf})")
    r = build.in_root(root, tmp, script, logf, binds=[(tmp, MOUNT)])
    if r.returncode != 0:
        tail = "\n".join(open(logf, errors="replace").read().splitlines()[-15:])
        raise util.Fail(f"{res['target']}: configuring the kernel failed (log: {logf}):\n{tail}")
    bad = check_config(fragment_path(res), os.path.join(tmp, "obj", ".config"))
    if bad:
        raise util.Fail(f"{res['target']}: the kernel config lacks what {res['kernel_config']} "
                        f"asks (a dependency is missing): {', '.join(bad)} (log: {logf})")
    util.log(f"{res['target']}: building the kernel, {jobs} jobs (log: {logf})")
    t0 = time.time()
    nice = "nice -n 19 " if background else ""
    r = build.in_root(root, tmp, f"set -e; {nice}{mk} -j{jobs} bzImage modules", logf,
                      binds=[(tmp, MOUNT)])
    if r.returncode != 0:
        tail = "\n".join(open(logf, errors="replace").read().splitlines()[-15:])
        raise util.Fail(f"{res['target']}: the kernel build failed (log: {logf}):\n{tail}")
    rel = open(os.path.join(tmp, "obj", "include", "config", "kernel.release")).read().strip()
    if rel != res["kernel"]:
        raise util.Fail(f"{res['target']}: the kernel built is {rel}, not {res['kernel']}")
    rec = dict(rec, build_seconds=round(time.time() - t0), built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with open(os.path.join(tmp, "build.json"), "w") as f:
        json.dump(rec, f, indent=1)
    shutil.copy(os.path.join(tmp, "build.json"), os.path.join(logdir, "kernel.json"))
    os.rename(tmp, kdir)
    util.log(f"{res['target']}: kernel {res['kernel']} built in {rec['build_seconds']} s")
