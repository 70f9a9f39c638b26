//! Window arithmetic: which windows an event time falls in, and when a
//! window is closed by the watermark.
//!
//! The watermark of a task is the largest event time it has seen minus the
//! grace period. A tumbling or hopping window `[start, end)` is closed (its
//! result emitted, its state dropped) once `end <= watermark`; an event
//! whose window is already closed is late and dropped. A session window is
//! closed once `last event + gap <= watermark`; an event older than the
//! watermark is late (it could otherwise join a session already emitted).
//! Because emission is decided after every record from the record sequence
//! alone, results do not depend on how input was split into batches, which
//! is what makes replay after a crash produce identical output.

use super::spec::WindowKind;

/// The `[start, end)` windows of a tumbling or hopping window that contain
/// `t`, oldest first. Empty for sessions (see [`session_overlaps`]).
pub fn windows_for(kind: WindowKind, t: i64) -> Vec<(i64, i64)> {
    match kind {
        WindowKind::Tumbling { size_ms } => {
            let size = size_ms as i64;
            let start = t.div_euclid(size) * size;
            vec![(start, start + size)]
        }
        WindowKind::Hopping {
            size_ms,
            advance_ms,
        } => {
            let (size, adv) = (size_ms as i64, advance_ms as i64);
            let mut start = t.div_euclid(adv) * adv;
            let mut out = Vec::new();
            while start + size > t {
                out.push((start, start + size));
                start -= adv;
            }
            out.reverse();
            out
        }
        WindowKind::Session { .. } => Vec::new(),
    }
}

/// Whether an event at `t` joins the session `[start, end)` (where `end`
/// is the last event plus the gap): it is closer than the gap to it.
pub fn session_overlaps(start: i64, end: i64, t: i64, gap_ms: u64) -> bool {
    t < end && t + gap_ms as i64 > start
}

/// Whether an event at `t` in window `[_, end)` comes too late.
pub fn is_late(kind: WindowKind, t: i64, end: i64, watermark: i64) -> bool {
    match kind {
        WindowKind::Session { .. } => t < watermark,
        _ => end <= watermark,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_hopping() {
        assert_eq!(
            windows_for(WindowKind::Tumbling { size_ms: 10 }, 25),
            vec![(20, 30)]
        );
        assert_eq!(
            windows_for(WindowKind::Tumbling { size_ms: 10 }, -1),
            vec![(-10, 0)]
        );
        assert_eq!(
            windows_for(
                WindowKind::Hopping {
                    size_ms: 10,
                    advance_ms: 5
                },
                12
            ),
            vec![(5, 15), (10, 20)]
        );
        assert_eq!(
            windows_for(
                WindowKind::Hopping {
                    size_ms: 10,
                    advance_ms: 10
                },
                10
            ),
            vec![(10, 20)]
        );
    }

    #[test]
    fn sessions() {
        assert!(session_overlaps(100, 150, 149, 50));
        assert!(!session_overlaps(100, 150, 150, 50));
        assert!(session_overlaps(100, 150, 51, 50));
        assert!(!session_overlaps(100, 150, 50, 50));
    }
}
