"""Building ferrite.ko: the Rust object once, then compat probes and Kbuild per target.

The Rust object is target-independent (it sees the kernel only through
compat/ferrite_compat.h), so it is built once on the host.  Everything that touches a
kernel tree runs inside that target's root with the target release's own compiler:
the probes that write compat/config.h, and the Kbuild of ferrite.ko.
"""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess

from . import kernel, keys, rootfs, targets, util

TOP = util.TOP

# Codegen for a kernel-ready object (docs/design.md, "The Rust object").
RUST_FLAGS = [
    "-Crelocation-model=static", "-Ccode-model=kernel", "-Cno-redzone=y",
    "-Cforce-unwind-tables=n", "-Cjump-tables=n",
    # Without it LLVM reaches memcpy & co. through the GOT: "Unknown rela relocation: 9".
    "-Zplt=yes",
    # The kernel's mitigations, as arch/x86/Makefile sets them for C.
    "-Zcf-protection=branch", "-Zretpoline-external-thunk", "-Zindirect-branch-cs-prefix",
    "-Zfunction-return=thunk-extern", "-Zpatchable-function-entry=16,16",
]

RUST_OBJ = os.path.join(TOP, "build", "rust", "ferrite_rust.o")

# What the Rust object may leave for the kernel or compat layer to define.
ALLOWED_UNDEFINED = re.compile(
    r"^(ferrite_k_\w+|memcpy|memmove|memset|memcmp|bcmp|__x86_indirect_thunk_\w+|"
    r"__x86_return_thunk|__fentry__)$")


def build_rust(logf):
    """Build kmod/ into build/rust/ferrite_rust.o (one relocatable object)."""
    util.build_dir("rust")
    env = {"RUSTC_BOOTSTRAP": "1", "RUSTFLAGS": " ".join(RUST_FLAGS),
           "CARGO_TARGET_DIR": os.path.join(TOP, "build", "rust-target")}
    util.run(["cargo", "rustc", "-q", "-p", "ferrite-kmod", "--release",
              "--target", "x86_64-unknown-none", "-Zbuild-std=core,alloc",
              "--crate-type", "staticlib"], env=env, logfile=logf, cwd=TOP)
    lib = os.path.join(TOP, "build", "rust-target", "x86_64-unknown-none", "release",
                       "libferrite_kmod.a")
    nm = subprocess.run(["nm", "--defined-only", "-g", lib], capture_output=True,
                        text=True, check=True).stdout
    roots = sorted({ln.split()[-1] for ln in nm.splitlines()
                    if re.search(r" T ferrite_rs_\w+$", ln)})
    if not roots:
        raise util.Fail("the Rust staticlib exports no ferrite_rs_* symbol")
    # compiler_builtins is left out: it brings weak memcpy/memset that would shadow the
    # kernel's.  Anything else it would have provided shows up as an undefined symbol
    # in check_rust_object() below.
    members = os.path.join(TOP, "build", "rust", "members")
    shutil.rmtree(members, ignore_errors=True)
    os.makedirs(members)
    util.run(["ar", "x", lib], cwd=members, logfile=logf)
    objs = sorted(os.path.join(members, m) for m in os.listdir(members)
                  if m.endswith(".o") and not m.startswith("compiler_builtins"))
    cmd = ["ld", "-r", "--gc-sections", "-o", RUST_OBJ]
    for r in roots:
        cmd += ["-u", r]
    util.run(cmd + objs, logfile=logf)
    # Embedded LLVM bitcode is for LTO only; modpost rejects the sections.
    util.run(["objcopy", "--remove-section=.llvmbc", "--remove-section=.llvmcmd", RUST_OBJ],
             logfile=logf)
    check_rust_object(RUST_OBJ)
    return RUST_OBJ


def check_rust_object(obj):
    """Refuse an object the kernel's module loader or Kbuild would trip over."""
    rel = subprocess.run(["readelf", "-rW", obj], capture_output=True, text=True,
                         check=True).stdout
    bad = sorted(set(re.findall(r"R_X86_64_(?:REX_)?GOTPC\w*", rel)))
    if bad:
        raise util.Fail(f"{obj}: GOT relocations {bad}; the module loader rejects them")
    syms = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    undef, mem_defined = [], []
    for ln in syms.splitlines():
        parts = ln.split()
        if len(parts) == 2 and parts[0] == "U" and not ALLOWED_UNDEFINED.match(parts[1]):
            undef.append(parts[1])
        if len(parts) == 3 and parts[1] in "TWtw" and parts[2] in (
                "memcpy", "memmove", "memset", "memcmp", "bcmp"):
            mem_defined.append(parts[2])
    if undef:
        raise util.Fail(f"{obj}: needs symbols outside the compat interface: {undef}")
    if mem_defined:
        raise util.Fail(f"{obj}: defines {mem_defined}; the kernel's must be used")


def rdma_core_release(res):
    """Upstream rdma-core release of a resolved target: "44.0-2" -> "44.0"."""
    return res["rdma_core"].split("-")[0].split("+")[0]


# Newest glibc symbol version the provider may import: it must load on every target.
PROVIDER_GLIBC_MAX = (2, 17)


# What the provider imports from libibverbs (public verbs, private provider ABI).
LIBIBVERBS_SYMBOL = re.compile(r"^(ibv_|_verbs_|verbs_)")


def build_provider(res, logdir, root):
    """Build provider/ for the target's rdma-core; returns the installed file name.

    It is linked against the target root's own libibverbs.so.1, as rdma-core's
    providers are, so that it loads into any process that has libibverbs, however
    libibverbs itself was loaded (docs/design.md, "The provider").
    """
    rel = rdma_core_release(res)
    tdir = os.path.join(TOP, "build", "provider-target", rel)
    logf = os.path.join(logdir, "provider.log")
    if os.path.exists(logf):
        os.unlink(logf)
    libibverbs = os.path.join(root, "usr", "lib", "x86_64-linux-gnu", "libibverbs.so.1")
    if not os.path.isfile(libibverbs):
        raise util.Fail(f"{res['target']}: the root has no {libibverbs} to link the provider against")
    util.run(["cargo", "build", "-q", "-p", "ferrite-provider", "--release", "--lib"],
             env={"FERRITE_RDMA_CORE": rel, "FERRITE_LIBIBVERBS": libibverbs,
                  "CARGO_TARGET_DIR": tdir}, logfile=logf, cwd=TOP)
    so = os.path.join(tdir, "release", "libferrite_provider.so")
    dyn = subprocess.run(["objdump", "-T", so], capture_output=True, text=True, check=True).stdout
    m = re.search(r"verbs_register_driver_(\d+)", dyn)
    if not m:
        raise util.Fail(f"{so}: registers with no libibverbs provider ABI")
    for maj, mnr in re.findall(r"GLIBC_(\d+)\.(\d+)", dyn):
        if (int(maj), int(mnr)) > PROVIDER_GLIBC_MAX:
            raise util.Fail(f"{so}: imports GLIBC_{maj}.{mnr}; it must load with older glibc too")
    check_provider_links_libibverbs(so, m.group(1))
    name = f"libferrite-rdmav{m.group(1)}.so"
    shutil.copy(so, os.path.join(logdir, name))
    util.log(f"{res['target']}: provider {name} for rdma-core {rel}")
    return name


def check_provider_links_libibverbs(so, pabi):
    """Refuse a provider that relies on libibverbs being in the global symbol scope.

    It must name libibverbs.so.1 as NEEDED, and bind every libibverbs import to a
    version: IBVERBS_PRIVATE_<PABI> for the provider ABI, IBVERBS_1.x for public verbs.
    Otherwise a process that loaded libibverbs with dlopen(RTLD_LOCAL) cannot load it.
    """
    dyn = subprocess.run(["readelf", "-dW", so], capture_output=True, text=True,
                         check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    if "libibverbs.so.1" not in needed:
        raise util.Fail(f"{so}: no NEEDED libibverbs.so.1 (it has {needed}); it would load "
                        f"only where libibverbs is in the global scope (FERRITE_LIBIBVERBS unset?)")
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", so], capture_output=True, text=True,
                          check=True).stdout
    allowed = re.compile(rf"^(IBVERBS_PRIVATE_{pabi}|IBVERBS_1\.\d+)$")
    bad = []
    for ln in syms.splitlines():
        f = ln.split()
        # Num: Value Size Type Bind Vis Ndx Name[@Version (n)]
        if len(f) < 8 or f[6] != "UND":
            continue
        sym, _, ver = f[7].partition("@")
        ver = ver.lstrip("@")
        if LIBIBVERBS_SYMBOL.match(sym) and not allowed.match(ver):
            bad.append(f"{sym}@{ver}" if ver else f"{sym} (unversioned)")
    if bad:
        raise util.Fail(f"{so}: libibverbs imports not bound to IBVERBS_PRIVATE_{pabi} or "
                        f"IBVERBS_1.x: {', '.join(sorted(bad))}")


def make_package(name, res, root, logdir, provider):
    """The target's driver-update packages and its signed apt repository, from which
    the boot test installs ferrite (scripts/lib/package.py); returns what was made."""
    from . import package
    old = os.path.join(logdir, f"ferrite-{name}.tar.gz")
    if os.path.exists(old):
        os.unlink(old)  # the tar.gz the packages replace
    return package.make_package(name, res, root, logdir, provider)


def probe_names():
    names = []
    with open(os.path.join(TOP, "compat", "probes.list")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                names.append(line.split()[0])
    on_disk = {os.path.basename(p)[:-2] for p in glob.glob(os.path.join(TOP, "compat/probes/*.c"))}
    if set(names) != on_disk:
        raise util.Fail(f"compat/probes.list and compat/probes/*.c disagree: "
                        f"{sorted(set(names) ^ on_disk)}")
    return names


def in_root(root, mod_dir, script, logf, binds=()):
    """Run `script` (sh) inside the target root with mod_dir bind-mounted at /mnt.

    `binds` are more (host path, path in the root) bind mounts, such as a self-built
    kernel's tree (scripts/lib/kernel.py).
    """
    extra = "".join(f"mkdir -p \"$2{inside}\"; mount --bind {shlex.quote(host)} \"$2{inside}\"; "
                    for host, inside in binds)
    inner = ("set -e; mount --bind \"$1\" \"$2/mnt\"; " + extra +
             "mount -t proc proc \"$2/proc\"; "
             "exec chroot \"$2\" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "
             "/bin/sh -c \"$3\"")
    return util.run(["unshare", "-m", "sh", "-c", inner, "sh", mod_dir, root, script],
                    logfile=logf, check=False)


def run_probes(root, res, mod, logdir):
    """Run compat/run-probes.sh against the target's headers, in its root.

    The script is the one probe runner: ferrite-dkms runs the same file on the user's
    machine (packaging/dkms.conf).  It writes mod/compat/config.h; each probe's log is
    kept as build/<target>/probes/NAME.log.  Returns {probe: bool}.
    """
    names = probe_names()
    kdir = f"/usr/src/linux-headers-{res['kernel']}"
    cdir = os.path.join(mod, "compat")
    shutil.rmtree(os.path.join(cdir, "probes"), ignore_errors=True)
    shutil.copytree(os.path.join(TOP, "compat", "probes"), os.path.join(cdir, "probes"))
    for f in ("probes.list", "run-probes.sh"):
        shutil.copy(os.path.join(TOP, "compat", f), cdir)
    config = os.path.join(cdir, "config.h")
    if os.path.exists(config):
        os.unlink(config)
    pdir = os.path.join(logdir, "probes")
    shutil.rmtree(pdir, ignore_errors=True)
    os.makedirs(pdir)
    logf = os.path.join(pdir, "run-probes.log")
    r = in_root(root, mod, f"sh /mnt/compat/run-probes.sh {kdir} {res.get('make_vars', '')}",
                logf, kernel.binds(res, root))
    for n in names + ["FERRITE_BASELINE"]:
        plog = os.path.join(mod, "probes", n + ".log")
        if os.path.exists(plog):
            shutil.copy(plog, pdir)
    if r.returncode != 0 or not os.path.exists(config):
        tail = "\n".join(open(logf, errors="replace").read().splitlines()[-12:])
        raise util.Fail(f"{res['target']}: compat/run-probes.sh failed, so no probe can be "
                        f"trusted (log: {logf}):\n{tail}")
    text = open(config).read()
    results = {n: f"#define {n} 1" in text.splitlines() for n in names}
    for n in names:
        ok = results[n]
        util.log(f"{res['target']}: probe {n}: {'yes' if ok else 'no'}"
                 + ("" if ok else f" (log: {os.path.relpath(os.path.join(pdir, n + '.log'), TOP)})"))
    return results


# Build output that means the build is not clean.
DIRTY = re.compile(r"warning:|WARNING:|objtool:.*(warning|error)|Error \d|error:", re.I)


def sign_module(root, res, mod, logdir):
    """Sign ferrite.ko with the test key, using the target kernel's own sign-file.

    Two more copies go beside it for the signature tests: ferrite-unsigned.ko, and
    ferrite-wrongkey.ko, signed with a key the kernel does not trust.
    """
    logf = os.path.join(logdir, "sign.log")
    if os.path.exists(logf):
        os.unlink(logf)
    kdir = f"/usr/src/linux-headers-{res['kernel']}"
    shutil.copy(os.path.join(mod, "ferrite.ko"), os.path.join(logdir, "ferrite-unsigned.ko"))
    shutil.copy(os.path.join(mod, "ferrite.ko"), os.path.join(mod, "ferrite-wrongkey.ko"))
    for kname, ko in (("test", "ferrite.ko"), ("untrusted", "ferrite-wrongkey.ko")):
        pem, der = keys.key(kname)
        shutil.copy(pem, os.path.join(mod, f"{kname}.pem"))
        shutil.copy(der, os.path.join(mod, f"{kname}.x509"))
        r = in_root(root, mod, f"{kdir}/scripts/sign-file sha256 /mnt/{kname}.pem "
                    f"/mnt/{kname}.x509 /mnt/{ko}", logf, kernel.binds(res, root))
        os.unlink(os.path.join(mod, f"{kname}.pem"))
        if r.returncode != 0:
            raise util.Fail(f"{res['target']}: sign-file failed (log: {logf})")
    shutil.copy(os.path.join(mod, "ferrite.ko"), os.path.join(logdir, "ferrite.ko"))
    shutil.copy(os.path.join(mod, "ferrite-wrongkey.ko"), logdir)
    r = in_root(root, mod, "modinfo -F signer /mnt/ferrite.ko > /mnt/signer", logf)
    signer = open(os.path.join(mod, "signer")).read().strip() if r.returncode == 0 else ""
    if signer != keys.SUBJECTS["test"]:
        raise util.Fail(f"{res['target']}: signed ferrite.ko names signer '{signer}'")
    util.log(f"{res['target']}: ferrite.ko signed by '{signer}'")
    return signer


def build_target(name):
    """Build ferrite.ko for one target; returns a dict describing the build."""
    logdir = util.build_dir(name)
    root, res = rootfs.ensure(name, logdir)
    logf = os.path.join(logdir, "build.log")
    if os.path.exists(logf):
        os.unlink(logf)
    if not os.path.exists(RUST_OBJ):
        build_rust(os.path.join(TOP, "build", "rust", "build.log"))
    mod = os.path.join(logdir, "mod")
    shutil.rmtree(mod, ignore_errors=True)
    os.makedirs(os.path.join(mod, "rust"))
    shutil.copytree(os.path.join(TOP, "compat"), os.path.join(mod, "compat"),
                    ignore=shutil.ignore_patterns("probes", "probes.list"))
    shutil.copy(os.path.join(TOP, "Kbuild"), mod)
    shutil.copy(RUST_OBJ, os.path.join(mod, "rust", "ferrite_rust.bin"))
    probes = run_probes(root, res, mod, logdir)
    kdir = f"/usr/src/linux-headers-{res['kernel']}"
    util.log(f"{name}: building ferrite.ko against {res['kernel']} (log: {os.path.relpath(logf, TOP)})")
    r = in_root(root, mod, f"make -C {kdir} {res.get('make_vars', '')} M=/mnt modules", logf,
                kernel.binds(res, root))
    text = open(logf, errors="replace").read()
    ko = os.path.join(mod, "ferrite.ko")
    if r.returncode != 0 or not os.path.exists(ko):
        tail = "\n".join(text.splitlines()[-15:])
        raise util.Fail(f"{name}: Kbuild failed (log: {logf})\n{tail}")
    dirty = [ln for ln in text.splitlines() if DIRTY.search(ln) and not ln.startswith("$ ")]
    if dirty:
        raise util.Fail(f"{name}: the build is not clean (log: {logf}):\n" + "\n".join(dirty[:20]))
    # Kbuild records each object's command in its .cmd file: objtool must be in the
    # Rust object's (per-object trees) or the linked module object's (IBT trees).
    cmds = ""
    for c in (os.path.join(mod, "rust", ".ferrite_rust.o.cmd"), os.path.join(mod, ".ferrite.o.cmd")):
        if os.path.exists(c):
            cmds += open(c, errors="replace").read()
    objtool_rust = "objtool" in cmds
    if not objtool_rust:
        raise util.Fail(f"{name}: objtool did not run over the Rust code (see {mod}/rust/.ferrite_rust.o.cmd)")
    shutil.copy(ko, os.path.join(logdir, "ferrite.ko"))
    signer = None
    if targets.get(name).get("sign"):
        signer = sign_module(root, res, mod, logdir)
    provider = build_provider(res, logdir, root)
    # The provider's mirrored public layouts, checked against this release's headers.
    shutil.copy(os.path.join(TOP, "provider", "layout-check.c"), mod)
    llog = os.path.join(logdir, "provider-layout.log")
    r = in_root(root, mod, "gcc -fsyntax-only -Wall -Werror /mnt/layout-check.c", llog)
    if r.returncode != 0:
        tail = "\n".join(open(llog, errors="replace").read().splitlines()[-8:])
        raise util.Fail(f"{name}: rdma-core {rdma_core_release(res)} does not have the layout "
                        f"provider/src/sys.rs mirrors (log: {llog}):\n{tail}")
    # The control-path test program, built in the root against its libibverbs.
    shutil.copy(os.path.join(TOP, "tests", "guest", "verbs-ctl.c"), mod)
    clog = os.path.join(logdir, "verbs-ctl.log")
    r = in_root(root, mod, "gcc -O2 -Wall -Werror -o /mnt/verbs-ctl /mnt/verbs-ctl.c -libverbs", clog)
    if r.returncode != 0:
        raise util.Fail(f"{name}: tests/guest/verbs-ctl.c does not build (log: {clog})")
    shutil.copy(os.path.join(mod, "verbs-ctl"), logdir)
    # The RTLD_LOCAL loader test: libibverbs through dlopen only, never linked.
    shutil.copy(os.path.join(TOP, "tests", "guest", "dlopen-local.c"), mod)
    dlog = os.path.join(logdir, "dlopen-local.log")
    r = in_root(root, mod, "gcc -O2 -Wall -Werror -o /mnt/dlopen-local /mnt/dlopen-local.c -ldl", dlog)
    if r.returncode != 0:
        raise util.Fail(f"{name}: tests/guest/dlopen-local.c does not build (log: {dlog})")
    shutil.copy(os.path.join(mod, "dlopen-local"), logdir)
    # The malformed-packet checks (tests/guest/malformed.sh): the packet sender, libc
    # only, whose ICRC must first match known packets' (selftest), and the idle
    # connection the forged packets aim at.
    for prog, libs, check in (("rocegen", "", "/mnt/rocegen selftest"),
                              ("rc-hold", " -libverbs", "true")):
        shutil.copy(os.path.join(TOP, "tests", "guest", f"{prog}.c"), mod)
        plog = os.path.join(logdir, f"{prog}.log")
        r = in_root(root, mod, f"gcc -O2 -Wall -Werror -o /mnt/{prog} /mnt/{prog}.c{libs} && {check}",
                    plog)
        if r.returncode != 0:
            raise util.Fail(f"{name}: tests/guest/{prog}.c does not build or check (log: {plog})")
        shutil.copy(os.path.join(mod, prog), logdir)
    # The byte-checking RDMA test client: built once (in the oldest root) for all.
    from . import testclient
    shutil.copy(testclient.build_testclient(), os.path.join(logdir, "ferrite-testclient"))
    package = make_package(name, res, root, logdir, provider)
    info = {"resolved": res, "probes": probes, "root": root,
            "objtool_over_rust": objtool_rust, "provider": provider, "package": package,
            "signer": signer}
    if kernel.is_source_target(res):
        kj = os.path.join(kernel.cache_path(root, res)[0], "build.json")
        info["kernel_record"] = json.load(open(kj))
    with open(os.path.join(logdir, "build.json"), "w") as f:
        json.dump(info, f, indent=1)
    util.log(f"{name}: built {os.path.relpath(os.path.join(logdir, 'ferrite.ko'), TOP)}")
    return info
