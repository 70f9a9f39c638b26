//! Stream job throughput: a tumbling-window average per sensor over JSON
//! readings already in the input topic, measured from job start until its
//! lag is zero. One printed line per figure.
//!
//! ```sh
//! cargo bench -p streams --bench job
//! STREAMS_BENCH_JOB_RECORDS=2000000 cargo bench -p streams --bench job
//! ```

use std::time::{Duration, Instant};

use streams::job::{Aggregate, AggregateOp, JobSpec, TimeSource, WindowKind, WindowSpec};
use streams::{ProduceRecord, Streams, StreamsConfig, TopicConfig};

fn main() {
    let n: usize = std::env::var("STREAMS_BENCH_JOB_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Streams::open(StreamsConfig::new(dir.path())).expect("open");
    for partitions in [1u32, 4] {
        let input = format!("readings-{partitions}");
        s.create_topic("bench", &input, TopicConfig::new(partitions))
            .expect("create");
        let mut batch = Vec::with_capacity(1000);
        for i in 0..n {
            let sensor = i % 100;
            let v = format!(
                r#"{{"sensor":"s{sensor}","ts":{},"temp":{}}}"#,
                1_000_000 + i as i64 * 10,
                (i * 31) % 200
            );
            batch.push(ProduceRecord::keyed(format!("s{sensor}"), v));
            if batch.len() == 1000 {
                s.produce("bench", &input, &batch, None).expect("produce");
                batch.clear();
            }
        }
        let spec = JobSpec {
            name: format!("avg-{partitions}"),
            input: input.clone(),
            output: format!("avg-out-{partitions}"),
            key: "/sensor".into(),
            filter: None,
            window: WindowSpec {
                kind: WindowKind::Tumbling { size_ms: 10_000 },
                grace_ms: 1000,
                time: TimeSource::EventTime("/ts".into()),
            },
            aggregates: vec![
                Aggregate {
                    op: AggregateOp::Count,
                    field: None,
                    name: None,
                },
                Aggregate {
                    op: AggregateOp::Avg,
                    field: Some("/temp".into()),
                    name: None,
                },
            ],
            start: Default::default(),
            batch_records: 5000,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        let (secs, emitted) = rt.block_on(async {
            let t0 = Instant::now();
            s.start_job("bench", spec.clone()).await.expect("start");
            loop {
                let st = s.job_status("bench", &spec.name).expect("status");
                if st.lag == 0 && !st.tasks.is_empty() {
                    let emitted: u64 = st.tasks.iter().map(|t| t.emitted).sum();
                    let secs = t0.elapsed().as_secs_f64();
                    s.stop_job("bench", &spec.name).await.expect("stop");
                    return (secs, emitted);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        println!(
            "stream job (tumbling 10 s avg+count per key, event time, {partitions} partition(s) = {partitions} task(s), 2 tokio workers): {n} records in {secs:.3} s = {:.0} records/s, {emitted} windows emitted",
            n as f64 / secs
        );
    }
}
