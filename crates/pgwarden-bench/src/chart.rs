//! PNG charts of the results: for each workload, TPS (left) and p99 latency (right) by client
//! count, one line per target. Text is drawn with DejaVu Sans from the system (Debian's
//! `fonts-dejavu-core`); without it the chart is skipped with a message.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report;
use crate::run::Round;

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn load_font() -> bool {
    for path in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Draws one PNG per workload next to `csv`; returns the files written.
pub(crate) fn draw(
    rounds: &[Round],
    workloads: &[String],
    clients: &[u32],
    csv: &Path,
) -> Vec<PathBuf> {
    if !load_font() {
        eprintln!("no DejaVu Sans font found (apt-get install fonts-dejavu-core): charts skipped");
        return Vec::new();
    }
    let mut written = Vec::new();
    for workload in workloads {
        let slug: String = workload
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let stem = csv.file_stem().and_then(|s| s.to_str()).unwrap_or("bench");
        let path = csv.with_file_name(format!("{stem}-{slug}.png"));
        match draw_one(rounds, workload, clients, &path) {
            Ok(()) => written.push(path),
            Err(e) => eprintln!("chart for {workload} failed: {e}"),
        }
    }
    written
}

type Series = Vec<(&'static str, RGBColor, Vec<(u32, f64)>)>;

fn series(
    rounds: &[Round],
    workload: &str,
    clients: &[u32],
    pick: fn(&Round) -> Option<f64>,
) -> Series {
    [
        ("direct", RGBColor(90, 90, 90)),
        ("pgbouncer", RGBColor(200, 80, 40)),
        ("pgwarden", RGBColor(30, 110, 200)),
    ]
    .into_iter()
    .map(|(target, color)| {
        let points = clients
            .iter()
            .filter_map(|&c| {
                let values = rounds
                    .iter()
                    .filter(|r| {
                        r.target == target
                            && r.workload == workload
                            && r.clients == c
                            && r.error.is_none()
                    })
                    .filter_map(pick)
                    .collect();
                report::median(values).map(|v| (c, v))
            })
            .collect();
        (target, color, points)
    })
    .collect()
}

fn draw_one(
    rounds: &[Round],
    workload: &str,
    clients: &[u32],
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("pgbench {workload}: direct vs PgBouncer vs pgwarden"),
        ("sans-serif", 22),
    )?;
    let panels = root.split_evenly((1, 2));
    let log_clients: Vec<f64> = clients.iter().map(|c| f64::from(*c).log10()).collect();
    let x_range = (log_clients.first().copied().unwrap_or(1.0) - 0.1)
        ..(log_clients.last().copied().unwrap_or(3.0) + 0.1);
    for (panel, (title, pick)) in panels.iter().zip([
        ("TPS", (|r: &Round| r.tps) as fn(&Round) -> Option<f64>),
        ("p99 latency (ms)", |r: &Round| r.latency_p99_ms),
    ]) {
        let data = series(rounds, workload, clients, pick);
        let max = data
            .iter()
            .flat_map(|(_, _, p)| p.iter().map(|(_, v)| *v))
            .fold(0.0_f64, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), 0.0..max.max(1.0))?;
        chart
            .configure_mesh()
            .x_desc("clients (log scale)")
            .x_label_formatter(&|x| format!("{:.0}", 10f64.powf(*x)))
            .x_labels(0)
            .draw()?;
        // The client counts measured, written at their place on the axis (log scale).
        chart.draw_series(clients.iter().map(|c| {
            Text::new(
                c.to_string(),
                (f64::from(*c).log10(), max.max(1.0) * 0.02),
                ("sans-serif", 14),
            )
        }))?;
        for (name, color, points) in data {
            let line: Vec<(f64, f64)> = points
                .iter()
                .map(|(c, v)| (f64::from(*c).log10(), *v))
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(3)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            chart.draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
