//! Prometheus metrics served on `/metrics`.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::meta::{CacheStats, NodeProgress};

/// Cluster figures, refreshed from the data plane at each scrape.
const CLUSTER_GAUGES: &[(&str, &str)] = &[
    (
        "coffer_shards_at_risk",
        "Erasure-coded blobs with fewer than k+m healthy shards (last heal pass)",
    ),
    (
        "coffer_data_at_risk",
        "Erasure-coded blobs with fewer than k+1 healthy shards (last heal pass)",
    ),
    (
        "coffer_blobs_under_replicated",
        "Blobs with fewer healthy replicas than wanted (last heal pass)",
    ),
    (
        "coffer_heal_bytes_to_move",
        "Bytes this node still has to copy in",
    ),
    ("coffer_local_blobs", "Replicas on this node's volume"),
    (
        "coffer_local_bytes",
        "Bytes of replicas on this node's volume",
    ),
    (
        "coffer_healed_blobs_total",
        "Replicas this node copied in (repair and rebalance)",
    ),
    ("coffer_healed_bytes_total", "Bytes this node copied in"),
    (
        "coffer_dropped_replicas_total",
        "Surplus replicas this node removed",
    ),
    (
        "coffer_scrubbed_blobs_total",
        "Replicas the scrubber verified",
    ),
    (
        "coffer_corrupt_replicas_total",
        "Replicas found corrupt and quarantined",
    ),
    ("coffer_heal_passes_total", "Completed heal passes"),
    ("coffer_peer_failures_total", "Peers dropped from writes"),
    (
        "coffer_volume_size_bytes",
        "Size of the file system holding this node's data directory",
    ),
    (
        "coffer_volume_available_bytes",
        "Bytes of that file system still available to Coffer",
    ),
];

/// The object cache's figures, refreshed at each scrape.
const CACHE_GAUGES: &[(&str, &str)] = &[
    (
        "coffer_object_cache_hits_total",
        "GET/HEAD lookups answered from the object cache",
    ),
    (
        "coffer_object_cache_misses_total",
        "GET/HEAD lookups that read the metadata store while the cache was leased",
    ),
    ("coffer_object_cache_entries", "Objects in the object cache"),
    (
        "coffer_object_cache_bytes",
        "Bytes charged to the object cache",
    ),
    (
        "coffer_object_cache_leased",
        "1 while this node is the only member and may serve from its object cache",
    ),
];

/// Bytes that crossed the S3 listener's connections (TLS records included),
/// counted where the server reads and writes its sockets: client and peer
/// traffic alike.
#[derive(Clone)]
pub struct Traffic {
    pub received: IntCounter,
    pub sent: IntCounter,
}

pub struct Metrics {
    registry: Registry,
    traffic: Traffic,
    requests: IntCounterVec,
    duration: HistogramVec,
    pub in_flight: IntGauge,
    nodes: IntGaugeVec,
    cluster: Vec<IntGauge>,
    cache: Vec<IntGauge>,
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
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help)
                .unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
        };
        let traffic = Traffic {
            received: counter(
                "coffer_network_received_bytes_total",
                "Bytes read from the S3 listener's connections",
            ),
            sent: counter(
                "coffer_network_sent_bytes_total",
                "Bytes written to the S3 listener's connections",
            ),
        };
        let nodes = IntGaugeVec::new(
            Opts::new(
                "coffer_cluster_nodes",
                "Cluster members by liveness, as this node sees them",
            ),
            &["liveness"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let gauges = |list: &[(&str, &str)]| -> Vec<IntGauge> {
            list.iter()
                .map(|(name, help)| {
                    IntGauge::new(*name, *help)
                        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
                })
                .collect()
        };
        let cluster = gauges(CLUSTER_GAUGES);
        let cache = gauges(CACHE_GAUGES);
        let mut collectors = vec![
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(nodes.clone()),
            Box::new(traffic.received.clone()),
            Box::new(traffic.sent.clone()),
        ];
        collectors.extend(
            cluster
                .iter()
                .chain(&cache)
                .map(|g| Box::new(g.clone()) as Box<dyn prometheus::core::Collector>),
        );
        for collector in collectors {
            registry
                .register(collector)
                .unwrap_or_else(|e| unreachable!("metrics are registered once: {e}"));
        }
        Self {
            registry,
            traffic,
            requests,
            duration,
            in_flight,
            nodes,
            cluster,
            cache,
        }
    }

    /// Updates the cluster figures: nodes per liveness, and this node's progress.
    pub fn set_cluster(
        &self,
        liveness: &[(&str, i64)],
        progress: &NodeProgress,
        heal_passes: u64,
        peer_failures: u64,
    ) {
        for (state, count) in liveness {
            self.nodes.with_label_values(&[*state]).set(*count);
        }
        let values = [
            progress.shards_at_risk,
            progress.data_at_risk,
            progress.under_replicated,
            progress.bytes_to_move,
            progress.local_blobs,
            progress.local_bytes,
            progress.healed_blobs,
            progress.healed_bytes,
            progress.dropped_replicas,
            progress.scrubbed_blobs,
            progress.corrupt_found,
            heal_passes,
            peer_failures,
            progress.volume_bytes,
            progress.volume_available_bytes,
        ];
        for (gauge, value) in self.cluster.iter().zip(values) {
            gauge.set(value as i64);
        }
    }

    /// Updates the object cache's figures.
    pub fn set_object_cache(&self, stats: &CacheStats) {
        let values = [
            stats.hits,
            stats.misses,
            stats.entries,
            stats.bytes,
            u64::from(stats.leased),
        ];
        for (gauge, value) in self.cache.iter().zip(values) {
            gauge.set(value as i64);
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

    /// The byte counters the accept loop's connections add to.
    pub fn traffic(&self) -> Traffic {
        self.traffic.clone()
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
