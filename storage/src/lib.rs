//! minicloud storage: block volumes for VMs and S3-compatible object storage.
//!
//! Not built yet: its issue (#8) adds sparse raw volumes, snapshots and an
//! S3 endpoint on the `s3s` crate.
