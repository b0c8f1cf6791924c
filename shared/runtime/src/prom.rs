//! A parser for the Prometheus text exposition format (version 0.0.4) and the histogram sets built from it.
//!
//! Only what windows need: samples with labels, and histograms (`_bucket`/`_sum`/`_count`) grouped by their label
//! set without `le`. Used by the local runtime's scraper and reusable for a direct scrape of Kubernetes pods.

use std::collections::BTreeMap;

/// A label set, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

/// A malformed exposition line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// One histogram series: cumulative bucket counts by upper bound, plus sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)` sorted by `le`; the last one is usually `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

/// All series of one histogram metric, keyed by their labels without `le`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSet {
    /// The series.
    pub series: BTreeMap<Vec<(String, String)>, Histogram>,
}

/// Parses a whole exposition. Comment and blank lines are skipped; a malformed sample line is an error.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|reason| ParseError { line: i + 1, reason })?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if name.is_empty() || !valid || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if rest.starts_with('{') {
        let (parsed, after) = parse_labels(&rest[1..])?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("missing value")?;
    let value = parse_value(value)?;
    // An optional timestamp may follow; anything after that is an error.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing data after timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

// === impl HistogramSet ===

impl HistogramSet {
    /// Collects the series of histogram `name` (its `_bucket`, `_sum` and `_count` samples).
    pub fn from_samples(samples: &[Sample], name: &str) -> Self {
        let bucket = format!("{name}_bucket");
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        let mut set = HistogramSet::default();
        for s in samples {
            let key = |labels: &Labels| -> Vec<(String, String)> {
                labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            if s.name == bucket {
                let Some(le) = s.labels.get("le").and_then(|le| parse_value(le).ok()) else {
                    continue;
                };
                set.series
                    .entry(key(&s.labels))
                    .or_default()
                    .buckets
                    .push((le, s.value));
            } else if s.name == sum {
                set.series.entry(key(&s.labels)).or_default().sum = s.value;
            } else if s.name == count {
                set.series.entry(key(&s.labels)).or_default().count = s.value;
            }
        }
        for h in set.series.values_mut() {
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        set
    }

    /// Parses an exposition and collects histogram `name`.
    pub fn parse(text: &str, name: &str) -> Result<Self, ParseError> {
        Ok(Self::from_samples(&parse(text)?, name))
    }

    /// What was added between `earlier` and `self`, series by series. A series whose count went down was reset
    /// (process restart), so its whole current value counts, as Prometheus' `rate` does.
    pub fn delta(&self, earlier: Option<&HistogramSet>) -> HistogramSet {
        let mut out = HistogramSet::default();
        for (key, now) in &self.series {
            let before = earlier.and_then(|e| e.series.get(key));
            let h = match before {
                Some(b) if b.count <= now.count => now.minus(b),
                _ => now.clone(),
            };
            out.series.insert(key.clone(), h);
        }
        out
    }

    /// Adds every series of `other` into `self`.
    pub fn add(&mut self, other: &HistogramSet) {
        for (key, h) in &other.series {
            let mine = self.series.entry(key.clone()).or_default();
            *mine = mine.plus(h);
        }
    }

    /// Merges the series whose labels pass `keep` into one histogram (buckets added by `le`).
    pub fn merged(&self, keep: impl Fn(&[(String, String)]) -> bool) -> Histogram {
        let mut total = Histogram::default();
        for (key, h) in &self.series {
            if keep(key) {
                total = total.plus(h);
            }
        }
        total
    }
}

// === impl Histogram ===

impl Histogram {
    fn combine(&self, other: &Histogram, sign: f64) -> Histogram {
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        // Order-preserving key for f64 bounds (all finite or +Inf and non-negative in practice).
        let key = |le: f64| le.to_bits() ^ if le.is_sign_negative() { u64::MAX } else { 1 << 63 };
        for &(le, c) in &self.buckets {
            by_le.entry(key(le)).or_insert((le, 0.0)).1 += c;
        }
        for &(le, c) in &other.buckets {
            by_le.entry(key(le)).or_insert((le, 0.0)).1 += sign * c;
        }
        Histogram {
            buckets: by_le.into_values().map(|(le, c)| (le, c.max(0.0))).collect(),
            sum: self.sum + sign * other.sum,
            count: (self.count + sign * other.count).max(0.0),
        }
    }

    /// Bucket-wise sum.
    pub fn plus(&self, other: &Histogram) -> Histogram {
        self.combine(other, 1.0)
    }

    /// Bucket-wise difference (clamped at zero).
    pub fn minus(&self, other: &Histogram) -> Histogram {
        self.combine(other, -1.0)
    }

    /// The `q` quantile (0..=1) by linear interpolation inside the bucket that holds it, the way PromQL's
    /// `histogram_quantile` does. `None` without observations. If the rank falls in the `+Inf` bucket, the largest
    /// finite bound is returned.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map(|b| b.1).filter(|t| *t > 0.0)?;
        let rank = q.clamp(0.0, 1.0) * total;
        let mut prev_le = 0.0;
        let mut prev_count = 0.0;
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(prev_le);
                }
                let in_bucket = count - prev_count;
                if in_bucket <= 0.0 {
                    return Some(le);
                }
                return Some(prev_le + (le - prev_le) * (rank - prev_count) / in_bucket);
            }
            prev_le = le;
            prev_count = count;
        }
        Some(prev_le)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# HELP request_duration_seconds Time serving HTTP requests.
# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{name="catalogue",route="/catalogue",status_code="200",le="0.01"} 50
request_duration_seconds_bucket{name="catalogue",route="/catalogue",status_code="200",le="0.1"} 90
request_duration_seconds_bucket{name="catalogue",route="/catalogue",status_code="200",le="+Inf"} 100
request_duration_seconds_sum{name="catalogue",route="/catalogue",status_code="200"} 3.5
request_duration_seconds_count{name="catalogue",route="/catalogue",status_code="200"} 100
request_duration_seconds_bucket{le="0.01",name="catalogue",route="/x",status_code="500"} 10
request_duration_seconds_bucket{name="catalogue",route="/x",status_code="500",le="0.1"} 10
request_duration_seconds_bucket{name="catalogue",route="/x",status_code="500",le="+Inf"} 10
request_duration_seconds_count{name="catalogue",route="/x",status_code="500"} 10 1700000000000
other_metric{a="q\"uo\\te\n"} 1.5e3
"#;

    #[test]
    fn parses_samples_and_escapes() {
        let samples = parse(TEXT).unwrap();
        assert_eq!(samples.len(), 10);
        let other = samples.iter().find(|s| s.name == "other_metric").unwrap();
        assert_eq!(other.value, 1500.0);
        assert_eq!(other.labels["a"], "q\"uo\\te\n");
        assert!(samples[2].value == 100.0);
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "x",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x abc",
            "1x{} 2",
            "x 1 2 3",
            "x{a=\"1\"} 1 nope",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.line, 1, "{bad}: {err}");
        }
    }

    #[test]
    fn histogram_quantiles_interpolate() {
        let set = HistogramSet::parse(TEXT, "request_duration_seconds").unwrap();
        assert_eq!(set.series.len(), 2);
        let all = set.merged(|_| true);
        assert_eq!(all.count, 110.0);
        // 60 of 110 in the first bucket: the median (rank 55) is interpolated inside (0, 0.01].
        let p50 = all.quantile(0.5).unwrap();
        assert!((p50 - 0.01 * 55.0 / 60.0).abs() < 1e-9, "{p50}");
        // Rank 108.9 is in +Inf: the largest finite bound.
        assert_eq!(all.quantile(0.99).unwrap(), 0.1);
        let ok = set.merged(|k| k.iter().any(|(n, v)| n == "status_code" && v == "200"));
        // rank 50 of 100 falls exactly at the first bound.
        assert!((ok.quantile(0.5).unwrap() - 0.01).abs() < 1e-9);
        assert_eq!(HistogramSet::default().merged(|_| true).quantile(0.5), None);
    }

    #[test]
    fn delta_handles_resets() {
        let later = HistogramSet::parse(TEXT, "request_duration_seconds").unwrap();
        let earlier_text = TEXT
            .replace("} 100", "} 40")
            .replace("} 90", "} 30")
            .replace("} 50\n", "} 20\n");
        let earlier = HistogramSet::parse(&earlier_text, "request_duration_seconds").unwrap();
        let d = later.delta(Some(&earlier));
        let h = d.merged(|k| k.iter().any(|(_, v)| v == "200"));
        assert_eq!(h.count, 60.0);
        assert_eq!(h.buckets, vec![(0.01, 30.0), (0.1, 60.0), (f64::INFINITY, 60.0)]);
        // Reset: the earlier scrape had more requests than the later one.
        let reset = earlier.delta(Some(&later));
        assert_eq!(reset.merged(|k| k.iter().any(|(_, v)| v == "200")).count, 40.0);
    }
}
