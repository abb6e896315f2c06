//! Message framing for the training pipeline's collectives: bulk arrays as a length and
//! their raw little-endian bytes (`bytemuck`), small control values as bincode.
//!
//! A malformed message from a peer is an error naming that peer and the phase, never a
//! panic. Knows nothing of the transport.

use bytemuck::Pod;
use serde::{de::DeserializeOwned, Serialize};

/// A message from `rank` that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} sent a malformed message during {phase}: {detail}")]
pub struct WireError {
    /// The rank that sent it.
    pub rank: u32,
    /// The collective it belonged to.
    pub phase: &'static str,
    /// What is wrong with it.
    pub detail: String,
}

/// Builds one message.
#[derive(Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    /// An empty message.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Appends `v` as `u64` element count + raw bytes.
    pub fn slice<T: Pod>(&mut self, v: &[T]) -> &mut Self {
        self.0.extend_from_slice(&(v.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytemuck::cast_slice(v));
        self
    }

    /// Appends a bincode-encoded value, length-prefixed.
    pub fn value<T: Serialize>(&mut self, v: &T) -> &mut Self {
        let bytes = encode(v);
        self.slice(&bytes)
    }

    /// The message's bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Reads one message from `rank`, in the order it was written.
pub struct Reader<'a> {
    buf: &'a [u8],
    rank: u32,
    phase: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, a message from `rank` during `phase` (named in errors).
    pub fn new(buf: &'a [u8], rank: u32, phase: &'static str) -> Reader<'a> {
        Reader { buf, rank, phase }
    }

    fn err(&self, detail: String) -> WireError {
        WireError {
            rank: self.rank,
            phase: self.phase,
            detail,
        }
    }

    /// The next array (copied into an aligned vector).
    pub fn slice<T: Pod>(&mut self) -> Result<Vec<T>, WireError> {
        let bytes = self.raw(std::mem::size_of::<T>())?;
        Ok(bytemuck::pod_collect_to_vec(bytes))
    }

    fn raw(&mut self, elem: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < 8 {
            return Err(self.err("truncated length".into()));
        }
        let n = u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"));
        let len = (n as usize)
            .checked_mul(elem)
            .filter(|&l| l <= self.buf.len() - 8)
            .ok_or_else(|| self.err(format!("{n} elements of {elem} bytes overrun the message")))?;
        let out = &self.buf[8..8 + len];
        self.buf = &self.buf[8 + len..];
        Ok(out)
    }

    /// The next bincode value.
    pub fn value<T: DeserializeOwned>(&mut self) -> Result<T, WireError> {
        let bytes = self.raw(1)?;
        decode(bytes).map_err(|e| self.err(e))
    }
}

/// bincode with the standard configuration.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("in-memory encoding")
}

/// [`decode`] of a whole message from `rank` during `phase`.
pub fn decode_from<T: DeserializeOwned>(
    bytes: &[u8],
    rank: u32,
    phase: &'static str,
) -> Result<T, WireError> {
    decode(bytes).map_err(|detail| WireError {
        rank,
        phase,
        detail,
    })
}

/// The inverse of [`encode`]; the error says what failed. Every length a message claims is
/// bounded by its own size (32 bytes of decoded value per byte of message, more than any
/// well-formed value needs), so a malformed or hostile message cannot make this rank
/// allocate more than a small multiple of what it actually sent.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    fn with<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, String> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
            .map(|(v, _)| v)
            .map_err(|e| e.to_string())
    }
    let budget = bytes.len().saturating_mul(32);
    if budget <= 0x1_0000 {
        with::<T, 0x1_0000>(bytes)
    } else if budget <= 0x10_0000 {
        with::<T, 0x10_0000>(bytes)
    } else if budget <= 0x100_0000 {
        with::<T, 0x100_0000>(bytes)
    } else if budget <= 0x1000_0000 {
        with::<T, 0x1000_0000>(bytes)
    } else if budget <= 0x1_0000_0000 {
        with::<T, 0x1_0000_0000>(bytes)
    } else {
        with::<T, { usize::MAX }>(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_values_round_trip_and_overruns_are_named() {
        let msg = Writer::new()
            .slice(&[1u32, 2, 3])
            .value(&("x".to_string(), 7u128))
            .slice(&[-1i64])
            .finish();
        let mut r = Reader::new(&msg, 3, "testing");
        assert_eq!(r.slice::<u32>().unwrap(), vec![1, 2, 3]);
        assert_eq!(r.value::<(String, u128)>().unwrap(), ("x".into(), 7));
        assert_eq!(r.slice::<i64>().unwrap(), vec![-1]);
        let e = Reader::new(&msg[..10], 3, "testing")
            .slice::<u32>()
            .unwrap_err();
        assert!(e.to_string().contains("rank 3") && e.to_string().contains("testing"));
    }

    #[test]
    fn a_claimed_length_beyond_the_message_is_an_error_not_an_allocation() {
        // Found by the `messages` fuzz target: a string claiming ~2^59 bytes.
        let crash = [1u8, 237, 253, 0, 16, 81, 0, 32, 0, 0, 9];
        assert!(decode::<(u8, String)>(&crash).is_err());
        assert!(
            decode::<Vec<String>>(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err()
        );
        let ok: Vec<String> = decode(&encode(&vec!["a".to_string(); 1000])).unwrap();
        assert_eq!(ok.len(), 1000);
    }
}
