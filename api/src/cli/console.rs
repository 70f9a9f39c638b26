//! `minicloud vm console ID --attach`: the guest console over the API's
//! WebSocket, the terminal in raw mode; Ctrl-] leaves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use super::client::Client;

const CTRL_RIGHT_BRACKET: u8 = 0x1d;

/// Puts stdin in raw mode until dropped.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid termios pointer.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return RawMode(None);
        }
        let saved = t;
        // SAFETY: cfmakeraw only edits the struct.
        unsafe { libc::cfmakeraw(&mut t) };
        // SAFETY: fd 0 and a valid termios.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restoring the settings read in `enter`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

/// Attaches to an instance's console.
pub fn attach(client: &Client, id: &str) -> anyhow::Result<()> {
    let ws_url = format!(
        "{}/v1/instances/{id}/console/ws",
        client.url.replacen("http", "ws", 1)
    );
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .context("console URL")?;
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", client.token)
            .parse()
            .context("token")?,
    );
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| anyhow!("no host in {ws_url}"))?;
    let tcp = TcpStream::connect(&host).with_context(|| format!("connecting to {host}"))?;
    let (ws, _) = tungstenite::client(req, tcp).map_err(|e| anyhow!("console: {e}"))?;
    let ws = Arc::new(std::sync::Mutex::new(ws));
    if let Ok(mut w) = ws.lock() {
        w.get_mut()
            .set_read_timeout(Some(Duration::from_millis(50)))?;
    }
    eprintln!("[attached to {id}; Ctrl-] to leave]\r");
    let _raw = RawMode::enter();
    let done = Arc::new(AtomicBool::new(false));
    let input = {
        let ws = ws.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while !done.load(Ordering::Relaxed) {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(pos) = buf[..n].iter().position(|b| *b == CTRL_RIGHT_BRACKET) {
                    send(&ws, &buf[..pos]);
                    break;
                }
                send(&ws, &buf[..n]);
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut out = std::io::stdout();
    while !done.load(Ordering::Relaxed) {
        let msg = match ws.lock() {
            Ok(mut w) => w.read(),
            Err(_) => break,
        };
        match msg {
            Ok(Message::Binary(b)) => {
                out.write_all(&b)?;
                out.flush()?;
            }
            Ok(Message::Text(t)) => {
                out.write_all(t.as_bytes())?;
                out.flush()?;
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break,
        }
    }
    done.store(true, Ordering::Relaxed);
    if let Ok(mut w) = ws.lock() {
        let _ = w.close(None);
    }
    drop(_raw);
    eprintln!("\r\n[detached]");
    let _ = input.join();
    Ok(())
}

fn send(ws: &std::sync::Mutex<WebSocket<TcpStream>>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Ok(mut w) = ws.lock() {
        let _ = w.send(Message::Binary(bytes.to_vec().into()));
    }
}
