//! Per-thread system-call filters (placeholder until the filters land).
