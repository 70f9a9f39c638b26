//! Claims are atomic: many concurrent launches at a nearly full host never
//! double-book it, and releases return exactly what was claimed.

mod common;

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::thread;

use scheduler::{HostSpec, PlacementRequest, Scheduler, uniform_cpus};

const THREADS: usize = 16;
const TRIES_PER_THREAD: usize = 8;

/// Every thread waits at the barrier, then tries its requests at once.
fn launch_all(
    s: &Scheduler,
    make: impl Fn(usize, usize) -> PlacementRequest + Sync,
) -> Vec<String> {
    let barrier = Barrier::new(THREADS);
    let placed: Vec<Vec<String>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (barrier, make) = (&barrier, &make);
                scope.spawn(move || {
                    barrier.wait();
                    (0..TRIES_PER_THREAD)
                        .filter_map(|i| s.place(&make(t, i)).ok())
                        .map(|p| p.allocation.id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("launcher thread panicked"))
            .collect()
    });
    placed.into_iter().flatten().collect()
}

#[test]
fn concurrent_shared_launches_fill_exactly_the_room_left() {
    // 8 CPUs × 4.0 = 32 vCPUs; 29 taken leaves room for exactly 3 more.
    let s = common::uniform_fleet(1, 1, 4, 2, 64 * 1024);
    s.place(&PlacementRequest::new("filler", 29, 1024))
        .expect("filler fits");
    let placed = launch_all(&s, |t, i| {
        PlacementRequest::new(format!("vm-{t}-{i}"), 1, 256)
    });
    assert_eq!(placed.len(), 3, "{placed:?}");
    let host = s.host("h00").expect("host exists");
    assert_eq!(host.vcpus_used, host.vcpu_capacity);
    common::check_invariants(&s).expect("invariants hold");
}

#[test]
fn concurrent_memory_bound_launches_never_overbook() {
    // 16 GiB, 1 GiB already used: exactly 15 launches of 1 GiB fit.
    let s = common::uniform_fleet(1, 1, 8, 2, 16 * 1024);
    s.place(&PlacementRequest::new("filler", 1, 1024))
        .expect("filler fits");
    let placed = launch_all(&s, |t, i| {
        PlacementRequest::new(format!("vm-{t}-{i}"), 1, 1024)
    });
    assert_eq!(placed.len(), 15);
    let host = s.host("h00").expect("host exists");
    assert_eq!(host.memory_used_mib, host.memory_capacity_mib);
    common::check_invariants(&s).expect("invariants hold");
}

#[test]
fn concurrent_dedicated_launches_never_share_a_cpu() {
    let s = common::scheduler();
    s.add_host(HostSpec::new("h", uniform_cpus(2, 2, 2), 64 * 1024))
        .expect("valid host");
    let placed = launch_all(&s, |t, i| {
        PlacementRequest::new(format!("vm-{t}-{i}"), 1, 256).dedicated()
    });
    assert_eq!(placed.len(), 8);
    let cpus: BTreeSet<u32> = s
        .allocations()
        .iter()
        .flat_map(|a| a.dedicated_cpus.iter())
        .collect();
    assert_eq!(cpus.len(), 8);
    assert!(s.host("h").expect("host exists").shared_cpus.is_empty());
    common::check_invariants(&s).expect("invariants hold");
}

#[test]
fn concurrent_churn_leaves_the_fleet_as_it_found_it() {
    let s = common::uniform_fleet(4, 1, 4, 2, 32 * 1024);
    let empty = s.hosts();
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let (s, barrier) = (&s, &barrier);
            scope.spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                for i in 0..200 {
                    let id = format!("vm-{t}-{i}");
                    let req = if i % 5 == 0 {
                        PlacementRequest::new(id, 1 + (i % 3) as u32, 512).dedicated()
                    } else {
                        PlacementRequest::new(id, 1 + (i % 4) as u32, 256 * (1 + (i % 7) as u64))
                    };
                    if let Ok(p) = s.place(&req) {
                        mine.push(p.allocation);
                    }
                    if i % 3 == 2
                        && let Some(a) = mine.pop()
                    {
                        assert_eq!(s.release(&a.id), Some(a));
                    }
                }
                for a in mine {
                    assert_eq!(s.release(&a.id), Some(a));
                }
            });
        }
    });
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(s.hosts(), empty);
}
