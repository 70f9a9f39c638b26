"""Drives minicloud's S3 endpoint with real, unmodified clients: boto3 and
the aws CLI. Run by tests/s3_clients.rs, which starts the server and passes
S3_ENDPOINT, KEY_A/SECRET_A (project A) and KEY_B/SECRET_B (project B).
Optional: BIG_MIB (a big object streamed through; SERVER_PID to watch the
server's RSS stay bounded)."""

import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

EP = os.environ["S3_ENDPOINT"]
KA, SA = os.environ["KEY_A"], os.environ["SECRET_A"]
KB, SB = os.environ["KEY_B"], os.environ["SECRET_B"]
AWS_CLI = os.environ.get("AWS_CLI", "aws")
MiB = 1024 * 1024

# Virtual-host-style requests go to BUCKET.localhost, which not every
# resolver maps to loopback (RFC 6761 says it should): map it here.
import socket

_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host, *a, **kw):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *a, **kw)


socket.getaddrinfo = _loopback_getaddrinfo


def client(key, secret, style="path"):
    return boto3.client(
        "s3",
        endpoint_url=EP,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": style},
            retries={"max_attempts": 1},
            signature_version="s3v4",
        ),
    )


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def expect_code(want, fn, *a, **kw):
    got = code_of(fn, *a, **kw)
    assert got == want, f"{fn.__name__}: want {want}, got {got}"


def check(name, cond):
    assert cond, name


passed = []


def step(name):
    passed.append(name)
    print("ok", name, flush=True)


a = client(KA, SA)
b = client(KB, SB)
av = client(KA, SA, "virtual")

# --- buckets ---------------------------------------------------------------
a.create_bucket(Bucket="alpha")
av.create_bucket(Bucket="alpha-vhost")
names = [x["Name"] for x in a.list_buckets()["Buckets"]]
check("list buckets", names == ["alpha", "alpha-vhost"])
check("b sees none", b.list_buckets()["Buckets"] == [])
a.head_bucket(Bucket="alpha")
loc = a.get_bucket_location(Bucket="alpha")
check("location", loc.get("LocationConstraint") in (None, ""))
expect_code("BucketAlreadyOwnedByYou", a.create_bucket, Bucket="alpha")
expect_code("BucketAlreadyExists", b.create_bucket, Bucket="alpha")
expect_code("404", a.head_bucket, Bucket="nope-nope")
expect_code("NoSuchBucket", a.list_objects_v2, Bucket="nope-nope")
expect_code("InvalidBucketName", a.create_bucket, Bucket="Bad_Name")
step("buckets")

# --- put/get/head, metadata, content type --------------------------------
body = b"hello, minicloud\n" * 1000
r = a.put_object(
    Bucket="alpha",
    Key="dir/hello.txt",
    Body=body,
    ContentType="text/plain",
    Metadata={"color": "blue", "n": "1"},
)
etag = r["ETag"]
check("etag md5", etag == '"%s"' % hashlib.md5(body).hexdigest())
g = a.get_object(Bucket="alpha", Key="dir/hello.txt")
check("get body", g["Body"].read() == body)
check("content type", g["ContentType"] == "text/plain")
check("metadata", g["Metadata"] == {"color": "blue", "n": "1"})
check("get etag", g["ETag"] == etag)
h = a.head_object(Bucket="alpha", Key="dir/hello.txt")
check("head length", h["ContentLength"] == len(body))
check("head meta", h["Metadata"]["color"] == "blue")
expect_code("NoSuchKey", a.get_object, Bucket="alpha", Key="missing")
expect_code("404", a.head_object, Bucket="alpha", Key="missing")
# virtual-host style reads the same object
check("vhost get", av.get_object(Bucket="alpha", Key="dir/hello.txt")["Body"].read() == body)
av.put_object(Bucket="alpha-vhost", Key="v", Body=b"v")
check("vhost put", a.get_object(Bucket="alpha-vhost", Key="v")["Body"].read() == b"v")
# empty object, odd keys
a.put_object(Bucket="alpha", Key="empty", Body=b"")
check("empty", a.get_object(Bucket="alpha", Key="empty")["Body"].read() == b"")
for k in ["../../etc/passwd", "a/../../b", "./x", "/lead", "sp ace+plus%&?=#", "ünï/cödé", "x" * 1024, "..", "a//b"]:
    a.put_object(Bucket="alpha", Key=k, Body=k.encode())
    check("odd key " + k[:20], a.get_object(Bucket="alpha", Key=k)["Body"].read() == k.encode())
    a.delete_object(Bucket="alpha", Key=k)
expect_code("KeyTooLongError", a.put_object, Bucket="alpha", Key="y" * 1025, Body=b"x")
step("objects")

# --- ranges ---------------------------------------------------------------
g = a.get_object(Bucket="alpha", Key="dir/hello.txt", Range="bytes=0-4")
check("range body", g["Body"].read() == body[:5])
check("range header", g["ContentRange"] == "bytes 0-4/%d" % len(body))
check("range 206", g["ResponseMetadata"]["HTTPStatusCode"] == 206)
g = a.get_object(Bucket="alpha", Key="dir/hello.txt", Range="bytes=-7")
check("suffix", g["Body"].read() == body[-7:])
g = a.get_object(Bucket="alpha", Key="dir/hello.txt", Range="bytes=16990-")
check("open range", g["Body"].read() == body[16990:])
expect_code("InvalidRange", a.get_object, Bucket="alpha", Key="dir/hello.txt", Range="bytes=99999-")
step("ranges")

# --- conditional requests ------------------------------------------------
check("if-match", a.get_object(Bucket="alpha", Key="dir/hello.txt", IfMatch=etag)["Body"].read() == body)
expect_code("PreconditionFailed", a.get_object, Bucket="alpha", Key="dir/hello.txt", IfMatch='"0000"')
expect_code("304", a.get_object, Bucket="alpha", Key="dir/hello.txt", IfNoneMatch=etag)
a.get_object(Bucket="alpha", Key="dir/hello.txt", IfNoneMatch='"0000"')
lm = h["LastModified"]
expect_code("304", a.get_object, Bucket="alpha", Key="dir/hello.txt", IfModifiedSince=lm)
a.get_object(Bucket="alpha", Key="dir/hello.txt", IfModifiedSince=lm - datetime.timedelta(seconds=5))
expect_code("PreconditionFailed", a.get_object, Bucket="alpha", Key="dir/hello.txt",
            IfUnmodifiedSince=lm - datetime.timedelta(seconds=5))
expect_code("304", a.head_object, Bucket="alpha", Key="dir/hello.txt", IfNoneMatch=etag)
expect_code("PreconditionFailed", a.put_object, Bucket="alpha", Key="dir/hello.txt", Body=b"x", IfNoneMatch="*")
step("conditional")

# --- copy -------------------------------------------------------------------
r = a.copy_object(Bucket="alpha", Key="copy.txt", CopySource={"Bucket": "alpha", "Key": "dir/hello.txt"})
check("copy etag", r["CopyObjectResult"]["ETag"] == etag)
g = a.get_object(Bucket="alpha", Key="copy.txt")
check("copy body", g["Body"].read() == body)
check("copy keeps meta", g["Metadata"] == {"color": "blue", "n": "1"})
a.copy_object(Bucket="alpha", Key="copy2.txt", CopySource="alpha/dir/hello.txt",
              MetadataDirective="REPLACE", Metadata={"k": "v"}, ContentType="application/x-test")
h2 = a.head_object(Bucket="alpha", Key="copy2.txt")
check("copy replace meta", h2["Metadata"] == {"k": "v"} and h2["ContentType"] == "application/x-test")
expect_code("PreconditionFailed", a.copy_object, Bucket="alpha", Key="c3",
            CopySource="alpha/dir/hello.txt", CopySourceIfMatch='"0000"')
expect_code("NoSuchKey", a.copy_object, Bucket="alpha", Key="c3", CopySource="alpha/missing")
step("copy")

# --- listing ---------------------------------------------------------------
a.create_bucket(Bucket="listing")
keys = sorted(["a/1", "a/2", "a/b/3", "b/1", "c", "d/e/f", "d/e/g", "z"])
for k in keys:
    a.put_object(Bucket="listing", Key=k, Body=k.encode())
r = a.list_objects_v2(Bucket="listing")
check("v2 all", [o["Key"] for o in r["Contents"]] == keys and r["KeyCount"] == len(keys))
r = a.list_objects_v2(Bucket="listing", Delimiter="/")
check("v2 delim keys", [o["Key"] for o in r.get("Contents", [])] == ["c", "z"])
check("v2 delim prefixes", [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/", "d/"])
r = a.list_objects_v2(Bucket="listing", Prefix="a/", Delimiter="/")
check("v2 prefix", [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"]
      and [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/"])
got, token, pages = [], None, 0
while True:
    kw = {"Bucket": "listing", "MaxKeys": 3}
    if token:
        kw["ContinuationToken"] = token
    r = a.list_objects_v2(**kw)
    pages += 1
    got += [o["Key"] for o in r.get("Contents", [])]
    if not r["IsTruncated"]:
        break
    token = r["NextContinuationToken"]
check("v2 pages", got == keys and pages == 3)
r = a.list_objects_v2(Bucket="listing", StartAfter="b/1")
check("start-after", [o["Key"] for o in r["Contents"]] == ["c", "d/e/f", "d/e/g", "z"])
r = a.list_objects_v2(Bucket="listing", MaxKeys=2, Delimiter="/")
check("v2 delim pages", [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/"] and r["IsTruncated"])
r = a.list_objects_v2(Bucket="listing", Delimiter="/", ContinuationToken=r["NextContinuationToken"])
check("v2 delim page 2", [o["Key"] for o in r["Contents"]] == ["c", "z"]
      and [p["Prefix"] for p in r["CommonPrefixes"]] == ["d/"])
r = a.list_objects(Bucket="listing", MaxKeys=5)
check("v1 truncated", r["IsTruncated"] and len(r["Contents"]) == 5)
r = a.list_objects(Bucket="listing", Marker=r["Contents"][-1]["Key"])
check("v1 marker", [o["Key"] for o in r["Contents"]] == keys[5:])
r = a.list_objects(Bucket="listing", Prefix="d/", Delimiter="/")
check("v1 delim", [p["Prefix"] for p in r["CommonPrefixes"]] == ["d/e/"])
pg = a.get_paginator("list_objects_v2")
check("paginator", sum(len(p.get("Contents", [])) for p in pg.paginate(Bucket="listing", PaginationConfig={"PageSize": 2})) == len(keys))
step("listing")

# --- delete ---------------------------------------------------------------
expect_code("BucketNotEmpty", a.delete_bucket, Bucket="listing")
a.delete_object(Bucket="listing", Key="z")
a.delete_object(Bucket="listing", Key="never-existed")
r = a.delete_objects(Bucket="listing", Delete={"Objects": [{"Key": k} for k in keys if k != "z"]})
check("delete objects", sorted(d["Key"] for d in r["Deleted"]) == [k for k in keys if k != "z"])
check("listing empty", a.list_objects_v2(Bucket="listing")["KeyCount"] == 0)
a.delete_bucket(Bucket="listing")
expect_code("NoSuchBucket", a.delete_bucket, Bucket="listing")
step("delete")

# --- multipart --------------------------------------------------------------
part1 = os.urandom(5 * MiB)
part2 = os.urandom(6 * MiB)
part3 = os.urandom(123)
mpu = a.create_multipart_upload(Bucket="alpha", Key="big/mpu.bin", ContentType="application/x-mpu",
                                Metadata={"m": "1"})
uid = mpu["UploadId"]
e1 = a.upload_part(Bucket="alpha", Key="big/mpu.bin", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
e2 = a.upload_part(Bucket="alpha", Key="big/mpu.bin", UploadId=uid, PartNumber=2, Body=part2)["ETag"]
e3 = a.upload_part(Bucket="alpha", Key="big/mpu.bin", UploadId=uid, PartNumber=3, Body=part3)["ETag"]
ups = a.list_multipart_uploads(Bucket="alpha")["Uploads"]
check("list uploads", [(u["Key"], u["UploadId"]) for u in ups] == [("big/mpu.bin", uid)])
parts = a.list_parts(Bucket="alpha", Key="big/mpu.bin", UploadId=uid)["Parts"]
check("list parts", [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB), (2, 6 * MiB), (3, 123)])
r = a.list_parts(Bucket="alpha", Key="big/mpu.bin", UploadId=uid, MaxParts=2)
check("list parts page", r["IsTruncated"] and r["NextPartNumberMarker"] == 2)
expect_code("InvalidPart", a.complete_multipart_upload, Bucket="alpha", Key="big/mpu.bin", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}]})
expect_code("InvalidPartOrder", a.complete_multipart_upload, Bucket="alpha", Key="big/mpu.bin", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
r = a.complete_multipart_upload(Bucket="alpha", Key="big/mpu.bin", UploadId=uid, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": e3}]})
want = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in (part1, part2, part3))).hexdigest() + "-3"
check("multipart etag", r["ETag"] == '"%s"' % want)
g = a.get_object(Bucket="alpha", Key="big/mpu.bin")
data = g["Body"].read()
check("multipart body", data == part1 + part2 + part3)
check("multipart type", g["ContentType"] == "application/x-mpu" and g["Metadata"] == {"m": "1"})
g = a.get_object(Bucket="alpha", Key="big/mpu.bin", Range="bytes=%d-%d" % (5 * MiB - 2, 5 * MiB + 1))
check("range across parts", g["Body"].read() == (part1 + part2)[5 * MiB - 2:5 * MiB + 2])
check("uploads gone", a.list_multipart_uploads(Bucket="alpha").get("Uploads", []) == [])
expect_code("NoSuchUpload", a.list_parts, Bucket="alpha", Key="big/mpu.bin", UploadId=uid)
# a too-small non-last part
mpu = a.create_multipart_upload(Bucket="alpha", Key="small")
u2 = mpu["UploadId"]
s1 = a.upload_part(Bucket="alpha", Key="small", UploadId=u2, PartNumber=1, Body=b"x" * 100)["ETag"]
s2 = a.upload_part(Bucket="alpha", Key="small", UploadId=u2, PartNumber=2, Body=b"y" * 100)["ETag"]
expect_code("EntityTooSmall", a.complete_multipart_upload, Bucket="alpha", Key="small", UploadId=u2,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": s1}, {"PartNumber": 2, "ETag": s2}]})
a.abort_multipart_upload(Bucket="alpha", Key="small", UploadId=u2)
expect_code("NoSuchUpload", a.upload_part, Bucket="alpha", Key="small", UploadId=u2, PartNumber=1, Body=b"z")
expect_code("NoSuchKey", a.get_object, Bucket="alpha", Key="small")
# boto3's managed transfer (multipart with 8 MiB parts, concurrent)
from boto3.s3.transfer import TransferConfig
tc = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
with tempfile.TemporaryDirectory() as d:
    src = os.path.join(d, "src.bin")
    blob = os.urandom(17 * MiB + 5)
    with open(src, "wb") as f:
        f.write(blob)
    a.upload_file(src, "alpha", "transfer.bin", Config=tc)
    dst = os.path.join(d, "dst.bin")
    a.download_file("alpha", "transfer.bin", dst, Config=tc)
    with open(dst, "rb") as f:
        check("transfer roundtrip", f.read() == blob)
step("multipart")

# --- presigned URLs ----------------------------------------------------------
url = a.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "dir/hello.txt"}, ExpiresIn=60)
with urllib.request.urlopen(url) as resp:
    check("presigned get", resp.read() == body)
put_url = a.generate_presigned_url("put_object", Params={"Bucket": "alpha", "Key": "presigned"}, ExpiresIn=60)
req = urllib.request.Request(put_url, data=b"via presigned put", method="PUT")
with urllib.request.urlopen(req) as resp:
    check("presigned put", resp.status == 200)
check("presigned put body", a.get_object(Bucket="alpha", Key="presigned")["Body"].read() == b"via presigned put")
sig_at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
bad = url[:sig_at] + ("1" if url[sig_at] == "0" else "0") + url[sig_at + 1:]
try:
    urllib.request.urlopen(bad)
    raise AssertionError("tampered presigned URL accepted")
except urllib.error.HTTPError as e:
    check("tampered presigned 403", e.code == 403)
tampered_key = url.replace("dir/hello.txt", "copy.txt")
try:
    urllib.request.urlopen(tampered_key)
    raise AssertionError("presigned URL for another key accepted")
except urllib.error.HTTPError as e:
    check("other key 403", e.code == 403)
try:
    urllib.request.urlopen(EP + "/alpha/dir/hello.txt")
    raise AssertionError("anonymous request accepted")
except urllib.error.HTTPError as e:
    check("anonymous 403", e.code == 403)
step("presigned")

# --- bad credentials, cross-tenant -----------------------------------------
wrong = client(KA, SA[:-1] + ("x" if SA[-1] != "x" else "y"))
expect_code("SignatureDoesNotMatch", wrong.list_buckets)
expect_code("SignatureDoesNotMatch", wrong.get_object, Bucket="alpha", Key="dir/hello.txt")
unknown = client("AKMCUNKNOWNUNKNOWN12", SA)
expect_code("InvalidAccessKeyId", unknown.list_buckets)
expect_code("AccessDenied", b.get_object, Bucket="alpha", Key="dir/hello.txt")
expect_code("403", b.head_object, Bucket="alpha", Key="dir/hello.txt")
expect_code("AccessDenied", b.put_object, Bucket="alpha", Key="evil", Body=b"x")
expect_code("AccessDenied", b.list_objects_v2, Bucket="alpha")
expect_code("AccessDenied", b.delete_object, Bucket="alpha", Key="dir/hello.txt")
expect_code("AccessDenied", b.delete_bucket, Bucket="alpha")
b.create_bucket(Bucket="bravo")
expect_code("AccessDenied", b.copy_object, Bucket="bravo", Key="stolen", CopySource="alpha/dir/hello.txt")
expect_code("AccessDenied", b.create_multipart_upload, Bucket="alpha", Key="x")
check("a's object intact", a.get_object(Bucket="alpha", Key="dir/hello.txt")["Body"].read() == body)
step("auth")

# --- unsupported ------------------------------------------------------------
expect_code("NotImplemented", a.get_bucket_versioning, Bucket="alpha")
expect_code("NotImplemented", a.put_object_tagging, Bucket="alpha", Key="copy.txt",
            Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
step("not implemented")

# --- the aws CLI ---------------------------------------------------------------
env = dict(os.environ, AWS_ACCESS_KEY_ID=KA, AWS_SECRET_ACCESS_KEY=SA, AWS_DEFAULT_REGION="us-east-1",
           AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")


def aws(*args, ok=True):
    p = subprocess.run([AWS_CLI, "--endpoint-url", EP, *args], env=env, capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


aws("s3", "mb", "s3://cli-bucket")
with tempfile.TemporaryDirectory() as d:
    src = os.path.join(d, "f.bin")
    blob = os.urandom(12 * MiB + 1)  # over the CLI's 8 MiB multipart threshold
    with open(src, "wb") as f:
        f.write(blob)
    aws("s3", "cp", src, "s3://cli-bucket/path/f.bin")
    out = aws("s3", "ls", "s3://cli-bucket/path/").stdout
    check("cli ls", "f.bin" in out and str(len(blob)) in out)
    dst = os.path.join(d, "g.bin")
    aws("s3", "cp", "s3://cli-bucket/path/f.bin", dst)
    with open(dst, "rb") as f:
        check("cli roundtrip", f.read() == blob)
    os.makedirs(os.path.join(d, "tree", "sub"))
    for n in ("x", "y", "sub/z"):
        with open(os.path.join(d, "tree", n), "w") as f:
            f.write(n)
    aws("s3", "sync", os.path.join(d, "tree"), "s3://cli-bucket/tree")
    out = json.loads(aws("s3api", "list-objects-v2", "--bucket", "cli-bucket", "--prefix", "tree/").stdout)
    check("cli sync", sorted(o["Key"] for o in out["Contents"]) == ["tree/sub/z", "tree/x", "tree/y"])
    head = json.loads(aws("s3api", "head-object", "--bucket", "cli-bucket", "--key", "tree/x").stdout)
    check("cli head", head["ContentLength"] == 1)
    url = aws("s3", "presign", "s3://cli-bucket/tree/x").stdout.strip()
    with urllib.request.urlopen(url) as resp:
        check("cli presign", resp.read() == b"x")
    aws("s3", "rm", "--recursive", "s3://cli-bucket/")
    aws("s3", "rb", "s3://cli-bucket")
    p = aws("s3", "ls", "s3://alpha", ok=False)
    check("cli ok listing", p.returncode == 0)
    envb = dict(env, AWS_ACCESS_KEY_ID=KB, AWS_SECRET_ACCESS_KEY=SB)
    p = subprocess.run([AWS_CLI, "--endpoint-url", EP, "s3", "ls", "s3://alpha"], env=envb,
                       capture_output=True, text=True)
    check("cli cross-tenant denied", p.returncode != 0 and "AccessDenied" in p.stderr)
step("aws cli")

# --- a big object through bounded memory ----------------------------------------
big_mib = int(os.environ.get("BIG_MIB", "0"))
if big_mib:
    pid = os.environ.get("SERVER_PID")

    def rss_kib():
        if not pid:
            return 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    import threading

    start = rss_kib()
    peak = start
    samples = [start]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            samples.append(rss_kib())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    chunk = os.urandom(MiB)
    want_md5 = hashlib.md5()
    big = client(KA, SA)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "huge.bin")
        with open(src, "wb") as f:
            for _ in range(big_mib):
                f.write(chunk)
                want_md5.update(chunk)
        t0 = time.time()
        # one PutObject (no multipart): the server streams it to disk
        big.upload_file(src, "alpha", "huge.bin",
                        Config=TransferConfig(multipart_threshold=1 << 40, max_concurrency=1))
    peak = max(peak, rss_kib())
    t1 = time.time()
    g = big.get_object(Bucket="alpha", Key="huge.bin")
    check("huge length", g["ContentLength"] == big_mib * MiB)
    m = hashlib.md5()
    n = 0
    for chunk in g["Body"].iter_chunks(MiB):
        m.update(chunk)
        n += len(chunk)
        if n % (64 * MiB) < MiB:
            peak = max(peak, rss_kib())
    t2 = time.time()
    sampling.set()
    sampler.join()
    peak = max([peak] + samples)
    check("huge roundtrip", m.hexdigest() == want_md5.hexdigest())
    print(f"big object: {big_mib} MiB put {big_mib / (t1 - t0):.0f} MiB/s, get {big_mib / (t2 - t1):.0f} MiB/s, "
          f"server RSS start {start} KiB peak {peak} KiB", flush=True)
    if pid:
        check("server RSS bounded", peak - start < 256 * 1024)
    big.delete_object(Bucket="alpha", Key="huge.bin")
    step("big object")

print("ALL OK", len(passed), "groups", flush=True)
