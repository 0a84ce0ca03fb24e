"""The bounded fuzz run of the host tests: cargo-fuzz over the targets in fuzz/.

`install()` puts cargo-fuzz (CARGO_FUZZ_VERSION) in ~/.cache/ferrite/cargo-fuzz (setup
calls it; a fresh machine builds it once).  `run()` writes seeds made of real packets
(the host test engine::fuzz::tests::write_fuzz_seeds, into build/fuzz/seeds/), builds
every target, and runs each for its share of FERRITE_FUZZ_SECONDS (default 60 in all;
0 skips the run) on fuzz/corpus/<target>/ (kept between runs) plus the seeds.  A crash,
a leak or a hang fails the run and names the input libFuzzer wrote, under
fuzz/artifacts/<target>/; engine::fuzz::rx_packet (or wire_views) of those bytes replays
it as a host test, which is where the fix's regression test goes.

There is one toolchain, stable; cargo-fuzz's nightly flags (-Zsanitizer=address) are
let through with RUSTC_BOOTSTRAP=1, as the kernel build does for -Zbuild-std.
"""

import os
import re
import shutil
import signal
import subprocess

from . import util

TOP = util.TOP
FUZZ_DIR = os.path.join(TOP, "fuzz")
TARGETS = ["rx_packet", "wire_views"]
CARGO_FUZZ_VERSION = "0.13.2"
DEFAULT_SECONDS = 60


def bin_dir():
    return os.path.join(util.cache_dir(), "cargo-fuzz", "bin")


def _env():
    return {"RUSTC_BOOTSTRAP": "1",
            "PATH": bin_dir() + os.pathsep + os.environ.get("PATH", "")}


def install():
    """cargo-fuzz, built once into the cache; rebuilt when CARGO_FUZZ_VERSION changes."""
    exe = os.path.join(bin_dir(), "cargo-fuzz")
    if os.path.exists(exe):
        r = subprocess.run([exe, "--version"], capture_output=True, text=True)
        if r.stdout.split()[-1:] == [CARGO_FUZZ_VERSION]:
            return
    util.log(f"installing cargo-fuzz {CARGO_FUZZ_VERSION} into {os.path.dirname(bin_dir())}")
    util.run(["cargo", "install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked",
              "--root", os.path.dirname(bin_dir())], quiet=True)


def seconds():
    v = os.environ.get("FERRITE_FUZZ_SECONDS", str(DEFAULT_SECONDS))
    try:
        return max(0, int(v))
    except ValueError:
        raise util.Fail(f"FERRITE_FUZZ_SECONDS={v!r}: not a number of seconds")


def write_seeds(dest):
    """Seed inputs from the engines' real packets, as files in dest/<target>/."""
    shutil.rmtree(dest, ignore_errors=True)
    util.run(["cargo", "test", "-q", "-p", "ferrite-kmod", "--lib", "write_fuzz_seeds"],
             quiet=True, cwd=TOP, env={"FERRITE_FUZZ_SEEDS": dest})
    for t in TARGETS:
        if not os.listdir(os.path.join(dest, t)):
            raise util.Fail(f"no fuzz seeds for {t} in {dest}")


def _run_one(target, secs, seeds, logf):
    """One bounded run; returns (ok, what libFuzzer said at the end, crash file)."""
    corpus = os.path.join(FUZZ_DIR, "corpus", target)
    os.makedirs(corpus, exist_ok=True)
    cmd = ["cargo", "fuzz", "run", target, corpus, os.path.join(seeds, target), "--",
           f"-max_total_time={secs}", "-timeout=10", "-print_final_stats=1"]
    env = dict(os.environ)
    env.update(_env())
    with open(logf, "wb") as f:
        f.write(("$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        p = subprocess.Popen(cmd, cwd=FUZZ_DIR, env=env, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=secs + 120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return False, f"no end after {secs + 120} s", None
    text = open(logf, errors="replace").read()
    m = re.findall(r"Test unit written to (\S+)", text)
    crash = os.path.join(FUZZ_DIR, m[-1]) if m else None
    done = re.findall(r"^#(\d+)\s+DONE\s.*?exec/s: (\d+)", text, re.M)
    if rc == 0:
        runs, rate = done[-1] if done else ("?", "?")
        return True, f"{runs} runs, {rate} exec/s", None
    panic = re.search(r"^thread .*panicked at (.*)\n(.*)$", text, re.M)
    if panic:
        return False, f"panic at {panic.group(1)} {panic.group(2).strip()}", crash
    why = re.findall(r"^==\d+== ?ERROR: (.*)$", text, re.M)
    return False, (why[0] if why else f"exit {rc}"), crash


def run():
    """The bounded fuzz run; returns findings (empty: all well)."""
    secs = seconds()
    if secs == 0:
        util.log("fuzz: skipped (FERRITE_FUZZ_SECONDS=0)")
        return []
    install()
    out = util.build_dir("fuzz")
    seeds = os.path.join(out, "seeds")
    util.log("fuzz: seeds from the host tests' packets")
    write_seeds(seeds)
    util.log("fuzz: building the targets (cargo fuzz build)")
    env = _env()
    util.run(["cargo", "fuzz", "build"], cwd=FUZZ_DIR, env=env,
             logfile=os.path.join(out, "build.log"))
    bad = []
    share = max(1, secs // len(TARGETS))
    for t in TARGETS:
        logf = os.path.join(out, f"{t}.log")
        util.log(f"fuzz: {t} for {share} s")
        ok, what, crash = _run_one(t, share, seeds, logf)
        if ok:
            util.log(f"fuzz: {t}: {what}")
            continue
        where = f"; input: {crash} (replay: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {t} {crash})" \
            if crash else ""
        bad.append(f"{t}: {what}{where}; log: {logf}")
    return bad
