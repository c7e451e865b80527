//! What crosses the wire between the trainer and a reward node: one cluster message (an RPC
//! with opaque bytes both ways) and the bincode payloads inside it.
//!
//! The payloads are bytes rather than typed `BytesConvertable` fields because ractor's
//! decoding of typed fields panics on bad input; with bytes, a corrupt or mismatched message
//! becomes an error the other side can report.

use crate::system::reward::contract::ScoreRequest;
use crate::system::serial;
use anyhow::{anyhow, bail};
use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;

/// The process group every reward node's actor joins; the trainer scores with its members.
pub const GROUP: &str = "rlhf.reward";

/// Bumped whenever a payload's layout changes, so mismatched binaries fail with a clear error.
pub const PROTOCOL: u32 = 1;

/// The reward node actor's one message: a bincode request in, a bincode reply out.
#[derive(RactorClusterMessage)]
pub enum RewardNodeMsg {
    #[rpc]
    Score(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// A request as the trainer sends it.
pub fn encode_request(request: &ScoreRequest) -> anyhow::Result<Vec<u8>> {
    serial::encode(&(PROTOCOL, request))
}

/// A request as the node reads it.
pub fn decode_request(bytes: &[u8]) -> anyhow::Result<ScoreRequest> {
    let (protocol, request): (u32, ScoreRequest) = serial::decode(bytes).map_err(|e| {
        anyhow!("malformed score request ({e:#}); is the trainer the same rlhf version?")
    })?;
    check_protocol(protocol, "the trainer")?;
    Ok(request)
}

/// The node's answer: scores, or its reward's error as text.
pub fn encode_reply(reply: &Result<Vec<f32>, String>) -> anyhow::Result<Vec<u8>> {
    serial::encode(&(PROTOCOL, reply))
}

pub fn decode_reply(bytes: &[u8]) -> anyhow::Result<Result<Vec<f32>, String>> {
    let (protocol, reply): (u32, Result<Vec<f32>, String>) = serial::decode(bytes)
        .map_err(|e| anyhow!("malformed reply ({e:#}); is the node the same rlhf version?"))?;
    check_protocol(protocol, "the node")?;
    Ok(reply)
}

fn check_protocol(theirs: u32, who: &str) -> anyhow::Result<()> {
    if theirs != PROTOCOL {
        bail!("{who} speaks reward protocol {theirs}, this binary {PROTOCOL}: use the same rlhf version on both");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_refuse_other_protocols() {
        let request = ScoreRequest {
            batch_id: 3,
            response_ids: vec![vec![4, 5]],
            ..ScoreRequest::default()
        };
        assert_eq!(
            decode_request(&encode_request(&request).unwrap()).unwrap(),
            request
        );
        let reply = Err("the model is on fire".to_string());
        assert_eq!(decode_reply(&encode_reply(&reply).unwrap()).unwrap(), reply);
        let other = serial::encode(&(PROTOCOL + 1, &request)).unwrap();
        let e = decode_request(&other).unwrap_err().to_string();
        assert!(e.contains("reward protocol 2, this binary 1"), "{e}");
        let e = decode_reply(b"\x01garbage").unwrap_err().to_string();
        assert!(e.starts_with("malformed reply"), "{e}");
    }
}
