//! The model store in a directory: reads, atomic writes and listing on a local or mounted
//! filesystem.
//!
//! Every write is atomic (a temp file of a random name created with `O_EXCL`, fsync,
//! rename, fsync of the directory), so a reader sees either the old file or the new one,
//! and concurrent writers never share a temp file. A version is claimed by creating its
//! directory, which fails when another publisher created it first.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{parse_created, StoreError, CREATED_FILE, MODEL_FILE};
use crate::artifact::Model;

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

/// A store directory.
#[derive(Debug, Clone)]
pub(super) struct DirBackend {
    dir: PathBuf,
}

impl DirBackend {
    pub(super) fn new(dir: PathBuf) -> DirBackend {
        DirBackend { dir }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn location(&self) -> String {
        self.dir.display().to_string()
    }

    pub(super) fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.dir.join(key);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    pub(super) fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.dir.join(key), bytes)
    }

    pub(super) fn remove(&self, key: &str) -> Result<(), StoreError> {
        let p = self.dir.join(key);
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    pub(super) fn has_model(&self, version: &str) -> Result<bool, StoreError> {
        Ok(self.dir.join(version).join(MODEL_FILE).is_file())
    }

    pub(super) fn open_model(&self, version: &str) -> Result<Model, StoreError> {
        Ok(Model::open(&self.dir.join(version).join(MODEL_FILE))?)
    }

    /// Claims `version` by creating its directory, then writes the model and its stamp.
    pub(super) fn create_version(
        &self,
        version: &str,
        model: &[u8],
        created: &[u8],
    ) -> Result<String, StoreError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let vdir = self.dir.join(version);
        match fs::create_dir(&vdir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists {
                    store: self.location(),
                    version: version.into(),
                })
            }
            Err(e) => return Err(io(&vdir)(e)),
        }
        let path = vdir.join(MODEL_FILE);
        write_atomic(&path, model)?;
        write_atomic(&vdir.join(CREATED_FILE), created)?;
        sync_dir(&self.dir)?;
        Ok(path.display().to_string())
    }

    /// When `version` was published: its `CREATED` stamp, or (for versions written before
    /// stamps existed) its model file's modification time.
    fn created(&self, version: &str) -> u128 {
        let vdir = self.dir.join(version);
        fs::read(vdir.join(CREATED_FILE))
            .ok()
            .and_then(|b| parse_created(&b))
            .or_else(|| {
                let t = fs::metadata(vdir.join(MODEL_FILE)).ok()?.modified().ok()?;
                Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos())
            })
            .unwrap_or(0)
    }

    /// Every subdirectory with a model file, with its publication time.
    pub(super) fn versions(&self) -> Result<Vec<(u128, String)>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().join(MODEL_FILE).is_file() {
                out.push((self.created(&name), name));
            }
        }
        Ok(out)
    }
}
