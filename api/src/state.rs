//! What every handler shares.

use std::sync::Arc;

use crate::compute::Compute;
use crate::store::Store;

/// The application state.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The compute service.
    pub compute: Arc<Compute>,
    /// Topics, consumer groups, queues and stream jobs.
    pub streams: streams::Streams,
    /// The price book billing uses.
    pub prices: Arc<metering::PriceBook>,
    /// Block volumes and snapshots (the `storage` crate).
    pub volumes: storage::volumes::Volumes,
    /// The object store (the S3 endpoint serves the same one).
    pub objects: storage::s3::Backend,
    /// Object-storage sinks of topics.
    pub sinks: crate::sinks::Sinks,
}
