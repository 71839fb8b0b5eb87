//! `Config::link_delay` on real peers: a get between peers whose TCP links are delayed takes at
//! least one emulated round trip. In-process, on 127.0.0.1, mDNS off; the only time asserted
//! is a lower bound (a delayed byte never arrives early), every wait has a deadline.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{cluster, local, shutdown, within};
use peerkv::Config;

/// Delay of each byte on each TCP link: a round trip of 100 ms.
const D: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_over_delayed_links_takes_at_least_one_round_trip() {
    let nodes = cluster(3, |_| Config { link_delay: Some(D), ..local() }).await;
    within("put", nodes[0].put("k", "v")).await.unwrap();
    let start = Instant::now();
    let got = within("get", nodes[1].get("k")).await.unwrap();
    let took = start.elapsed();
    assert_eq!(got.value(), Some(&b"v"[..]));
    // Q = 2 of the 3 replicas: at least one answer crossed a link, there and back.
    assert!(took >= 2 * D, "a get over delayed links took {took:?}");
    shutdown(&nodes).await;
}

#[test]
fn a_delay_past_the_limit_is_refused() {
    let c = Config { link_delay: Some(Duration::from_secs(11)), ..local() };
    assert!(c.validate().unwrap_err().to_string().contains("link_delay"));
    let c = Config { link_delay: Some(Duration::from_millis(10)), ..local() };
    c.validate().unwrap();
}
