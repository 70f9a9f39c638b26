//! Per-VM limits of the instance API: a token bucket for the request rate
//! and a log limiter so that refusals are logged without flooding.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What each VM may do on the instance API.
#[derive(Debug, Clone)]
pub struct GuestLimits {
    /// Most connections open at once per VM.
    pub max_connections: usize,
    /// Sustained requests per second per VM (`None`: unlimited).
    pub requests_per_sec: Option<f64>,
    /// Requests a VM may send at once above the sustained rate.
    pub burst: f64,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            max_connections: 32,
            requests_per_sec: Some(2000.0),
            burst: 2000.0,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl GuestLimits {
    /// The defaults, with `MINICLOUD_GUEST_RATE` (requests/s per VM, `0`
    /// for unlimited) and `MINICLOUD_GUEST_CONNECTIONS` applied.
    pub fn from_env() -> Self {
        let mut l = GuestLimits::default();
        if let Some(r) = std::env::var("MINICLOUD_GUEST_RATE")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r >= 0.0)
        {
            l.requests_per_sec = (r > 0.0).then_some(r);
            l.burst = r.max(1.0);
        }
        if let Some(c) = std::env::var("MINICLOUD_GUEST_CONNECTIONS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|c| *c > 0)
        {
            l.max_connections = c;
        }
        l
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Lets one log line per kind through every 10 s, passing the number of
/// events since the last line.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    kinds: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl LogLimiter {
    pub(crate) fn warn(&self, kind: &'static str, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let due = {
            let Ok(mut k) = self.kinds.lock() else {
                return;
            };
            let e = k.entry(kind).or_insert((None, 0));
            e.1 += 1;
            match e.0 {
                Some(t) if now.duration_since(t) < LOG_EVERY => None,
                _ => {
                    e.0 = Some(now);
                    Some(std::mem::take(&mut e.1))
                }
            }
        };
        if let Some(n) = due {
            log(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0);
        b.last = t0;
        let taken = (0..20).filter(|_| b.take_at(t0)).count();
        assert_eq!(taken, 5);
        // 0.5 s later: 5 more tokens.
        let t1 = t0 + Duration::from_millis(500);
        let taken = (0..20).filter(|_| b.take_at(t1)).count();
        assert_eq!(taken, 5);
        // Never more than the burst saved up.
        let t2 = t1 + Duration::from_secs(60);
        let taken = (0..20).filter(|_| b.take_at(t2)).count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn log_limiter_counts_what_it_suppressed() {
        let l = LogLimiter::default();
        let mut lines = Vec::new();
        for _ in 0..100 {
            l.warn("x", |n| lines.push(n));
        }
        assert_eq!(lines, vec![1]);
        l.warn("y", |n| lines.push(n));
        assert_eq!(lines, vec![1, 1]);
    }
}
