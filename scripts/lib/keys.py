"""Signing keys: module-signing keys for sign-file, and the apt repository's key.

Module-signing keys are X.509 certificates with their RSA private keys, made with
openssl in the form the kernel's sign-file and CONFIG_MODULE_SIG_KEY take (key and
certificate in one PEM file, the certificate also as DER).  They live in
~/.cache/ferrite/keys and are made once per machine:

  test       the `debug` kernel trusts it (it is built in);
  untrusted  a key no kernel trusts, so that a test can show a wrongly signed module
             being refused;
  vendor     the key the driver-update packages are signed with by default
             (`scripts/ferrite keygen` makes it; packages can name another key file
             or a PKCS#11 URI instead, see signing_key()).

The repository key is an OpenPGP key (ed25519) in a GnuPG home of its own, made by
`scripts/ferrite keygen` or on first use; it signs the Release files of build/dist/.
A vendor names their own with FERRITE_REPO_KEY (a fingerprint in GNUPGHOME).
"""

import os
import re
import subprocess

from . import util

SUBJECTS = {
    "test": "ferrite test module signing key",
    "untrusted": "ferrite untrusted test key",
    "vendor": "ferrite vendor module signing key",
}

# OpenPGP user IDs of the generated repository keys: the one that signs, and one
# that signs nothing, for the test that apt refuses a repository it cannot verify.
REPO_UIDS = {
    "repo": "ferrite repository signing key (generated for tests)",
    "repo-untrusted": "ferrite untrusted repository key (signs nothing)",
}

# The extensions the kernel asks of a module-signing certificate
# (Documentation/admin-guide/module-signing.rst): a leaf that signs code.
GENKEY = """[ req ]
default_bits = 2048
distinguished_name = dn
prompt = no
string_mask = utf8only
x509_extensions = ext

[ dn ]
O = ferrite
CN = {cn}

[ ext ]
basicConstraints = critical,CA:FALSE
keyUsage = digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def keys_dir():
    return os.path.join(util.cache_dir(), "keys")


def key(name, directory=None, cn=None):
    with util.step_lock("keys"):
        return _key(name, directory, cn)


def _key(name, directory=None, cn=None):
    """(pem, x509) paths of key `name`, made on first use (in `directory`, default
    ~/.cache/ferrite/keys, with subject CN `cn`, default SUBJECTS[name])."""
    d = directory or keys_dir()
    os.makedirs(d, exist_ok=True)
    pem = os.path.join(d, f"{name}.pem")
    der = os.path.join(d, f"{name}.x509")
    if os.path.exists(pem) and os.path.exists(der):
        return pem, der
    cnf = os.path.join(d, f"{name}.cnf")
    with open(cnf, "w") as f:
        f.write(GENKEY.format(cn=cn or SUBJECTS[name]))
    tmp = pem + ".tmp"
    util.run(["openssl", "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "36500",
              "-batch", "-x509", "-config", cnf, "-outform", "PEM", "-out", tmp,
              "-keyout", tmp], quiet=True)
    util.run(["openssl", "x509", "-in", tmp, "-outform", "DER", "-out", der], quiet=True)
    os.chmod(tmp, 0o600)
    os.rename(tmp, pem)
    return pem, der


class SigningKey:
    """What sign-file takes: `key` (a PEM file or a pkcs11: URI) and `cert` (a
    certificate file, DER or PEM), plus the certificate's subject CN, which
    `modinfo -F signer` shows for a module it signed."""

    def __init__(self, key, cert):
        self.key, self.cert = key, cert
        self.signer = cert_cn(cert)
        self.pkcs11 = key.startswith("pkcs11:")

    def cert_pem(self):
        """The certificate as PEM text (for verifying a signature with openssl)."""
        fmt = "DER" if open(self.cert, "rb").read(1) == b"\x30" else "PEM"
        return subprocess.run(["openssl", "x509", "-inform", fmt, "-in", self.cert],
                              capture_output=True, check=True, text=True).stdout


def cert_cn(cert):
    fmt = "DER" if open(cert, "rb").read(1) == b"\x30" else "PEM"
    r = subprocess.run(["openssl", "x509", "-inform", fmt, "-in", cert, "-noout", "-subject",
                        "-nameopt", "multiline"], capture_output=True, text=True)
    m = re.search(r"commonName\s*=\s*(.+)", r.stdout)
    if r.returncode != 0 or not m:
        raise util.Fail(f"{cert}: not an X.509 certificate with a subject CN")
    return m.group(1).strip()


def signing_key(spec=None, cert=None):
    """The key that signs packaged modules.

    `spec` (else FERRITE_MODULE_KEY): a PEM file holding the private key and its
    certificate (as `keygen` makes them), a PEM private key with `cert` (else
    FERRITE_MODULE_CERT) naming the certificate, or a PKCS#11 URI ("pkcs11:...",
    which sign-file hands to OpenSSL; `cert` is then required).  Without either, the
    vendor key in ~/.cache/ferrite/keys, made on first use.
    """
    spec = spec or os.environ.get("FERRITE_MODULE_KEY")
    cert = cert or os.environ.get("FERRITE_MODULE_CERT")
    if not spec:
        pem, der = key("vendor")
        return SigningKey(pem, der)
    if spec.startswith("pkcs11:"):
        if not cert:
            raise util.Fail("a PKCS#11 key needs its certificate: --cert FILE (or FERRITE_MODULE_CERT)")
        return SigningKey(spec, os.path.abspath(cert))
    spec = os.path.abspath(spec)
    if not os.path.isfile(spec):
        raise util.Fail(f"module-signing key {spec}: no such file")
    text = open(spec, "rb").read()
    if b"PRIVATE KEY-----" not in text:
        raise util.Fail(f"module-signing key {spec}: no PEM private key in it")
    if not cert:
        if b"-----BEGIN CERTIFICATE-----" not in text:
            raise util.Fail(f"module-signing key {spec} holds no certificate: give --cert FILE")
        cert = spec
    return SigningKey(spec, os.path.abspath(cert))


def _gpg(home, *args, **kw):
    return subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty",
                           "--pinentry-mode", "loopback", "--passphrase", ""] + list(args),
                          capture_output=True, text=True, **kw)


def gpg_fingerprint(home, uid=None):
    out = _gpg(home, "--with-colons", "--list-secret-keys", *( [uid] if uid else [])).stdout
    fprs = [ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")]
    return fprs[0] if fprs else None


class RepoKey:
    """An OpenPGP key that signs repository Release files: GnuPG home, fingerprint,
    and the public key as a binary keyring (what apt's signed-by= takes)."""

    def __init__(self, home, fpr, keyring, generated=True):
        self.home, self.fpr, self.keyring = home, fpr, keyring
        self.generated = generated

    def stop_agent(self):
        """Stop the gpg-agent signing started, in a GnuPG home of ours only."""
        if self.generated:
            subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "gpg-agent"],
                           capture_output=True)


def repo_key(name="repo", directory=None):
    with util.step_lock("keys"):
        return _repo_key(name, directory)


def _repo_key(name="repo", directory=None):
    """The generated repository key `name` (REPO_UIDS), made on first use."""
    d = directory or keys_dir()
    home = os.path.join(d, f"{name}.gnupg")
    keyring = os.path.join(d, f"{name}.gpg")
    fpr = gpg_fingerprint(home) if os.path.isdir(home) else None
    if not fpr:
        os.makedirs(home, mode=0o700, exist_ok=True)
        os.chmod(home, 0o700)
        r = _gpg(home, "--quick-generate-key", REPO_UIDS[name], "ed25519", "sign", "never")
        fpr = gpg_fingerprint(home)
        if r.returncode != 0 or not fpr:
            raise util.Fail(f"gpg could not make the repository key in {home}:\n{r.stderr[-1500:]}")
        util.log(f"made repository key {fpr} ({REPO_UIDS[name]}) in {home}")
    if not os.path.exists(keyring):
        r = _gpg(home, "--yes", "--export", "-o", keyring + ".tmp", fpr)
        if r.returncode != 0:
            raise util.Fail(f"gpg --export {fpr} failed: {r.stderr[-800:]}")
        os.rename(keyring + ".tmp", keyring)
    k = RepoKey(home, fpr, keyring)
    k.stop_agent()
    return k


def vendor_repo_key():
    """The key that signs build/dist: FERRITE_REPO_KEY (a fingerprint or user ID in
    GNUPGHOME, default ~/.gnupg), else the generated one."""
    want = os.environ.get("FERRITE_REPO_KEY")
    if not want:
        return repo_key()
    home = os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg")
    fpr = gpg_fingerprint(home, want)
    if not fpr:
        raise util.Fail(f"FERRITE_REPO_KEY={want}: no such secret key in {home}")
    keyring = os.path.join(util.build_dir("dist-key"), "repo.gpg")
    r = _gpg(home, "--yes", "--export", "-o", keyring, fpr)
    if r.returncode != 0:
        raise util.Fail(f"gpg --export {fpr} failed: {r.stderr[-800:]}")
    return RepoKey(home, fpr, keyring, generated=False)


def keygen(path=None, cn=None):
    """`scripts/ferrite keygen`: the vendor's module-signing key (PATH.pem, PATH.x509;
    default ~/.cache/ferrite/keys/vendor) and the repository key beside it.  An existing
    key is kept, never overwritten.  Returns what to tell the user."""
    if path:
        path = os.path.abspath(path)
        d, name = os.path.dirname(path), os.path.basename(path)
        if name.endswith(".pem"):
            name = name[:-4]
    else:
        d, name = keys_dir(), "vendor"
    existed = os.path.exists(os.path.join(d, f"{name}.pem"))
    pem, der = key(name, d, cn or SUBJECTS.get(name, SUBJECTS["vendor"]))
    rk = repo_key("repo", d)
    lines = [f"module-signing key: {pem} ({'kept' if existed else 'made'}; signer "
             f"'{cert_cn(der)}')",
             f"its certificate (DER, for mokutil --import): {der}",
             f"repository key: {rk.fpr} in {rk.home}; public keyring {rk.keyring}"]
    rk.stop_agent()
    return lines
