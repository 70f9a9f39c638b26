//! Tenants, quotas, placement refusals and idempotency.

mod common;

use common::Daemon;
use serde_json::json;

#[test]
fn a_project_cannot_see_or_touch_anothers_instances() {
    let d = Daemon::start();
    let ta = d.project("alpha", None);
    let tb = d.project("beta", None);
    let id = d.launch(
        &ta,
        json!({"name": "secret", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    d.wait_state(&ta, &id, "running");
    for (method, path) in [
        ("GET", format!("/v1/instances/{id}")),
        ("GET", "/v1/instances/secret".to_string()),
        ("GET", format!("/v1/instances/{id}/console")),
        ("GET", format!("/v1/instances/{id}/metrics")),
        ("POST", format!("/v1/instances/{id}/stop")),
        ("POST", format!("/v1/instances/{id}/start")),
        ("DELETE", format!("/v1/instances/{id}")),
    ] {
        let (s, v) = d.call(method, &path, &tb, None);
        assert_eq!(s, 404, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
        assert!(
            !v.to_string().contains("minicloud-mini"),
            "no data leaks: {v}"
        );
    }
    let (_, list) = d.get("/v1/instances", &tb);
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(0));
    // Still running for its owner; the same name is free in another project.
    assert_eq!(
        d.get(&format!("/v1/instances/{id}"), &ta).1["state"],
        "running"
    );
    let other = d.launch(
        &tb,
        json!({"name": "secret", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    assert_ne!(other, id);
    // Non-admins cannot use admin routes.
    let (s, _) = d.get("/v1/projects", &tb);
    assert_eq!(s, 403);
    let (s, _) = d.get("/v1/instances", "mct_bogus");
    assert_eq!(s, 401);
}

#[test]
fn exceeding_a_quota_is_refused_and_creates_nothing() {
    let d = Daemon::start();
    let q = json!({"max_instances": 2, "max_vcpus": 3, "max_memory_mib": 256, "max_volumes": 1, "max_buckets": 1, "max_topics": 1});
    let t = d.project("small", Some(q));
    d.launch(
        &t,
        json!({"name": "one", "image": "mini", "vcpus": 2, "memory_mib": 64}),
    );
    let (s, v) = d.post(
        "/v1/instances",
        &t,
        json!({"name": "two", "image": "mini", "vcpus": 2, "memory_mib": 64}),
    );
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["details"]["quota"], "vcpus", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("quota exceeded"),
        "{v}"
    );
    let (s, v) = d.post(
        "/v1/instances",
        &t,
        json!({"name": "big", "image": "mini", "vcpus": 1, "memory_mib": 512}),
    );
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["details"]["quota"], "memory_mib");
    let (_, list) = d.get("/v1/instances", &t);
    assert_eq!(
        list["instances"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
}

#[test]
fn no_valid_host_is_explained() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let (s, v) = d.post(
        "/v1/instances",
        &t,
        json!({"name": "huge", "image": "mini", "vcpus": 32, "memory_mib": 64}),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "no_valid_host");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("local:") && msg.contains("32 requested"),
        "{msg}"
    );
    let (_, list) = d.get("/v1/instances", &t);
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(0));
}

#[test]
fn concurrent_launches_never_overbook_the_host() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let (_, host) = d.get("/v1/host", &t);
    let capacity = host["scheduler"]["vcpu_capacity"]
        .as_i64()
        .expect("capacity");
    let tries = capacity + 4;
    let results: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..tries)
            .map(|i| {
                let d = &d;
                let t = t.clone();
                s.spawn(move || {
                    d.post("/v1/instances", &t, json!({"name": format!("c{i}"), "image": "mini", "vcpus": 1, "memory_mib": 32}))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    let accepted = results.iter().filter(|(s, _)| *s == 202).count() as i64;
    let refused = results
        .iter()
        .filter(|(s, v)| *s == 409 && v["error"]["code"] == "no_valid_host")
        .count() as i64;
    assert_eq!(accepted, capacity, "{results:?}");
    assert_eq!(refused, tries - capacity);
    let (_, host) = d.get("/v1/host", &t);
    assert_eq!(
        host["scheduler"]["vcpus_used"].as_i64(),
        Some(capacity),
        "{host}"
    );
    for (_, v) in results.iter().filter(|(s, _)| *s == 202) {
        let id = v["instance"]["id"].as_str().expect("id");
        let (s, _) = d.call("DELETE", &format!("/v1/instances/{id}"), &t, None);
        assert_eq!(s, 204);
    }
    let (_, host) = d.get("/v1/host", &t);
    assert_eq!(
        host["scheduler"]["vcpus_used"].as_i64(),
        Some(0),
        "released exactly: {host}"
    );
}

#[test]
fn an_idempotency_key_makes_a_retried_launch_land_once() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let body = json!({"name": "once", "image": "mini", "vcpus": 1, "memory_mib": 64}).to_string();
    let send = |b: &str| {
        let r = ureq::post(&format!("{}/v1/instances", d.url))
            .set("Authorization", &format!("Bearer {t}"))
            .set("Content-Type", "application/json")
            .set("Idempotency-Key", "launch-once-1")
            .send_string(b);
        match r {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{e}"),
        }
    };
    let (s1, b1) = send(&body);
    let (s2, b2) = send(&body);
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(b1, b2, "the retry gets the first answer");
    let (_, list) = d.get("/v1/instances", &t);
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(1));
    let other =
        json!({"name": "different", "image": "mini", "vcpus": 1, "memory_mib": 64}).to_string();
    let (s3, b3) = send(&other);
    assert_eq!(s3, 422, "{b3}");
}

#[test]
fn launching_linux_on_a_host_without_hardware_kvm_is_a_clear_409() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let (_, host) = d.get("/v1/host", &t);
    if host["capability"]["hardware_assisted"] == true {
        eprintln!("skipped: this host has hardware KVM");
        return;
    }
    let (s, v) = d.post(
        "/v1/instances",
        &t,
        json!({"name": "lx", "image": "linux", "vcpus": 1, "memory_mib": 256}),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "image_not_runnable");
}
