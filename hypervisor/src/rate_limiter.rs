//! Token-bucket rate limits for devices: one bucket for bandwidth (bytes)
//! and one for operations, each with a steady `rate` per second and a
//! `burst` (the bucket's size, full at start).
//!
//! A request takes its cost from both buckets at once or from neither; when
//! it cannot, the limiter says how long until it can, and the device waits
//! that long (on a timer, not on the vCPU) before trying again. A request
//! bigger than a bucket is let through when the bucket is full and leaves
//! it in debt, so the long-run rate still holds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One bucket's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Tokens (bytes or operations) added per second; at least 1.
    pub rate: u64,
    /// Bucket size (the most that can go at once after a quiet period);
    /// defaults to one second's worth.
    #[serde(default)]
    pub burst: Option<u64>,
}

/// A device's limits: bandwidth (bytes/s) and operations (ops/s); a
/// missing bucket means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiterConfig {
    /// Bytes per second.
    #[serde(default)]
    pub bandwidth: Option<BucketConfig>,
    /// Operations per second.
    #[serde(default)]
    pub ops: Option<BucketConfig>,
}

impl RateLimiterConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        for (name, b) in [("bandwidth", self.bandwidth), ("ops", self.ops)] {
            if let Some(b) = b {
                if b.rate == 0 {
                    return Err(format!("{name}.rate must be at least 1"));
                }
                if b.burst == Some(0) {
                    return Err(format!("{name}.burst must be at least 1"));
                }
            }
        }
        Ok(())
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    size: f64,
    tokens: f64,
    last: Instant,
    cfg: BucketConfig,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(cfg: BucketConfig, now: Instant) -> Self {
        let rate = cfg.rate.max(1) as f64;
        let size = cfg.burst.unwrap_or(cfg.rate).max(1) as f64;
        TokenBucket {
            rate,
            size,
            tokens: size,
            last: now,
            cfg,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.size);
    }

    /// How long until `cost` can be taken (zero: now).
    fn wait_for(&mut self, cost: u64, now: Instant) -> Duration {
        self.refill(now);
        let need = (cost as f64).min(self.size);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }

    fn take(&mut self, cost: u64) {
        self.tokens -= cost as f64;
    }
}

/// A device's rate limiter (no buckets: unlimited).
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
}

impl RateLimiter {
    /// A limiter with `cfg`, buckets full.
    pub fn new(cfg: &RateLimiterConfig) -> Self {
        let now = Instant::now();
        RateLimiter {
            bandwidth: cfg.bandwidth.map(|b| TokenBucket::new(b, now)),
            ops: cfg.ops.map(|b| TokenBucket::new(b, now)),
        }
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.bandwidth.is_some() || self.ops.is_some()
    }

    /// The current settings.
    pub fn config(&self) -> RateLimiterConfig {
        RateLimiterConfig {
            bandwidth: self.bandwidth.as_ref().map(|b| b.cfg),
            ops: self.ops.as_ref().map(|b| b.cfg),
        }
    }

    /// New settings; buckets whose settings change start full.
    pub fn reconfigure(&mut self, cfg: &RateLimiterConfig) {
        let now = Instant::now();
        let keep = |old: Option<TokenBucket>, new: Option<BucketConfig>| match (old, new) {
            (Some(o), Some(n)) if o.cfg == n => Some(o),
            (_, Some(n)) => Some(TokenBucket::new(n, now)),
            (_, None) => None,
        };
        self.bandwidth = keep(self.bandwidth.take(), cfg.bandwidth);
        self.ops = keep(self.ops.take(), cfg.ops);
    }

    /// Takes one operation of `bytes` if both buckets allow it now;
    /// otherwise takes nothing and returns how long to wait.
    pub fn try_consume(&mut self, bytes: u64) -> Result<(), Duration> {
        self.try_consume_at(bytes, Instant::now())
    }

    /// [`RateLimiter::try_consume`] at a given time (for tests).
    pub fn try_consume_at(&mut self, bytes: u64, now: Instant) -> Result<(), Duration> {
        let w_bw = self
            .bandwidth
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(bytes, now));
        let w_ops = self
            .ops
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(1, now));
        let wait = w_bw.max(w_ops);
        if !wait.is_zero() {
            return Err(wait);
        }
        if let Some(b) = &mut self.bandwidth {
            b.take(bytes);
        }
        if let Some(b) = &mut self.ops {
            b.take(1);
        }
        Ok(())
    }
}

/// A non-blocking one-shot timer (timerfd) a throttled device waits on.
pub struct Timer(OwnedFd);

impl Timer {
    /// A disarmed timer.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Timer(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Fires once after `after` (at least 50 µs).
    pub fn arm(&self, after: Duration) {
        let after = after.max(Duration::from_micros(50));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid timerfd and itimerspec; old value not wanted.
        unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Consumes an expiry, if any (never blocks).
    pub fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: 8 writable bytes; non-blocking fd.
        unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Parses the `bw=`, `bw_burst=`, `iops=`, `iops_burst=` words of a
/// `--disk` flag into `cfg`. Returns false for a word it does not know.
pub fn parse_flag(cfg: &mut RateLimiterConfig, key: &str, value: &str) -> Result<bool, String> {
    let n = || {
        parse_size(value).ok_or_else(|| format!("{key}={value}: expected a number (K/M/G allowed)"))
    };
    let bucket = |b: &mut Option<BucketConfig>| {
        b.get_or_insert(BucketConfig {
            rate: 0,
            burst: None,
        })
        .to_owned()
    };
    match key {
        "bw" => {
            let mut b = bucket(&mut cfg.bandwidth);
            b.rate = n()?;
            cfg.bandwidth = Some(b);
        }
        "bw_burst" => {
            let mut b = bucket(&mut cfg.bandwidth);
            b.burst = Some(n()?);
            cfg.bandwidth = Some(b);
        }
        "iops" => {
            let mut b = bucket(&mut cfg.ops);
            b.rate = n()?;
            cfg.ops = Some(b);
        }
        "iops_burst" => {
            let mut b = bucket(&mut cfg.ops);
            b.burst = Some(n()?);
            cfg.ops = Some(b);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// "4096", "64K", "10M", "1G" (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bw(rate: u64, burst: u64) -> RateLimiterConfig {
        RateLimiterConfig {
            bandwidth: Some(BucketConfig {
                rate,
                burst: Some(burst),
            }),
            ops: None,
        }
    }

    /// Simulated clock: how many `cost`-byte requests go through in `secs`
    /// when the device retries exactly when told.
    fn simulate(l: &mut RateLimiter, start: Instant, cost: u64, secs: f64) -> u64 {
        let end = start + Duration::from_secs_f64(secs);
        let mut now = start;
        let mut done = 0;
        while now < end {
            match l.try_consume_at(cost, now) {
                Ok(()) => done += 1,
                Err(w) => now += w,
            }
        }
        done
    }

    #[test]
    fn bandwidth_holds_over_time() {
        let start = Instant::now();
        let mut l = RateLimiter::new(&bw(1 << 20, 4096));
        // 4 KiB requests for 10 simulated seconds at 1 MiB/s: 2560 (+1 burst).
        let n = simulate(&mut l, start, 4096, 10.0);
        assert!((2550..=2570).contains(&n), "{n}");
    }

    #[test]
    fn ops_hold_and_both_buckets_must_agree() {
        let start = Instant::now();
        let mut l = RateLimiter::new(&RateLimiterConfig {
            bandwidth: Some(BucketConfig {
                rate: 1 << 30,
                burst: None,
            }),
            ops: Some(BucketConfig {
                rate: 100,
                burst: Some(1),
            }),
        });
        let n = simulate(&mut l, start, 512, 5.0);
        assert!((499..=502).contains(&n), "{n}");
    }

    #[test]
    fn requests_bigger_than_the_bucket_go_through_and_leave_debt() {
        let start = Instant::now();
        let mut l = RateLimiter::new(&bw(1000, 100));
        assert!(l.try_consume_at(500, start).is_ok());
        // 400 of debt plus 100 to refill the bucket: half a second.
        let w = l.try_consume_at(100, start).expect_err("must wait");
        assert!((w.as_secs_f64() - 0.5).abs() < 1e-6, "{w:?}");
        let n = simulate(&mut l, start, 500, 10.0);
        assert!((19..=21).contains(&n), "{n}");
    }

    #[test]
    fn reconfigure_keeps_unchanged_buckets_and_drops_removed_ones() {
        let mut l = RateLimiter::new(&bw(1000, 1000));
        assert!(l.try_consume(1000).is_ok());
        assert!(l.try_consume(1000).is_err());
        l.reconfigure(&bw(1000, 1000));
        assert!(l.try_consume(1000).is_err(), "same settings: same bucket");
        l.reconfigure(&RateLimiterConfig::default());
        assert!(!l.is_limited());
        assert!(l.try_consume(1 << 40).is_ok());
    }

    #[test]
    fn flags_parse() {
        let mut c = RateLimiterConfig::default();
        assert!(parse_flag(&mut c, "bw", "10M").expect("bw"));
        assert!(parse_flag(&mut c, "iops", "500").expect("iops"));
        assert!(parse_flag(&mut c, "iops_burst", "50").expect("burst"));
        assert!(!parse_flag(&mut c, "ro", "").expect("other"));
        assert!(parse_flag(&mut c, "bw", "x").is_err());
        assert_eq!(c.bandwidth.map(|b| b.rate), Some(10 << 20));
        assert_eq!(c.ops.and_then(|b| b.burst), Some(50));
        assert!(c.validate().is_ok());
        let mut z = RateLimiterConfig::default();
        parse_flag(&mut z, "bw_burst", "5").expect("burst only");
        assert!(z.validate().is_err(), "burst without a rate");
    }
}
