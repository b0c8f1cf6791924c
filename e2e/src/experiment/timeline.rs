//! One SVG timeline per case and arm (plotters): the maintained component's P99 latency and CPU over the episode,
//! the health SLO's P99 threshold, and vertical marks for the fault (red), the detection (orange), each action
//! (blue), the answer (grey) and the recovery (green).

use std::path::Path;

use plotters::prelude::*;

use super::episode::Episode;

/// Writes the timeline of `e` to `path`.
pub fn write_svg(e: &Episode, path: &Path) -> anyhow::Result<()> {
    let xmax = e.samples.last().map_or(10.0, |s| s.t).max(e.fault_at_s + 1.0) + 1.0;
    let ymax = e
        .samples
        .iter()
        .flat_map(|s| [s.p99_ms, s.cpu_percent])
        .flatten()
        .fold(250.0_f64, f64::max)
        .min(5000.0)
        * 1.1;
    let root = SVGBackend::new(path, (960, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let title = format!(
        "{} — {} run {} ({})",
        e.case,
        e.arm,
        e.run,
        if e.planner.is_empty() {
            "no planner"
        } else {
            &e.planner
        }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the episode started")
        .y_desc("P99 ms  /  CPU % of limit")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let series = |f: fn(&super::probe::Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        e.samples
            .iter()
            .filter_map(|s| f(s).map(|v| (s.t, v.min(ymax))))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(series(|s| s.p99_ms), BLUE.stroke_width(2)))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("P99 latency (ms)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(series(|s| s.cpu_percent), MAGENTA))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("CPU (% of limit)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], MAGENTA));
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 200.0), (xmax, 200.0)],
            BLACK.mix(0.4),
        )))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("P99 objective (200 ms)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    let mut marks: Vec<(f64, RGBColor, &str)> = vec![(e.fault_at_s, RED, "fault / task")];
    if let Some(d) = e.detected_after_s {
        marks.push((e.fault_at_s + d, RGBColor(255, 140, 0), "detected"));
    }
    if let Some(a) = e.answered_after_s {
        marks.push((e.fault_at_s + a, RGBColor(120, 120, 120), "answer"));
    }
    if let Some(m) = e.mitigated_after_s {
        marks.push((e.fault_at_s + m, RGBColor(0, 150, 0), "recovered"));
    }
    for a in &e.actions {
        marks.push((a.t, RGBColor(30, 90, 200), "action"));
    }
    let mut labelled = std::collections::BTreeSet::new();
    for (t, color, label) in marks {
        let s = chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(t, 0.0), (t, ymax)],
                color.stroke_width(2),
            )))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if labelled.insert(label) {
            s.label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
