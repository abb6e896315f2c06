//! Prometheus metrics of the server: requests, latency, the live model and its reloads, and
//! per served version (the live one and a canary: two at most) requests, latency and
//! backfill, so that a canary can be compared with the version it may replace.
//!
//! Owns the registry and the names; handlers only record through [`Metrics`].
//!
//! Request counts and latencies are recorded on every request, so they are kept in
//! per-thread shards of plain relaxed atomics (no lock, no cache line shared between
//! workers) and summed when `/metrics` is scraped, through prometheus-client's
//! [`Collector`] API. The model metrics change only on reload and use the stock types.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use thread_local::ThreadLocal;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use cooc_model::{ModelMeta, Provenance};

/// Labels of a request counter: route and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route.
    pub route: &'static str,
    /// The HTTP status.
    pub status: u16,
}

/// Labels of a latency histogram: the route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route.
    pub route: &'static str,
}

/// Labels of the model-info gauge: the live version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// The live model version.
    pub version: String,
}

/// Labels of the model-quality gauge: the metric's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    /// e.g. `hit_rate`.
    pub metric: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Routes, as labelled in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/recommend`.
    Recommend,
    /// `:predict`.
    Predict,
    /// `:recommend` (basket recommendations).
    Basket,
    /// The model metadata route.
    ModelInfo,
    /// `/healthz`.
    Healthz,
    /// `/ready`.
    Ready,
    /// `/metrics`.
    Metrics,
    /// Anything else (404s).
    Other,
}

const ROUTES: [(Route, &str); 8] = [
    (Route::Recommend, "recommend"),
    (Route::Predict, "predict"),
    (Route::Basket, "basket"),
    (Route::ModelInfo, "model_info"),
    (Route::Healthz, "healthz"),
    (Route::Ready, "ready"),
    (Route::Metrics, "metrics"),
    (Route::Other, "other"),
];
/// Statuses counted in the lock-free shards; any other goes to a locked side table.
const STATUSES: [u16; 7] = [200, 400, 404, 405, 422, 500, 503];
/// Latency bucket upper bounds: 20 µs doubling to ~0.65 s, then +Inf.
const BUCKETS: usize = 16;

fn bucket_bound(i: usize) -> f64 {
    20e-6 * (1u64 << i) as f64
}

/// One thread's counts; only its owner writes, the scraper reads.
struct Shard {
    requests: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    buckets: [[AtomicU64; BUCKETS + 1]; ROUTES.len()],
    sum_ns: [AtomicU64; ROUTES.len()],
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            sum_ns: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Requests by route and status, latency by route.
#[derive(Default)]
pub struct HttpStats {
    shards: ThreadLocal<Shard>,
    other_statuses: Mutex<Vec<(Route, u16, u64)>>,
}

impl std::fmt::Debug for HttpStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpStats")
    }
}

impl HttpStats {
    /// Records one request. Lock-free for the statuses the server answers with.
    pub fn record(&self, route: Route, status: u16, elapsed: Duration) {
        let r = route as usize;
        let shard = self.shards.get_or_default();
        match STATUSES.iter().position(|&s| s == status) {
            Some(si) => {
                shard.requests[r][si].fetch_add(1, Relaxed);
            }
            None => {
                let mut other = self
                    .other_statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match other
                    .iter_mut()
                    .find(|(ro, st, _)| *ro == route && *st == status)
                {
                    Some(e) => e.2 += 1,
                    None => other.push((route, status, 1)),
                }
            }
        }
        let secs = elapsed.as_secs_f64();
        let b = (0..BUCKETS)
            .find(|&i| secs <= bucket_bound(i))
            .unwrap_or(BUCKETS);
        shard.buckets[r][b].fetch_add(1, Relaxed);
        shard.sum_ns[r].fetch_add(elapsed.as_nanos() as u64, Relaxed);
    }
}

/// Registered with the registry; encodes the sums of all shards at scrape time.
#[derive(Debug)]
struct HttpCollector(Arc<HttpStats>);

impl Collector for HttpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = [&*self.0];
        encode_http(
            &mut encoder,
            "",
            &stats,
            |_, route, status| RequestLabels { route, status },
            |_, route| RouteLabels { route },
        )
    }
}

/// Labels of a per-version request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionRequestLabels {
    version: String,
    route: &'static str,
    status: u16,
}

/// Labels of a per-version latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionRouteLabels {
    version: String,
    route: &'static str,
}

/// What one served version did while it was served: its own requests and latencies, and
/// the basket recommendations it filled from popularity.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// Requests answered by this version.
    pub http: HttpStats,
    /// Basket recommendations this version filled from popularity.
    pub backfilled: AtomicU64,
}

/// A served version's name and what it answered.
pub type Served = (String, Arc<VersionStats>);

/// The versions being served: the live one and the canary (two at most, so the
/// per-version series stay bounded). A version's series go when it stops being served.
#[derive(Debug, Default)]
pub struct VersionBoard {
    slots: Mutex<[Option<Served>; 2]>,
}

/// A slot of the [`VersionBoard`].
#[derive(Debug, Clone, Copy)]
pub enum Slot {
    /// The live version (CURRENT).
    Live = 0,
    /// The canary.
    Canary = 1,
}

impl VersionBoard {
    /// Puts `stats` of `version` in `slot` (or empties it).
    pub fn set(&self, slot: Slot, entry: Option<Served>) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())[slot as usize] = entry;
    }
}

#[derive(Debug)]
struct VersionCollector(Arc<VersionBoard>);

impl Collector for VersionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let slots = self
            .0
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let served: Vec<&Served> = slots.iter().flatten().collect();
        let stats: Vec<&HttpStats> = served.iter().map(|(_, s)| &s.http).collect();
        let name = |i: usize| served[i].0.clone();
        encode_http(
            &mut encoder,
            "version_",
            &stats,
            |i, route, status| VersionRequestLabels {
                version: name(i),
                route,
                status,
            },
            |i, route| VersionRouteLabels {
                version: name(i),
                route,
            },
        )?;
        let mut family = encoder.encode_descriptor(
            "version_backfill_recommendations",
            "Basket recommendations filled from popularity, by served version",
            None,
            MetricType::Counter,
        )?;
        for (version, s) in &served {
            let n = s.backfilled.load(Relaxed);
            family
                .encode_family(&VersionLabels {
                    version: version.clone(),
                })?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        Ok(())
    }
}

/// Encodes requests by route and status and latency by route for each of `all`, as
/// `{prefix}http_requests` and `{prefix}http_request_duration_seconds`, labelled by
/// `req(i, route, status)` and `lat(i, route)` for the i-th stats.
fn encode_http<L1: EncodeLabelSet, L2: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    prefix: &str,
    all: &[&HttpStats],
    req: impl Fn(usize, &'static str, u16) -> L1,
    lat: impl Fn(usize, &'static str) -> L2,
) -> Result<(), std::fmt::Error> {
    let sums: Vec<_> = all.iter().map(|s| sum_shards(s)).collect();
    let (requests, latency) = (
        format!("{prefix}http_requests"),
        format!("{prefix}http_request_duration_seconds"),
    );
    let mut family = encoder.encode_descriptor(
        &requests,
        "HTTP requests by route and status",
        None,
        MetricType::Counter,
    )?;
    for (i, (counts, _, _, other)) in sums.iter().enumerate() {
        for (r, (_, route)) in ROUTES.iter().enumerate() {
            for (s, &status) in STATUSES.iter().enumerate() {
                if counts[r][s] > 0 {
                    family
                        .encode_family(&req(i, route, status))?
                        .encode_counter::<NoLabelSet, _, u64>(&counts[r][s], None)?;
                }
            }
        }
        for &(route, status, n) in other {
            let route = ROUTES[route as usize].1;
            family
                .encode_family(&req(i, route, status))?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        &latency,
        "HTTP request latency by route",
        None,
        MetricType::Histogram,
    )?;
    for (i, (_, buckets, sum_ns, _)) in sums.iter().enumerate() {
        for (r, (_, route)) in ROUTES.iter().enumerate() {
            let count: u64 = buckets[r].iter().sum();
            if count == 0 {
                continue;
            }
            let bounds: Vec<(f64, u64)> = (0..=BUCKETS)
                .map(|b| {
                    (
                        if b == BUCKETS {
                            f64::MAX
                        } else {
                            bucket_bound(b)
                        },
                        buckets[r][b],
                    )
                })
                .collect();
            family
                .encode_family(&lat(i, route))?
                .encode_histogram::<NoLabelSet>(sum_ns[r] as f64 * 1e-9, count, &bounds, None)?;
        }
    }
    Ok(())
}

type Sums = (
    [[u64; STATUSES.len()]; ROUTES.len()],
    [[u64; BUCKETS + 1]; ROUTES.len()],
    [u64; ROUTES.len()],
    Vec<(Route, u16, u64)>,
);

/// The sums of every shard of `stats`.
fn sum_shards(stats: &HttpStats) -> Sums {
    let mut counts = [[0u64; STATUSES.len()]; ROUTES.len()];
    let mut buckets = [[0u64; BUCKETS + 1]; ROUTES.len()];
    let mut sum_ns = [0u64; ROUTES.len()];
    for shard in stats.shards.iter() {
        for r in 0..ROUTES.len() {
            for (s, c) in counts[r].iter_mut().enumerate() {
                *c += shard.requests[r][s].load(Relaxed);
            }
            for (b, c) in buckets[r].iter_mut().enumerate() {
                *c += shard.buckets[r][b].load(Relaxed);
            }
            sum_ns[r] += shard.sum_ns[r].load(Relaxed);
        }
    }
    let other = stats
        .other_statuses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    (counts, buckets, sum_ns, other)
}

/// Every metric the server exports.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Request counts and latencies.
    pub http: Arc<HttpStats>,
    /// 1 for the live version.
    pub model_info: Family<VersionLabels, Gauge>,
    /// Items in the live model.
    pub model_items: Gauge,
    /// The live model's hold-out metrics.
    pub model_quality: Family<MetricLabels, F64Gauge>,
    /// How long the last load took.
    pub load_seconds: F64Gauge,
    /// When the live model was loaded (Unix seconds).
    pub loaded_at: F64Gauge,
    /// Models loaded since start.
    pub reloads: Counter,
    /// Models refused since start.
    pub reload_failures: Counter,
    /// How the live model was trained: when, by how many ranks, on how much data.
    pub trained_at: F64Gauge,
    /// Ranks that trained the live model.
    pub training_world_size: Gauge,
    /// Order lines the live model was trained on.
    pub trained_rows: Gauge,
    /// Baskets the live model was trained on.
    pub trained_baskets: Gauge,
    /// Neighbour entries stored in the live model.
    pub model_neighbours: Gauge,
    /// Basket recommendations filled from popularity.
    pub backfilled: Counter,
    /// Basket answers given by a model without a popularity list (no backfill possible).
    pub basket_without_popularity: Counter,
    /// The versions being served, for the per-version series.
    pub versions: Arc<VersionBoard>,
    /// The canary's share of users in percent (0: no canary).
    pub canary_percent: Gauge,
    /// 1 for the canary version, if any.
    pub canary_info: Family<VersionLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cooc");
        let m = Metrics {
            http: Arc::new(HttpStats::default()),
            model_info: Family::default(),
            model_items: Gauge::default(),
            model_quality: Family::default(),
            load_seconds: F64Gauge::default(),
            loaded_at: F64Gauge::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            trained_at: F64Gauge::default(),
            training_world_size: Gauge::default(),
            trained_rows: Gauge::default(),
            trained_baskets: Gauge::default(),
            model_neighbours: Gauge::default(),
            backfilled: Counter::default(),
            basket_without_popularity: Counter::default(),
            versions: Arc::default(),
            canary_percent: Gauge::default(),
            canary_info: Family::default(),
            registry: Registry::default(),
        };
        registry.register_collector(Box::new(HttpCollector(m.http.clone())));
        registry.register_collector(Box::new(VersionCollector(m.versions.clone())));
        registry.register(
            "canary_percent",
            "The canary version's share of users in percent (0: no canary)",
            m.canary_percent.clone(),
        );
        registry.register(
            "canary_info",
            "The canary version (value 1), while one is served",
            m.canary_info.clone(),
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
        registry.register(
            "model_trained_timestamp_seconds",
            "Unix time the live model was trained (its created_at)",
            m.trained_at.clone(),
        );
        registry.register(
            "model_training_world_size",
            "Ranks of the gang that trained the live model (1: one process)",
            m.training_world_size.clone(),
        );
        registry.register(
            "model_trained_order_lines",
            "Order lines (input rows) the live model was trained on",
            m.trained_rows.clone(),
        );
        registry.register(
            "model_trained_baskets",
            "Baskets (customers) the live model was trained on",
            m.trained_baskets.clone(),
        );
        registry.register(
            "model_neighbours",
            "Neighbour entries in the live model",
            m.model_neighbours.clone(),
        );
        registry.register(
            "backfill_recommendations",
            "Basket recommendations filled from the most-bought books (source popular)",
            m.backfilled.clone(),
        );
        registry.register(
            "basket_answers_without_popularity",
            "Basket answers from a model that lists no popular books (an older artifact): no backfill",
            m.basket_without_popularity.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Records a newly live model.
    pub fn model_loaded(
        &self,
        version: &str,
        meta: &ModelMeta,
        provenance: &Provenance,
        seconds: f64,
    ) {
        // A created_at that does not parse leaves the gauge at 0 (never trained, for
        // dashboards) rather than refusing a model that validated.
        self.trained_at.set(
            humantime::parse_rfc3339_weak(&provenance.created_at)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        self.training_world_size.set(provenance.world_size as i64);
        self.trained_rows.set(meta.n_rows as i64);
        self.trained_baskets.set(meta.n_baskets as i64);
        self.model_neighbours.set(meta.nnz as i64);
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
