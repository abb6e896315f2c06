//! The model store: a directory of immutable model versions and a `CURRENT` pointer.
//!
//! ```text
//! MODEL_DIR/
//!   CURRENT                 the live version's name, one line
//!   <version>/model.cooc    one artifact per version, never rewritten
//! ```
//!
//! Every write is atomic (temp file, fsync, rename, fsync of the directory), so a reader
//! (the server, a crashed trainer's successor) sees either the old state or the new one.
//! Owns nothing about how models are trained or served.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::artifact::{ArtifactError, Model};

/// Name of the file inside a version directory.
pub const MODEL_FILE: &str = "model.cooc";
/// Name of the pointer file.
pub const CURRENT_FILE: &str = "CURRENT";

/// Why a store operation failed. Every variant names the store or the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
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
    /// No CURRENT version yet.
    #[error("model store {dir}: no CURRENT version yet")]
    NoCurrent {
        /// The store's directory.
        dir: PathBuf,
    },
    /// A version's artifact does not validate.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
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
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

    /// The live version, if any.
    pub fn current(&self) -> Result<Option<String>, StoreError> {
        let p = self.dir.join(CURRENT_FILE);
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Every version with a model file, oldest first (names sort chronologically).
    pub fn versions(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if valid_name(&name) && entry.path().join(MODEL_FILE).is_file() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
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
        Ok(model)
    }

    /// Makes the newest version older than the live one live; returns its name.
    pub fn rollback(&self) -> Result<String, StoreError> {
        let current = self.current()?.ok_or_else(|| StoreError::NoCurrent {
            dir: self.dir.clone(),
        })?;
        let versions = self.versions()?;
        let previous = versions
            .iter()
            .rev()
            .find(|v| v.as_str() < current.as_str())
            .ok_or_else(|| StoreError::NoPrevious {
                dir: self.dir.clone(),
                detail: format!("no version older than {current}"),
            })?
            .clone();
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
}
