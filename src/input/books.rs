//! `books.csv` (`id,title,author,...`): titles and authors to store beside the keys.

use std::fs::File;
use std::path::{Path, PathBuf};

use cooc_model::Keys;
use rustc_hash::FxHashMap;

use super::csv::parse_int;
use super::io_err;
use crate::error::InputError;

/// Title and author per book key, from `books.csv` (`id,title,author,...`).
pub struct Books {
    /// Where the books came from.
    pub path: PathBuf,
    by_key: FxHashMap<String, (String, String)>,
}

impl Books {
    /// Reads `books.csv` at `path`.
    pub fn read(path: &Path) -> Result<Books, InputError> {
        let file = File::open(path).map_err(io_err(path))?;
        Books::from_reader(path, file)
    }

    /// Parses `books.csv` text from `rdr`; `path` names it in errors.
    pub fn from_reader(path: &Path, rdr: impl std::io::Read) -> Result<Books, InputError> {
        let mut rdr = csv::ReaderBuilder::new().from_reader(rdr);
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| InputError::File {
                path: path.to_owned(),
                msg: e.to_string(),
            })?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let col = |n: &str| headers.iter().position(|h| h == n);
        let id = col("id").ok_or_else(|| InputError::Row {
            path: path.to_owned(),
            line: 1,
            msg: format!("no id column (found: {})", headers.join(",")),
        })?;
        let (title, author) = (col("title"), col("author"));
        let mut by_key = FxHashMap::default();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| InputError::Row {
                path: path.to_owned(),
                line: e.position().map(|p| p.line()).unwrap_or(0),
                msg: e.to_string(),
            })?;
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").to_owned();
            let key = rec.get(id).unwrap_or("").trim();
            let key = match parse_int(key.as_bytes()) {
                Some(v) => v.to_string(),
                None => key.to_owned(),
            };
            by_key.insert(key, (get(title), get(author)));
        }
        Ok(Books {
            path: path.to_owned(),
            by_key,
        })
    }

    /// Titles and authors aligned with `keys`.
    pub fn align(&self, keys: &Keys) -> (Vec<Option<String>>, Vec<Option<String>>) {
        let lookup = |k: String| self.by_key.get(&k);
        let pairs: Vec<Option<&(String, String)>> = match keys {
            Keys::Int(v) => v.iter().map(|k| lookup(k.to_string())).collect(),
            Keys::Str(v) => v.iter().map(|k| lookup(k.clone())).collect(),
        };
        let nonempty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        (
            pairs
                .iter()
                .map(|p| p.and_then(|p| nonempty(&p.0)))
                .collect(),
            pairs
                .iter()
                .map(|p| p.and_then(|p| nonempty(&p.1)))
                .collect(),
        )
    }
}
