//! The HTTP API: the reference predictor's contract, served from the live model.
//!
//! Routes (port 8080 by default):
//! `GET /healthz`, `GET /ready`, `GET /recommend?book_id=&k=`, `GET /v1/models/{name}`,
//! `POST /v1/models/{name}:predict`, `POST /v1/models/{name}:recommend` (basket
//! recommendations, [`cooc_model::basket`]), `GET /metrics`.
//!
//! The live model sits behind an [`ArcSwapOption`]: requests take a snapshot, the reload
//! loop swaps in a validated replacement, and a refused replacement leaves the old model
//! serving. A canary (the store's `CANARY` pointer) is a second model behind a second
//! slot, served to its share of users: a request's user is `user` in a `:recommend` body or
//! the `X-User-Id` header, assigned by [`cooc_model::store::user_bucket`]; requests without
//! one are assigned at random in the same proportion. Owns nothing about training.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::metrics::{Metrics, Route, Slot, VersionStats};
use cooc_model::{Key, Model, ModelStore, StoreError};

/// The header naming a request's user, for canary assignment.
pub const USER_HEADER: &str = "x-user-id";

/// Largest `k` a request may ask for (the reference contract's bound).
pub const MAX_K: u32 = 100;

/// Server settings as given on the command line or in the environment (both binaries that
/// serve, `cooc-serve` and `cooc serve`, take exactly these).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Model store: a directory (holds CURRENT and one directory per version), or the
    /// same layout on object storage, s3://bucket/prefix (gs://, az:// alike; credentials
    /// from the standard environment). The default is the pods' volume path, where the
    /// JobSet's rank 0 publishes; `cooc train` on a laptop publishes into ./model, so pass
    /// --model-dir model there.
    #[arg(long, env = "MODEL_DIR", default_value = "/workspace/model")]
    pub model_dir: String,
    /// Name served under /v1/models/<name>.
    #[arg(long, env = "MODEL_NAME", default_value = "recommender")]
    pub model_name: String,
    /// k when a request gives none (1..=100).
    #[arg(long, env = "DEFAULT_K", default_value_t = 5)]
    pub default_k: u32,
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// How often CURRENT is checked for a new version, in milliseconds.
    #[arg(long, env = "RELOAD_INTERVAL_MS", default_value_t = 2000)]
    pub reload_interval_ms: u64,
    /// A connection that has not sent a whole request head this long after it opened or
    /// after its last answer is closed, in milliseconds (covers idle keep-alive too).
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// On SIGTERM, how long in-flight requests may take before the server exits anyway, in
    /// milliseconds (keep it below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

impl ServeArgs {
    /// Validates the settings.
    pub fn config(&self) -> Result<Config, String> {
        if !(1..=MAX_K).contains(&self.default_k) {
            return Err(format!(
                "DEFAULT_K={} is outside 1..={MAX_K}",
                self.default_k
            ));
        }
        let store = ModelStore::open(&self.model_dir).map_err(|e| format!("MODEL_DIR: {e}"))?;
        Ok(Config {
            store,
            model_name: self.model_name.clone(),
            default_k: self.default_k,
            reload_interval: Duration::from_millis(self.reload_interval_ms.max(50)),
            limits: Limits {
                header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
                max_connections: self.max_connections.max(1),
                drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            },
        })
    }

    /// Binds the listener and serves until SIGTERM or SIGINT.
    pub async fn serve(&self, cfg: Config) -> anyhow::Result<()> {
        use anyhow::Context;
        let listener = TcpListener::bind(&self.listen)
            .await
            .with_context(|| format!("listening on {}", self.listen))?;
        run(listener, cfg, shutdown_signal()).await
    }
}

/// Bounds that keep a slow or hostile client from holding the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a whole request head (also the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Longest graceful drain after a shutdown signal.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Largest request body any POST route reads (FastAPI-shaped 413 beyond it).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most instances one `:predict` request may carry (422 beyond it).
pub const MAX_INSTANCES: usize = 1000;
/// Most seed books one `:recommend` request may carry (422 beyond it).
pub const MAX_SEEDS: usize = 100;
/// Most excluded books one `:recommend` request may carry (422 beyond it).
pub const MAX_EXCLUDED: usize = 1000;

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The model store to serve from.
    pub store: ModelStore,
    /// Served under `/v1/models/<name>`.
    pub model_name: String,
    /// `k` when a request gives none; 1..=MAX_K.
    pub default_k: u32,
    /// How often `CURRENT` is checked for a new version.
    pub reload_interval: Duration,
    /// Timeouts, connection cap, drain deadline.
    pub limits: Limits,
}

/// A model that is live, with the version it was loaded as.
pub struct Live {
    /// The version's name.
    pub version: String,
    /// The loaded model.
    pub model: Model,
    version_header: HeaderValue,
    /// Rendered `/recommend` bodies for `DEFAULT_K`, filled on first request per book. The
    /// model is immutable, so an answer never changes while this version is live; the
    /// cache goes with the version on reload. At most one body per item.
    default_k_bodies: Vec<OnceLock<Bytes>>,
    /// Set once this version answered a basket request without popularity backfill (a
    /// version 1 artifact), so that the log says it once.
    said_no_popularity: std::sync::atomic::AtomicBool,
    /// What this version answered while it was served.
    stats: Arc<VersionStats>,
    /// Per item, the parts of an answer that name it, rendered on first use (like
    /// `default_k_bodies`, at most one per item, gone with the version).
    fragments: Vec<OnceLock<Fragment>>,
}

/// An item as answers write it: its key as JSON, and `,"title":...,"author":...`.
struct Fragment {
    key: Box<[u8]>,
    meta: Box<[u8]>,
}

impl Live {
    fn fragment(&self, i: u32) -> &Fragment {
        let i = i as usize;
        self.fragments[i].get_or_init(|| {
            let m = &self.model;
            let mut meta = b",\"title\":".to_vec();
            serde_json::to_writer(&mut meta, &m.title(i)).expect("a title serialises");
            meta.extend_from_slice(b",\"author\":");
            serde_json::to_writer(&mut meta, &m.author(i)).expect("an author serialises");
            Fragment {
                key: render(&m.key(i)).into(),
                meta: meta.into(),
            }
        })
    }

    /// A basket answer's body, byte for byte what serialising
    /// [`cooc_model::basket::Answer`] gives, from the cached fragments.
    fn render_basket(
        &self,
        k: usize,
        unknown: &[Key<'_>],
        picks: &[cooc_model::basket::Pick],
    ) -> Vec<u8> {
        use cooc_model::basket::Source;
        let mut out = Vec::with_capacity(128 + picks.len() * 192);
        out.extend_from_slice(b"{\"k\":");
        serde_json::to_writer(&mut out, &k).expect("a number serialises");
        out.extend_from_slice(b",\"version\":");
        serde_json::to_writer(&mut out, &self.version).expect("a string serialises");
        out.extend_from_slice(b",\"unknown\":");
        serde_json::to_writer(&mut out, unknown).expect("keys serialise");
        out.extend_from_slice(b",\"recommendations\":[");
        for (n, p) in picks.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let f = self.fragment(p.item);
            out.extend_from_slice(b"{\"book_id\":");
            out.extend_from_slice(&f.key);
            out.extend_from_slice(b",\"score\":");
            serde_json::to_writer(&mut out, &p.score).expect("a number serialises");
            out.extend_from_slice(&f.meta);
            out.extend_from_slice(match p.source {
                Source::Similar => b",\"source\":\"similar\",\"because\":[",
                Source::Popular => b",\"source\":\"popular\",\"because\":[",
            });
            for (m, &s) in p.because.iter().enumerate() {
                if m > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&self.fragment(s).key);
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// Shared by every request and the reload loop. Lives for the whole process (leaked once
/// in [`AppState::new`]) so handlers borrow it instead of cloning an `Arc` per request.
pub struct AppState {
    cfg: Config,
    store: ModelStore,
    live: ArcSwapOption<Live>,
    /// What `/metrics` exports.
    pub metrics: Metrics,
    /// The last version that failed to load: refused for good (it does not validate), or
    /// to be tried again after a backoff (it could not be read: not there yet, EMFILE, EIO).
    failed: Mutex<Option<Failed>>,
    /// The canary's model, while one is served.
    canary: ArcSwapOption<Live>,
    /// The canary's share of users, percent.
    canary_percent: std::sync::atomic::AtomicU8,
    /// The last canary problem logged (a refused version, a bad CANARY), so that each is
    /// logged once, not on every check.
    canary_note: Mutex<Option<String>>,
}

/// A version that failed to load.
struct Failed {
    version: String,
    /// `None`: it does not validate, and never will. `Some`: when to try reading it again.
    retry_at: Option<Instant>,
    attempts: u32,
}

/// Backoff between attempts to read a version that could not be read: 100 ms doubling to
/// at most 30 s.
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << attempts.min(9))
        .min(Duration::from_secs(30))
}

/// What one reload check did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// CURRENT still names the live version.
    Unchanged,
    /// The store has no CURRENT yet.
    NoCurrent,
    /// This version was loaded and is live.
    Loaded(String),
    /// This version was refused (the message says why); the live one stays.
    Refused(String),
    /// This version could not be read (the message says why); it is tried again later.
    Retrying(String),
}

impl AppState {
    /// The server's state for `cfg`, leaked: it lives as long as the process.
    pub fn new(cfg: Config) -> &'static AppState {
        Box::leak(Box::new(AppState {
            store: cfg.store.clone(),
            cfg,
            live: ArcSwapOption::empty(),
            metrics: Metrics::default(),
            failed: Mutex::new(None),
            canary: ArcSwapOption::empty(),
            canary_percent: Default::default(),
            canary_note: Mutex::new(None),
        }))
    }

    /// The model that answers `user`: the canary for its share of users while one is
    /// served, else the live one. Without a user, the share is drawn at random.
    pub fn live_for(&self, user: Option<&[u8]>) -> arc_swap::Guard<Option<Arc<Live>>> {
        let canary = self.canary.load();
        if canary.is_some() {
            let bucket = match user {
                Some(u) => cooc_model::store::user_bucket(u),
                None => random_bucket(),
            };
            if bucket
                < self
                    .canary_percent
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                return canary;
            }
        }
        self.live.load()
    }

    /// Reads and validates `version` into a servable [`Live`]. Blocking.
    fn load(&self, version: &str) -> Result<(Live, f64), StoreError> {
        let started = Instant::now();
        let model = self.store.open_model(version)?;
        let secs = started.elapsed().as_secs_f64();
        // Leaked once per load (a few bytes; loads are rare) so that the header is
        // `'static`: cloning it per response then costs nothing, where a shared or copied
        // value costs an atomic or an allocation on every answer.
        let leaked: &'static str = Box::leak(version.to_owned().into_boxed_str());
        let version_header = HeaderValue::from_str(leaked)
            .map(|_| HeaderValue::from_static(leaked))
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let default_k_bodies = (0..model.n_items()).map(|_| OnceLock::new()).collect();
        let fragments = (0..model.n_items()).map(|_| OnceLock::new()).collect();
        let live = Live {
            version: version.to_owned(),
            model,
            version_header,
            default_k_bodies,
            said_no_popularity: Default::default(),
            stats: Arc::default(),
            fragments,
        };
        Ok((live, secs))
    }

    /// Follows the store's `CANARY`: loads a new canary version (validated like CURRENT; a
    /// refused one is logged and counted, and everyone stays on the live version), updates
    /// its share, or ends it. A canary equal to the live version is no canary. Blocking.
    pub fn reload_canary(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let note = |msg: String, error: bool| {
            let mut last = self.canary_note.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_deref() != Some(msg.as_str()) {
                if error {
                    self.metrics.reload_failures.inc();
                    tracing::error!("{msg}");
                } else {
                    tracing::warn!("{msg}");
                }
                *last = Some(msg);
            }
        };
        let live = self.live().as_ref().map(|l| l.version.clone());
        let want = match self.store.canary() {
            Ok(c) => c.filter(|c| Some(&c.version) != live.as_ref()),
            Err(e) => {
                note(format!("{e}"), true);
                None
            }
        };
        let Some(want) = want else {
            if let Some(old) = self.canary.swap(None) {
                tracing::info!(version = old.version, "canary ended");
            }
            self.metrics.versions.set(Slot::Canary, None);
            self.metrics.canary_percent.set(0);
            self.metrics.canary_info.clear();
            return;
        };
        let serve_share = || {
            self.canary_percent.store(want.percent, Relaxed);
            self.metrics.canary_percent.set(i64::from(want.percent));
        };
        if self
            .canary
            .load()
            .as_ref()
            .is_some_and(|c| c.version == want.version)
        {
            serve_share();
            return;
        }
        let refused = format!("refusing canary {}", want.version);
        if self
            .canary_note
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            .is_some_and(|n| n.starts_with(&format!("{refused}:")))
        {
            return;
        }
        match self.load(&want.version) {
            Ok((canary, secs)) => {
                tracing::info!(
                    version = want.version,
                    percent = want.percent,
                    load_ms = secs * 1e3,
                    "canary live"
                );
                self.metrics.versions.set(
                    Slot::Canary,
                    Some((want.version.clone(), canary.stats.clone())),
                );
                self.metrics.canary_info.clear();
                self.metrics
                    .canary_info
                    .get_or_create(&crate::metrics::VersionLabels {
                        version: want.version.clone(),
                    })
                    .set(1);
                serve_share();
                self.canary.store(Some(Arc::new(canary)));
                *self.canary_note.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) if e.is_transient() => {
                // Not there yet, or the store did not answer: the next check tries again.
                note(
                    format!("canary {} not readable yet: {e}", want.version),
                    false,
                );
            }
            Err(e) => {
                self.canary.store(None);
                self.metrics.versions.set(Slot::Canary, None);
                self.metrics.canary_percent.set(0);
                self.metrics.canary_info.clear();
                note(
                    format!("{refused}: {e}; everyone stays on the live version"),
                    true,
                );
            }
        }
    }

    /// The live model, if any. Hot path: arc-swap's guard avoids touching the shared
    /// reference count that both workers would otherwise bounce between their caches.
    pub fn live(&self) -> arc_swap::Guard<Option<Arc<Live>>> {
        self.live.load()
    }

    /// Loads `CURRENT` if it names a version other than the live one. Blocking: call it
    /// off the async workers.
    pub fn reload(&self) -> Reload {
        let version = match self.store.current() {
            Ok(Some(v)) => v,
            Ok(None) => return Reload::NoCurrent,
            Err(e) => {
                tracing::warn!("reading CURRENT: {e}");
                return Reload::NoCurrent;
            }
        };
        if self.live().as_ref().is_some_and(|l| l.version == version) {
            return Reload::Unchanged;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = failed.as_ref().filter(|f| f.version == version) {
            match f.retry_at {
                None => return Reload::Unchanged,
                Some(at) if Instant::now() < at => return Reload::Unchanged,
                Some(_) => {}
            }
        }
        // The canary's model, when CURRENT moves to it (`cooc models promote` of the
        // canary): already loaded and validated, and its answers' caches stay warm.
        let promoted = self.canary.load_full().filter(|c| c.version == version);
        let loaded = match promoted {
            Some(c) => Ok((c, 0.0)),
            None => self.load(&version).map(|(l, secs)| (Arc::new(l), secs)),
        };
        match loaded {
            Ok((live, secs)) => {
                let model = &live.model;
                self.metrics
                    .model_loaded(&version, model.meta(), model.provenance(), secs);
                if self.live().is_some() {
                    self.metrics.reloads.inc();
                }
                tracing::info!(
                    version,
                    items = model.n_items(),
                    load_ms = secs * 1e3,
                    "model live"
                );
                self.metrics
                    .versions
                    .set(Slot::Live, Some((version.clone(), live.stats.clone())));
                self.live.store(Some(live));
                *failed = None;
                Reload::Loaded(version)
            }
            Err(e) if e.is_transient() => {
                // Not there yet, out of file descriptors, a network volume's EIO, an object
                // store that did not answer: try again.
                self.metrics.reload_failures.inc();
                let attempts = failed
                    .as_ref()
                    .filter(|f| f.version == version)
                    .map_or(0, |f| f.attempts)
                    + 1;
                let delay = retry_delay(attempts);
                tracing::warn!(
                    version,
                    attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    "could not read the model, will retry: {e}"
                );
                *failed = Some(Failed {
                    version: version.clone(),
                    retry_at: Some(Instant::now() + delay),
                    attempts,
                });
                Reload::Retrying(e.to_string())
            }
            Err(e) => {
                self.metrics.reload_failures.inc();
                tracing::error!(version, "refusing model, previous one keeps serving: {e}");
                *failed = Some(Failed {
                    version: version.clone(),
                    retry_at: None,
                    attempts: 1,
                });
                Reload::Refused(e.to_string())
            }
        }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::new(cfg);
    let first = tokio::task::spawn_blocking(move || {
        let first = state.reload();
        state.reload_canary();
        first
    })
    .await?;
    match &first {
        Reload::NoCurrent => tracing::warn!(
            store = %state.store.location(),
            "no model yet; /ready answers 503 until CURRENT names one"
        ),
        Reload::Refused(e) => tracing::error!("initial model refused: {e}"),
        Reload::Retrying(e) => tracing::warn!("initial model not readable yet: {e}"),
        _ => {}
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let reloader = {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state.cfg.reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = tokio::task::spawn_blocking(move || {
                            state.reload();
                            state.reload_canary();
                        })
                        .await;
                    }
                    _ = stop_rx.changed() => break,
                }
            }
        })
    };
    tracing::info!(addr = %listener.local_addr()?, "serving");
    serve_connections(listener, router(state), state.cfg.limits, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = reloader.await;
    Ok(())
}

/// Accepts connections until `shutdown`, at most `limits.max_connections` at once, each
/// with a header-read timeout; then drains the open ones for at most
/// `limits.drain_timeout`.
async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // Take a slot first: at the cap, new connections wait in the kernel's backlog
        // rather than costing a file descriptor each.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutdown requested, draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => tracing::warn!(
            "drain timed out after {} ms; closing the remaining connections",
            limits.drain_timeout.as_millis()
        ),
    }
}

type St = State<&'static AppState>;

/// The routes. Each handler records its own metrics (a middleware would box a future and
/// clone state on every request).
pub fn router(state: &'static AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .route("/recommend", get(recommend))
        .route("/v1/models/{spec}", get(model_info).post(predict))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn recorded(state: &AppState, route: Route, started: Instant, resp: Response) -> Response {
    let (status, elapsed) = (resp.status().as_u16(), started.elapsed());
    state.metrics.http.record(route, status, elapsed);
    // The version that answered, by its header (the same leaked value, so equal bytes).
    if let Some(v) = resp.headers().get("x-model-version") {
        for slot in [&state.live, &state.canary] {
            if let Some(l) = slot.load().as_ref().filter(|l| l.version_header == v) {
                l.stats.http.record(route, status, elapsed);
                break;
            }
        }
    }
    resp
}

/// The two request headers the handlers read: the user (`X-User-Id`) and the declared
/// body length. An extractor of its own so that a request's header map is not copied, as
/// axum's `HeaderMap` extractor does, on every request.
struct Heads {
    user: Option<HeaderValue>,
    declared_len: Option<u64>,
}

impl Heads {
    fn user(&self) -> Option<&[u8]> {
        self.user.as_ref().map(HeaderValue::as_bytes)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Heads {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Heads {
            user: parts.headers.get(USER_HEADER).cloned(),
            declared_len: parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        })
    }
}

/// A bucket in 0..100 for a request without a user: a per-thread xorshift seeded from the
/// process's random hasher keys.
fn random_bucket() -> u8 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        ((u128::from(x) * 100) >> 64) as u8
    })
}

async fn not_found(State(state): St) -> Response {
    let resp = detail(StatusCode::NOT_FOUND, "Not Found".into());
    recorded(state, Route::Other, Instant::now(), resp)
}

async fn method_not_allowed(State(state): St) -> Response {
    let resp = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed".into());
    recorded(state, Route::Other, Instant::now(), resp)
}

fn render(body: &impl Serialize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, body).expect("response serialises");
    bytes
}

fn json_response(status: StatusCode, body: &impl Serialize, live: Option<&Live>) -> Response {
    json_bytes(status, Body::from(render(body)), live)
}

fn json_bytes(status: StatusCode, body: Body, live: Option<&Live>) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(l) = live {
        h.insert("x-model-version", l.version_header.clone());
    }
    resp
}

fn detail(status: StatusCode, msg: String) -> Response {
    json_response(status, &json!({ "detail": msg }), None)
}

/// A 422 in the shape FastAPI gives, so existing clients parse it.
fn unprocessable(loc: &[&str], kind: &str, msg: String, input: Value) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({ "detail": [{ "type": kind, "loc": loc, "msg": msg, "input": input }] }),
        None,
    )
}

/// The 422 for a body that is not JSON.
fn json_invalid(e: &serde_json::Error) -> Response {
    unprocessable(
        &["body"],
        "json_invalid",
        format!("JSON decode error: {e}"),
        Value::Null,
    )
}

fn not_ready() -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "status": "not ready", "detail": "no model loaded" }),
        None,
    )
}

async fn healthz(State(state): St) -> Response {
    let started = Instant::now();
    let resp = healthz_inner().await;
    recorded(state, Route::Healthz, started, resp)
}

async fn healthz_inner() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }), None)
}

async fn ready(State(state): St, heads: Heads) -> Response {
    let started = Instant::now();
    let resp = ready_inner(state, heads.user()).await;
    recorded(state, Route::Ready, started, resp)
}

async fn ready_inner(state: &AppState, user: Option<&[u8]>) -> Response {
    match &*state.live_for(user) {
        Some(l) => json_response(StatusCode::OK, &json!({ "status": "ready" }), Some(l)),
        None => not_ready(),
    }
}

async fn metrics(State(state): St) -> Response {
    let started = Instant::now();
    let resp = metrics_inner(state).await;
    recorded(state, Route::Metrics, started, resp)
}

async fn metrics_inner(state: &AppState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[derive(Serialize)]
struct Recommendation<'a> {
    book_id: Key<'a>,
    score: f32,
    title: Option<&'a str>,
    author: Option<&'a str>,
}

fn recommendations(model: &Model, item: usize, k: u32) -> Vec<Recommendation<'_>> {
    let (ids, scores) = model.neighbours(item);
    ids.iter()
        .zip(scores)
        .take(k as usize)
        .map(|(&j, &score)| Recommendation {
            book_id: model.key(j as usize),
            score,
            title: model.title(j as usize),
            author: model.author(j as usize),
        })
        .collect()
}

/// Parses a book id the way the live model keys its items.
fn parse_book<'a>(model: &Model, raw: &'a str) -> Result<Key<'a>, &'static str> {
    if model.int_keys() {
        raw.trim()
            .parse::<i64>()
            .map(Key::Int)
            .map_err(|_| "Input should be a valid integer, unable to parse string as an integer")
    } else {
        Ok(Key::Str(raw))
    }
}

/// `k` in 1..=MAX_K, or the FastAPI error type and message.
fn check_k(k: i64) -> Result<u32, (&'static str, String)> {
    if k < 1 {
        Err((
            "greater_than_equal",
            "Input should be greater than or equal to 1".into(),
        ))
    } else if k > MAX_K as i64 {
        Err((
            "less_than_equal",
            format!("Input should be less than or equal to {MAX_K}"),
        ))
    } else {
        Ok(k as u32)
    }
}

#[derive(Serialize)]
struct RecommendBody<'a> {
    book_id: Key<'a>,
    k: u32,
    recommendations: Vec<Recommendation<'a>>,
}

async fn recommend(State(state): St, RawQuery(query): RawQuery, heads: Heads) -> Response {
    let started = Instant::now();
    let resp = recommend_inner(state, query, heads.user()).await;
    recorded(state, Route::Recommend, started, resp)
}

pub(crate) async fn recommend_inner(
    state: &AppState,
    query: Option<String>,
    user: Option<&[u8]>,
) -> Response {
    let guard = state.live_for(user);
    let Some(live) = guard.as_ref() else {
        return not_ready();
    };
    let model = &live.model;
    let (mut book, mut k_raw) = (None, None);
    for (name, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match &*name {
            "book_id" => book = Some(value),
            "k" => k_raw = Some(value),
            _ => {}
        }
    }
    let Some(raw) = book else {
        return unprocessable(
            &["query", "book_id"],
            "missing",
            "Field required".into(),
            Value::Null,
        );
    };
    let key = match parse_book(model, &raw) {
        Ok(k) => k,
        Err(msg) => {
            return unprocessable(&["query", "book_id"], "int_parsing", msg.into(), json!(raw))
        }
    };
    let k = match k_raw {
        None => state.cfg.default_k,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(k) => match check_k(k) {
                Ok(k) => k,
                Err((kind, msg)) => return unprocessable(&["query", "k"], kind, msg, json!(k)),
            },
            Err(_) => {
                return unprocessable(
                    &["query", "k"],
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer".into(),
                    json!(raw),
                )
            }
        },
    };
    let Some(item) = model.find(key) else {
        return detail(
            StatusCode::NOT_FOUND,
            format!("book_id {key} not found in model {}", live.version),
        );
    };
    let answer = |k| RecommendBody {
        book_id: key,
        k,
        recommendations: recommendations(model, item, k),
    };
    if k == state.cfg.default_k {
        let body = live.default_k_bodies[item].get_or_init(|| Bytes::from(render(&answer(k))));
        return json_bytes(StatusCode::OK, Body::from(body.clone()), Some(live));
    }
    json_response(StatusCode::OK, &answer(k), Some(live))
}

async fn model_info(State(state): St, UrlPath(spec): UrlPath<String>, heads: Heads) -> Response {
    let started = Instant::now();
    let resp = model_info_inner(state, spec, heads.user()).await;
    recorded(state, Route::ModelInfo, started, resp)
}

async fn model_info_inner(state: &AppState, spec: String, user: Option<&[u8]>) -> Response {
    if spec != state.cfg.model_name {
        return detail(StatusCode::NOT_FOUND, format!("model {spec:?} not found"));
    }
    let guard = state.live_for(user);
    let Some(live) = guard.as_ref() else {
        return not_ready();
    };
    let meta = live.model.meta();
    json_response(
        StatusCode::OK,
        &json!({
            "name": state.cfg.model_name,
            "kind": format!("item-item-{}", meta.similarity.as_str()),
            "version": live.version,
            "n_books": meta.n_items,
            "top_k": meta.top_k,
        }),
        Some(live),
    )
}

/// A 404 unless `spec` is this server's model name followed by `verb` (`:predict`).
fn no_such_endpoint(state: &AppState, spec: &str, verb: &str) -> Option<Response> {
    match spec.strip_suffix(verb) {
        Some(name) if name == state.cfg.model_name => None,
        _ => Some(detail(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: POST /v1/models/{spec}"),
        )),
    }
}

/// `POST /v1/models/{name}:predict` and `:recommend`: the body is bounded the same way
/// for both, then handed to the route's handler.
async fn predict(
    State(state): St,
    UrlPath(spec): UrlPath<String>,
    heads: Heads,
    body: Body,
) -> Response {
    let started = Instant::now();
    let route = if spec.ends_with(":recommend") {
        Route::Basket
    } else {
        Route::Predict
    };
    let Heads { user, declared_len } = heads;
    let handle = move |body: Bytes| {
        let user = user.as_ref().map(HeaderValue::as_bytes);
        match route {
            Route::Basket => basket_inner(state, spec, user, &body),
            _ => predict_inner(state, spec, user, body),
        }
    };
    let too_large = || {
        detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    // Refused from its declared length before any of it is read.
    let resp = if declared_len.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        too_large()
    } else {
        match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(body) if body.len() > 64 * 1024 => {
                // Up to 1,000 instances: real work, off the async workers so that /healthz
                // and cheap requests keep flowing.
                match tokio::task::spawn_blocking(move || handle(body)).await {
                    Ok(resp) => resp,
                    Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            Ok(body) => handle(body),
            // Longer than declared (chunked): the limit cut it off.
            Err(_) => too_large(),
        }
    };
    recorded(state, route, started, resp)
}

pub(crate) fn predict_inner(
    state: &AppState,
    spec: String,
    user: Option<&[u8]>,
    body: Bytes,
) -> Response {
    if let Some(missing) = no_such_endpoint(state, &spec, ":predict") {
        return missing;
    }
    let guard = state.live_for(user);
    let Some(live) = guard.as_ref() else {
        return not_ready();
    };
    let model = &live.model;
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return json_invalid(&e),
    };
    let Some(instances) = body.get("instances").and_then(Value::as_array) else {
        return unprocessable(
            &["body", "instances"],
            "missing",
            "Field required: a list of instances".into(),
            Value::Null,
        );
    };
    if instances.len() > MAX_INSTANCES {
        return unprocessable(
            &["body", "instances"],
            "too_long",
            format!(
                "List should have at most {MAX_INSTANCES} items after validation, not {}",
                instances.len()
            ),
            Value::Null,
        );
    }
    let mut predictions = Vec::with_capacity(instances.len());
    for (i, inst) in instances.iter().enumerate() {
        let idx = i.to_string();
        let loc = ["body", "instances", idx.as_str(), "book_id"];
        let key = match (inst.get("book_id"), model.int_keys()) {
            (Some(Value::Number(n)), true) if n.as_i64().is_some() => {
                Key::Int(n.as_i64().unwrap_or_default())
            }
            (Some(Value::String(s)), false) => Key::Str(s),
            (None, _) => {
                return unprocessable(&loc, "missing", "Field required".into(), inst.clone())
            }
            (Some(v), true) => {
                return unprocessable(
                    &loc,
                    "int_type",
                    "Input should be a valid integer".into(),
                    v.clone(),
                )
            }
            (Some(v), false) => {
                return unprocessable(
                    &loc,
                    "string_type",
                    "Input should be a valid string".into(),
                    v.clone(),
                )
            }
        };
        let k = match inst.get("k") {
            None | Some(Value::Null) => state.cfg.default_k,
            Some(v) => match v.as_i64() {
                Some(k) => match check_k(k) {
                    Ok(k) => k,
                    Err(_) => {
                        let loc = ["body", "instances", idx.as_str(), "k"];
                        return unprocessable(
                            &loc,
                            "range",
                            format!("k must be in 1..={MAX_K}"),
                            v.clone(),
                        );
                    }
                },
                None => {
                    let loc = ["body", "instances", idx.as_str(), "k"];
                    return unprocessable(
                        &loc,
                        "int_type",
                        "Input should be a valid integer".into(),
                        v.clone(),
                    );
                }
            },
        };
        let recs = model
            .find(key)
            .map(|item| recommendations(model, item, k))
            .unwrap_or_default();
        predictions.push(RecommendBody {
            book_id: key,
            k,
            recommendations: recs,
        });
    }
    #[derive(Serialize)]
    struct PredictBody<'a> {
        predictions: Vec<RecommendBody<'a>>,
    }
    json_response(StatusCode::OK, &PredictBody { predictions }, Some(live))
}

/// A refused request's answer, boxed: a `Response` is too big to pass by value in `Err`.
type Refusal = Box<Response>;

/// [`unprocessable`], as a [`Refusal`].
fn refuse(loc: &[&str], kind: &str, msg: String, input: Value) -> Refusal {
    Box::new(unprocessable(loc, kind, msg, input))
}

/// One book id of a JSON body, as the live model keys its items; the FastAPI error for
/// anything else.
fn json_key<'a>(model: &Model, v: &'a Value, loc: &[&str]) -> Result<Key<'a>, Refusal> {
    match (v, model.int_keys()) {
        (Value::Number(n), true) if n.as_i64().is_some() => {
            Ok(Key::Int(n.as_i64().unwrap_or_default()))
        }
        (Value::String(s), false) => Ok(Key::Str(s)),
        (v, true) => Err(refuse(
            loc,
            "int_type",
            "Input should be a valid integer".into(),
            v.clone(),
        )),
        (v, false) => Err(refuse(
            loc,
            "string_type",
            "Input should be a valid string".into(),
            v.clone(),
        )),
    }
}

/// A list field of a JSON body of at most `max` entries (`None` when absent or null).
fn json_list<'a>(
    body: &'a Value,
    field: &'static str,
    max: usize,
) -> Result<Option<&'a Vec<Value>>, Refusal> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if a.len() <= max => Ok(Some(a)),
        Some(Value::Array(a)) => Err(refuse(
            &["body", field],
            "too_long",
            format!(
                "List should have at most {max} items after validation, not {}",
                a.len()
            ),
            Value::Null,
        )),
        Some(v) => Err(refuse(
            &["body", field],
            "list_type",
            "Input should be a valid list".into(),
            v.clone(),
        )),
    }
}

/// `POST /v1/models/{name}:recommend`: recommendations for a basket of books. The user
/// (for a canary) is the body's `user`, else the `X-User-Id` header.
pub(crate) fn basket_inner(
    state: &AppState,
    spec: String,
    header_user: Option<&[u8]>,
    body: &[u8],
) -> Response {
    if let Some(missing) = no_such_endpoint(state, &spec, ":recommend") {
        return missing;
    }
    match basket_fast(state, header_user, body) {
        Some(resp) => resp,
        None => basket_general(state, header_user, body),
    }
}

/// `:recommend` for any body: through a JSON tree, naming the field of any error.
pub(crate) fn basket_general(
    state: &AppState,
    header_user: Option<&[u8]>,
    body: &[u8],
) -> Response {
    let body: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(v) => {
            return unprocessable(
                &["body"],
                "model_attributes_type",
                "Input should be a valid dictionary or object".into(),
                v,
            )
        }
        Err(e) => return json_invalid(&e),
    };
    let user = match body.get("user") {
        None | Some(Value::Null) => header_user,
        Some(Value::String(u)) => Some(u.as_bytes()),
        Some(v) => {
            return unprocessable(
                &["body", "user"],
                "string_type",
                "Input should be a valid string".into(),
                v.clone(),
            )
        }
    };
    let guard = state.live_for(user);
    let Some(live) = guard.as_ref() else {
        return not_ready();
    };
    basket_answer(state, live, &body).unwrap_or_else(|refused| *refused)
}

fn basket_answer(state: &AppState, live: &Live, body: &Value) -> Result<Response, Refusal> {
    let model = &live.model;
    let Some(books) = json_list(body, "book_ids", MAX_SEEDS)? else {
        return Err(refuse(
            &["body", "book_ids"],
            "missing",
            "Field required: a list of book ids".into(),
            Value::Null,
        ));
    };
    let weights = json_list(body, "weights", MAX_SEEDS)?;
    if let Some(w) = weights.filter(|w| w.len() != books.len()) {
        return Err(refuse(
            &["body", "weights"],
            "value_error",
            format!(
                "weights must have one entry per book id: {} weights, {} book ids",
                w.len(),
                books.len()
            ),
            Value::Null,
        ));
    }
    let mut seeds = Vec::with_capacity(books.len());
    for (i, v) in books.iter().enumerate() {
        let idx = i.to_string();
        let key = json_key(model, v, &["body", "book_ids", &idx])?;
        let weight = match weights.map(|w| &w[i]) {
            None => 1.0,
            Some(w) => match w.as_f64() {
                Some(x) if x > 0.0 && (x as f32).is_finite() && x as f32 > 0.0 => x as f32,
                _ => {
                    return Err(refuse(
                        &["body", "weights", &idx],
                        "value_error",
                        "a weight must be a positive finite number".into(),
                        w.clone(),
                    ))
                }
            },
        };
        seeds.push((key, weight));
    }
    let mut exclude = Vec::new();
    for (i, v) in json_list(body, "exclude", MAX_EXCLUDED)?
        .into_iter()
        .flatten()
        .enumerate()
    {
        exclude.push(json_key(model, v, &["body", "exclude", &i.to_string()])?);
    }
    let k = match body.get("k") {
        None | Some(Value::Null) => state.cfg.default_k,
        Some(v) => match v.as_i64() {
            Some(k) => {
                check_k(k).map_err(|(kind, msg)| refuse(&["body", "k"], kind, msg, v.clone()))?
            }
            None => {
                return Err(refuse(
                    &["body", "k"],
                    "int_type",
                    "Input should be a valid integer".into(),
                    v.clone(),
                ))
            }
        },
    };
    Ok(basket_reply(state, live, &seeds, &exclude, k))
}

/// The most common `:recommend` body, for a model keyed by integers, parsed straight into
/// its fields rather than through a JSON tree. A body of another shape (string keys, a
/// wrong type, a bound exceeded) goes the general way, which names what is wrong.
/// Unknown fields send a body the general way: serde skips an ignored value without the
/// checks a JSON tree makes (a number out of range, say), so the two would differ.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IntBasket<'a> {
    book_ids: Vec<i64>,
    #[serde(default)]
    weights: Option<Vec<f64>>,
    #[serde(default)]
    exclude: Option<Vec<i64>>,
    #[serde(default)]
    k: Option<i64>,
    #[serde(default, borrow)]
    user: Option<std::borrow::Cow<'a, str>>,
}

/// The answer to a well-formed [`IntBasket`], or `None` to take the general way.
pub(crate) fn basket_fast(
    state: &AppState,
    header_user: Option<&[u8]>,
    body: &[u8],
) -> Option<Response> {
    // An object only: serde would also take a struct's fields from a JSON array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    // UTF-8 first: serde skips the strings of fields it ignores without checking them,
    // where the general path refuses the body (the fuzz target found this difference).
    let body = std::str::from_utf8(body).ok()?;
    let req: IntBasket<'_> = serde_json::from_str(body).ok()?;
    let exclude = req.exclude.as_deref().unwrap_or_default();
    let k = match req.k {
        None => state.cfg.default_k,
        Some(k) => check_k(k).ok()?,
    };
    let weights = match &req.weights {
        None => None,
        Some(w) if w.len() == req.book_ids.len() => Some(w),
        Some(_) => return None,
    };
    if req.book_ids.len() > MAX_SEEDS || exclude.len() > MAX_EXCLUDED {
        return None;
    }
    let mut seeds = Vec::with_capacity(req.book_ids.len());
    for (i, &b) in req.book_ids.iter().enumerate() {
        let w = match weights {
            None => 1.0,
            Some(w) => {
                let x = w[i] as f32;
                if !(x.is_finite() && x > 0.0) {
                    return None;
                }
                x
            }
        };
        seeds.push((Key::Int(b), w));
    }
    let user = req.user.as_deref().map(str::as_bytes).or(header_user);
    let guard = state.live_for(user);
    let live = guard.as_ref().filter(|l| l.model.int_keys())?;
    let exclude: Vec<Key<'_>> = exclude.iter().map(|&e| Key::Int(e)).collect();
    Some(basket_reply(state, live, &seeds, &exclude, k))
}

/// Recommends for resolved seeds, counts the backfill, and renders the answer.
fn basket_reply(
    state: &AppState,
    live: &Live,
    seeds: &[(Key<'_>, f32)],
    exclude: &[Key<'_>],
    k: u32,
) -> Response {
    let model = &live.model;
    let asked = cooc_model::basket::resolve(model, seeds, exclude);
    let picks = cooc_model::basket::recommend(model, &asked.seeds, &asked.exclude, k as usize);
    let backfilled = picks
        .iter()
        .filter(|p| p.source == cooc_model::basket::Source::Popular)
        .count() as u64;
    if backfilled > 0 {
        state.metrics.backfilled.inc_by(backfilled);
        live.stats
            .backfilled
            .fetch_add(backfilled, std::sync::atomic::Ordering::Relaxed);
    }
    if model.popular().is_none() {
        state.metrics.basket_without_popularity.inc();
        if !live
            .said_no_popularity
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                version = live.version,
                format = model.format_version(),
                "this model lists no popular books (an older artifact): basket answers \
                 have no popularity backfill until a newer model is live"
            );
        }
    }
    let body = live.render_basket(k as usize, &asked.unknown, &picks);
    json_bytes(StatusCode::OK, Body::from(body), Some(live))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use cooc_model::basket::{recommend, resolve, Answer};
    use cooc_model::Key;

    /// The server's basket bodies, written from cached fragments, are byte for byte the
    /// serialised [`Answer`] that `cooc recommend --json` prints, for integer and string
    /// keys, with titles that need escaping, unknown seeds and backfill.
    #[test]
    fn basket_bodies_are_the_serialised_answer() {
        for string_keys in [false, true] {
            let h = crate::fuzz::Harness::new(string_keys);
            let guard = h.state().live();
            let live = guard.as_ref().expect("a live model");
            let m = &live.model;
            let (a, b, c) = (m.key(0), m.key(1), m.key(2));
            let unknown = if string_keys {
                Key::Str("nope \"q\"")
            } else {
                Key::Int(-7)
            };
            type Case<'a> = (Vec<(Key<'a>, f32)>, Vec<Key<'a>>, usize);
            let cases: [Case<'_>; 4] = [
                (vec![(a, 1.0)], vec![], 3),
                (vec![(a, 1.0), (b, 2.5), (unknown, 1.0)], vec![c], 5),
                (vec![(unknown, 1.0)], vec![], 2),
                (vec![], vec![b], 1),
            ];
            for (seeds, exclude, k) in cases {
                let want = serde_json::to_vec(&Answer::new(m, &live.version, &seeds, &exclude, k))
                    .unwrap();
                let asked = resolve(m, &seeds, &exclude);
                let picks = recommend(m, &asked.seeds, &asked.exclude, k);
                let got = live.render_basket(k, &asked.unknown, &picks);
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap()
                );
            }
        }
    }
}
