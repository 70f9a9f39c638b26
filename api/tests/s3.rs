//! The S3 endpoint through a real daemon: `minicloud serve --s3-listen`,
//! keys from `minicloud s3-key create --output json` and `POST /v1/s3-keys`,
//! the project's `max_buckets` quota, key revocation, and tenants kept
//! apart — driven with boto3 (venv in ~/.cache/minicloud/venv, made on
//! first use).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    s3: String,
    token: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(["serve", "--no-cli-config", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--s3-listen", "127.0.0.1:0", "--vmm", "/bin/false"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--images-dir")
        .arg(dir.path().join("images"))
        .env("MINICLOUD_CONFIG", dir.path().join("cli.json"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn minicloud serve");
    let mut d = Daemon {
        child,
        url: format!("http://127.0.0.1:{port}"),
        s3: String::new(),
        token: String::new(),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(s3) = text
            .lines()
            .find_map(|l| l.strip_prefix("minicloud: S3 on "))
        {
            d.token = std::fs::read_to_string(d.dir.path().join("data/admin.token"))
                .expect("admin token")
                .trim()
                .to_owned();
            d.s3 = s3.trim().replace("127.0.0.1", "localhost");
            return d;
        }
        assert!(Instant::now() < deadline, "daemon did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn call(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = ureq::request(method, &format!("{}{path}", d.url))
        .set("Authorization", &format!("Bearer {token}"));
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn venv_python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = PathBuf::from(home).join(".cache/minicloud/venv");
    let py = venv.join("bin/python3");
    let ready = Command::new(&py)
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "boto3", "awscli"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "could not install boto3 into {}", venv.display());
    }
    py
}

const SCRIPT: &str = r#"
import os, sys, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
ep = os.environ["S3"]
def c(k, s):
    return boto3.client("s3", endpoint_url=ep, aws_access_key_id=k, aws_secret_access_key=s,
                        region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
def code(f, **kw):
    try:
        f(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None
step = sys.argv[1]
a = c(os.environ["KA"], os.environ["SA"])
if step == "use":
    b = c(os.environ["KB"], os.environ["SB"])
    a.create_bucket(Bucket="admin-bucket")
    a.put_object(Bucket="admin-bucket", Key="k", Body=b"v", ContentType="text/x-test")
    o = a.get_object(Bucket="admin-bucket", Key="k")
    assert o["Body"].read() == b"v" and o["ContentType"] == "text/x-test"
    b.create_bucket(Bucket="tenant-bucket")
    assert code(b.create_bucket, Bucket="tenant-bucket-2") == "TooManyBuckets", "quota"
    assert code(b.get_object, Bucket="admin-bucket", Key="k") == "AccessDenied"
    assert code(a.list_objects_v2, Bucket="tenant-bucket") == "AccessDenied"
    assert [x["Name"] for x in b.list_buckets()["Buckets"]] == ["tenant-bucket"]
elif step == "revoked":
    assert code(a.list_buckets) == "InvalidAccessKeyId", code(a.list_buckets)
print("OK", step)
"#;

fn python(py: &PathBuf, s3: &str, step: &str, keys: &[(&str, String)]) {
    let mut cmd = Command::new(py);
    cmd.args(["-c", SCRIPT, step]).env("S3", s3);
    for (k, v) in keys {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python");
    assert!(
        out.status.success(),
        "{step}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn s3_keys_quota_and_tenants_through_the_daemon() {
    let py = venv_python();
    let d = start();

    // The CLI prints a new key as JSON.
    let out = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(["--url", &d.url, "--token", &d.token])
        .args(["s3-key", "create", "--output", "json"])
        .output()
        .expect("minicloud s3-key create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_key: Value = serde_json::from_slice(&out.stdout).expect("json");
    let ka = admin_key["access_key_id"].as_str().expect("id").to_owned();
    let sa = admin_key["secret_access_key"]
        .as_str()
        .expect("secret")
        .to_owned();

    // A second project with room for one bucket, and a key through REST.
    let (st, p) = call(
        &d,
        &d.token,
        "POST",
        "/v1/projects",
        Some(json!({"name": "tenant", "quotas": {
            "max_instances": 1, "max_vcpus": 1, "max_memory_mib": 128,
            "max_volumes": 1, "max_buckets": 1, "max_topics": 1}})),
    );
    assert_eq!(st, 201, "{p}");
    let tenant_token = p["token"].as_str().expect("token").to_owned();
    let (st, k) = call(&d, &tenant_token, "POST", "/v1/s3-keys", None);
    assert_eq!(st, 201, "{k}");
    let kb = k["access_key_id"].as_str().expect("id").to_owned();
    let sb = k["secret_access_key"].as_str().expect("secret").to_owned();

    // Listings never show secrets, and show only the project's keys.
    let (st, l) = call(&d, &tenant_token, "GET", "/v1/s3-keys", None);
    assert_eq!(st, 200);
    let keys = l["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["access_key_id"], kb.as_str());
    assert!(keys[0].get("secret_access_key").is_none());

    python(
        &py,
        &d.s3,
        "use",
        &[
            ("KA", ka.clone()),
            ("SA", sa.clone()),
            ("KB", kb.clone()),
            ("SB", sb),
        ],
    );

    // What the admin's key did is on the admin project's bill (sampled
    // every 10 s): requests by class, bytes out, and stored bytes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let (_, report) = call(
            &d,
            &d.token,
            "GET",
            "/v1/billing/usage?group_by=meter&from=2020-01-01",
            None,
        );
        let q = |meter: &str| {
            report["rows"]
                .as_array()
                .and_then(|r| r.iter().find(|x| x["meter"] == meter))
                .and_then(|x| x["quantity_base"].as_i64())
                .unwrap_or(0)
        };
        if q("object.requests.write") >= 2
            && q("object.requests.read") >= 1
            && q("object.bytes_out") >= 1
            && q("object.storage") > 0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "object storage usage never billed: {report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // Another project cannot revoke the admin's key; the admin can.
    let (st, _) = call(
        &d,
        &tenant_token,
        "DELETE",
        &format!("/v1/s3-keys/{ka}"),
        None,
    );
    assert_eq!(st, 404);
    let (st, _) = call(&d, &d.token, "DELETE", &format!("/v1/s3-keys/{ka}"), None);
    assert_eq!(st, 204);
    python(&py, &d.s3, "revoked", &[("KA", ka), ("SA", sa)]);

    // The OpenAPI document lists the routes.
    let (_, doc) = call(&d, &d.token, "GET", "/openapi.json", None);
    assert!(doc["paths"].get("/v1/s3-keys").is_some());
    assert!(doc["paths"].get("/v1/s3-keys/{id}").is_some());
}

fn cli(d: &Daemon, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(["--url", &d.url, "--token", &d.token, "--output", "json"])
        .args(args)
        .output()
        .expect("minicloud");
    assert!(
        out.status.success(),
        "minicloud {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn volumes_and_snapshots_through_the_daemon() {
    use std::os::unix::fs::FileExt;
    let d = start();
    let v = cli(&d, &["volume", "create", "data", "--size-gib", "1"]);
    let id = v["id"].as_str().expect("id").to_owned();
    assert_eq!(v["size_bytes"], 1 << 30);
    assert_eq!(v["state"], "available");
    let file = d.dir.path().join(format!("data/volumes/{id}.raw"));
    let pattern: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("volume file")
        .write_all_at(&pattern, 512 << 20)
        .expect("write");
    let s = cli(&d, &["volume", "snapshot", "data", "--name", "s1"]);
    assert_eq!(s["volume_id"], id.as_str());
    let (st, r) = call(
        &d,
        &d.token,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "copy", "size_gib": 2, "snapshot": "s1"})),
    );
    assert_eq!(st, 201, "{r}");
    let copy = d.dir.path().join(format!(
        "data/volumes/{}.raw",
        r["id"].as_str().expect("id")
    ));
    let mut got = vec![0u8; pattern.len()];
    std::fs::File::open(&copy)
        .expect("copy")
        .read_exact_at(&mut got, 512 << 20)
        .expect("read");
    assert!(got == pattern, "restored data differs");
    let v = cli(&d, &["volume", "resize", "data", "--size-gib", "3"]);
    assert_eq!(v["size_bytes"], 3_i64 << 30);
    let (st, _) = call(
        &d,
        &d.token,
        "POST",
        "/v1/volumes/data/resize",
        Some(json!({"size_gib": 1})),
    );
    assert_eq!(st, 422);
    let l = cli(&d, &["volume", "list"]);
    assert_eq!(l["volumes"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        cli(&d, &["snapshot", "list"])["snapshots"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let (st, _) = call(
        &d,
        &d.token,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "data", "size_gib": 1})),
    );
    assert_eq!(st, 409);
    cli(&d, &["snapshot", "delete", "s1"]);
    cli(&d, &["volume", "delete", "data"]);
    cli(&d, &["volume", "delete", "copy"]);
    let (st, _) = call(&d, &d.token, "GET", "/v1/volumes/data", None);
    assert_eq!(st, 404);

    // The project's max_volumes quota.
    let (st, p) = call(
        &d,
        &d.token,
        "POST",
        "/v1/projects",
        Some(json!({"name": "small", "quotas": {
            "max_instances": 1, "max_vcpus": 1, "max_memory_mib": 128,
            "max_volumes": 1, "max_buckets": 1, "max_topics": 1}})),
    );
    assert_eq!(st, 201, "{p}");
    let t = p["token"].as_str().expect("token").to_owned();
    let body = Some(json!({"name": "a", "size_mib": 16}));
    assert_eq!(call(&d, &t, "POST", "/v1/volumes", body).0, 201);
    let body = Some(json!({"name": "b", "size_mib": 16}));
    assert_eq!(call(&d, &t, "POST", "/v1/volumes", body).0, 403);
    // Another project does not see them.
    assert_eq!(call(&d, &d.token, "GET", "/v1/volumes/a", None).0, 404);
}
