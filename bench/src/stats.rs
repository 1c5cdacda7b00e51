//! Latency and throughput statistics per operation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Raw samples of one operation kind.
#[derive(Debug, Default, Clone)]
pub struct OpSamples {
    latencies_us: Vec<u64>,
    bytes: u64,
    errors: BTreeMap<String, u64>,
}

impl OpSamples {
    pub fn record_ok(&mut self, latency: Duration, bytes: u64) {
        self.latencies_us.push(latency.as_micros() as u64);
        self.bytes += bytes;
    }

    pub fn record_error(&mut self, code: &str) {
        *self.errors.entry(code.to_owned()).or_default() += 1;
    }

    pub fn ok_count(&self) -> usize {
        self.latencies_us.len()
    }

    pub fn merge(&mut self, other: OpSamples) {
        self.latencies_us.extend(other.latencies_us);
        self.bytes += other.bytes;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
    }
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpReport {
    pub operation: String,
    pub ok: usize,
    pub errors: BTreeMap<String, u64>,
    pub ops_per_sec: f64,
    pub mib_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub workload: String,
    pub elapsed_secs: f64,
    pub operations: Vec<OpReport>,
}

impl Report {
    pub fn from_samples(
        workload: &str,
        elapsed: Duration,
        samples: BTreeMap<&'static str, OpSamples>,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let operations = samples
            .into_iter()
            .map(|(name, mut s)| {
                s.latencies_us.sort_unstable();
                let ms = |us: u64| us as f64 / 1000.0;
                OpReport {
                    operation: name.to_owned(),
                    ok: s.latencies_us.len(),
                    errors: s.errors,
                    ops_per_sec: s.latencies_us.len() as f64 / secs,
                    mib_per_sec: s.bytes as f64 / secs / (1024.0 * 1024.0),
                    p50_ms: ms(percentile(&s.latencies_us, 50.0)),
                    p90_ms: ms(percentile(&s.latencies_us, 90.0)),
                    p99_ms: ms(percentile(&s.latencies_us, 99.0)),
                    max_ms: ms(s.latencies_us.last().copied().unwrap_or(0)),
                }
            })
            .collect();
        Report {
            workload: workload.to_owned(),
            elapsed_secs: secs,
            operations,
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.operations.iter().flat_map(|o| o.errors.values()).sum()
    }

    /// Human-readable table.
    pub fn render(&self) -> String {
        let mut out = format!("workload {} — {:.1} s\n", self.workload, self.elapsed_secs);
        out.push_str(
            "operation     ok       ops/s     MiB/s    p50 ms   p90 ms   p99 ms   max ms  errors\n",
        );
        for o in &self.operations {
            let errors = if o.errors.is_empty() {
                "-".to_owned()
            } else {
                o.errors
                    .iter()
                    .map(|(c, n)| format!("{c}:{n}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            out.push_str(&format!(
                "{:<12} {:>7} {:>10.1} {:>9.1} {:>9.2} {:>8.2} {:>8.2} {:>8.2}  {}\n",
                o.operation,
                o.ok,
                o.ops_per_sec,
                o.mib_per_sec,
                o.p50_ms,
                o.p90_ms,
                o.p99_ms,
                o.max_ms,
                errors
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), 50);
        assert_eq!(percentile(&samples, 90.0), 90);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&samples, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), 2);
    }

    #[test]
    fn report_computes_rates_and_merges_errors() {
        let mut a = OpSamples::default();
        a.record_ok(Duration::from_millis(2), 1024 * 1024);
        a.record_error("SlowDown");
        let mut b = OpSamples::default();
        b.record_ok(Duration::from_millis(4), 1024 * 1024);
        b.record_error("SlowDown");
        a.merge(b);
        let report =
            Report::from_samples("put", Duration::from_secs(2), BTreeMap::from([("PUT", a)]));
        let put = &report.operations[0];
        assert_eq!(put.ok, 2);
        assert!((put.ops_per_sec - 1.0).abs() < 1e-9);
        assert!((put.mib_per_sec - 1.0).abs() < 1e-9);
        assert_eq!(put.p50_ms, 2.0);
        assert_eq!(put.max_ms, 4.0);
        assert_eq!(put.errors.get("SlowDown"), Some(&2));
        assert_eq!(report.total_errors(), 2);
    }
}
