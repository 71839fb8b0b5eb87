//! Three peers in one process on 127.0.0.1 (mDNS off): the second and third join through the
//! first, one puts a key, another reads it back, a third deletes it.
//!
//! Run: `cargo run --example three_nodes`

use peerkv::{Config, Node};

#[tokio::main]
async fn main() -> peerkv::Result<()> {
    let first = Node::spawn(Config::local()).await?;
    let addr = first.listen_addrs().await?[0].clone();
    println!("first peer {} listens on {addr}", first.peer_id());

    let joiner = || Config { bootstrap: vec![addr.clone()], ..Config::local() };
    let second = Node::spawn(joiner()).await?;
    let third = Node::spawn(joiner()).await?;

    let put = second.put("greeting", "hello from the second peer").await?;
    println!(
        "put: stored on {} of {} replicas (needed {}) in {:?}",
        put.acked, put.replicas, put.needed, put.elapsed
    );

    let got = third.get("greeting").await?;
    let value = got.value().map(String::from_utf8_lossy).unwrap_or_default();
    println!("get from the third peer: {value:?} ({} replies in {:?})", got.replies, got.elapsed);

    first.delete("greeting").await?;
    let gone = second.get("greeting").await?;
    println!("after delete: {}", if gone.value().is_none() { "not found" } else { "still there" });

    for node in [first, second, third] {
        node.shutdown().await?;
    }
    Ok(())
}
