"""Targets: read targets.toml and resolve each target against what Debian serves now.

A target names a kernel *series* (a glob over the ABI name) and a preferred *pin*.
Resolution reads the suites' package indices with a private apt configuration (the
host's sources are never touched) and picks the pin if it is still served, else the
newest ABI of the series, saying so.  The result is a plain dict that is recorded next
to every build and every boot result.
"""

import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib

from . import util

TOP = util.TOP


def load():
    with open(os.path.join(TOP, "targets.toml"), "rb") as f:
        return tomllib.load(f)


def names():
    return list(load().keys())


def default_names():
    """The targets `test` and `build all` take when none is named."""
    return [n for n, t in load().items() if t.get("in_all", True)]


def get(name):
    t = load()
    if name not in t:
        raise util.Fail(f"unknown target '{name}'; known targets: {', '.join(t)}")
    d = dict(t[name])
    d["name"] = name
    return d


def mirrors():
    """The Debian mirror and security mirror, as configured on this host.

    FERRITE_DEBIAN_MIRROR / FERRITE_SECURITY_MIRROR override them.
    """
    main = os.environ.get("FERRITE_DEBIAN_MIRROR")
    sec = os.environ.get("FERRITE_SECURITY_MIRROR")
    uris = []
    paths = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        paths += [os.path.join(d, f) for f in sorted(os.listdir(d))
                  if f.endswith((".list", ".sources"))]
    for p in paths:
        try:
            text = open(p).read()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                uris += line.split()[1:]
            elif line.startswith("deb "):
                parts = [x for x in line.split() if not x.startswith("[")]
                parts = [x for x in parts if "=" not in x]
                if len(parts) > 1:
                    uris.append(parts[1])
    for u in uris:
        u = u.rstrip("/")
        if main is None and re.search(r"/debian$", u):
            main = u
        if sec is None and re.search(r"/debian-security$", u):
            sec = u
    if main is None:
        raise util.Fail("no Debian mirror in the host's apt sources; set FERRITE_DEBIAN_MIRROR")
    if sec is None:
        sec = main + "-security"
    return main, sec


def source_lines(suites):
    main, sec = mirrors()
    out = []
    for s in suites:
        uri = sec if s.endswith("-security") else main
        out.append(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {s} main")
    return out


class AptIndex:
    """apt-get/apt-cache over a private state directory for a set of suites."""

    def __init__(self, suites):
        self.suites = suites
        key = "-".join(suites)
        self.dir = os.path.join(util.cache_dir(), "apt", key)
        os.makedirs(os.path.join(self.dir, "lists", "partial"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "cache", "archives", "partial"), exist_ok=True)
        # Targets on the same suites share this directory; apt-get over it runs under
        # self.lock when targets are tested side by side (boottest.main).
        self.lock = util.step_lock(f"apt-{key}")
        self.sources = os.path.join(self.dir, "sources.list")
        text = "\n".join(source_lines(suites)) + "\n"
        with self.lock:
            if not os.path.exists(self.sources) or open(self.sources).read() != text:
                with open(self.sources + ".tmp", "w") as f:
                    f.write(text)
                os.rename(self.sources + ".tmp", self.sources)
        self.status = os.path.join(self.dir, "status")
        open(self.status, "a").close()

    def opts(self):
        return ["-o", f"Dir::Etc::SourceList={self.sources}",
                "-o", "Dir::Etc::SourceParts=/nonexistent",
                "-o", f"Dir::State::Lists={self.dir}/lists",
                "-o", f"Dir::Cache={self.dir}/cache",
                "-o", f"Dir::State::status={self.status}",
                "-o", "APT::Architecture=amd64",
                "-o", "Acquire::Languages=none",
                "-o", "Acquire::Check-Valid-Until=false"]

    def update(self, max_age=3600):
        stamp = os.path.join(self.dir, "updated")
        import time
        with self.lock:
            if os.path.exists(stamp) and time.time() - os.path.getmtime(stamp) < max_age:
                return
            util.run(["apt-get", "-q", "-q"] + self.opts() + ["update"], quiet=True)
            open(stamp, "w").close()

    def pkgnames(self, prefix):
        out = subprocess.run(["apt-cache"] + self.opts() + ["pkgnames", prefix],
                             check=True, capture_output=True, text=True).stdout
        return sorted(set(out.split()))

    def candidates(self, pkgs):
        """{package: candidate version or None}, from one apt-cache call."""
        if not pkgs:
            return {}
        out = subprocess.run(["apt-cache"] + self.opts() + ["policy"] + list(pkgs),
                             check=True, capture_output=True, text=True).stdout
        res = dict.fromkeys(pkgs)
        cur = None
        for line in out.splitlines():
            if line and not line[0].isspace() and line.endswith(":"):
                cur = line[:-1]
            elif cur in res:
                m = re.match(r"\s+Candidate:\s*(\S+)", line)
                if m and m.group(1) != "(none)":
                    res[cur] = m.group(1)
        return res

    def candidate(self, pkg):
        return self.candidates([pkg])[pkg]


def version_key(v):
    """Sort key for kernel ABI names like 6.12.117+deb13 or 5.10.0-32."""
    return [int(x) if x.isdigit() else x for x in re.split(r"[.\-+]", v)]


_resolved = {}


def resolve(name, refresh=True):
    """What target `name` resolves to now (memoised for this process)."""
    if name not in _resolved:
        _resolved[name] = _resolve(name, refresh)
    return dict(_resolved[name])


def _resolve_source(t, idx):
    """A target whose kernel ferrite builds from a linux-source package (kernel.py)."""
    src = t["source"]
    ver = idx.candidate(src)
    if not ver:
        raise util.Fail(f"{t['name']}: {', '.join(t['suites'])} serve no {src}")
    if not os.path.isfile(os.path.join(TOP, t["config"])):
        raise util.Fail(f"{t['name']}: no kernel config fragment {t['config']}")
    upstream = ver.split("-")[0].split("+")[0]
    rdma = idx.candidate("rdma-core")
    res = {
        "target": t["name"],
        "suites": t["suites"],
        "kernel": f"{upstream}-{t['flavour']}",
        "kernel_image_pkg": None,
        "kernel_source": src,
        "kernel_source_version": ver,
        "kernel_config": t["config"],
        # Make variables every build against this kernel needs (LLVM=1 for clang).
        "make_vars": t.get("make", ""),
        "kernel_pkg_version": f"{src} {ver}",
        "kernel_note": f"built by ferrite from {src} {ver} + {t['config']}",
        "rdma_core": rdma,
        "rdma_core_expected": t.get("rdma_core"),
    }
    if rdma and t.get("rdma_core") and not rdma.startswith(t["rdma_core"]):
        res["rdma_core_note"] = f"suite serves {rdma}, table says {t['rdma_core']}"
    return res


def _resolve(name, refresh):
    t = get(name)
    idx = AptIndex(t["suites"])
    if refresh:
        idx.update()
    if t.get("source"):
        return _resolve_source(t, idx)
    flav = t["flavour"]
    pat = re.compile(r"^linux-headers-(.+)-" + re.escape(flav) + r"$")
    series = []
    for p in idx.pkgnames("linux-headers-"):
        m = pat.match(p)
        if m and fnmatch.fnmatchcase(m.group(1), t["series"]):
            series.append(m.group(1))
    cands = idx.candidates([f"linux-image-{a}-{flav}{u}" for a in series for u in ("", "-unsigned")])
    abis = [a for a in series if cands[f"linux-image-{a}-{flav}"] or cands[f"linux-image-{a}-{flav}-unsigned"]]
    if not abis:
        raise util.Fail(f"{name}: no kernel of series '{t['series']}' ({flav}) "
                        f"in {', '.join(t['suites'])}")
    abis.sort(key=version_key)
    if t.get("pin") in abis:
        abi, note = t["pin"], "pinned"
    else:
        abi = abis[-1]
        note = f"pin {t.get('pin')} no longer served; newest of series {t['series']}"
    kver = f"{abi}-{flav}"
    image = f"linux-image-{kver}"
    if not idx.candidate(image):
        image += "-unsigned"
    rdma = idx.candidate("rdma-core")
    res = {
        "target": name,
        "suites": t["suites"],
        "kernel": kver,
        "kernel_image_pkg": image,
        "kernel_pkg_version": idx.candidate(image),
        "kernel_note": note,
        "rdma_core": rdma,
        "rdma_core_expected": t.get("rdma_core"),
    }
    if rdma and t.get("rdma_core") and not rdma.startswith(t["rdma_core"]):
        res["rdma_core_note"] = f"suite serves {rdma}, table says {t['rdma_core']}"
    return res


if __name__ == "__main__":
    for n in (sys.argv[1:] or names()):
        print(json.dumps(resolve(n), indent=1))
