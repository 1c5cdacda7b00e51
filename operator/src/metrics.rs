//! Prometheus metrics of the reconcilers: counts, errors and durations per kind.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconciliations: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // The metric definitions are constants: building them cannot fail.
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "coffer_operator_reconciliations_total",
                "Reconciliations run",
            ),
            &["kind"],
        )
        .expect("valid metric definition");
        let failures = IntCounterVec::new(
            Opts::new(
                "coffer_operator_reconcile_errors_total",
                "Reconciliations that failed",
            ),
            &["kind", "reason"],
        )
        .expect("valid metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "coffer_operator_reconcile_duration_seconds",
                "Time spent reconciling",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["kind"],
        )
        .expect("valid metric definition");
        for collector in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Metrics {
            registry,
            reconciliations,
            failures,
            duration,
        }
    }

    /// Starts timing a reconciliation of `kind`; the duration is recorded on drop.
    pub fn reconcile_started(&self, kind: &'static str) -> ReconcileTimer {
        self.reconciliations.with_label_values(&[kind]).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.with_label_values(&[kind]),
        }
    }

    pub fn reconcile_failed(&self, kind: &'static str, reason: &str) {
        self.failures.with_label_values(&[kind, reason]).inc();
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

pub struct ReconcileTimer {
    start: Instant,
    histogram: prometheus::Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
