//! A small blocking client of the REST API, turning its error shape into
//! human messages.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

/// The API client.
pub struct Client {
    /// Base URL.
    pub url: String,
    /// Bearer token.
    pub token: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `url` with `token`.
    pub fn new(url: &str, token: &str) -> Self {
        Client {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout_read(Duration::from_secs(330))
                .build(),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{}", self.url, path))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    fn finish(&self, r: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Value> {
        match r {
            Ok(resp) => {
                if resp.status() == 204 {
                    return Ok(Value::Null);
                }
                let text = resp.into_string().context("reading the response")?;
                if text.is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).or(Ok(Value::String(text)))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let msg = v["error"]["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(text);
                Err(anyhow!("{msg} (HTTP {code})"))
            }
            Err(ureq::Error::Transport(t)) => Err(anyhow!(
                "cannot reach the minicloud API at {}: {t}. Is `minicloud serve` running?",
                self.url
            )),
        }
    }

    /// GET a JSON resource.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(self.request("GET", path).call())
    }

    /// GET raw text.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        match self.request("GET", path).call() {
            Ok(r) => r.into_string().context("reading"),
            Err(e) => self.finish(Err(e)).map(|v| v.to_string()),
        }
    }

    /// GET a stream, copying it to stdout as it comes.
    pub fn stream_to_stdout(&self, path: &str) -> anyhow::Result<()> {
        let resp = self.request("GET", path).call();
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.finish(Err(e))?;
                bail!("unexpected answer")
            }
        };
        let mut reader = resp.into_reader();
        std::io::copy(&mut reader, &mut std::io::stdout().lock())?;
        Ok(())
    }

    /// POST JSON (or nothing).
    pub fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let req = self.request("POST", path);
        self.finish(match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        })
    }

    /// PUT JSON.
    pub fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.finish(self.request("PUT", path).send_json(body))
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(self.request("DELETE", path).call())
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters, for a path
/// segment or a query value.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
