//! Just enough HTTP/1.1 for the control API: requests with a
//! `Content-Length` body (no chunked bodies), keep-alive, JSON responses.
//! Request heads are parsed by `httparse`.

use std::io::{self, Read, Write};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, upper case as sent.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    pub close: bool,
}

/// A response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// JSON body (none for 204).
    pub body: Option<serde_json::Value>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// 204 No Content.
    pub fn no_content() -> Self {
        Response {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }

    /// 200 with a JSON body.
    pub fn json(value: serde_json::Value) -> Self {
        Response {
            status: 200,
            body: Some(value),
            headers: Vec::new(),
        }
    }

    /// An error: `{"fault_message": "..."}` (Firecracker's shape).
    pub fn fault(status: u16, message: impl Into<String>) -> Self {
        Response {
            status,
            body: Some(serde_json::json!({ "fault_message": message.into() })),
            headers: Vec::new(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed (cleanly, between requests).
    Closed,
    /// A socket error or timeout.
    Io(io::Error),
    /// The request is malformed: answer with this and close.
    Bad(Response),
}

/// Reads one request from `conn`. `buf` carries bytes read past the end of
/// the previous request (pipelining).
pub fn read_request<S: Read + Write>(
    conn: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Request, ReadError> {
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(i) = find_head_end(buf) {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(Response::fault(
                431,
                "request head too large",
            )));
        }
        match conn.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a request",
                )));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(ReadError::Bad(Response::fault(
                400,
                "malformed HTTP request",
            )));
        }
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_string();
    let mut close = req.version == Some(0);
    let mut length: Option<usize> = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => {
                    return Err(ReadError::Bad(Response::fault(400, "bad Content-Length")));
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Bad(Response::fault(
                501,
                "Transfer-Encoding is not supported; send Content-Length",
            )));
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        } else if h.name.eq_ignore_ascii_case("expect")
            && value.eq_ignore_ascii_case("100-continue")
        {
            expect_continue = true;
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(ReadError::Bad(Response::fault(
            413,
            format!("body larger than {MAX_BODY} bytes"),
        )));
    }
    buf.drain(..head_len);
    if expect_continue && buf.len() < length {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(ReadError::Io)?;
    }
    while buf.len() < length {
        match conn.read(&mut chunk) {
            Ok(0) => {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a body",
                )));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    Ok(Request {
        method,
        path,
        body,
        close,
    })
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Writes `resp`; `close` adds `Connection: close`.
pub fn write_response<W: Write>(w: &mut W, resp: &Response, close: bool) -> io::Result<()> {
    let body = match &resp.body {
        Some(v) => {
            let mut b = serde_json::to_vec(v).map_err(io::Error::other)?;
            b.push(b'\n');
            b
        }
        None => Vec::new(),
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    if resp.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    w.write_all(&out)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake socket: reads from `input`, collects writes.
    struct Fake {
        input: io::Cursor<Vec<u8>>,
        out: Vec<u8>,
    }

    impl Read for Fake {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            // One byte at a time: every partial-read path gets exercised.
            let n = b.len().min(1);
            self.input.read(&mut b[..n])
        }
    }

    impl Write for Fake {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.out.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn fake(s: &str) -> Fake {
        Fake {
            input: io::Cursor::new(s.as_bytes().to_vec()),
            out: Vec::new(),
        }
    }

    #[test]
    fn pipelined_requests_with_bodies_parse_in_order() {
        let mut f = fake(
            "PATCH /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n{\"state\":\"paused\"}\
             GET /metrics?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let mut buf = Vec::new();
        let a = read_request(&mut f, &mut buf).expect("first");
        assert_eq!((a.method.as_str(), a.path.as_str()), ("PATCH", "/vm"));
        assert_eq!(a.body, br#"{"state":"paused"}"#);
        assert!(!a.close);
        let b = read_request(&mut f, &mut buf).expect("second");
        assert_eq!((b.method.as_str(), b.path.as_str()), ("GET", "/metrics"));
        assert!(b.close);
        assert!(matches!(
            read_request(&mut f, &mut buf),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn bad_requests_get_an_answer() {
        for (req, status) in [
            ("GARBAGE\r\n\r\n", 400),
            ("PUT /actions HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (
                "PUT /actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (
                "PUT /actions HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n",
                413,
            ),
        ] {
            let mut buf = Vec::new();
            match read_request(&mut fake(req), &mut buf) {
                Err(ReadError::Bad(r)) => assert_eq!(r.status, status, "{req:?}"),
                other => panic!("{req:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn expect_continue_is_answered_and_responses_are_well_formed() {
        let mut f =
            fake("PUT /actions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}");
        let mut buf = Vec::new();
        let r = read_request(&mut f, &mut buf).expect("req");
        assert_eq!(r.body, b"{}");
        assert!(f.out.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
        let mut out = Vec::new();
        write_response(&mut out, &Response::fault(400, "nope"), true).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("{\"fault_message\":\"nope\"}\n"));
        let mut out = Vec::new();
        write_response(&mut out, &Response::no_content(), false).expect("write");
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    }
}
