//! Prometheus metrics of the server: requests, latency, the live model and its reloads.
//!
//! Owns the registry and the names; handlers only record through [`Metrics`].

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::artifact::ModelMeta;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    pub metric: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Every metric the server exports.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub model_info: Family<VersionLabels, Gauge>,
    pub model_items: Gauge,
    pub model_quality: Family<MetricLabels, F64Gauge>,
    pub load_seconds: F64Gauge,
    pub loaded_at: F64Gauge,
    pub reloads: Counter,
    pub reload_failures: Counter,
}

fn latency_histogram() -> Histogram {
    // 20 µs .. ~0.65 s
    Histogram::new(exponential_buckets(20e-6, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cooc");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            model_info: Family::default(),
            model_items: Gauge::default(),
            model_quality: Family::default(),
            load_seconds: F64Gauge::default(),
            loaded_at: F64Gauge::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            m.latency.clone(),
        );
        registry.register(
            "model_info",
            "The live model version (value 1)",
            m.model_info.clone(),
        );
        registry.register(
            "model_items",
            "Items in the live model",
            m.model_items.clone(),
        );
        registry.register(
            "model_quality",
            "Offline evaluation of the live model (hit_rate, recall, ndcg, coverage, baselines, avg_top1_score)",
            m.model_quality.clone(),
        );
        registry.register(
            "model_load_seconds",
            "Time the last successful load took",
            m.load_seconds.clone(),
        );
        registry.register(
            "model_loaded_timestamp_seconds",
            "Unix time of the last successful load",
            m.loaded_at.clone(),
        );
        registry.register(
            "model_reloads",
            "Successful model reloads",
            m.reloads.clone(),
        );
        registry.register(
            "model_reload_failures",
            "Refused model reloads (the previous model kept serving)",
            m.reload_failures.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Records a newly live model.
    pub fn model_loaded(&self, version: &str, meta: &ModelMeta, seconds: f64) {
        self.model_info.clear();
        self.model_info
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
            })
            .set(1);
        self.model_items.set(meta.n_items as i64);
        self.load_seconds.set(seconds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.loaded_at.set(now);
        self.model_quality.clear();
        let put = |metric: &'static str, v: f64| {
            self.model_quality
                .get_or_create(&MetricLabels { metric })
                .set(v);
        };
        put("avg_top1_score", meta.avg_top1_score);
        if let Some(e) = &meta.evaluation {
            put("hit_rate", e.hit_rate);
            put("recall", e.recall);
            put("ndcg", e.ndcg);
            put("coverage", e.coverage);
            put("baseline_hit_rate", e.baseline_hit_rate);
            put("baseline_recall", e.baseline_recall);
            put("baseline_ndcg", e.baseline_ndcg);
            put("baseline_coverage", e.baseline_coverage);
        }
    }

    /// Text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
