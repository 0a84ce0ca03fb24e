"""Small shared helpers for ferrite's build scripts: paths, running commands, errors."""

import os
import shlex
import subprocess
import sys
import threading

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Fail(Exception):
    """An error the user should read; printed without a traceback."""


def cache_dir():
    """Where fetched and built things that outlive a checkout live."""
    d = os.environ.get("FERRITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ferrite")
    os.makedirs(d, exist_ok=True)
    return d


def build_dir(*parts):
    d = os.path.join(TOP, "build", *parts)
    os.makedirs(d, exist_ok=True)
    return d


def log(msg):
    print(f"ferrite: {msg}", file=sys.stderr, flush=True)


def run(cmd, quiet=False, logfile=None, env=None, cwd=None, check=True):
    """Run a command; on failure raise Fail naming it and where its output went."""
    e = dict(os.environ)
    if env:
        e.update(env)
    if logfile:
        with open(logfile, "ab") as f:
            f.write(("$ " + shlex.join(cmd) + "\n").encode())
            f.flush()
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=e, cwd=cwd)
    elif quiet:
        r = subprocess.run(cmd, capture_output=True, env=e, cwd=cwd)
    else:
        r = subprocess.run(cmd, env=e, cwd=cwd)
    if check and r.returncode != 0:
        where = f" (log: {logfile})" if logfile else ""
        extra = ""
        if quiet and not logfile:
            extra = "\n" + (r.stdout or b"").decode(errors="replace")[-2000:] + \
                (r.stderr or b"").decode(errors="replace")[-2000:]
        raise Fail(f"command failed ({r.returncode}): {shlex.join(cmd)}{where}{extra}")
    return r


_locks = {}
_locks_guard = threading.Lock()


def step_lock(name):
    """A lock per named step that targets share (a root, the test client, the keys):
    the boot tests of two targets run side by side (boottest.main), and such a step
    must run once, not twice at the same time.  Re-entrant."""
    with _locks_guard:
        return _locks.setdefault(name, threading.RLock())
