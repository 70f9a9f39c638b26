#!/usr/bin/env bash
# scripts/test.sh: every test of minicloud, from a fresh machine.
#
# Installs what is missing (scripts/setup.sh), checks formatting and lints,
# runs the whole workspace's unit and integration tests (they boot real
# mini-guest VMs on this machine's KVM), then boots the linux image on
# hardware KVM: natively where the host has VT-x/AMD-V, else inside an
# emulated AMD-SVM host under QEMU (hypervisor/tests/hwkvm/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "setup (packages, images)"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "Linux guests on hardware KVM (hwkvm)"
MINICLOUD_VMM=${MINICLOUD_VMM:-${CARGO_TARGET_DIR:-$PWD/target}/debug/minicloud-vmm} hypervisor/tests/hwkvm/run

step "all tests passed"
