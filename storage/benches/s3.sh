#!/usr/bin/env bash
# S3 benchmark: minicloud's storage (release `s3_server` example) side by
# side with s3s-fs 0.14 (the s3s project's filesystem server, installed from
# crates.io into ~/.cache/minicloud/s3s-fs), both on the same disk, both
# driven by storage/benches/s3_bench.py (boto3 in ~/.cache/minicloud/venv).
# Prints a markdown table (PUT/GET, 4 KiB ops/s, 1 MiB and 64 MiB MB/s,
# 1 and 16 clients).
#
#   storage/benches/s3.sh            # BENCH_SECONDS=5 per case by default
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${HOME}/.cache/minicloud"
VENV="$CACHE/venv"
if ! "$VENV/bin/python3" -c 'import boto3' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q boto3 awscli
fi
S3SFS="$CACHE/s3s-fs/bin/s3s-fs"
if [ ! -x "$S3SFS" ]; then
    cargo install s3s-fs --version "~0.14" --features binary --locked --root "$CACHE/s3s-fs"
fi
cargo build --release -p storage --example s3_server
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d "$TARGET/s3-bench.XXXXXX")"
AK=AKMCBENCHKEY00000001
SK=bench-secret-0123456789
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(port); P2=$(port)
S3_ACCESS_KEY=$AK S3_SECRET_KEY=$SK "$TARGET/release/examples/s3_server" "$WORK/minicloud" "127.0.0.1:$P1" >"$WORK/mc.log" 2>&1 &
pids+=($!)
mkdir -p "$WORK/s3s-fs"
"$S3SFS" --host 127.0.0.1 --port "$P2" --access-key $AK --secret-key $SK "$WORK/s3s-fs" >"$WORK/fs.log" 2>&1 &
pids+=($!)
sleep 1
out="$WORK/results.jsonl"
"$VENV/bin/python3" storage/benches/s3_bench.py "http://127.0.0.1:$P1" $AK $SK minicloud | tee -a "$out"
"$VENV/bin/python3" storage/benches/s3_bench.py "http://127.0.0.1:$P2" $AK $SK s3s-fs | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["server"], r["size"], r["clients"], r["op"]): r for r in rows}
print("\n| object | clients | op | minicloud | s3s-fs | ratio |")
print("|---|---|---|---|---|---|")
for size in ("4KiB", "1MiB", "64MiB"):
    for c in (1, 16):
        for op in ("put", "get"):
            a, b = by[("minicloud", size, c, op)], by[("s3s-fs", size, c, op)]
            k = "ops_per_s" if size == "4KiB" else "mb_per_s"
            unit = "ops/s" if k == "ops_per_s" else "MB/s"
            ratio = a[k] / b[k] if b[k] else float("nan")
            print(f"| {size} | {c} | {op.upper()} | {a[k]} {unit} | {b[k]} {unit} | {ratio:.2f}x |")
PY
