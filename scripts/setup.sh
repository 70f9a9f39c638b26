#!/usr/bin/env bash
# scripts/setup.sh: everything minicloud needs on a fresh Debian 12 machine of
# this project's kind (Rust is already there): Debian packages, then the
# guest images. Idempotent: a second run installs nothing and rebuilds
# nothing. Used by scripts/run.sh and scripts/test.sh.
#
#   scripts/setup.sh            packages + all images
#   scripts/setup.sh packages   packages only
set -euo pipefail
cd "$(dirname "$0")/.."

packages() {
	# The mini image: gcc, binutils (objdump for images/check-isa), make.
	echo gcc binutils make
	# The linux image and the emulated hardware-KVM host that boots it.
	images/linux/build.sh deps
	hypervisor/tests/hwkvm/run deps
	# Network namespaces and taps for tests; sqlite3 to inspect state.
	echo iproute2 sqlite3 ca-certificates curl python3 python3-venv
}

install_packages() {
	local want missing=()
	want=$(packages | tr ' ' '\n' | sort -u)
	for p in $want; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		echo "setup: installing Debian packages: ${missing[*]}"
		local sudo=""
		[[ $(id -u) == 0 ]] || sudo=sudo
		export DEBIAN_FRONTEND=noninteractive
		$sudo apt-get update -qq
		$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "setup: Debian packages present"
	fi
}

install_packages
if [[ ${1:-} != packages ]]; then
	echo "setup: building guest images (cached)"
	images/build all
fi
