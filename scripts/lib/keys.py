"""Module-signing keys for tests: a trusted test key and an untrusted one.

Both are X.509 certificates with their RSA private keys, made with openssl in the form
the kernel's sign-file and CONFIG_MODULE_SIG_KEY take (key and certificate in one PEM
file, the certificate also as DER).  They live in ~/.cache/ferrite/keys and are made
once per machine.  The `debug` kernel trusts the "test" key (it is built in); the
"untrusted" key exists so that a test can show a wrongly signed module being refused.
"""

import os

from . import util

SUBJECTS = {
    "test": "ferrite test module signing key",
    "untrusted": "ferrite untrusted test key",
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


def key(name):
    """(pem, x509) paths of test key `name`, made on first use."""
    d = os.path.join(util.cache_dir(), "keys")
    os.makedirs(d, exist_ok=True)
    pem = os.path.join(d, f"{name}.pem")
    der = os.path.join(d, f"{name}.x509")
    if os.path.exists(pem) and os.path.exists(der):
        return pem, der
    cnf = os.path.join(d, f"{name}.cnf")
    with open(cnf, "w") as f:
        f.write(GENKEY.format(cn=SUBJECTS[name]))
    tmp = pem + ".tmp"
    util.run(["openssl", "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "36500",
              "-batch", "-x509", "-config", cnf, "-outform", "PEM", "-out", tmp,
              "-keyout", tmp], quiet=True)
    util.run(["openssl", "x509", "-in", tmp, "-outform", "DER", "-out", der], quiet=True)
    os.chmod(tmp, 0o600)
    os.rename(tmp, pem)
    return pem, der
