//! Prometheus metrics served on `/metrics`.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pub in_flight: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "coffer_http_requests_total",
                "HTTP requests by method and status code",
            ),
            &["method", "status"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "coffer_http_request_duration_seconds",
                "Time to the response head",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let in_flight = IntGauge::new("coffer_http_requests_in_flight", "Requests being served")
            .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry
                .register(collector)
                .unwrap_or_else(|e| unreachable!("metrics are registered once: {e}"));
        }
        Self {
            registry,
            requests,
            duration,
            in_flight,
        }
    }

    pub fn observe(&self, method: &http::Method, status: http::StatusCode, elapsed: Duration) {
        self.requests
            .with_label_values(&[method.as_str(), status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[method.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
