//! The model store: a directory of immutable model versions and a `CURRENT` pointer.
//!
//! ```text
//! MODEL_DIR/
//!   CURRENT                 the live version's name, one line
//!   CANARY                  optional: "<version> <percent>", one line: a version that
//!                           serves that share of users while CURRENT serves the rest
//!   <version>/model.cooc    one artifact per version, never rewritten
//!   <version>/CREATED       when it was published (ns since the Unix epoch)
//! ```
//!
//! Every write is atomic (a temp file of a random name created with `O_EXCL`, fsync,
//! rename, fsync of the directory), so a reader (the server, a crashed trainer's successor)
//! sees either the old state or the new one, and concurrent writers never share a temp
//! file. `CURRENT` is read as a version name (letters, digits, `.`, `_`, `-`), never as a
//! path. Versions are ordered by when they were published, not by name. Owns nothing
//! about how models are trained or served.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::artifact::{ArtifactError, Model};

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
    /// No version of that name.
    #[error("model store {dir}: no version named {version:?}")]
    NoSuchVersion {
        /// The store's directory.
        dir: PathBuf,
        /// The version's name.
        version: String,
    },
    /// A version of that name exists already.
    #[error("model store {dir}: version {version:?} already exists")]
    Exists {
        /// The store's directory.
        dir: PathBuf,
        /// The version's name.
        version: String,
    },
    #[error(
        "model store {dir}: {0:?} is not a valid version name (letters, digits, '.', '_', '-')",
        version
    )]
    /// Not a valid version name.
    BadName {
        /// The store's directory.
        dir: PathBuf,
        /// The version's name.
        version: String,
    },
    /// Nothing to roll back to.
    #[error("model store {dir}: nothing to roll back to: {detail}")]
    NoPrevious {
        /// The store's directory.
        dir: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// CURRENT holds something other than a version name.
    #[error("model store {dir}: CURRENT holds {found:?}, which is not a version name (letters, digits, '.', '_', '-'); refusing to follow it")]
    BadCurrent {
        /// The store's directory.
        dir: PathBuf,
        /// What CURRENT holds.
        found: String,
    },
    /// No CURRENT version yet.
    #[error("model store {dir}: no CURRENT version yet")]
    NoCurrent {
        /// The store's directory.
        dir: PathBuf,
    },
    /// CANARY holds something other than `<version> <percent>`.
    #[error("model store {dir}: CANARY holds {found:?}, not \"<version> <percent 1-100>\"; no canary is served")]
    BadCanary {
        /// The store's directory.
        dir: PathBuf,
        /// What CANARY holds.
        found: String,
    },
    /// A canary request that cannot be carried out (its percentage, or the live version).
    #[error("model store {dir}: {detail}")]
    CanaryRefused {
        /// The store's directory.
        dir: PathBuf,
        /// Why.
        detail: String,
    },
    /// A version's artifact does not validate.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// The bucket (0..100) a user id falls in for canary releases: the CRC-32 (IEEE) of its
/// bytes scaled to 0..100. A user is served a canary of `p` percent when its bucket is
/// below `p`: the same user always gets the same version, on every server replica, and a
/// share raised from 5% to 20% keeps the first 5% on the canary.
pub fn user_bucket(user: &[u8]) -> u8 {
    ((u64::from(crc32fast::hash(user)) * 100) >> 32) as u8
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // A random name, created exclusively: a PID is 1 in every container, and two writers
    // in one process share it.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(tmp.path()))?;
    // On failure the temp file is removed when `tmp` drops.
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.to_owned(),
        error: e.error,
    })?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn valid_name(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with('.')
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A model directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    /// The store's directory.
    dir: PathBuf,
}

impl ModelStore {
    /// Opens a store without touching the disk.
    pub fn new(dir: impl Into<PathBuf>) -> ModelStore {
        ModelStore { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a version's artifact lives.
    pub fn model_path(&self, version: &str) -> PathBuf {
        self.dir.join(version).join(MODEL_FILE)
    }

    /// The live version, if any. `CURRENT` must hold a version name: anything else (a
    /// path such as `../elsewhere/v1`) is refused, never followed.
    pub fn current(&self) -> Result<Option<String>, StoreError> {
        let p = self.dir.join(CURRENT_FILE);
        let text = match fs::read_to_string(&p) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&p)(e)),
        };
        let v = text.trim();
        if v.is_empty() {
            return Ok(None);
        }
        if !valid_name(v) {
            return Err(StoreError::BadCurrent {
                dir: self.dir.clone(),
                found: v.chars().take(200).collect(),
            });
        }
        Ok(Some(v.to_owned()))
    }

    /// When `version` was published: its `CREATED` stamp, or (for versions written before
    /// stamps existed) its model file's modification time.
    fn created(&self, version: &str) -> u128 {
        let vdir = self.dir.join(version);
        fs::read_to_string(vdir.join(CREATED_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| {
                let t = fs::metadata(vdir.join(MODEL_FILE)).ok()?.modified().ok()?;
                Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos())
            })
            .unwrap_or(0)
    }

    /// Every version with a model file, oldest first: by publication time, then name.
    pub fn versions(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if valid_name(&name) && entry.path().join(MODEL_FILE).is_file() {
                out.push((self.created(&name), name));
            }
        }
        out.sort();
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// Publishes under `base`, or `base.1`, `base.2`, ... when another writer took the
    /// name first (two trainers in the same millisecond); the name it got and the path.
    pub fn publish_new(&self, base: &str, bytes: &[u8]) -> Result<(String, PathBuf), StoreError> {
        for n in 0..1000u32 {
            let version = if n == 0 {
                base.to_owned()
            } else {
                format!("{base}.{n}")
            };
            match self.publish(&version, bytes) {
                Ok(path) => return Ok((version, path)),
                Err(StoreError::Exists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Exists {
            dir: self.dir.clone(),
            version: format!("{base} (and 999 suffixes)"),
        })
    }

    /// Writes a new version durably. Does not make it live.
    pub fn publish(&self, version: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        if !valid_name(version) {
            return Err(StoreError::BadName {
                dir: self.dir.clone(),
                version: version.into(),
            });
        }
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let vdir = self.dir.join(version);
        match fs::create_dir(&vdir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists {
                    dir: self.dir.clone(),
                    version: version.into(),
                })
            }
            Err(e) => return Err(io(&vdir)(e)),
        }
        let path = vdir.join(MODEL_FILE);
        write_atomic(&path, bytes)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        write_atomic(&vdir.join(CREATED_FILE), format!("{now}\n").as_bytes())?;
        sync_dir(&self.dir)?;
        Ok(path)
    }

    /// Makes `version` live after checking that its model loads.
    pub fn promote(&self, version: &str) -> Result<Model, StoreError> {
        let path = self.model_path(version);
        if !valid_name(version) || !path.is_file() {
            return Err(StoreError::NoSuchVersion {
                dir: self.dir.clone(),
                version: version.into(),
            });
        }
        let model = Model::open(&path)?;
        write_atomic(
            &self.dir.join(CURRENT_FILE),
            format!("{version}\n").as_bytes(),
        )?;
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
        let p = self.dir.join(CANARY_FILE);
        let text = match fs::read_to_string(&p) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&p)(e)),
        };
        let bad = || StoreError::BadCanary {
            dir: self.dir.clone(),
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
            dir: self.dir.clone(),
            detail,
        };
        if !(1..=100).contains(&percent) {
            return Err(refused(format!(
                "a canary's share is 1 to 100 percent, not {percent} (end one with --off)"
            )));
        }
        let path = self.model_path(version);
        if !valid_name(version) || !path.is_file() {
            return Err(StoreError::NoSuchVersion {
                dir: self.dir.clone(),
                version: version.into(),
            });
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
        let model = Model::open(&path)?;
        write_atomic(
            &self.dir.join(CANARY_FILE),
            format!("{version} {percent}\n").as_bytes(),
        )?;
        Ok(model)
    }

    /// Ends the canary, if any: everyone is served `CURRENT`. Returns the canary ended.
    pub fn end_canary(&self) -> Result<Option<Canary>, StoreError> {
        let old = self.canary().ok().flatten();
        let p = self.dir.join(CANARY_FILE);
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
        Ok(old)
    }

    /// Makes the version published just before the live one live; returns its name.
    pub fn rollback(&self) -> Result<String, StoreError> {
        let current = self.current()?.ok_or_else(|| StoreError::NoCurrent {
            dir: self.dir.clone(),
        })?;
        let versions = self.versions()?;
        let at = versions.iter().position(|v| *v == current);
        let previous = at
            .and_then(|i| i.checked_sub(1))
            .map(|i| versions[i].clone())
            .ok_or_else(|| StoreError::NoPrevious {
                dir: self.dir.clone(),
                detail: format!("no version published before {current}"),
            })?;
        self.promote(&previous)?;
        Ok(previous)
    }

    /// Loads the live model.
    pub fn load_current(&self) -> Result<(String, Model), StoreError> {
        let version = self.current()?.ok_or_else(|| StoreError::NoCurrent {
            dir: self.dir.clone(),
        })?;
        let model = Model::open(&self.model_path(&version))?;
        Ok((version, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(fs::read(store.model_path("v1")).unwrap(), b"x");
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
