#!/bin/bash
# ferrite-dkms in the target's root: what DKMS does with it, natively, because under
# TCG its build would outlast the boot test (see package.sh, "ferrite-dkms").
#
# scripts/lib/package.py runs this chrooted in a throwaway overlay of the root, with
# /ferrite laid out as in the guest.  Nothing here needs the target's kernel to be
# running: the kernel is $PKG_KVER, not uname -r.  The checks are package.sh's; their
# result lines go to /ferrite/out/results, which the boot test adds to its own, and
# the module DKMS built, with DKMS's certificate, to /ferrite/out/dkms/.

set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

OUT=/ferrite/out
RES=$OUT/results
mkdir -p "$OUT/dkms"
: > "$RES"
exec > "$OUT/root.log" 2>&1
set -x

DIAG=""
diag() { DIAG="$DIAG$*"$'\n'; }
result() { # result NAME STATUS
	if [ -n "$DIAG" ]; then
		printf '%s' "$DIAG" | sed 's/^/# /' >> "$RES"
		DIAG=""
	fi
	if [ "$2" -eq 0 ]; then
		echo "ok - $1" >> "$RES"
	else
		echo "not ok - $1" >> "$RES"
	fi
}
check() { # check NAME FUNCTION...
	local name=$1
	shift
	"$@"
	result "$name" $?
}
diag_file() { # diag_file FILE [MAX]
	local l
	head -n "${2:-40}" "$1" > /tmp/diag.$$ 2>/dev/null
	while read -r l; do diag "  $l"; done < /tmp/diag.$$
}
# No kernel runs here, so none has ferrite loaded.
ferrite_unloaded() { [ ! -d /sys/module/ferrite ]; }

. /ferrite/package.env
KVER=$PKG_KVER
. /ferrite/package.sh

check package_dkms_repository t_package_repository
check package_dkms_prebuilt_install t_package_install
check package_dkms_install_skips_prebuilt_kernel t_package_dkms_install
check package_dkms_upgrade t_package_dkms_upgrade
check package_dkms_takes_over_without_prebuilt t_package_dkms_takes_over
check package_dkms_prebuilt_wins t_package_dkms_prebuilt_wins
check package_dkms_build_exclusive t_package_dkms_build_exclusive
check package_dkms_purge t_package_purge
echo done > "$OUT/done"
