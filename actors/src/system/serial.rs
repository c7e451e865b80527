//! The project's one serialization module: every byte that crosses a process boundary as a
//! Rust value (rollout and score messages between cluster nodes) goes through [`encode`]
//! and [`decode`]. bincode 2 sits behind them; nothing else in the workspace calls bincode,
//! so a format change is one file.
//!
//! The format is bincode's standard configuration (little-endian, variable-length integers:
//! token ids below 2^16 take at most 3 bytes) with a decoding limit, so a corrupt or hostile
//! length prefix is an error instead of a huge allocation.

use anyhow::{ensure, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most bytes one decoded value may take (1 GiB): far above any score request.
const LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// `value` as bytes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).context("encoding a message")
}

/// The value `bytes` encode; all of them, or it is an error (a truncated or padded message
/// is corrupt, not a value).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .with_context(|| format!("decoding a message of {} bytes", bytes.len()))?;
    ensure!(
        read == bytes.len(),
        "decoding a message of {} bytes: {} trailing bytes",
        bytes.len(),
        bytes.len() - read
    );
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::reward::ScoreRequest;

    #[test]
    fn score_requests_round_trip() {
        let request = ScoreRequest {
            batch_id: 7,
            policy_version: 3,
            prompts: vec!["Say hi.".into(), "".into()],
            responses: vec!["hi".into(), "é ✓".into()],
            prompt_ids: vec![vec![1, 2, 3], vec![]],
            response_ids: vec![vec![65535, -1], vec![0]],
        };
        let bytes = encode(&request).unwrap();
        assert_eq!(decode::<ScoreRequest>(&bytes).unwrap(), request);
        let reply: Result<Vec<f32>, String> = Ok(vec![0.5, f32::MIN_POSITIVE]);
        let back: Result<Vec<f32>, String> = decode(&encode(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let bytes = encode(&(1u32, vec![1.0f32, 2.0])).unwrap();
        let e = decode::<(u32, Vec<f32>)>(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(format!("{e:#}").contains("decoding a message"), "{e:#}");
        let mut padded = bytes.clone();
        padded.push(0);
        let e = decode::<(u32, Vec<f32>)>(&padded).unwrap_err();
        assert!(e.to_string().contains("1 trailing bytes"), "{e}");
        // A length prefix claiming 2^40 elements: refused by the limit, not allocated.
        let huge = encode(&(1u32, 1u64 << 40)).unwrap();
        assert!(decode::<(u32, Vec<f32>)>(&huge).is_err());
    }
}
