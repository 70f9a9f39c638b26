//! Invalid bodies, unknown fields, huge values, wrong types and garbage:
//! always a 4xx in the one error shape, never a 5xx, never a crash.

mod common;

use common::Daemon;

#[test]
fn bad_requests_get_4xx_with_the_field_named() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        (
            r#"{"name":"a","image":"mini","vcpus":1}"#,
            "missing field",
            422,
            Some("memory_mib"),
        ),
        (
            r#"{"name":"a","image":"mini","vcpus":"one","memory_mib":64}"#,
            "wrong type",
            422,
            Some("vcpus"),
        ),
        (
            r#"{"name":"a","image":"mini","vcpus":1,"memory_mib":64,"turbo":1}"#,
            "unknown field",
            422,
            None,
        ),
        (
            r#"{"name":"a","image":"mini","vcpus":99999999999,"memory_mib":64}"#,
            "huge",
            422,
            Some("vcpus"),
        ),
        (
            r#"{"name":"a","image":"mini","vcpus":0,"memory_mib":64}"#,
            "zero vcpus",
            422,
            Some("vcpus"),
        ),
        (
            r#"{"name":"a","image":"mini","vcpus":1,"memory_mib":99999999999}"#,
            "huge memory",
            422,
            Some("memory_mib"),
        ),
        (
            r#"{"name":"A B","image":"mini","vcpus":1,"memory_mib":64}"#,
            "bad name",
            422,
            Some("name"),
        ),
        (
            r#"{"name":"a","image":"windows","vcpus":1,"memory_mib":64}"#,
            "bad image",
            422,
            Some("image"),
        ),
        (
            r#"{"name":"a","image":"mini","vcpus":1,"memory_mib":64,"run":"echo \"x\""}"#,
            "quote in run",
            422,
            Some("run"),
        ),
        (
            r#"{"name":"a","image":"mini","vcpus":1,"memory_mib":64,"cpu_policy":"turbo"}"#,
            "bad policy",
            422,
            Some("cpu_policy"),
        ),
        (r#"{"name":"#, "truncated JSON", 400, None),
        (r#"[1,2,3]"#, "array", 422, None),
        (r#"null"#, "null", 422, None),
        ("\u{0}\u{1}garbage", "garbage", 400, None),
    ];
    for (body, what, status, field) in cases {
        let (s, v) = d.call("POST", "/v1/instances", &t, Some(body));
        assert_eq!(s, *status, "{what}: {v}");
        assert!(v["error"]["code"].is_string(), "{what}: error shape: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
        if let Some(f) = field {
            assert_eq!(v["error"]["details"]["field"], *f, "{what}: {v}");
        }
    }
    // Wrong content type, oversized body, unknown routes and methods.
    let r = ureq::post(&format!("{}/v1/instances", d.url))
        .set("Authorization", &format!("Bearer {t}"))
        .set("Content-Type", "text/plain")
        .send_string("{}");
    assert!(matches!(r, Err(ureq::Error::Status(415, _))), "{r:?}");
    let big = format!(
        r#"{{"name":"a","image":"mini","vcpus":1,"memory_mib":64,"user_data":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    // The server answers 413 as soon as the limit is passed and may close
    // the connection while the client is still sending: either is a refusal.
    let r = ureq::post(&format!("{}/v1/instances", d.url))
        .set("Authorization", &format!("Bearer {t}"))
        .set("Content-Type", "application/json")
        .send_string(&big);
    match r {
        Err(ureq::Error::Status(413, _)) => {}
        Err(ureq::Error::Transport(e)) => {
            let m = e.to_string();
            assert!(m.contains("Broken pipe") || m.contains("reset"), "{m}");
        }
        other => panic!("oversized body accepted: {other:?}"),
    }
    assert_eq!(d.get("/v1/nope", &t).0, 404);
    assert_eq!(d.call("PATCH", "/v1/instances", &t, None).0, 405);
    assert_eq!(
        d.get("/v1/instances?wait=abc", &t).0,
        200,
        "unknown query on list is ignored"
    );
    assert_eq!(d.get("/v1/instances/x?wait=abc", &t).0, 400);
    // Nothing was created, and the daemon is alive.
    let (s, list) = d.get("/v1/instances", &t);
    assert_eq!(s, 200);
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(0));
}

#[test]
fn openapi_document_lists_the_routes_it_serves() {
    let d = Daemon::start();
    let (s, doc) = d.get("/openapi.json", &d.admin_token);
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/instances",
        "/v1/instances/{id}",
        "/v1/instances/{id}/stop",
        "/v1/instances/{id}/console",
        "/v1/projects",
        "/v1/operations/{id}",
        "/v1/events",
    ] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
    assert!(paths["/v1/instances"]["post"]["responses"]["202"].is_object());
}
