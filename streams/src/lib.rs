//! minicloud streams: durable partitioned topics, consumer groups, SQS-style
//! queues and stateful stream jobs.
//!
//! Not built yet: its issue (#9) adds the segmented partition log first.
