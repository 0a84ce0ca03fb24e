#!/bin/sh
# ferrite-dkms's POST_BUILD (dkms.conf): DKMS deletes the build directory once the
# module is built, so keep what the build decided beside DKMS's make.log: the
# probes' answers (compat/config.h) and the commands Kbuild ran for the Rust object
# (they show objtool running over it).
#
#   dkms-post-build.sh LOGDIR

set -u

log=${1:?usage: dkms-post-build.sh LOGDIR}
[ -d "$log" ] || exit 0
cp compat/config.h "$log/config.h"
cat rust/.ferrite_rust.o.cmd .ferrite.o.cmd > "$log/rust-object.cmd" 2>/dev/null
exit 0
