//! The Markdown tables: one run's full table, the merged table of several seeds, and the summary
//! of several runs against N.

use std::fmt::Write as _;

use super::merge::{group, merge, Merged, Spread, Unit, FIGURES};
use super::{all_pairs, ratio, OpenDht, Params, Phase, RunDoc, SystemResult};

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1} %", v * 100.0))
}

fn mib(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |b| format!("{:.2}", b as f64 / (1024.0 * 1024.0)))
}

fn kib(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |b| format!("{:.1}", b / 1024.0))
}

/// The parameters of a run, for a table's heading (without the seed).
fn setting(p: &Params, profile: &str) -> String {
    format!(
        "N = {} peers, K = {} keys, {} B values, R = {}, W = Q = {}, C = {} ({profile} build{}{}{})",
        p.nodes,
        p.keys,
        p.value_size,
        p.replication,
        p.write_quorum,
        p.concurrency,
        if p.kad_lazy { ", libp2p-kad with lazy stream negotiation" } else { "" },
        if p.durable { ", peerkv with data directories (--durable)" } else { "" },
        link_delay(p)
    )
}

/// The link delay of a run for its heading: empty without one.
fn link_delay(p: &Params) -> String {
    if p.link_delay_ms > 0.0 {
        format!(
            ", TCP links delayed {} ms each way: round trip (RTT) {} ms",
            p.link_delay_ms,
            2.0 * p.link_delay_ms
        )
    } else {
        String::new()
    }
}

/// A phase's latency in round trips: `median / p95 / p99 / max` (no ratio: it would repeat
/// the ratio of the milliseconds).
fn round_trips(phase: &Phase) -> (String, Option<f64>) {
    let text = match &phase.round_trips {
        Some(r) => {
            format!(
                "{} / {} / {} / {}",
                num(r.median, 2),
                num(r.p95, 2),
                num(r.p99, 2),
                num(r.max, 2)
            )
        }
        None => "–".into(),
    };
    (text, None)
}

/// A system's column heading.
fn column(system: &str) -> &str {
    if system == "kad" {
        "libp2p-kad"
    } else {
        system
    }
}

/// The comparisons whose two systems are both among `names`.
fn pairs_among(names: &[&str]) -> Vec<(&'static str, &'static str, &'static str)> {
    all_pairs().filter(|(_, a, b)| names.contains(a) && names.contains(b)).collect()
}

/// One Markdown table for one run: a row per figure, a column per system, and a ratio column
/// per comparison whose two systems ran (peerkv / kad, and the two at equal consistency).
pub fn markdown(doc: &RunDoc) -> String {
    let p = &doc.params;
    let mut out = String::new();
    let _ = writeln!(out, "### {}, seed {}\n", setting(p, &doc.machine.profile), p.seed);
    let systems: Vec<&SystemResult> = doc.systems.iter().collect();
    let names: Vec<&str> = systems.iter().map(|s| s.system.as_str()).collect();
    let pairs = pairs_among(&names);
    let mut header = String::from("| figure |");
    let mut rule = String::from("| --- |");
    for s in &systems {
        let _ = write!(header, " {} |", column(&s.system));
        rule.push_str(" ---: |");
    }
    for (name, _, _) in &pairs {
        let _ = write!(header, " {name} |");
        rule.push_str(" ---: |");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    type Cell = fn(&SystemResult) -> (String, Option<f64>);
    let mut rows: Vec<(&str, Cell)> = vec![
        ("put median / p95 / p99 / max, ms", |s| {
            let l = &s.put.latency;
            (
                format!(
                    "{} / {} / {} / {}",
                    ms(l.median_ms),
                    ms(l.p95_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms)
                ),
                l.median_ms,
            )
        }),
        ("put success", |s| (pct(s.put.success_rate), None)),
        ("get (no local copy) median, ms", |s| {
            (ms(s.get.latency.median_ms), s.get.latency.median_ms)
        }),
        ("get (no local copy) p95, ms", |s| (ms(s.get.latency.p95_ms), s.get.latency.p95_ms)),
        ("get (no local copy) p99, ms", |s| (ms(s.get.latency.p99_ms), s.get.latency.p99_ms)),
        ("get (no local copy) max, ms", |s| (ms(s.get.latency.max_ms), s.get.latency.max_ms)),
        ("get success", |s| (pct(s.get.success_rate), None)),
        ("gets whose copy was evicted first", |s| (s.get.evicted.to_string(), None)),
        ("get waits for (records from distinct peers)", |s| {
            (s.read_quorum.map_or_else(|| "–".to_owned(), |q| q.to_string()), None)
        }),
        ("gets answered below their quorum (query ended first)", |s| {
            (s.get.below_quorum.to_string(), None)
        }),
        ("get from a holder median / p99, ms", |s| {
            let l = &s.get_from_holder.latency;
            (
                format!(
                    "{} / {} ({} local)",
                    ms(l.median_ms),
                    ms(l.p99_ms),
                    s.get_from_holder.local_hits
                ),
                l.median_ms,
            )
        }),
        ("lookup alone median / p99, ms", |s| {
            let l = &s.lookup.latency;
            (format!("{} / {}", ms(l.median_ms), ms(l.p99_ms)), l.median_ms)
        }),
        ("requests per get / put / lookup", |s| {
            (
                format!(
                    "{} / {} / {}",
                    num(s.get.requests_per_op, 1),
                    num(s.put.requests_per_op, 1),
                    num(s.lookup.requests_per_op, 1)
                ),
                None,
            )
        }),
        ("get hops mean (max)", |s| {
            let max = s.get.hops_max.map_or_else(|| "–".to_owned(), |m| m.to_string());
            (format!("{} ({max})", num(s.get.hops_per_op, 2)), None)
        }),
        ("get by hops: gets, median / p99 ms", |s| {
            let parts: Vec<String> = s
                .get
                .latency_by_hops
                .iter()
                .map(|(h, l)| format!("{h}: {}, {} / {}", l.samples, ms(l.median_ms), ms(l.p99_ms)))
                .collect();
            (if parts.is_empty() { "–".to_owned() } else { parts.join("; ") }, None)
        }),
        ("replicas asked per get / put", |s| {
            (format!("{} / {}", num(s.get.replicas_per_op, 1), num(s.put.replicas_per_op, 1)), None)
        }),
        ("wire packets per get / put", |s| {
            (
                format!(
                    "{} / {}",
                    num(s.get.wire_packets_per_op, 0),
                    num(s.put.wire_packets_per_op, 0)
                ),
                None,
            )
        }),
        ("wire KiB per get / put (less background)", |s| {
            (
                format!(
                    "{} / {}",
                    kib(s.get.wire_bytes_per_op_net),
                    kib(s.put.wire_bytes_per_op_net)
                ),
                s.get.wire_bytes_per_op_net,
            )
        }),
        ("concurrent gets per s", |s| {
            (num(s.concurrent_get.ops_per_s, 0), s.concurrent_get.ops_per_s)
        }),
        ("concurrent get median / p99, ms", |s| {
            let l = &s.concurrent_get.latency;
            (format!("{} / {}", ms(l.median_ms), ms(l.p99_ms)), l.p99_ms)
        }),
        ("concurrent get success", |s| (pct(s.concurrent_get.success_rate), None)),
        ("concurrent puts per s", |s| {
            (num(s.concurrent_put.ops_per_s, 0), s.concurrent_put.ops_per_s)
        }),
        ("concurrent put median / p99, ms", |s| {
            let l = &s.concurrent_put.latency;
            (format!("{} / {}", ms(l.median_ms), ms(l.p99_ms)), l.p99_ms)
        }),
        ("store commits / records committed", |s| {
            let n = |v: Option<u64>| v.map_or("—".to_owned(), |v| v.to_string());
            (format!("{} / {}", n(s.store_commits), n(s.records_committed)), None)
        }),
        ("CPU ms per get (concurrent) / put", |s| {
            (
                format!(
                    "{} / {}",
                    num(s.concurrent_get.cpu_s_per_op.map(|c| c * 1000.0), 2),
                    num(s.put.cpu_s_per_op.map(|c| c * 1000.0), 2)
                ),
                s.concurrent_get.cpu_s_per_op,
            )
        }),
        ("RSS per peer after settle / workload, MiB", |s| {
            (
                format!(
                    "{} / {}",
                    mib(s.memory.rss_per_peer_after_settle_bytes),
                    mib(s.memory.rss_per_peer_after_workload_bytes)
                ),
                s.memory.rss_per_peer_after_workload_bytes.map(|b| b as f64),
            )
        }),
        ("connections after settle / workload", |s| {
            (format!("{} / {}", s.settle.connections, s.memory.connections_after_workload), None)
        }),
        ("start-up / settle, s", |s| {
            (
                format!(
                    "{:.1} / {:.1}{}",
                    s.startup.seconds,
                    s.settle.seconds,
                    if s.settle.settled { "" } else { " (not settled)" }
                ),
                // The ratio compares the whole time to a settled overlay.
                Some(s.startup.seconds + s.settle.seconds),
            )
        }),
        ("routing table mean (min)", |s| {
            (format!("{:.1} ({})", s.settle.routing_table_mean, s.settle.routing_table_min), None)
        }),
        ("idle background, KiB/s", |s| (kib(s.settle.background_bytes_per_s), None)),
        ("machine load average at start / end", |s| {
            (format!("{} / {}", num(s.load_average[0], 1), num(s.load_average[1], 1)), None)
        }),
    ];
    if p.link_delay_ms > 0.0 {
        // Latencies in round trips of the emulated link, beside the milliseconds they come from.
        let at = rows.iter().position(|(name, _)| *name == "get success").unwrap_or(rows.len());
        let in_rtts: [(&str, Cell); 4] = [
            ("put median / p95 / p99 / max, round trips", |s| round_trips(&s.put)),
            ("get (no local copy) median / p95 / p99 / max, round trips", |s| round_trips(&s.get)),
            ("lookup alone median / p95 / p99 / max, round trips", |s| round_trips(&s.lookup)),
            ("concurrent get median / p95 / p99 / max, round trips", |s| {
                round_trips(&s.concurrent_get)
            }),
        ];
        rows.splice(at..at, in_rtts);
    }
    for (name, cell) in rows {
        let mut line = format!("| {name} |");
        let mut vals = Vec::new();
        for s in &systems {
            let (text, v) = cell(s);
            let _ = write!(line, " {text} |");
            vals.push((s.system.as_str(), v));
        }
        let get = |n: &str| vals.iter().find(|(s, _)| *s == n).and_then(|(_, v)| *v);
        for (_, a, b) in &pairs {
            let _ = write!(line, " {} |", num(ratio(get(a), get(b)), 2));
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// `median (lowest–highest)`; the median alone when one run had the figure or both ends print
/// alike.
fn spread(s: Option<&Spread>, show: impl Fn(f64) -> String) -> String {
    let Some(s) = s else {
        return "–".into();
    };
    let (median, lo, hi) = (show(s.median), show(s.lo), show(s.hi));
    if lo == hi {
        median
    } else {
        format!("{median} ({lo}–{hi})")
    }
}

fn shown(unit: Unit) -> impl Fn(f64) -> String {
    move |v| match unit {
        Unit::Ms => ms(Some(v)),
        Unit::Share => pct(Some(v)),
        Unit::Plain(digits) => num(Some(v), digits),
    }
}

fn ratio_shown(v: f64) -> String {
    num(Some(v), 2)
}

/// "3 runs (seeds 1, 2, 3)".
fn runs_text(seeds: &[u64]) -> String {
    let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    match seeds.len() {
        1 => format!("1 run (seed {})", list.join("")),
        n => format!("{n} runs (seeds {})", list.join(", ")),
    }
}

/// The merged table of several runs of one configuration: a row per figure, a column per
/// system and per comparison, each cell the median over the runs with the lowest and highest
/// in brackets.
pub fn markdown_merged(m: &Merged) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {}: median of {}, lowest–highest in brackets\n",
        setting(&m.params, &m.machine.profile),
        runs_text(&m.seeds)
    );
    let mut header = String::from("| figure |");
    let mut rule = String::from("| --- |");
    for s in &m.systems {
        let _ = write!(header, " {} |", column(&s.system));
        rule.push_str(" ---: |");
    }
    for p in &m.pairs {
        let _ = write!(header, " {} |", p.name);
        rule.push_str(" ---: |");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let mut line = String::from("| runs |");
    for s in &m.systems {
        let _ = write!(line, " {} |", s.runs);
    }
    for p in &m.pairs {
        let _ = write!(line, " {} |", p.runs);
    }
    let _ = writeln!(out, "{line}");
    for f in FIGURES {
        // A figure no system has (round trips without --link-delay, wire counts without a
        // namespace of its own) is left out.
        if m.systems.iter().all(|s| !s.figures.contains_key(f.key)) {
            continue;
        }
        let mut line = format!("| {} |", f.label);
        for s in &m.systems {
            let _ = write!(line, " {} |", spread(s.figures.get(f.key), shown(f.unit)));
        }
        for p in &m.pairs {
            let cell =
                if f.ratio { spread(p.ratios.get(f.key), ratio_shown) } else { String::new() };
            let _ = write!(line, " {cell} |");
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The settings of a run that the summary's N column does not say: K, and what differs from
/// the defaults.
fn variant(p: &Params, profile: &str) -> String {
    let mut parts = vec![format!("K = {}", p.keys)];
    if p.idle_timeout_s != 10.0 {
        parts.push(format!("idle timeout {} s", p.idle_timeout_s));
    }
    if p.kad_lazy {
        parts.push("libp2p-kad lazy".into());
    }
    if p.durable {
        parts.push("durable".into());
    }
    if p.link_delay_ms > 0.0 {
        parts.push(format!("link delay {} ms (RTT {} ms)", p.link_delay_ms, 2.0 * p.link_delay_ms));
    }
    if p.replication != 5 {
        parts.push(format!("R = {}", p.replication));
    }
    if p.kad_replication != 20 {
        parts.push(format!("libp2p-kad R = {}", p.kad_replication));
    }
    if p.value_size != 1024 {
        parts.push(format!("{} B values", p.value_size));
    }
    if p.concurrency != 16 {
        parts.push(format!("C = {}", p.concurrency));
    }
    if p.op_timeout_s != 10.0 {
        parts.push(format!("timeout {} s", p.op_timeout_s));
    }
    if profile != "release" {
        parts.push(format!("{profile} build"));
    }
    parts.join(", ")
}

/// OpenDHT's runs of one N, merged like ours.
struct OpenDhtMerged {
    runs: usize,
    median: Option<Spread>,
    p99: Option<Spread>,
    success: Option<Spread>,
    rss_mib: Option<Spread>,
}

fn merge_opendht(runs: &[&OpenDht]) -> OpenDhtMerged {
    const MIB: f64 = 1024.0 * 1024.0;
    OpenDhtMerged {
        runs: runs.len(),
        median: Spread::of(runs.iter().map(|o| o.get.median_ms)),
        p99: Spread::of(runs.iter().map(|o| o.get.p99_ms)),
        success: Spread::of(runs.iter().map(|o| o.success_rate)),
        rss_mib: Spread::of(runs.iter().map(|o| o.rss_per_node_bytes.map(|b| b as f64 / MIB))),
    }
}

/// The Markdown for several runs, smallest N first: a summary table with a row per
/// configuration (runs that differ only in the seed are one row: each figure the median over
/// them, lowest–highest in brackets) of get latency, the comparisons, success and memory, with
/// OpenDHT where given; then the merged table of each configuration with several runs, then
/// each run's full table.
pub fn markdown_all(docs: &[RunDoc], opendht: &[OpenDht]) -> String {
    let mut groups = group(docs);
    groups.sort_by_key(|g| g.first().map_or(0, |d| d.params.nodes));
    let merged: Vec<Merged> = groups.iter().map(|g| merge(g)).collect();
    let mut names: Vec<&str> = Vec::new();
    for s in merged.iter().flat_map(|m| &m.systems) {
        if !names.contains(&s.system.as_str()) {
            names.push(&s.system);
        }
    }
    let pairs: Vec<&str> = all_pairs()
        .map(|(name, _, _)| name)
        .filter(|name| merged.iter().any(|m| m.pairs.iter().any(|p| p.name == *name)))
        .collect();
    let with_opendht = !opendht.is_empty();

    let mut out = String::from(
        "Each figure is the median over a configuration's runs (seeds), lowest–highest in brackets when they differ; a ratio is the median of each run's own ratio. Get latency from a peer without a copy.\n\n",
    );
    let mut header = String::from("| N | runs |");
    let mut rule = String::from("| ---: | --- |");
    for name in &names {
        let _ = write!(header, " {} get median / p99, ms |", column(name));
        rule.push_str(" ---: |");
    }
    for name in &pairs {
        let _ = write!(header, " {name} median / p99 |");
        rule.push_str(" ---: |");
    }
    let mut also: Vec<&str> = names.iter().map(|n| column(n)).collect();
    if with_opendht {
        header.push_str(" OpenDHT get median / p99, ms |");
        rule.push_str(" ---: |");
        also.push("OpenDHT");
    }
    let _ = write!(header, " get success {} |", also.join(" / "));
    let _ = write!(header, " RSS per peer {}, MiB |", also.join(" / "));
    rule.push_str(" ---: | ---: |");
    let _ = writeln!(out, "{header}\n{rule}");

    let mut sizes: Vec<usize> =
        merged.iter().map(|m| m.params.nodes).chain(opendht.iter().map(|o| o.nodes)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let ms_spread = |s: Option<&Spread>| spread(s, shown(Unit::Ms));
    for n in sizes {
        let here: Vec<&Merged> = merged.iter().filter(|m| m.params.nodes == n).collect();
        let others: Vec<&OpenDht> = opendht.iter().filter(|o| o.nodes == n).collect();
        let o = (!others.is_empty()).then(|| merge_opendht(&others));
        // OpenDHT's figures stand on the first row of their N; an N only OpenDHT ran gets a
        // row of its own.
        let rows: Vec<Option<&Merged>> =
            if here.is_empty() { vec![None] } else { here.into_iter().map(Some).collect() };
        for (i, m) in rows.into_iter().enumerate() {
            let runs = match (m, &o) {
                (Some(m), _) => {
                    format!("{}; {}", runs_text(&m.seeds), variant(&m.params, &m.machine.profile))
                }
                (None, Some(o)) => {
                    format!("OpenDHT: {} run{}", o.runs, if o.runs == 1 { "" } else { "s" })
                }
                (None, None) => String::new(),
            };
            let mut line = format!("| {n} | {runs} |");
            let system = |name: &str| m.and_then(|m| m.systems.iter().find(|s| s.system == name));
            for name in &names {
                let cell = match system(name) {
                    Some(s) => format!(
                        "{} / {}",
                        ms_spread(s.figures.get("get_median_ms")),
                        ms_spread(s.figures.get("get_p99_ms"))
                    ),
                    None => "–".into(),
                };
                let _ = write!(line, " {cell} |");
            }
            for name in &pairs {
                let cell = match m.and_then(|m| m.pairs.iter().find(|p| p.name == *name)) {
                    Some(p) => format!(
                        "{} / {}",
                        spread(p.ratios.get("get_median_ms"), ratio_shown),
                        spread(p.ratios.get("get_p99_ms"), ratio_shown)
                    ),
                    None => "–".into(),
                };
                let _ = write!(line, " {cell} |");
            }
            let o = o.as_ref().filter(|_| i == 0);
            if with_opendht {
                let cell = match o {
                    Some(o) => {
                        format!("{} / {}", ms_spread(o.median.as_ref()), ms_spread(o.p99.as_ref()))
                    }
                    None => "–".into(),
                };
                let _ = write!(line, " {cell} |");
            }
            let mut success: Vec<String> = names
                .iter()
                .map(|name| {
                    spread(
                        system(name).and_then(|s| s.figures.get("get_success")),
                        shown(Unit::Share),
                    )
                })
                .collect();
            let mut rss: Vec<String> = names
                .iter()
                .map(|name| {
                    spread(
                        system(name).and_then(|s| s.figures.get("rss_mib_per_peer")),
                        shown(Unit::Plain(2)),
                    )
                })
                .collect();
            if with_opendht {
                success.push(spread(o.and_then(|o| o.success.as_ref()), shown(Unit::Share)));
                rss.push(spread(o.and_then(|o| o.rss_mib.as_ref()), shown(Unit::Plain(2))));
            }
            let _ = writeln!(line, " {} | {} |", success.join(" / "), rss.join(" / "));
            out.push_str(&line);
        }
    }
    out.push('\n');
    for m in merged.iter().filter(|m| m.seeds.len() > 1) {
        out.push_str(&markdown_merged(m));
        out.push('\n');
    }
    for d in groups.iter().flatten() {
        out.push_str(&markdown(d));
        out.push('\n');
    }
    out
}
