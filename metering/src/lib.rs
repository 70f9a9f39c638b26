//! minicloud metering: per-second usage, a price book, invoices and reports.
//!
//! Not built yet: its issue (#7) lands usage events into SQLite, prices
//! them from a TOML price book and produces invoices.
