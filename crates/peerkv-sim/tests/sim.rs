//! Simulator runs at N = 1,000 in the test suite: seeded, a few seconds each, asserting what
//! the history checker and the measures say — never a time.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use peerkv_sim::{Faults, SimConfig};

#[test]
fn a_stable_overlay_of_a_thousand_answers_every_get() {
    let cfg =
        SimConfig { duration: Some(Duration::from_secs(30)), ..SimConfig::new(1000, 2000, 1) };
    let r = peerkv_sim::run(&cfg);
    println!("{}", r.human());
    assert_eq!(r.get.ok, r.get.count, "every get succeeds on a stable overlay");
    assert_eq!(r.put.ok, r.put.count, "every put succeeds on a stable overlay");
    assert_eq!(r.verify.ok, r.verify.count);
    assert!(r.get.count > 500 && r.put.count > 500, "the workload ran: {r:?}");
    assert_eq!((r.acked_lost, r.reads_back_in_time, r.tombstones_resurrected), (0, 0, 0));
    // Every key written was read back at the end, and found.
    assert_eq!(r.verify.count, r.history.writes.min(r.verify.count));
    assert!(r.overlap > 0.99, "searches found the true replicas: overlap {}", r.overlap);
}

#[test]
fn churn_a_partition_and_a_fast_clock_lose_nothing_acknowledged() {
    let cfg = SimConfig {
        faults: Faults { churn: true, partition: true, skew: true },
        ..SimConfig::new(1000, 2000, 2)
    };
    let r = peerkv_sim::run(&cfg);
    println!("{}", r.human());
    assert!(r.crashes > 0, "churn crashed peers");
    assert!(r.history.writes > 100 && r.history.reads > 100, "the checker had a history");
    assert_eq!(r.acked_lost, 0, "acknowledged writes lost: {r:?}");
    assert_eq!(r.reads_back_in_time, 0, "reads back in time: {r:?}");
    assert_eq!(r.tombstones_resurrected, 0, "tombstones resurrected: {r:?}");
    // The partition costs availability on the side that cannot reach a quorum, not safety;
    // after it healed, the final reads find the keys again.
    assert!(r.put.ok < r.put.count, "a partition that refused no write did not cut anything");
    assert!(r.verify.success_rate > 0.95, "after healing: {}", r.verify.success_rate);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let cfg = SimConfig {
        faults: Faults { churn: true, partition: false, skew: false },
        duration: Some(Duration::from_secs(200)),
        ..SimConfig::new(200, 500, 7)
    };
    let strip = |r: peerkv_sim::Report| {
        let mut v = serde_json::to_value(r).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("wall_s");
        obj.remove("peak_rss_mib");
        v
    };
    let a = strip(peerkv_sim::run(&cfg));
    let b = strip(peerkv_sim::run(&cfg));
    assert_eq!(a, b);
    let other = strip(peerkv_sim::run(&SimConfig { seed: 8, ..cfg }));
    assert_ne!(a, other, "another seed, another run");
}

#[test]
fn faults_parse_from_the_command_line_form() {
    assert_eq!(
        Faults::parse("churn,skew").unwrap(),
        Faults { churn: true, partition: false, skew: true }
    );
    assert_eq!(Faults::parse("none").unwrap(), Faults::default());
    assert!(Faults::parse("churn,flood").unwrap_err().contains("flood"));
}
