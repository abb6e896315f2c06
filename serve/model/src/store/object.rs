//! The model store on object storage: S3 and S3-compatible stores, Google Cloud Storage and
//! Azure Blob Storage, through the `object_store` crate.
//!
//! The layout is the directory's, under the URL's prefix (`s3://bucket/prefix/CURRENT`,
//! `s3://bucket/prefix/<version>/model.cooc`). What each write guarantees:
//!
//! - `CURRENT` and `CANARY` are replaced by one PUT, which these stores apply atomically
//!   and read back strongly consistent: every reader (every serving replica) gets the old
//!   pointer or the new one, never a mix, and the next read after a PUT sees it.
//! - A version is created with a conditional PUT (`If-None-Match: *`, object_store's
//!   `PutMode::Create`), so of two publishers racing for one name the second gets
//!   "already exists" and takes the next suffix. Where a store refuses conditional PUTs,
//!   the HEAD that precedes the PUT still catches every name taken before it.
//! - A version's model goes up before its `CREATED` stamp and before any pointer names
//!   it, so a pointer never names a version whose model is missing.
//!
//! Credentials and endpoints come from the standard environment, as the cloud SDKs read
//! them: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` (an
//! S3-compatible server) and `AWS_ALLOW_HTTP`, IRSA's `AWS_WEB_IDENTITY_TOKEN_FILE` and
//! `AWS_ROLE_ARN`, the instance metadata service; `GOOGLE_APPLICATION_CREDENTIALS` or GKE
//! workload identity; `AZURE_STORAGE_ACCOUNT_NAME` with a key, or Azure workload identity.
//!
//! The client is async; this backend keeps a one-thread tokio runtime of its own and
//! blocks the caller on it, so the store's API stays blocking (as the directory's is) and
//! may be called from any thread, inside another runtime or not.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as ObjPath;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt as _, ObjectStoreScheme, PutMode, PutOptions,
    PutPayload, RetryConfig,
};

use super::{parse_created, StoreError, CREATED_FILE, MODEL_FILE};
use crate::artifact::Model;

/// One request's timeout; a dead endpoint fails in seconds, not minutes.
const REQUEST_TIMEOUT: &str = "30s";
/// Connecting's timeout.
const CONNECT_TIMEOUT: &str = "5s";

/// A runtime that shuts down without waiting when dropped, so that dropping a store inside
/// another runtime's task does not panic.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A store under a bucket prefix.
pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    /// The URL as given, without a trailing `/`: what messages name.
    url: String,
    rt: Runtime,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ObjectBackend {
    /// A client for the store `location` names (`s3://bucket/prefix`, `gs://...`,
    /// `az://...`), configured from the environment (see the module's documentation),
    /// then from `options`: `object_store` configuration keys (`aws_endpoint`,
    /// `aws_access_key_id`, `google_service_account`, ...) over what the environment says.
    /// Touches no network.
    pub fn open(location: &str, options: &[(&str, &str)]) -> Result<ObjectBackend, StoreError> {
        let bad = |detail: String| StoreError::Location {
            store: location.to_owned(),
            detail,
        };
        let url = url::Url::parse(location).map_err(|e| bad(format!("not a URL: {e}")))?;
        let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials and options come from the environment, not the URL".into(),
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cooc-model-store")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the object-store client: {e}")))?;
        // The HTTP client is made inside the runtime it will run on.
        let _entered = rt.enter();
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
            backoff: Default::default(),
        };
        // Each builder: the environment, our timeouts, the caller's options, then the URL.
        macro_rules! build {
            ($builder:ty, $key:ty) => {{
                let mut b = <$builder>::from_env()
                    .with_retry(retry)
                    .with_config(<$key>::Client(ClientConfigKey::Timeout), REQUEST_TIMEOUT)
                    .with_config(
                        <$key>::Client(ClientConfigKey::ConnectTimeout),
                        CONNECT_TIMEOUT,
                    );
                for (k, v) in options {
                    let key: $key = k
                        .parse()
                        .map_err(|_| bad(format!("{k:?} is not an option of this store")))?;
                    b = b.with_config(key, *v);
                }
                b.with_url(location).build().map(|s| Arc::new(s) as _)
            }};
        }
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
            ObjectStoreScheme::AmazonS3 => {
                build!(
                    object_store::aws::AmazonS3Builder,
                    object_store::aws::AmazonS3ConfigKey
                )
            }
            ObjectStoreScheme::GoogleCloudStorage => build!(
                object_store::gcp::GoogleCloudStorageBuilder,
                object_store::gcp::GoogleConfigKey
            ),
            ObjectStoreScheme::MicrosoftAzure => build!(
                object_store::azure::MicrosoftAzureBuilder,
                object_store::azure::AzureConfigKey
            ),
            other => {
                return Err(bad(format!(
                    "{other:?} is not an object store cooc publishes to (s3://, gs://, az://)"
                )))
            }
        };
        let store = built.map_err(|e| bad(e.to_string()))?;
        drop(_entered);
        Ok(ObjectBackend {
            store,
            prefix,
            url: location.trim_end_matches('/').to_owned(),
            rt: Runtime(Some(rt)),
        })
    }

    pub(super) fn location(&self) -> String {
        self.url.clone()
    }

    /// The object of `key` (`CURRENT`, `v1/model.cooc`) under the prefix.
    fn path(&self, key: &str) -> ObjPath {
        key.split('/')
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    fn url_of(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    fn remote(&self, key: &str, error: object_store::Error) -> StoreError {
        let location = self.url_of(key);
        match error {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => StoreError::Denied {
                location,
                error: Box::new(error),
            },
            _ => StoreError::Remote {
                location,
                error: Box::new(error),
            },
        }
    }

    /// Runs `fut` on the store's runtime and waits for it.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rt = self
            .rt
            .0
            .as_ref()
            .expect("the runtime lives as long as the store");
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .expect("the object store's runtime stopped with a request in flight")
    }

    pub(super) fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (store, path) = (self.store.clone(), self.path(key));
        match self.run(async move { store.get(&path).await?.bytes().await }) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.remote(key, e)),
        }
    }

    pub(super) fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (store, path) = (self.store.clone(), self.path(key));
        let payload = PutPayload::from(bytes.to_vec());
        self.run(async move { store.put(&path, payload).await })
            .map(drop)
            .map_err(|e| self.remote(key, e))
    }

    pub(super) fn remove(&self, key: &str) -> Result<(), StoreError> {
        let (store, path) = (self.store.clone(), self.path(key));
        match self.run(async move { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.remote(key, e)),
        }
    }

    pub(super) fn has_model(&self, version: &str) -> Result<bool, StoreError> {
        let key = format!("{version}/{MODEL_FILE}");
        let (store, path) = (self.store.clone(), self.path(&key));
        match self.run(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.remote(&key, e)),
        }
    }

    pub(super) fn open_model(&self, version: &str) -> Result<Model, StoreError> {
        let key = format!("{version}/{MODEL_FILE}");
        let bytes = self.read(&key)?.ok_or_else(|| StoreError::Remote {
            location: self.url_of(&key),
            error: "no such object".into(),
        })?;
        Ok(Model::from_bytes(&bytes, self.url_of(&key))?)
    }

    /// Creates `version`'s model (refused when it exists), then its stamp.
    pub(super) fn create_version(
        &self,
        version: &str,
        model: &[u8],
        created: &[u8],
    ) -> Result<String, StoreError> {
        let exists = || StoreError::Exists {
            store: self.url.clone(),
            version: version.into(),
        };
        if self.has_model(version)? {
            return Err(exists());
        }
        let key = format!("{version}/{MODEL_FILE}");
        let (store, path) = (self.store.clone(), self.path(&key));
        let payload = PutPayload::from(model.to_vec());
        let put = self.run(async move {
            let create = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store.put_opts(&path, payload.clone(), create).await {
                // A store without conditional writes: the HEAD above is the guard.
                Err(object_store::Error::NotImplemented { .. }) => store.put(&path, payload).await,
                other => other,
            }
        });
        match put {
            Ok(_) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => return Err(exists()),
            Err(e) => return Err(self.remote(&key, e)),
        }
        self.write(&format!("{version}/{CREATED_FILE}"), created)?;
        Ok(self.url_of(&key))
    }

    /// Every `<version>/model.cooc` under the prefix, with its publication time: its
    /// `CREATED` stamp, else the model object's modification time.
    pub(super) fn versions(&self) -> Result<Vec<(u128, String)>, StoreError> {
        let (store, prefix) = (self.store.clone(), self.prefix.clone());
        let listed = self
            .run(async move {
                let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
                store.list(prefix.as_ref()).try_collect::<Vec<_>>().await
            })
            .map_err(|e| self.remote("", e))?;
        let mut models = std::collections::BTreeMap::new();
        let mut stamped = std::collections::BTreeSet::new();
        for meta in listed {
            let Some(parts) = meta.location.prefix_match(&self.prefix) else {
                continue;
            };
            let parts: Vec<_> = parts.map(|p| p.as_ref().to_owned()).collect();
            let [version, file] = parts.as_slice() else {
                continue;
            };
            if file == MODEL_FILE {
                let modified = meta.last_modified.timestamp_nanos_opt().unwrap_or(0).max(0) as u128;
                models.insert(version.clone(), modified);
            } else if file == CREATED_FILE {
                stamped.insert(version.clone());
            }
        }
        // The stamps, 16 requests at a time: a store of a hundred versions lists in a few
        // round trips, not a hundred.
        let wanted: Vec<(String, ObjPath)> = models
            .keys()
            .filter(|v| stamped.contains(*v))
            .map(|v| (v.clone(), self.path(&format!("{v}/{CREATED_FILE}"))))
            .collect();
        let store = self.store.clone();
        let stamps = self.run(async move {
            futures_util::stream::iter(wanted.into_iter().map(|(version, path)| {
                let store = store.clone();
                async move {
                    let got = match store.get(&path).await {
                        Ok(r) => r.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    };
                    (version, got)
                }
            }))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
        });
        let mut created = std::collections::BTreeMap::new();
        for (version, got) in stamps {
            let got = got.map_err(|e| self.remote(&format!("{version}/{CREATED_FILE}"), e))?;
            if let Some(t) = got.and_then(|b| parse_created(&b)) {
                created.insert(version, t);
            }
        }
        Ok(models
            .into_iter()
            .map(|(version, modified)| {
                (created.get(&version).copied().unwrap_or(modified), version)
            })
            .collect())
    }
}
