"""PUT/GET throughput against an S3 endpoint with N client processes
(botocore, SigV4, one keep-alive connection each).

usage: s3_bench.py ENDPOINT ACCESS_KEY SECRET_KEY LABEL
Prints one JSON line per case: {"server", "size", "clients", "op",
"ops_per_s", "mb_per_s"}. Sizes: 4 KiB (timed by count), 1 MiB, 64 MiB.
"""

import json
import multiprocessing as mp
import os
import sys
import time

import boto3
from botocore.config import Config

EP, AK, SK, LABEL = sys.argv[1:5]
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CASES = [(4096, "4KiB"), (1 << 20, "1MiB"), (64 << 20, "64MiB")]
CLIENTS = [1, 16]


def client():
    return boto3.client(
        "s3", endpoint_url=EP, aws_access_key_id=AK, aws_secret_access_key=SK,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path", "payload_signing_enabled": False},
                      retries={"max_attempts": 1}, max_pool_connections=1,
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


def worker(args):
    op, size, wid, bucket, deadline_s = args
    c = client()
    body = os.urandom(size)
    keys = [f"w{wid}/k{i}" for i in range(2 if size >= (64 << 20) else 8)]
    if op == "get":
        for k in keys:
            c.put_object(Bucket=bucket, Key=k, Body=body)
    n = 0
    nbytes = 0
    start = time.time()
    end = start + deadline_s
    min_ops = 2 if size >= (64 << 20) else 1
    while time.time() < end or n < min_ops:
        k = keys[n % len(keys)]
        if op == "put":
            c.put_object(Bucket=bucket, Key=k, Body=body)
        else:
            r = c.get_object(Bucket=bucket, Key=k)
            for chunk in r["Body"].iter_chunks(1 << 20):
                pass
        n += 1
        nbytes += size
    return n, nbytes, time.time() - start


def main():
    c = client()
    bucket = "bench"
    try:
        c.create_bucket(Bucket=bucket)
    except Exception:
        pass
    for size, label in CASES:
        for clients in CLIENTS:
            for op in ("put", "get"):
                with mp.Pool(clients) as pool:
                    res = pool.map(worker, [(op, size, w, bucket, SECONDS) for w in range(clients)])
                ops = sum(r[0] for r in res)
                nbytes = sum(r[1] for r in res)
                wall = max(r[2] for r in res)
                print(json.dumps({
                    "server": LABEL, "size": label, "clients": clients, "op": op,
                    "ops_per_s": round(ops / wall, 1), "mb_per_s": round(nbytes / wall / 1e6, 1),
                }), flush=True)


if __name__ == "__main__":
    main()
