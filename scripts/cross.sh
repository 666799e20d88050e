#!/usr/bin/env bash
# Builds daemonkit for the Linux targets other than this machine's and prepares to run them here
# (Debian x86_64, as root): the arm64 glibc addon and supervisor, run by qemu-user through
# binfmt_misc with the arm64 Node of scripts/runtimes, and the static musl supervisors (x64 and
# arm64). __test__/platforms.test.js runs them. Safe to run again: every step checks first.
#
# Output: target/cross/daemonkit.linux-arm64-gnu.node and
# target/<rust target>/release/daemonkit-supervise for aarch64-unknown-linux-gnu,
# x86_64-unknown-linux-musl and aarch64-unknown-linux-musl.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -m)" != x86_64 ] || [ ! -e /etc/debian_version ]; then
  echo "scripts/cross.sh: written for Debian on x86_64 (this is $(uname -m)); nothing done" >&2
  exit 1
fi

# The cross linker, the emulator and the arm64 C and C++ runtime the arm64 Node needs.
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || missing+=(libc6-arm64-cross)
[ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || missing+=(libstdc++6-arm64-cross)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# binfmt_misc: mounted, and aarch64 ELF files handed to qemu. The kernel keeps registrations
# until reboot; an existing one is only (re-)enabled, never registered twice (that fails).
binfmt=/proc/sys/fs/binfmt_misc
mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt"
if [ -e "$binfmt/qemu-aarch64" ]; then
  grep -qx enabled "$binfmt/qemu-aarch64" || echo 1 >"$binfmt/qemu-aarch64"
else
  cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$binfmt/register"
fi
grep -qx enabled "$binfmt/qemu-aarch64"

# The arm64 dynamic loader where arm64 programs look for it, as Debian's libc6:arm64 would put it.
# Not QEMU_LD_PREFIX: qemu then looks up every absolute path in the prefix first, so "/" itself
# becomes /usr/aarch64-linux-gnu, and a path walked from "/" (as pidfiles are) goes wrong. The
# arm64 libraries are found through LD_LIBRARY_PATH, which x86_64 programs skip.
[ -e /lib/ld-linux-aarch64.so.1 ] || ln -s /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 /lib/ld-linux-aarch64.so.1

# Node 18, 22, 24 (x64) and 22 (arm64), pinned by scripts/runtimes/package-lock.json. --force:
# npm installs an arm64 package on x64 only when told to.
npm ci --force --no-audit --no-fund --prefix scripts/runtimes
LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib scripts/runtimes/node_modules/node22-arm64/bin/node \
  -e 'if (process.arch !== "arm64") process.exit(1); console.log(`arm64 Node ${process.version} runs under qemu-user`)'

rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl
# Debian's cross gcc links the arm64 builds; Rust's bundled musl (crt and libc.a) makes the
# musl supervisors static.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
npx napi build --platform --release --no-js --manifest-path crates/daemonkit-napi/Cargo.toml \
  --package-json-path package.json --output-dir target/cross --target aarch64-unknown-linux-gnu
cargo build --release -p daemonkit-supervisor \
  --target aarch64-unknown-linux-gnu --target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl
ls -l target/cross/daemonkit.linux-arm64-gnu.node target/{aarch64-unknown-linux-gnu,x86_64-unknown-linux-musl,aarch64-unknown-linux-musl}/release/daemonkit-supervise
