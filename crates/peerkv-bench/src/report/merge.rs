//! Several runs of one configuration as one: runs with other seeds (`--seed 1,2,3`, or
//! documents given together to `--plot`) are grouped by their settings, and each figure becomes
//! the median over the runs with the lowest and highest beside it. A ratio of two systems is
//! the median of each run's own ratio: both systems of a run shared the machine's mood of the
//! moment, so a run's ratio is steadier than a ratio of medians taken at different times.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{all_pairs, ratio, Machine, Params, RunDoc, SystemResult};

/// Version tag of the merged document's layout.
pub const MERGED_SCHEMA: &str = "peerkv-bench-merged/1";

/// One figure over several runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median over the runs that have the figure (of an even number: the mean of the two
    /// middle values).
    pub median: f64,
    /// The lowest.
    pub lo: f64,
    /// The highest.
    pub hi: f64,
    /// Runs that have the figure.
    pub runs: usize,
}

impl Spread {
    /// The spread of the known values; `None` when there is none.
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().flatten().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let (lo, hi) = (*v.first()?, *v.last()?);
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Self { median, lo, hi, runs: n })
    }
}

/// How a figure is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// A share, shown as a percentage.
    Share,
    /// A plain number with this many decimals.
    Plain(usize),
}

/// A figure of one system's run, in the unit it is shown in.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Its key in the merged document.
    pub key: &'static str,
    /// Its row in the Markdown table.
    pub label: &'static str,
    /// How it is shown.
    pub unit: Unit,
    /// Whether a ratio of two systems' values means something (not for shares and counts).
    pub ratio: bool,
    /// Reads it from a run.
    pub get: fn(&SystemResult) -> Option<f64>,
}

const fn fig(
    key: &'static str,
    label: &'static str,
    unit: Unit,
    ratio: bool,
    get: fn(&SystemResult) -> Option<f64>,
) -> Figure {
    Figure { key, label, unit, ratio, get }
}

const MIB: f64 = 1024.0 * 1024.0;

/// The figures merged over runs, in the order of the merged table.
pub const FIGURES: &[Figure] = &[
    fig("put_median_ms", "put median, ms", Unit::Ms, true, |s| s.put.latency.median_ms),
    fig("put_p99_ms", "put p99, ms", Unit::Ms, true, |s| s.put.latency.p99_ms),
    fig("put_success", "put success", Unit::Share, false, |s| s.put.success_rate),
    fig("get_median_ms", "get (no local copy) median, ms", Unit::Ms, true, |s| {
        s.get.latency.median_ms
    }),
    fig("get_p95_ms", "get (no local copy) p95, ms", Unit::Ms, true, |s| s.get.latency.p95_ms),
    fig("get_p99_ms", "get (no local copy) p99, ms", Unit::Ms, true, |s| s.get.latency.p99_ms),
    fig("get_max_ms", "get (no local copy) max, ms", Unit::Ms, true, |s| s.get.latency.max_ms),
    fig("get_success", "get success", Unit::Share, false, |s| s.get.success_rate),
    // Latency in round trips of the emulated link (`--link-delay` runs only).
    fig(
        "get_round_trips_median",
        "get (no local copy) median, round trips",
        Unit::Plain(2),
        false,
        |s| s.get.round_trips.as_ref().and_then(|r| r.median),
    ),
    fig(
        "get_round_trips_p99",
        "get (no local copy) p99, round trips",
        Unit::Plain(2),
        false,
        |s| s.get.round_trips.as_ref().and_then(|r| r.p99),
    ),
    fig("put_round_trips_median", "put median, round trips", Unit::Plain(2), false, |s| {
        s.put.round_trips.as_ref().and_then(|r| r.median)
    }),
    fig("put_round_trips_p99", "put p99, round trips", Unit::Plain(2), false, |s| {
        s.put.round_trips.as_ref().and_then(|r| r.p99)
    }),
    fig("get_below_quorum", "gets answered below their quorum", Unit::Plain(0), false, |s| {
        Some(s.get.below_quorum as f64)
    }),
    fig("get_from_holder_median_ms", "get from a holder median, ms", Unit::Ms, true, |s| {
        s.get_from_holder.latency.median_ms
    }),
    fig("lookup_median_ms", "lookup alone median, ms", Unit::Ms, true, |s| {
        s.lookup.latency.median_ms
    }),
    fig("requests_per_get", "requests per get", Unit::Plain(1), true, |s| s.get.requests_per_op),
    fig("hops_per_get", "get hops mean", Unit::Plain(2), false, |s| s.get.hops_per_op),
    fig("wire_packets_per_get", "wire packets per get", Unit::Plain(0), true, |s| {
        s.get.wire_packets_per_op
    }),
    fig("wire_packets_per_put", "wire packets per put", Unit::Plain(0), true, |s| {
        s.put.wire_packets_per_op
    }),
    fig("wire_kib_per_get_net", "wire KiB per get (less background)", Unit::Plain(1), true, |s| {
        s.get.wire_bytes_per_op_net.map(|b| b / 1024.0)
    }),
    fig("concurrent_gets_per_s", "concurrent gets per s", Unit::Plain(0), true, |s| {
        s.concurrent_get.ops_per_s
    }),
    fig("concurrent_get_median_ms", "concurrent get median, ms", Unit::Ms, true, |s| {
        s.concurrent_get.latency.median_ms
    }),
    fig("concurrent_get_p99_ms", "concurrent get p99, ms", Unit::Ms, true, |s| {
        s.concurrent_get.latency.p99_ms
    }),
    fig("concurrent_get_success", "concurrent get success", Unit::Share, false, |s| {
        s.concurrent_get.success_rate
    }),
    fig("concurrent_puts_per_s", "concurrent puts per s", Unit::Plain(0), true, |s| {
        s.concurrent_put.ops_per_s
    }),
    fig("concurrent_put_median_ms", "concurrent put median, ms", Unit::Ms, true, |s| {
        s.concurrent_put.latency.median_ms
    }),
    fig("cpu_ms_per_get", "CPU ms per get (concurrent)", Unit::Plain(2), true, |s| {
        s.concurrent_get.cpu_s_per_op.map(|c| c * 1000.0)
    }),
    fig("cpu_ms_per_put", "CPU ms per put", Unit::Plain(2), true, |s| {
        s.put.cpu_s_per_op.map(|c| c * 1000.0)
    }),
    fig("rss_mib_per_peer", "RSS per peer after the workload, MiB", Unit::Plain(2), true, |s| {
        s.memory.rss_per_peer_after_workload_bytes.map(|b| b as f64 / MIB)
    }),
    fig("startup_settle_s", "start-up + settle, s", Unit::Plain(1), true, |s| {
        Some(s.startup.seconds + s.settle.seconds)
    }),
    fig("load_average_end", "machine load average at the end", Unit::Plain(1), false, |s| {
        s.load_average[1]
    }),
];

/// One system over several runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MergedSystem {
    /// The system.
    pub system: String,
    /// Runs it took part in.
    pub runs: usize,
    /// Answers its get waits for (the first run's `read_quorum`).
    pub read_quorum: Option<usize>,
    /// Each of [`FIGURES`] its runs have, by key.
    pub figures: BTreeMap<String, Spread>,
}

/// Two systems compared over several runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MergedPair {
    /// What it compares, e.g. `q1: peerkv-q1 / kad`.
    pub name: String,
    /// The system divided.
    pub a: String,
    /// The system it is divided by.
    pub b: String,
    /// Runs in which both ran.
    pub runs: usize,
    /// Each run's `a / b`, merged: for each of [`FIGURES`] whose ratio means something.
    pub ratios: BTreeMap<String, Spread>,
}

/// Runs of one configuration as one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Merged {
    /// The parameters (the first run's: `seed` is its seed; `seeds` has them all).
    pub params: Params,
    /// The first run's machine and build.
    pub machine: Machine,
    /// Each run's seed, in the order of the runs.
    pub seeds: Vec<u64>,
    /// Each system that ran.
    pub systems: Vec<MergedSystem>,
    /// Each comparison whose two systems ran together: peerkv / kad, then the two at equal
    /// consistency.
    pub pairs: Vec<MergedPair>,
}

/// The document of a run with several seeds: the merged figures and every run in full.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MergedDoc {
    /// [`MERGED_SCHEMA`].
    pub schema: String,
    /// Medians and spreads over the runs.
    pub merged: Merged,
    /// Each run's own document, as written beside it (`…-seedS.json`).
    pub runs: Vec<RunDoc>,
}

/// Merges runs of one configuration (see [`group`]).
pub fn merge(runs: &[&RunDoc]) -> Merged {
    let Some(first) = runs.first() else {
        return Merged::default();
    };
    let mut names: Vec<&str> = Vec::new();
    for s in runs.iter().flat_map(|r| &r.systems) {
        if !names.contains(&s.system.as_str()) {
            names.push(&s.system);
        }
    }
    let systems = names
        .iter()
        .map(|name| {
            let results: Vec<&SystemResult> = runs.iter().filter_map(|r| r.system(name)).collect();
            let figures = FIGURES
                .iter()
                .filter_map(|f| {
                    let spread = Spread::of(results.iter().map(|s| (f.get)(s)))?;
                    Some((f.key.to_owned(), spread))
                })
                .collect();
            MergedSystem {
                system: (*name).to_owned(),
                runs: results.len(),
                read_quorum: results.iter().find_map(|s| s.read_quorum),
                figures,
            }
        })
        .collect();
    let pairs = all_pairs()
        .filter_map(|(name, a, b)| {
            let both: Vec<(&SystemResult, &SystemResult)> =
                runs.iter().filter_map(|r| Some((r.system(a)?, r.system(b)?))).collect();
            if both.is_empty() {
                return None;
            }
            let ratios = FIGURES
                .iter()
                .filter(|f| f.ratio)
                .filter_map(|f| {
                    let each = both.iter().map(|(x, y)| ratio((f.get)(x), (f.get)(y)));
                    Some((f.key.to_owned(), Spread::of(each)?))
                })
                .collect();
            Some(MergedPair {
                name: name.into(),
                a: a.into(),
                b: b.into(),
                runs: both.len(),
                ratios,
            })
        })
        .collect();
    Merged {
        params: first.params.clone(),
        machine: first.machine.clone(),
        seeds: runs.iter().map(|r| r.params.seed).collect(),
        systems,
        pairs,
    }
}

/// What makes runs comparable: every parameter but the seed and the machine's descriptor
/// limit, and the build profile.
fn config_key(doc: &RunDoc) -> String {
    let params = Params { seed: 0, fd_high_water: 0, ..doc.params.clone() };
    format!("{}|{}", serde_json::to_string(&params).unwrap_or_default(), doc.machine.profile)
}

/// Groups runs of one configuration, in the order given (a group where its first run was); a
/// run given twice (in its own file and inside a merged document) counts once. Runs that differ
/// in anything but the seed (the idle timeout, `--kad-lazy`, K, …) stay apart.
pub fn group(docs: &[RunDoc]) -> Vec<Vec<&RunDoc>> {
    let mut seen = HashSet::new();
    let mut groups: Vec<(String, Vec<&RunDoc>)> = Vec::new();
    for doc in docs {
        let key = config_key(doc);
        if !seen.insert((key.clone(), doc.params.seed, doc.machine.started_unix_s)) {
            continue;
        }
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(doc),
            None => groups.push((key, vec![doc])),
        }
    }
    groups.into_iter().map(|(_, runs)| runs).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Latency, Phase};
    use super::*;

    fn system(name: &str, get_median: f64, put_median: Option<f64>) -> SystemResult {
        SystemResult {
            system: name.into(),
            get: Phase {
                latency: Latency { median_ms: Some(get_median), ..Latency::default() },
                ..Phase::default()
            },
            put: Phase {
                latency: Latency { median_ms: put_median, ..Latency::default() },
                ..Phase::default()
            },
            ..SystemResult::default()
        }
    }

    fn run(seed: u64, systems: Vec<SystemResult>) -> RunDoc {
        let mut doc = RunDoc {
            params: Params { nodes: 10, seed, ..Params::default() },
            machine: Machine { started_unix_s: 1000 + seed, ..Machine::default() },
            systems,
            ..RunDoc::default()
        };
        doc.compute_ratios();
        doc
    }

    #[test]
    fn spread_of_an_odd_count_is_the_middle_value() {
        let s = Spread::of([Some(5.0), Some(1.0), Some(3.0)]).unwrap();
        assert_eq!(s, Spread { median: 3.0, lo: 1.0, hi: 5.0, runs: 3 });
    }

    #[test]
    fn spread_of_an_even_count_is_the_mean_of_the_middle_two() {
        let s = Spread::of([Some(4.0), Some(1.0), Some(2.0), Some(10.0)]).unwrap();
        assert_eq!(s, Spread { median: 3.0, lo: 1.0, hi: 10.0, runs: 4 });
    }

    #[test]
    fn spread_skips_unknown_values_and_is_none_without_any() {
        let s = Spread::of([None, Some(2.0), Some(f64::NAN)]).unwrap();
        assert_eq!(s, Spread { median: 2.0, lo: 2.0, hi: 2.0, runs: 1 });
        assert_eq!(Spread::of([None, None]), None);
    }

    #[test]
    fn merge_takes_each_figure_median_and_spread_over_the_seeds() {
        let docs = [
            run(1, vec![system("peerkv", 1.0, Some(2.0)), system("kad-q3", 2.0, Some(1.0))]),
            run(2, vec![system("peerkv", 5.0, None), system("kad-q3", 2.0, Some(1.0))]),
            run(3, vec![system("peerkv", 3.0, Some(4.0)), system("kad-q3", 1.0, Some(1.0))]),
        ];
        let m = merge(&docs.iter().collect::<Vec<_>>());
        assert_eq!(m.seeds, [1, 2, 3]);
        let peerkv = &m.systems[0];
        assert_eq!((peerkv.system.as_str(), peerkv.runs), ("peerkv", 3));
        assert_eq!(
            peerkv.figures["get_median_ms"],
            Spread { median: 3.0, lo: 1.0, hi: 5.0, runs: 3 }
        );
        // A figure one run lacks is merged over the runs that have it.
        assert_eq!(
            peerkv.figures["put_median_ms"],
            Spread { median: 3.0, lo: 2.0, hi: 4.0, runs: 2 }
        );
        // The ratio is the median of each run's ratio (0.5, 2.5, 3), not 3 / 2.
        let q3 = m.pairs.iter().find(|p| p.name == "q3: peerkv / kad-q3").unwrap();
        assert_eq!(q3.runs, 3);
        assert_eq!(q3.ratios["get_median_ms"], Spread { median: 2.5, lo: 0.5, hi: 3.0, runs: 3 });
        // Shares have no ratio; pairs whose systems did not run are absent.
        assert!(!q3.ratios.contains_key("get_success"));
        assert_eq!(m.pairs.len(), 1);
    }

    #[test]
    fn merge_keeps_a_system_that_ran_in_some_runs_only() {
        let docs = [
            run(1, vec![system("peerkv", 1.0, None), system("kad", 1.0, None)]),
            run(2, vec![system("peerkv", 3.0, None)]),
        ];
        let m = merge(&docs.iter().collect::<Vec<_>>());
        let runs: Vec<(&str, usize)> =
            m.systems.iter().map(|s| (s.system.as_str(), s.runs)).collect();
        assert_eq!(runs, [("peerkv", 2), ("kad", 1)]);
        assert_eq!(m.pairs[0].name, "peerkv / kad");
        assert_eq!(m.pairs[0].runs, 1);
    }

    #[test]
    fn group_joins_seeds_keeps_settings_apart_and_counts_a_run_once() {
        let a1 = run(1, vec![system("peerkv", 1.0, None)]);
        let a2 = run(2, vec![system("peerkv", 2.0, None)]);
        let mut lazy = run(1, vec![system("kad", 1.0, None)]);
        lazy.params.kad_lazy = true;
        let mut big = run(1, vec![system("peerkv", 9.0, None)]);
        big.params.nodes = 100;
        // a1 again, as found inside a merged document.
        let docs = [a1.clone(), lazy, a2, big, a1];
        let groups = group(&docs);
        let shape: Vec<Vec<(usize, u64, bool)>> = groups
            .iter()
            .map(|g| g.iter().map(|d| (d.params.nodes, d.params.seed, d.params.kad_lazy)).collect())
            .collect();
        assert_eq!(
            shape,
            [vec![(10, 1, false), (10, 2, false)], vec![(10, 1, true)], vec![(100, 1, false)]]
        );
    }
}
