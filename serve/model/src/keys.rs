//! Item keys: the catalogue's identifiers as a model stores them (all integers or all
//! strings, sorted), and a borrowed single key for lookups.

use serde::Serialize;

/// Item keys: all integers (ordered numerically) or all strings (ordered bytewise).
#[derive(Debug, Clone, PartialEq)]
pub enum Keys {
    /// Integer keys, ascending.
    Int(Vec<i64>),
    /// String keys, ascending bytewise.
    Str(Vec<String>),
}

impl Keys {
    /// How many keys.
    pub fn len(&self) -> usize {
        match self {
            Keys::Int(v) => v.len(),
            Keys::Str(v) => v.len(),
        }
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A key as stored in a model, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key<'a> {
    /// An integer key.
    Int(i64),
    /// A string key.
    Str(&'a str),
}

impl Serialize for Key<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Key::Int(v) => s.serialize_i64(*v),
            Key::Str(v) => s.serialize_str(v),
        }
    }
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Int(v) => write!(f, "{v}"),
            Key::Str(s) => f.write_str(s),
        }
    }
}
