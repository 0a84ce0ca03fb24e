"""Driver-update packages, as vendors ship them, and the signed apt repository.

For each target, the build (scripts/lib/build.py) ends in make_package(), which makes:

  ferrite-modules-<kernel ABI>  ferrite.ko for that kernel, under updates/ of its module
                                tree: stripped of debug information, its package version
                                written into its .modinfo ("version"), then signed with
                                the target kernel's own sign-file, inside the target's
                                root.  It depends on that exact kernel image package.
  ferrite-provider              libferrite-rdmav<PABI>.so and /etc/libibverbs.d/
                                ferrite.driver, depending on the libibverbs1 versions
                                that have the layout it was built for.
  ferrite-dkms                  (arch all) the compat sources, the probes and their
                                runner, Kbuild and the prebuilt Rust object, for DKMS;
                                BUILD_EXCLUSIVE_KERNEL is the release's kernel series.
  ferrite                       the metapackage: the provider, and the prebuilt module
                                of one of the release's kernels, else ferrite-dkms.

They are Debian packages built by debhelper and dh-dkms (dpkg-buildpackage -b) from
packaging/, with maintainer scripts that run depmod and, on an upgrade, reload the
module and make its devices again (packaging/reload.sh).  Every version comes from
VERSION (upstream-revision); each release gets "+deb<N>" appended, so that one pool
can hold every release's packages and a release upgrade upgrades them.  The newest
entry of packaging/changelog must be VERSION.

Then a per-target repository (build/<target>/repo, reprepro, signed with the
repository key) holds the target's packages in the suite of its release; it is what
the boot test installs from (tests/guest/package.sh).  build/<target>/repo-next holds
the same packages built once more with a newer version ("+next1"), for the upgrade
test only.  Where the root has DKMS (rootfs.DKMS_TARGETS), dkms_in_root() installs
ferrite-dkms from that repository in a throwaway overlay of the root and lets DKMS
build there, natively: under TCG the build would outlast the boot test.  The guest
gets the results and the module DKMS built.  `scripts/ferrite package` gathers the packages of many targets into the
vendor's repository, build/dist/, and runs lintian over them.

Which key signs the modules: the target's `sign` key where targets.toml asks for one
(the debug kernel trusts the test key); otherwise the vendor key
(keys.signing_key(): FERRITE_MODULE_KEY / --key, a PEM file or a PKCS#11 URI,
default the key `scripts/ferrite keygen` makes).  The repository key is
keys.vendor_repo_key().

A target whose kernel ferrite builds itself (the debug target) is not a Debian kernel:
its ferrite-modules package depends on no image package, and it gets no
ferrite-dkms and no metapackage.  It stays out of build/dist.
"""

import datetime
import email.utils
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import time

from . import build, kernel, keys, rootfs, targets, util

TOP = util.TOP
PACKAGING = os.path.join(TOP, "packaging")

# Debian releases by the codename of their first suite, for the "+deb<N>" suffix.
RELEASES = {"bullseye": 11, "bookworm": 12, "trixie": 13, "forky": 14, "sid": 14}

# The version suffix of the packages that only the upgrade test installs.
NEXT = "+next1"

# What the DKMS package carries, from the tree (compat/config.h is made per kernel).
DKMS_FILES = ["Kbuild", "compat/*.c", "compat/*.h", "compat/probes.list",
              "compat/probes/*.c", "compat/run-probes.sh"]


def version():
    """The package version from VERSION, checked against packaging/changelog and the
    Cargo workspace's version."""
    v = open(os.path.join(TOP, "VERSION")).read().strip()
    if not re.fullmatch(r"\d+(\.\d+)*-\d+", v):
        raise util.Fail(f"VERSION '{v}' is not UPSTREAM-REVISION (e.g. 0.1.0-1)")
    top = open(os.path.join(PACKAGING, "changelog")).readline()
    m = re.match(r"^ferrite \(([^)]+)\)", top)
    if not m or m.group(1) != v:
        raise util.Fail(f"packaging/changelog's newest entry is {m.group(1) if m else '?'}, "
                        f"VERSION says {v}: add a changelog entry for {v}")
    cargo = open(os.path.join(TOP, "Cargo.toml")).read()
    cm = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S)
    if cm and cm.group(1) != v.split("-")[0]:
        raise util.Fail(f"Cargo.toml's workspace version is {cm.group(1)}, VERSION says "
                        f"{v.split('-')[0]}")
    return v


def suite_of(res):
    s = res["suites"][0]
    if s not in RELEASES:
        raise util.Fail(f"{res['target']}: no Debian release number known for suite {s} "
                        f"(scripts/lib/package.py RELEASES)")
    return s


def package_version(suite, nxt=False):
    return f"{version()}+deb{RELEASES[suite]}" + (NEXT if nxt else "")


def release_targets(suite):
    """The distro-kernel targets of a release, in targets.toml's order, resolved."""
    out = []
    for n in targets.names():
        t = targets.get(n)
        if t["suites"][0] == suite and not t.get("source"):
            out.append(targets.resolve(n))
    return out


def _glob_regex(glob_):
    """A targets.toml series glob as a POSIX extended regular expression."""
    return "".join("[^-]*" if c == "*" else re.escape(c) if c in ".+?()[]{}|^$\\" else c
                   for c in glob_)


def build_exclusive(suite):
    """BUILD_EXCLUSIVE_KERNEL of the release's ferrite-dkms: its series and flavours."""
    alts = []
    for n in targets.names():
        t = targets.get(n)
        if t["suites"][0] == suite and not t.get("source"):
            a = f"{_glob_regex(t['series'])}-{re.escape(t['flavour'])}"
            if a not in alts:
                alts.append(a)
    return "^(" + "|".join(alts) + ")$"


def provider_range(res):
    """The libibverbs1 versions the provider built for this rdma-core speaks.

    Its private ABI generation is the one provider/build.rs picks (33, 34 for v34-v56,
    65), and within generation 34 the layout of struct ibv_qp_ex moves at v44 and v45
    (provider/src/sys.rs, QP_EX_TAIL): a build serves only the releases that share both.
    """
    major = int(build.rdma_core_release(res).split(".")[0])
    if major == 33:
        lo, hi = 33, 34
    elif 34 <= major <= 56:
        lo, hi = (34, 44) if major < 44 else (44, 45) if major == 44 else (45, 57)
    elif major == 65:
        lo, hi = 65, 66
    else:
        raise util.Fail(f"{res['target']}: no provider ABI range known for rdma-core {major}")
    return f"libibverbs1 (>= {lo}~), libibverbs1 (<< {hi}~)"


def module_tree(root, res):
    """Where the target's kernel packages keep modules: "lib/modules" or "usr/lib/modules"
    (from the file lists of the packages rootfs.py recorded; a kernel ferrite builds is
    installed in /usr/lib/modules)."""
    if kernel.is_source_target(res):
        return "usr/lib/modules"
    kver = res["kernel"]
    for lst in glob.glob(os.path.join(root, "var/lib/dpkg/info", f"linux-*{kver}*.list")):
        for line in open(lst):
            if line.startswith(f"/usr/lib/modules/{kver}/kernel"):
                return "usr/lib/modules"
            if line.startswith(f"/lib/modules/{kver}/kernel"):
                return "lib/modules"
    raise util.Fail(f"{res['target']}: no recorded kernel package ships modules for {kver} "
                    f"(a root from before rootfs.register_kernel_packages?)")


def _maintainer():
    for line in open(os.path.join(PACKAGING, "changelog")):
        m = re.match(r"^ -- (.+?)  ", line)
        if m:
            return m.group(1)
    raise util.Fail("packaging/changelog has no maintainer line")


def sign_key_for(name):
    """The key a target's packaged module is signed with (see the module docstring)."""
    t = targets.get(name)
    if t.get("sign"):
        pem, der = keys.key("test")
        return keys.SigningKey(pem, der)
    return keys.signing_key()


def prepare_module(name, res, root, logdir, key, ver, out):
    """ferrite.ko as the package ships it, at `out`: stripped of debug information,
    `ver` in its .modinfo, signed by `key` with the kernel's sign-file, in the root."""
    src = os.path.join(logdir, "ferrite-unsigned.ko")
    if not os.path.exists(src):
        src = os.path.join(logdir, "ferrite.ko")
    work = os.path.join(logdir, "pkgmod")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    shutil.copy(src, os.path.join(work, "ferrite.ko"))
    shutil.copy(key.cert, os.path.join(work, "signing.cert"))
    keyarg = key.key
    if not key.pkcs11:
        fd = os.open(os.path.join(work, "signing.key"), os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(open(key.key, "rb").read())
        keyarg = "/mnt/signing.key"
    kdir = f"/usr/src/linux-headers-{res['kernel']}"
    logf = os.path.join(logdir, "package-module.log")
    script = "\n".join([
        "set -e",
        "cd /mnt",
        "strip --strip-debug ferrite.ko",
        "objcopy -O binary --only-section=.modinfo ferrite.ko modinfo.bin",
        f"printf 'version=%s\\000' '{ver}' >> modinfo.bin",
        "objcopy --update-section .modinfo=modinfo.bin ferrite.ko",
        f"{kdir}/scripts/sign-file sha256 '{keyarg}' /mnt/signing.cert ferrite.ko",
        "for f in version signer vermagic; do echo \"$f=$(modinfo -F $f ferrite.ko)\"; done > fields",
    ])
    try:
        r = build.in_root(root, work, script, logf, kernel.binds(res, root))
    finally:
        if os.path.exists(os.path.join(work, "signing.key")):
            os.unlink(os.path.join(work, "signing.key"))
    if r.returncode != 0:
        raise util.Fail(f"{name}: preparing the packaged ferrite.ko failed (log: {logf})")
    ko = os.path.join(work, "ferrite.ko")
    # What the target's own modinfo reads in the result.
    got = dict(ln.split("=", 1) for ln in open(os.path.join(work, "fields")).read().splitlines())
    if got["version"] != ver or got["signer"] != key.signer or \
            not got["vermagic"].startswith(res["kernel"] + " "):
        raise util.Fail(f"{name}: the packaged ferrite.ko says {got}; expected version {ver}, "
                        f"signer '{key.signer}', vermagic {res['kernel']}")
    shutil.move(ko, out)
    shutil.rmtree(work)


def _fill(text, subst):
    for k, v in subst.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise util.Fail(f"packaging: unfilled {sorted(set(left))}")
    return text


def _paragraphs(control, keep):
    pars = control.strip("\n").split("\n\n")
    out = [pars[0]]
    for p in pars[1:]:
        pkg = re.match(r"Package: (\S+)", p).group(1)
        if keep(pkg):
            out.append(p)
    return "\n\n".join(out) + "\n"


def _changelog(suite, ver, nxt):
    """packaging/changelog with an entry on top for this release's build (and one more
    for the upgrade test's build).  Their dates are the newest entry's plus a minute
    each, so that a build is the same whenever it runs."""
    base = open(os.path.join(PACKAGING, "changelog")).read()
    m = re.search(r"^ -- (.+?)  (.+)$", base, re.M)
    who, when = m.group(1), email.utils.parsedate_to_datetime(m.group(2))
    entries = [(ver[:-len(NEXT)] if nxt else ver, f"  * Built for Debian {RELEASES[suite]} ({suite}).\n")]
    if nxt:
        entries.append((ver, "  * Test build with a newer version: what the boot test "
                             "upgrades to.\n"))
    head = ""
    for i, (v, body) in enumerate(entries, 1):
        date = email.utils.format_datetime(when + datetime.timedelta(minutes=i))
        head = f"ferrite ({v}) {suite}; urgency=medium\n\n{body}\n -- {who}  {date}\n\n" + head
    return head + base


def build_debs(name, res, root, logdir, provider, nxt=False):
    """Build the target's packages; returns their paths (in build/<target>/debs[-next])."""
    suite = suite_of(res)
    ver = package_version(suite, nxt)
    upstream = ver.split("-")[0]
    kver = res["kernel"]
    distro = not kernel.is_source_target(res)
    out = os.path.join(logdir, "debs-next" if nxt else "debs")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    work = os.path.join(logdir, "pkg-next" if nxt else "pkg")
    shutil.rmtree(work, ignore_errors=True)
    tree = os.path.join(work, f"ferrite-{upstream}")
    deb = os.path.join(tree, "debian")
    stage = os.path.join(tree, "stage")
    os.makedirs(os.path.join(deb, "source"))
    for d in ("module", "provider", "dkms/rust"):
        os.makedirs(os.path.join(stage, d))

    # The module, signed, and its install path.
    key = sign_key_for(name)
    prepare_module(name, res, root, logdir, key, ver, os.path.join(stage, "module", "ferrite.ko"))
    tree_dir = module_tree(root, res)
    mods = f"ferrite-modules-{kver}"
    # With a DKMS-built ferrite.ko for the same kernel (updates/dkms/), depmod would
    # take either: this file makes it take the prebuilt one.
    with open(os.path.join(stage, "module", f"ferrite-modules-{kver}.conf"), "w") as f:
        f.write(open(os.path.join(PACKAGING, "depmod.conf")).read().replace("@KVER@", kver))
    depmod_d = "usr/lib/depmod.d" if tree_dir.startswith("usr/") else "lib/depmod.d"
    with open(os.path.join(deb, f"{mods}.install"), "w") as f:
        f.write(f"stage/module/ferrite.ko {tree_dir}/{kver}/updates/\n"
                f"stage/module/ferrite-modules-{kver}.conf {depmod_d}/\n")
    # The provider.
    shutil.copy(os.path.join(logdir, provider), os.path.join(stage, "provider"))
    with open(os.path.join(stage, "provider", "ferrite.driver"), "w") as f:
        f.write("driver ferrite\n")
    with open(os.path.join(deb, "ferrite-provider.install"), "w") as f:
        f.write(f"stage/provider/{provider} usr/lib/x86_64-linux-gnu/libibverbs/\n"
                "stage/provider/ferrite.driver etc/libibverbs.d/\n")
    # The DKMS source tree.
    if distro:
        for pat in DKMS_FILES:
            for src in sorted(glob.glob(os.path.join(TOP, pat))):
                dst = os.path.join(stage, "dkms", os.path.relpath(src, TOP))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
        shutil.copy(build.RUST_OBJ, os.path.join(stage, "dkms", "rust", "ferrite_rust.bin"))
        shutil.copy2(os.path.join(PACKAGING, "dkms-post-build.sh"), os.path.join(stage, "dkms"))
        with open(os.path.join(deb, "ferrite-dkms.install"), "w") as f:
            f.write(f"stage/dkms/* usr/src/ferrite-{upstream}/\n")

    rel = release_targets(suite) if distro else []
    abis = [r["kernel"] for r in rel]
    regex = build_exclusive(suite) if distro else ""
    if distro:
        image = f"linux-image-{kver} | linux-image-{kver}-unsigned"
    else:
        image = ""
    modules_alts = " | ".join([f"ferrite-modules-{a} (= ${{binary:Version}})" for a in abis] +
                              ["ferrite-dkms (= ${source:Version})"])
    subst = {
        "MAINTAINER": _maintainer(), "KVER": kver,
        "IMAGE_DEPENDS": image, "PABI": re.search(r"rdmav(\d+)", provider).group(1),
        "RDMA_CORE": build.rdma_core_release(res), "LIBIBVERBS_DEPENDS": provider_range(res),
        "MODULES_DEPENDS": modules_alts, "ABIS": ", ".join(abis) or "-",
        "BUILD_EXCLUSIVE_KERNEL": regex,
    }
    keep = {mods, "ferrite-provider"} | ({"ferrite-dkms", "ferrite"} if distro else set())
    control = _fill(open(os.path.join(PACKAGING, "control.in")).read(), subst)
    control = control.replace("kmod, \n", "kmod\n")
    with open(os.path.join(deb, "control"), "w") as f:
        f.write(_paragraphs(control, lambda p: p in keep))
    with open(os.path.join(deb, "changelog"), "w") as f:
        f.write(_changelog(suite, ver, nxt))
    shutil.copy(os.path.join(PACKAGING, "copyright"), deb)
    shutil.copy(os.path.join(PACKAGING, "rules"), deb)
    with open(os.path.join(deb, "source", "format"), "w") as f:
        f.write("1.0\n")
    reload_sh = open(os.path.join(PACKAGING, "reload.sh")).read().rstrip("\n")
    scripts = {f"{mods}.postinst": "modules.postinst", f"{mods}.prerm": "modules.prerm",
               f"{mods}.postrm": "modules.postrm"}
    if distro:
        scripts.update({"ferrite-dkms.prerm": "dkms.prerm", "ferrite-dkms.postinst": "dkms.postinst",
                        "ferrite.postinst": "ferrite.postinst"})
        shutil.copy(os.path.join(PACKAGING, "ferrite-dkms.lintian-overrides"), deb)
        with open(os.path.join(deb, "ferrite-dkms.dkms"), "w") as f:
            f.write(_fill(open(os.path.join(PACKAGING, "dkms.conf.in")).read(), subst))
    for dst, src in scripts.items():
        text = open(os.path.join(PACKAGING, src)).read().replace("@RELOAD@", reload_sh)
        with open(os.path.join(deb, dst), "w") as f:
            f.write(_fill(text, subst))

    logf = os.path.join(logdir, "package-next.log" if nxt else "package.log")
    if os.path.exists(logf):
        os.unlink(logf)
    env = {"DEB_BUILD_OPTIONS": "noautodbgsym", "LC_ALL": "C.UTF-8"}
    util.run(["dpkg-buildpackage", "-b", "-us", "-uc", "-d", "--no-sign"], logfile=logf,
             cwd=tree, env=env)
    debs = sorted(glob.glob(os.path.join(work, "*.deb")))
    names = {os.path.basename(d).split("_")[0] for d in debs}
    if names != keep:
        raise util.Fail(f"{name}: dpkg-buildpackage made {sorted(names)}, expected "
                        f"{sorted(keep)} (log: {logf})")
    for d in debs:
        shutil.move(d, out)
    return sorted(glob.glob(os.path.join(out, "*.deb")))


def make_repository(out, suites, key, logf):
    """A reprepro repository at `out` with suite -> [.deb] in component main, its
    Release files signed with `key` (keys.RepoKey); the public key beside it as
    ferrite-archive-keyring.gpg.  Replaces what was at `out`."""
    state = out + ".state"
    for d in (out, state):
        shutil.rmtree(d, ignore_errors=True)
    conf = os.path.join(state, "conf")
    os.makedirs(conf)
    with open(os.path.join(conf, "distributions"), "w") as f:
        for s in suites:
            f.write(f"Origin: ferrite\nLabel: ferrite\nCodename: {s}\n"
                    f"Architectures: amd64\nComponents: main\n"
                    f"Description: ferrite driver-update packages for Debian "
                    f"{RELEASES[s]} ({s})\nSignWith: {key.fpr}\n\n")
    base = ["reprepro", "--basedir", state, "--outdir", out, "--confdir", conf,
            "--dbdir", os.path.join(state, "db"), "--silent"]
    env = {"GNUPGHOME": key.home}
    # Two targets build side by side (boottest.main) and sign with the same key: one
    # signing at a time, or one's stop_agent() kills the agent the other's export is
    # signing with (reprepro then fails with 251).
    with util.step_lock("keys"):
        try:
            for s, debs in suites.items():
                util.run(base + ["includedeb", s] + list(debs), logfile=logf, env=env)
            util.run(base + ["export"], logfile=logf, env=env)
        finally:
            key.stop_agent()
    for s in suites:
        rel = os.path.join(out, "dists", s, "InRelease")
        r = subprocess.run(["gpgv", "--keyring", key.keyring, rel], capture_output=True, text=True)
        if r.returncode != 0:
            raise util.Fail(f"{rel} does not verify with {key.keyring}:\n{r.stderr}")
    shutil.copy(key.keyring, os.path.join(out, "ferrite-archive-keyring.gpg"))
    shutil.rmtree(state)
    return out


def make_package(name, res, root, logdir, provider):
    """The target's packages and its repositories (see the module docstring)."""
    t0 = time.time()
    suite = suite_of(res)
    debs = build_debs(name, res, root, logdir, provider)
    debs_next = build_debs(name, res, root, logdir, provider, nxt=True)
    t1 = time.time()
    rkey = keys.vendor_repo_key()
    logf = os.path.join(logdir, "repository.log")
    if os.path.exists(logf):
        os.unlink(logf)
    make_repository(os.path.join(logdir, "repo"), {suite: debs}, rkey, logf)
    make_repository(os.path.join(logdir, "repo-next"), {suite: debs_next}, rkey, logf)
    key = sign_key_for(name)
    with open(os.path.join(logdir, "signing.pem"), "w") as f:
        f.write(key.cert_pem())
    t2 = time.time()
    tags = lintian(debs, os.path.join(logdir, "lintian.log")).splitlines()
    info = {"suite": suite, "version": package_version(suite),
            "next_version": package_version(suite, True),
            "packages": [os.path.basename(d) for d in debs], "signer": key.signer,
            "repo_key": rkey.fpr, "seconds_packages": round(t1 - t0, 1),
            "seconds_repository": round(t2 - t1, 1),
            "lintian": tags, "seconds_lintian": round(time.time() - t2, 1)}
    with open(os.path.join(logdir, "package.json"), "w") as f:
        json.dump(info, f, indent=1)
    # The same for tests/guest/package.sh, as shell variables.
    env = {"PKG_SUITE": suite, "PKG_KVER": res["kernel"], "PKG_VERSION": info["version"],
           "PKG_NEXT_VERSION": info["next_version"], "PKG_SIGNER": key.signer,
           "PKG_UPSTREAM": info["version"].split("-")[0],
           "PKG_DISTRO": "no" if kernel.is_source_target(res) else "yes"}
    with open(os.path.join(logdir, "package.env"), "w") as f:
        f.write("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    dkms = os.path.join(logdir, "dkms")
    shutil.rmtree(dkms, ignore_errors=True)
    if res["target"] in rootfs.DKMS_TARGETS:
        t2 = time.time()
        dkms_in_root(name, root, logdir)
        info["seconds_dkms_in_root"] = round(time.time() - t2, 1)
        with open(os.path.join(logdir, "package.json"), "w") as f:
            json.dump(info, f, indent=1)
    util.log(f"{name}: packages {', '.join(info['packages'])} in {info['seconds_packages']} s; "
             f"repositories in {info['seconds_repository']} s")
    return info


def dkms_in_root(name, root, logdir):
    """Run tests/guest/package-root.sh in a throwaway overlay of the target's root:
    apt-get installs ferrite, then ferrite-dkms, from the target's repository, and
    DKMS builds natively (under TCG it would outlast the boot test).  Its results
    and the module DKMS built land in build/<target>/dkms/ for the guest."""
    share = os.path.join(logdir, "dkms-share")
    work = os.path.join(logdir, "dkms-overlay")
    for d in (share, work):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(share, "out"))
    for d in ("u", "w", "m"):
        os.makedirs(os.path.join(work, d))
    for d in ("repo", "repo-next"):
        shutil.copytree(os.path.join(logdir, d), os.path.join(share, d))
    for src, dst in guest_files(name, with_dkms=False):
        if not os.path.isdir(src):
            shutil.copy(src, os.path.join(share, dst))
    for f in ("package.sh", "package-root.sh"):
        shutil.copy(os.path.join(TOP, "tests", "guest", f), share)
    logf = os.path.join(logdir, "dkms-in-root.log")
    if os.path.exists(logf):
        os.unlink(logf)
    inner = ('set -e; m="$2/m"; '
             'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/u,workdir=$2/w" "$m"; '
             'mkdir -p "$m/ferrite"; mount --bind "$3" "$m/ferrite"; '
             'mount -t proc proc "$m/proc"; mount -t tmpfs tmpfs "$m/run"; '
             'mount -t tmpfs tmpfs "$m/tmp"; '
             'exec chroot "$m" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root '
             '/bin/bash /ferrite/package-root.sh')
    util.log(f"{name}: ferrite-dkms in the root (log: {os.path.relpath(logf, TOP)})")
    r = util.run(["unshare", "-m", "sh", "-c", inner, "sh", root, work, share], logfile=logf,
                 check=False)
    out = os.path.join(logdir, "dkms")
    shutil.copytree(os.path.join(share, "out"), out)
    with open(os.path.join(out, "where"), "w") as f:
        f.write(f"tests/guest/package-root.sh in an overlay of {root} (exit {r.returncode}; "
                f"log build/{name}/dkms/root.log)\n")
    if not os.path.exists(os.path.join(out, "done")):
        with open(os.path.join(out, "results"), "a") as f:
            f.write(f"# package-root.sh did not finish (exit {r.returncode}, log {logf})\n"
                    "not ok - package_dkms_in_root\n")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(share, ignore_errors=True)


def guest_files(name, with_dkms=True):
    """(host path, name in the guest's /ferrite) of what tests/guest/package.sh uses."""
    logdir = util.build_dir(name)
    untrusted = keys.repo_key("repo-untrusted")
    upem, _ = keys.key("untrusted")
    out = [(os.path.join(logdir, "repo"), "repo"), (os.path.join(logdir, "repo-next"), "repo-next"),
           (os.path.join(logdir, "signing.pem"), "signing.pem"),
           (untrusted.keyring, "repo-untrusted.gpg")]
    cert = subprocess.run(["openssl", "x509", "-in", upem], capture_output=True, text=True,
                          check=True).stdout
    upath = os.path.join(logdir, "untrusted.pem")
    with open(upath, "w") as f:
        f.write(cert)
    out.append((upath, "untrusted.pem"))
    out.append((os.path.join(logdir, "package.env"), "package.env"))
    if with_dkms and os.path.isdir(os.path.join(logdir, "dkms")):
        out.append((os.path.join(logdir, "dkms"), "dkms"))
    return out


def lintian(debs, logf):
    """lintian over `debs`; returns its output (tags), also written to `logf`.
    The overrides it honours are packaging/*.lintian-overrides, each justified there."""
    r = subprocess.run(["lintian", "--allow-root", "--tag-display-limit", "0", "-I"] + list(debs),
                       capture_output=True, text=True)
    text = r.stdout + r.stderr
    with open(logf, "w") as f:
        f.write(text)
    return text


def dist(names):
    """build/dist: the vendor's repository, from the packages of the targets named
    (each target's build/<target>/debs), one suite per release; where targets of a
    release built the same release-wide package (provider, DKMS, metapackage), the
    first target's in targets.toml order is published."""
    t0 = time.time()
    order = [n for n in targets.names() if n in names]
    suites, seen = {}, {}
    for n in order:
        res = targets.resolve(n)
        if kernel.is_source_target(res):
            util.log(f"{n}: a kernel ferrite builds itself; its packages stay out of build/dist")
            continue
        debs = sorted(glob.glob(os.path.join(util.build_dir(n), "debs", "*.deb")))
        if not debs:
            raise util.Fail(f"{n}: no packages in build/{n}/debs")
        s = suite_of(res)
        for d in debs:
            pkg = os.path.basename(d).split("_")[0]
            if (s, pkg) in seen:
                continue
            seen[(s, pkg)] = n
            suites.setdefault(s, []).append(d)
    if not suites:
        raise util.Fail("no packages to publish")
    out = os.path.join(TOP, "build", "dist")
    logf = os.path.join(TOP, "build", "dist.log")
    if os.path.exists(logf):
        os.unlink(logf)
    rkey = keys.vendor_repo_key()
    make_repository(out, suites, rkey, logf)
    t1 = time.time()
    alldebs = [d for ds in suites.values() for d in ds]
    text = lintian(alldebs, os.path.join(TOP, "build", "lintian.txt"))
    info = {"suites": {s: [os.path.basename(d) for d in ds] for s, ds in suites.items()},
            "repo_key": rkey.fpr, "seconds_repository": round(t1 - t0, 1),
            "seconds_lintian": round(time.time() - t1, 1), "lintian": text.splitlines()}
    with open(os.path.join(out, "contents.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info
