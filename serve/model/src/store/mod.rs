//! The model store: immutable model versions and a `CURRENT` pointer, in a directory or
//! on object storage.
//!
//! ```text
//! MODEL_DIR/                a directory, or s3://bucket/prefix (gs://, az:// alike)
//!   CURRENT                 the live version's name, one line
//!   CANARY                  optional: "<version> <percent>", one line: a version that
//!                           serves that share of users while CURRENT serves the rest
//!   <version>/model.cooc    one artifact per version, never rewritten
//!   <version>/CREATED       when it was published (ns since the Unix epoch)
//! ```
//!
//! The rules live here (names, validation before a version goes live, canary rules,
//! rollback order); the two backends only read, write and list: [`dir`] (atomic
//! temp-file-and-rename writes) and, with the `object-store` feature, [`object`] (single
//! PUTs, which object stores apply atomically). Either way a reader (the server, a crashed
//! trainer's successor) sees the old state or the new one, and no publisher overwrites
//! another's version. `CURRENT` is read as a version name (letters, digits, `.`, `_`, `-`),
//! never as a path. Versions are ordered by when they were published, not by name. Owns
//! nothing about how models are trained or served.

use std::path::{Path, PathBuf};

use crate::artifact::{ArtifactError, Model};

pub mod dir;
#[cfg(feature = "object-store")]
pub mod object;

pub use dir::write_atomic;

/// Name of the file inside a version directory.
pub const MODEL_FILE: &str = "model.cooc";
/// Name of the pointer file.
pub const CURRENT_FILE: &str = "CURRENT";
/// Name of the publication stamp inside a version directory.
pub const CREATED_FILE: &str = "CREATED";
/// Name of the canary pointer file.
pub const CANARY_FILE: &str = "CANARY";

/// A canary release: `version` answers `percent`% of users, `CURRENT` the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// The version on trial.
    pub version: String,
    /// Its share of users, 1..=100.
    pub percent: u8,
}

/// Why a store operation failed. Every variant names the store or the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the store could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// An object of the store could not be read or written (network, credentials,
    /// permissions, the service's answer). The URL never carries credentials.
    #[error("{location}: {error}")]
    Remote {
        /// The object's URL.
        location: String,
        /// The object-store client's error.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The object store refused the credentials, or they may not do this (HTTP 401 or
    /// 403): trying again with the same ones will not help.
    #[error("{location}: access denied: {error} (credentials come from the environment: AWS_*, GOOGLE_*, AZURE_*, or the pod's identity)")]
    Denied {
        /// The object's URL.
        location: String,
        /// The object-store client's error.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `--model-dir` names no store this build can open.
    #[error("model store {store}: {detail}")]
    Location {
        /// What was given.
        store: String,
        /// Why it cannot be opened.
        detail: String,
    },
    /// No version of that name.
    #[error("model store {store}: no version named {version:?}")]
    NoSuchVersion {
        /// The store.
        store: String,
        /// The version's name.
        version: String,
    },
    /// A version of that name exists already.
    #[error("model store {store}: version {version:?} already exists")]
    Exists {
        /// The store.
        store: String,
        /// The version's name.
        version: String,
    },
    #[error(
        "model store {store}: {0:?} is not a valid version name (letters, digits, '.', '_', '-')",
        version
    )]
    /// Not a valid version name.
    BadName {
        /// The store.
        store: String,
        /// The version's name.
        version: String,
    },
    /// Nothing to roll back to.
    #[error("model store {store}: nothing to roll back to: {detail}")]
    NoPrevious {
        /// The store.
        store: String,
        /// What went wrong.
        detail: String,
    },
    /// CURRENT holds something other than a version name.
    #[error("model store {store}: CURRENT holds {found:?}, which is not a version name (letters, digits, '.', '_', '-'); refusing to follow it")]
    BadCurrent {
        /// The store.
        store: String,
        /// What CURRENT holds.
        found: String,
    },
    /// No CURRENT version yet.
    #[error("model store {store}: no CURRENT version yet")]
    NoCurrent {
        /// The store.
        store: String,
    },
    /// CANARY holds something other than `<version> <percent>`.
    #[error("model store {store}: CANARY holds {found:?}, not \"<version> <percent 1-100>\"; no canary is served")]
    BadCanary {
        /// The store.
        store: String,
        /// What CANARY holds.
        found: String,
    },
    /// A canary request that cannot be carried out (its percentage, or the live version).
    #[error("model store {store}: {detail}")]
    CanaryRefused {
        /// The store.
        store: String,
        /// Why.
        detail: String,
    },
    /// A version's artifact does not validate.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

impl StoreError {
    /// Whether trying again later may succeed: the file or object could not be read or
    /// written (not there yet, a network error, EIO), as opposed to something that will
    /// stay wrong (a model that does not validate, a bad name).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Io { .. }
                | StoreError::Remote { .. }
                | StoreError::Artifact(ArtifactError::Io { .. })
        )
    }
}

/// The bucket (0..100) a user id falls in for canary releases: the CRC-32 (IEEE) of its
/// bytes scaled to 0..100. A user is served a canary of `p` percent when its bucket is
/// below `p`: the same user always gets the same version, on every server replica, and a
/// share raised from 5% to 20% keeps the first 5% on the canary.
pub fn user_bucket(user: &[u8]) -> u8 {
    ((u64::from(crc32fast::hash(user)) * 100) >> 32) as u8
}

fn valid_name(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with('.')
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Where the versions live.
#[derive(Debug, Clone)]
enum Backend {
    Dir(dir::DirBackend),
    #[cfg(feature = "object-store")]
    Object(std::sync::Arc<object::ObjectBackend>),
}

/// Calls the same method on whichever backend holds the store.
macro_rules! on_backend {
    ($self:expr, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Dir($b) => $call,
            #[cfg(feature = "object-store")]
            Backend::Object($b) => $call,
        }
    };
}

/// A model store: a directory, or a prefix of a bucket.
#[derive(Debug, Clone)]
pub struct ModelStore {
    backend: Backend,
}

/// URL schemes of object stores (`object_store`'s names for S3, GCS and Azure).
const OBJECT_SCHEMES: [&str; 8] = ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"];

impl ModelStore {
    /// A store in a directory, without touching the disk.
    pub fn new(dir: impl Into<PathBuf>) -> ModelStore {
        ModelStore {
            backend: Backend::Dir(dir::DirBackend::new(dir.into())),
        }
    }

    /// The store `location` names: `s3://bucket/prefix` (also `gs://`, `az://` and the
    /// other schemes of the `object_store` crate) with the `object-store` feature, a
    /// `file://` URL, or a directory path. Touches neither the disk nor the network;
    /// object-store credentials come from the standard environment (see
    /// [`object::ObjectBackend::open`]).
    pub fn open(location: &str) -> Result<ModelStore, StoreError> {
        ModelStore::open_with(location, &[])
    }

    /// [`ModelStore::open`], with object-store options (`object_store` configuration keys
    /// such as `aws_endpoint`) over what the environment says; ignored for a directory.
    pub fn open_with(location: &str, options: &[(&str, &str)]) -> Result<ModelStore, StoreError> {
        let bad = |detail: String| StoreError::Location {
            store: location.to_owned(),
            detail,
        };
        let Some((scheme, rest)) = location.split_once("://") else {
            return Ok(ModelStore::new(location));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            if !rest.starts_with('/') {
                return Err(bad(
                    "a file:// URL names an absolute path (file:///srv/model)".into(),
                ));
            }
            return Ok(ModelStore::new(rest));
        }
        if !OBJECT_SCHEMES.contains(&scheme.as_str()) {
            return Err(bad(format!(
                "{scheme}:// is not a model store: give a directory, or s3://, gs:// or az:// followed by bucket/prefix"
            )));
        }
        #[cfg(feature = "object-store")]
        {
            object::ObjectBackend::open(location, options).map(|b| ModelStore {
                backend: Backend::Object(std::sync::Arc::new(b)),
            })
        }
        #[cfg(not(feature = "object-store"))]
        {
            let _ = options;
            Err(bad(
                "this build has no object-store support (cooc-model's `object-store` feature)"
                    .into(),
            ))
        }
    }

    /// The store as given: its directory, or its URL.
    pub fn location(&self) -> String {
        on_backend!(self, b => b.location())
    }

    /// The store's directory, when it is one.
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Dir(b) => Some(b.dir()),
            #[cfg(feature = "object-store")]
            Backend::Object(_) => None,
        }
    }

    /// Where a version's artifact lives, when the store is a directory.
    pub fn model_path(&self, version: &str) -> Option<PathBuf> {
        self.local_dir().map(|d| d.join(version).join(MODEL_FILE))
    }

    /// A small file of the store (`CURRENT`, `CANARY`, `<version>/CREATED`), if present.
    fn read_text(&self, key: &str) -> Result<Option<String>, StoreError> {
        let bytes = on_backend!(self, b => b.read(key))?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The live version, if any. `CURRENT` must hold a version name: anything else (a
    /// path such as `../elsewhere/v1`) is refused, never followed.
    pub fn current(&self) -> Result<Option<String>, StoreError> {
        let Some(text) = self.read_text(CURRENT_FILE)? else {
            return Ok(None);
        };
        let v = text.trim();
        if v.is_empty() {
            return Ok(None);
        }
        if !valid_name(v) {
            return Err(StoreError::BadCurrent {
                store: self.location(),
                found: v.chars().take(200).collect(),
            });
        }
        Ok(Some(v.to_owned()))
    }

    /// Every version with a model, oldest first: by publication time (its `CREATED`
    /// stamp, or for versions written before stamps existed the model's modification
    /// time), then name.
    pub fn versions(&self) -> Result<Vec<String>, StoreError> {
        let mut out = on_backend!(self, b => b.versions())?;
        out.retain(|(_, v)| valid_name(v));
        out.sort();
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    fn has_version(&self, version: &str) -> Result<bool, StoreError> {
        if !valid_name(version) {
            return Ok(false);
        }
        on_backend!(self, b => b.has_model(version))
    }

    /// Reads and validates a version's model.
    pub fn open_model(&self, version: &str) -> Result<Model, StoreError> {
        if !valid_name(version) {
            return Err(StoreError::NoSuchVersion {
                store: self.location(),
                version: version.into(),
            });
        }
        on_backend!(self, b => b.open_model(version))
    }

    /// Publishes under `base`, or `base.1`, `base.2`, ... when another writer took the
    /// name first (two trainers in the same millisecond); the name it got and where it
    /// went (a path or a URL).
    pub fn publish_new(&self, base: &str, bytes: &[u8]) -> Result<(String, String), StoreError> {
        for n in 0..1000u32 {
            let version = if n == 0 {
                base.to_owned()
            } else {
                format!("{base}.{n}")
            };
            match self.publish(&version, bytes) {
                Ok(at) => return Ok((version, at)),
                Err(StoreError::Exists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Exists {
            store: self.location(),
            version: format!("{base} (and 999 suffixes)"),
        })
    }

    /// Writes a new version durably (never over an existing one); returns where its model
    /// went. Does not make it live.
    pub fn publish(&self, version: &str, bytes: &[u8]) -> Result<String, StoreError> {
        if !valid_name(version) {
            return Err(StoreError::BadName {
                store: self.location(),
                version: version.into(),
            });
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let created = format!("{now}\n");
        on_backend!(self, b => b.create_version(version, bytes, created.as_bytes()))
    }

    fn no_such(&self, version: &str) -> StoreError {
        StoreError::NoSuchVersion {
            store: self.location(),
            version: version.into(),
        }
    }

    /// Makes `version` live after checking that its model loads.
    pub fn promote(&self, version: &str) -> Result<Model, StoreError> {
        if !self.has_version(version)? {
            return Err(self.no_such(version));
        }
        let model = self.open_model(version)?;
        on_backend!(self, b => b.write(CURRENT_FILE, format!("{version}\n").as_bytes()))?;
        // Promoting the canary's version ends the canary: everyone is on it now. (Until
        // CANARY goes, a reader sees the canary equal to CURRENT, which serves everyone
        // the same version too.)
        if let Ok(Some(c)) = self.canary() {
            if c.version == version {
                self.end_canary()?;
            }
        }
        Ok(model)
    }

    /// The canary, if one is set. A `CANARY` file that does not hold `<version>
    /// <percent>` with a version name and 1..=100 is an error (the server then serves no
    /// canary).
    pub fn canary(&self) -> Result<Option<Canary>, StoreError> {
        let Some(text) = self.read_text(CANARY_FILE)? else {
            return Ok(None);
        };
        let bad = || StoreError::BadCanary {
            store: self.location(),
            found: text.trim().chars().take(200).collect(),
        };
        let mut words = text.split_whitespace();
        let (Some(version), Some(percent), None) = (words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let percent: u8 = percent.parse().map_err(|_| bad())?;
        if !valid_name(version) || !(1..=100).contains(&percent) {
            return Err(bad());
        }
        Ok(Some(Canary {
            version: version.to_owned(),
            percent,
        }))
    }

    /// Starts (or changes) a canary: `version`, which must load and must not be the live
    /// version, serves `percent`% of users.
    pub fn set_canary(&self, version: &str, percent: u8) -> Result<Model, StoreError> {
        let refused = |detail: String| StoreError::CanaryRefused {
            store: self.location(),
            detail,
        };
        if !(1..=100).contains(&percent) {
            return Err(refused(format!(
                "a canary's share is 1 to 100 percent, not {percent} (end one with --off)"
            )));
        }
        if !self.has_version(version)? {
            return Err(self.no_such(version));
        }
        match self.current()? {
            Some(live) if live == version => {
                return Err(refused(format!(
                    "{version} is the live version already; a canary tries another one"
                )))
            }
            None => {
                return Err(refused(
                    "no CURRENT version yet: promote one before trying another as a canary".into(),
                ))
            }
            Some(_) => {}
        }
        let model = self.open_model(version)?;
        on_backend!(self, b => b.write(CANARY_FILE, format!("{version} {percent}\n").as_bytes()))?;
        Ok(model)
    }

    /// Ends the canary, if any: everyone is served `CURRENT`. Returns the canary ended.
    pub fn end_canary(&self) -> Result<Option<Canary>, StoreError> {
        let old = self.canary().ok().flatten();
        on_backend!(self, b => b.remove(CANARY_FILE))?;
        Ok(old)
    }

    /// Makes the version published just before the live one live; returns its name.
    pub fn rollback(&self) -> Result<String, StoreError> {
        let current = self.current()?.ok_or_else(|| StoreError::NoCurrent {
            store: self.location(),
        })?;
        let versions = self.versions()?;
        let at = versions.iter().position(|v| *v == current);
        let previous = at
            .and_then(|i| i.checked_sub(1))
            .map(|i| versions[i].clone())
            .ok_or_else(|| StoreError::NoPrevious {
                store: self.location(),
                detail: format!("no version published before {current}"),
            })?;
        self.promote(&previous)?;
        Ok(previous)
    }

    /// Loads the live model.
    pub fn load_current(&self) -> Result<(String, Model), StoreError> {
        let version = self.current()?.ok_or_else(|| StoreError::NoCurrent {
            store: self.location(),
        })?;
        let model = self.open_model(&version)?;
        Ok((version, model))
    }
}

/// A publication stamp: nanoseconds since the Unix epoch, as `CREATED` holds it.
fn parse_created(bytes: &[u8]) -> Option<u128> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn names_are_restricted() {
        assert!(valid_name("20261125-101010-abc"));
        for bad in ["", ".hidden", "a/b", "..", "a b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn publish_refuses_to_overwrite_and_rollback_needs_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path().join("m"));
        assert!(store.current().unwrap().is_none());
        store.publish("v1", b"x").unwrap();
        assert!(matches!(
            store.publish("v1", b"y"),
            Err(StoreError::Exists { .. })
        ));
        assert_eq!(fs::read(store.model_path("v1").unwrap()).unwrap(), b"x");
        // Not a model: promote validates and refuses, CURRENT untouched.
        assert!(store.promote("v1").is_err());
        assert!(store.current().unwrap().is_none());
        assert!(matches!(
            store.rollback(),
            Err(StoreError::NoCurrent { .. })
        ));
        assert!(matches!(
            store.promote("nope"),
            Err(StoreError::NoSuchVersion { .. })
        ));
    }

    #[test]
    fn a_canary_is_another_valid_version_and_promoting_it_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        let good = crate::artifact::tests::sample(crate::keys::Keys::Int(vec![1, 2, 3]));
        for v in ["v1", "v2"] {
            store.publish(v, &good).unwrap();
        }
        store.publish("bad", b"not a model").unwrap();
        let refused = |r: Result<Model, StoreError>| r.unwrap_err().to_string();
        assert!(refused(store.set_canary("v2", 10)).contains("no CURRENT"));
        store.promote("v1").unwrap();
        assert!(refused(store.set_canary("v1", 10)).contains("live version"));
        assert!(refused(store.set_canary("v2", 0)).contains("1 to 100"));
        assert!(refused(store.set_canary("v2", 101)).contains("1 to 100"));
        assert!(store.set_canary("bad", 10).is_err());
        assert!(store.set_canary("nope", 10).is_err());
        assert_eq!(store.canary().unwrap(), None);
        store.set_canary("v2", 25).unwrap();
        let c = Canary {
            version: "v2".into(),
            percent: 25,
        };
        assert_eq!(store.canary().unwrap(), Some(c.clone()));
        // Promoting another version leaves the canary; promoting the canary ends it.
        store.promote("v1").unwrap();
        assert_eq!(store.canary().unwrap(), Some(c));
        store.promote("v2").unwrap();
        assert_eq!(store.canary().unwrap(), None);
        assert_eq!(store.current().unwrap().as_deref(), Some("v2"));
        store.set_canary("v1", 50).unwrap();
        assert_eq!(store.end_canary().unwrap().map(|c| c.percent), Some(50));
        assert_eq!(store.end_canary().unwrap(), None);
        for bad in ["v1", "v1 0", "v1 x", "../v1 5", "v1 5 6"] {
            fs::write(dir.path().join(CANARY_FILE), bad).unwrap();
            assert!(
                matches!(store.canary(), Err(StoreError::BadCanary { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn current_must_name_a_version_never_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        for bad in ["../model/v1", "/etc/passwd", "v1/../../x", ".hidden"] {
            fs::write(dir.path().join(CURRENT_FILE), bad).unwrap();
            let e = store.current().unwrap_err();
            assert!(matches!(e, StoreError::BadCurrent { .. }), "{bad}: {e}");
            assert!(store.load_current().is_err());
        }
    }

    #[test]
    fn concurrent_writers_never_share_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let target = &target;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(target, &[t; 4096]).unwrap();
                    }
                });
            }
        });
        let got = fs::read(&target).unwrap();
        assert!(got.len() == 4096 && got.iter().all(|&b| b == got[0]));
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temp files left behind: {left:?}");
    }

    #[test]
    fn a_taken_name_gets_a_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        assert_eq!(store.publish_new("v", b"a").unwrap().0, "v");
        assert_eq!(store.publish_new("v", b"b").unwrap().0, "v.1");
        assert_eq!(store.publish_new("v", b"c").unwrap().0, "v.2");
    }

    #[test]
    fn rollback_follows_publication_order_not_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        let model = crate::artifact::tests::sample(crate::Keys::Int(vec![1, 2, 3]));
        store.publish("zeta", &model).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.publish("alpha", &model).unwrap();
        assert_eq!(store.versions().unwrap(), vec!["zeta", "alpha"]);
        store.promote("alpha").unwrap();
        assert_eq!(store.rollback().unwrap(), "zeta");
        assert_eq!(store.current().unwrap().as_deref(), Some("zeta"));
    }
}
