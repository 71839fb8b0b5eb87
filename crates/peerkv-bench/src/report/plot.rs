//! The SVG plot: get latency from a peer without a copy against N, for every system given and
//! OpenDHT, each point the median over a configuration's runs with a bar from the lowest to
//! the highest.

use std::path::Path;

use plotters::prelude::*;

use super::merge::{group, merge, Merged, Spread};
use super::{OpenDht, RunDoc};

/// Each system's colour, in the order the legend lists them.
const COLOURS: [(&str, RGBColor); 5] = [
    ("peerkv", RGBColor(0, 90, 180)),
    ("peerkv-q1", RGBColor(100, 170, 235)),
    ("kad", RGBColor(210, 80, 0)),
    ("kad-q3", RGBColor(140, 20, 90)),
    ("opendht", RGBColor(0, 140, 60)),
];

/// How far apart (as a factor of N) the systems' points of one N are drawn, so that their bars
/// do not hide each other.
const JITTER: f64 = 0.035;

/// One line of the plot: a system's median or p99 against N.
struct Line {
    label: String,
    colour: RGBColor,
    p99: bool,
    /// `(N, spread)`, smallest N first.
    points: Vec<(f64, Spread)>,
}

/// The answers a system's get waits for, as its legend says it.
fn reads(m: &Merged, system: &str) -> usize {
    let own = m.systems.iter().find(|s| s.system == system);
    // Documents from before the four systems carry no `read_quorum` of their own.
    let fallback = if matches!(system, "peerkv" | "kad-q3") { m.params.read_quorum } else { 1 };
    own.and_then(|s| s.read_quorum).unwrap_or(fallback)
}

/// Draws get latency (median and p99, from peers without a copy) against N for each system
/// in `docs` and OpenDHT. For each N the configuration of the first document given with that N
/// stands (merged over its seeds); other configurations appear only in the tables.
///
/// # Errors
/// When there is nothing to draw or the file cannot be written.
pub fn plot(docs: &[RunDoc], opendht: &[OpenDht], path: &Path) -> Result<(), String> {
    let mut merged: Vec<Merged> = Vec::new();
    for g in group(docs) {
        let m = merge(&g);
        if !merged.iter().any(|o| o.params.nodes == m.params.nodes) {
            merged.push(m);
        }
    }
    merged.sort_by_key(|m| m.params.nodes);
    let mut lines: Vec<Line> = Vec::new();
    for (system, colour) in COLOURS {
        for p99 in [false, true] {
            let key = if p99 { "get_p99_ms" } else { "get_median_ms" };
            let points: Vec<(f64, Spread)> = if system == "opendht" {
                let mut sizes: Vec<usize> = opendht.iter().map(|o| o.nodes).collect();
                sizes.sort_unstable();
                sizes.dedup();
                sizes
                    .into_iter()
                    .filter_map(|n| {
                        let here = opendht.iter().filter(|o| o.nodes == n);
                        let s =
                            Spread::of(
                                here.map(|o| if p99 { o.get.p99_ms } else { o.get.median_ms }),
                            )?;
                        Some((n as f64, s))
                    })
                    .collect()
            } else {
                merged
                    .iter()
                    .filter_map(|m| {
                        let s = m.systems.iter().find(|s| s.system == system)?;
                        Some((m.params.nodes as f64, *s.figures.get(key)?))
                    })
                    .collect()
            };
            if points.is_empty() {
                continue;
            }
            let name = match system {
                "kad" => "libp2p-kad".to_owned(),
                "opendht" => "OpenDHT".to_owned(),
                s => s.to_owned(),
            };
            let q = merged.iter().find(|m| m.systems.iter().any(|s| s.system == system));
            let waits = match q {
                Some(m) if reads(m, system) == 1 => " (first record)".to_owned(),
                Some(m) => format!(" (Q = {})", reads(m, system)),
                None => String::new(),
            };
            let label = format!("{name}{waits} {}", if p99 { "p99" } else { "median" });
            lines.push(Line { label, colour, p99, points });
        }
    }
    if lines.is_empty() {
        return Err("no get latencies in the given files".into());
    }
    // Spread the systems' points of one N a little apart, in legend order.
    let systems: Vec<RGBColor> = {
        let mut c: Vec<RGBColor> = Vec::new();
        for l in &lines {
            if !c.contains(&l.colour) {
                c.push(l.colour);
            }
        }
        c
    };
    let shift = |colour: &RGBColor| {
        let i = systems.iter().position(|c| c == colour).unwrap_or(0) as f64;
        1.0 + JITTER * (i - (systems.len() as f64 - 1.0) / 2.0)
    };
    let all: Vec<(f64, f64, f64)> =
        lines.iter().flat_map(|l| l.points.iter().map(|(n, s)| (*n, s.lo, s.hi))).collect();
    let xmin = all.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let xmax = all.iter().map(|p| p.0).fold(0.0, f64::max);
    let ymin = all.iter().map(|p| p.1).fold(f64::MAX, f64::min).max(0.01);
    let ymax = all.iter().map(|p| p.2).fold(0.0, f64::max).max(ymin * 2.0);
    let runs: Vec<usize> = merged.iter().map(|m| m.seeds.len()).collect();
    let (lo, hi) = (runs.iter().min().unwrap_or(&1), runs.iter().max().unwrap_or(&1));
    let what = "get latency from a peer without a copy";
    let caption = if *hi <= 1 {
        format!("{what} (one process, 127.0.0.1)")
    } else if lo == hi {
        format!("{what}: median of {lo} seeds, bars lowest–highest")
    } else {
        format!("{what}: median of {lo}–{hi} seeds, bars lowest–highest")
    };

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 17))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            ((xmin * 0.8)..(xmax * 1.25)).log_scale(),
            ((ymin * 0.7)..(ymax * 1.5)).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("peers N (log scale)")
        .y_desc("latency, ms (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y < 1.0 { format!("{y:.2}") } else { format!("{y:.0}") })
        .draw()
        .map_err(|e| err(&e))?;
    for line in lines {
        let colour = line.colour;
        let k = shift(&colour);
        let style = ShapeStyle {
            color: colour.to_rgba(),
            filled: true,
            stroke_width: if line.p99 { 1 } else { 2 },
        };
        let medians: Vec<(f64, f64)> = line.points.iter().map(|(n, s)| (n * k, s.median)).collect();
        chart
            .draw_series(LineSeries::new(medians.clone(), style))
            .map_err(|e| err(&e))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        // The spread over the runs: a bar from the lowest to the highest, with caps.
        let bar = ShapeStyle { color: colour.mix(0.6), filled: false, stroke_width: 1 };
        chart
            .draw_series(line.points.iter().filter(|(_, s)| s.hi > s.lo).flat_map(|(n, s)| {
                let x = n * k;
                let (l, r) = (x / (1.0 + JITTER / 4.0), x * (1.0 + JITTER / 4.0));
                [
                    PathElement::new(vec![(x, s.lo), (x, s.hi)], bar),
                    PathElement::new(vec![(l, s.lo), (r, s.lo)], bar),
                    PathElement::new(vec![(l, s.hi), (r, s.hi)], bar),
                ]
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(medians.iter().map(|p| {
                // p99 points are hollow, medians filled.
                let marker = if line.p99 { colour.stroke_width(2) } else { colour.filled() };
                Circle::new(*p, 4, marker)
            }))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
