#!/usr/bin/env bash
# scripts/run.sh: the main job, from a fresh machine.
#
# Today (compute core only): installs what is missing, builds minicloud and
# the guest images, and boots a first VM (the mini guest, 2 vCPUs, 256 MiB,
# a 64 MiB virtio-blk disk under ~/.local/share/minicloud/) with
# minicloud-vmm, its console on this terminal. Type `help` at the `mini#`
# prompt; `poweroff` ends it. The control plane (`minicloud serve`) takes
# over this script when it lands.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "run: building minicloud (release)"
cargo build --release --workspace --bins
images=${MINICLOUD_IMAGES:-$HOME/.cache/minicloud/images}
data=${MINICLOUD_DATA:-$HOME/.local/share/minicloud}
mkdir -p "$data"
disk=$data/first-vm.img
[[ -e $disk ]] || truncate -s 64M "$disk"

target/release/minicloud-vmm --probe-host
echo "run: booting the first VM (console below; 'help' lists commands, 'poweroff' ends it)"
args=(--kernel "$images/mini/kernel" --vcpus 2 --memory-mib 256 --disk "$disk"
	--cmdline "console=ttyS0")
if [[ ! -t 0 ]]; then
	# No terminal (CI, a pipe): show the VM working, then power it off.
	args=(--kernel "$images/mini/kernel" --vcpus 2 --memory-mib 256 --disk "$disk"
		--cmdline 'console=ttyS0 minicloud.run="info; blk-write 0 0 64 1; blk-verify 0 0 64 1; cpu-burn 1"')
fi
exec target/release/minicloud-vmm "${args[@]}"
