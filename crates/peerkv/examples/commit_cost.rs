//! What one durable commit of one ~1.2 KB record costs, three ways (CPU and wall per commit):
//! a redb transaction with `Durability::Immediate` (today's store), a redb transaction with
//! `Durability::None` alone, and that plus an append to a preallocated log with `fdatasync`.
//!
//! `cargo run --release -p peerkv --example commit_cost -- DIR N`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Seek, SeekFrom, Write};
use std::time::Instant;

use redb::{Database, Durability, TableDefinition};

const T: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

fn cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn run(name: &str, n: usize, mut f: impl FnMut(usize)) {
    let (c0, t0) = (cpu(), Instant::now());
    for i in 0..n {
        f(i);
    }
    let (c, t) = (cpu() - c0, t0.elapsed().as_secs_f64());
    println!(
        "{name:<28} {:>8.1} us CPU / commit {:>8.1} us wall / commit",
        c * 1e6 / n as f64,
        t * 1e6 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let n: usize = args[2].parse().unwrap();
    let value = vec![7u8; 1200];
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i:08}")).collect();

    let db = Database::create(dir.join("a.redb")).unwrap();
    run("redb Immediate", n, |i| {
        let tx = db.begin_write().unwrap();
        tx.open_table(T).unwrap().insert(keys[i].as_str(), value.as_slice()).unwrap();
        tx.commit().unwrap();
    });
    drop(db);

    let db = Database::create(dir.join("b.redb")).unwrap();
    run("redb None", n, |i| {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::None).unwrap();
        tx.open_table(T).unwrap().insert(keys[i].as_str(), value.as_slice()).unwrap();
        tx.commit().unwrap();
    });
    drop(db);

    let db = Database::create(dir.join("c.redb")).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("c.log"))
        .unwrap();
    log.write_all(&vec![0u8; 64 << 20]).unwrap();
    log.sync_all().unwrap();
    log.seek(SeekFrom::Start(0)).unwrap();
    run("redb None + log fdatasync", n, |i| {
        log.write_all(&value).unwrap();
        log.write_all(keys[i].as_bytes()).unwrap();
        log.sync_data().unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::None).unwrap();
        tx.open_table(T).unwrap().insert(keys[i].as_str(), value.as_slice()).unwrap();
        tx.commit().unwrap();
    });
    let tx = db.begin_write().unwrap();
    tx.commit().unwrap();

    let mut grow = std::fs::File::create(dir.join("d.log")).unwrap();
    run("append-only log fdatasync", n, |i| {
        grow.write_all(&value).unwrap();
        grow.write_all(keys[i].as_bytes()).unwrap();
        grow.sync_data().unwrap();
    });
}
