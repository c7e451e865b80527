//! What crosses the wire between the trainer and a generator or reference node: one cluster
//! message (an RPC with opaque bytes both ways) whose payload is a frame: a little-endian
//! `u32` length, a bincode header (the protocol and a [`Request`] or [`Answer`]), then the raw
//! bytes of the tensors the header describes. Raw, not bincode: weights are megabytes, and
//! their bits must arrive exactly.

use crate::system::generator::EpisodeKey;
use crate::system::serial;
use anyhow::{anyhow, bail, ensure, Context};
use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use rlhf::generate::GenerateOptions;
use rlhf::rollout::RolloutBatch;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The process groups generator and reference nodes join; the trainer's replicas are their
/// members.
pub const GENERATOR_GROUP: &str = "rlhf.generator";
pub const REFERENCE_GROUP: &str = "rlhf.reference";

/// Bumped whenever a payload's layout changes, so mismatched binaries fail with a clear error.
pub const PROTOCOL: u32 = 1;

/// A policy node's one message: a frame in, a frame out.
#[derive(RactorClusterMessage)]
pub enum PolicyNodeMsg {
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// How a generator samples and from which seed; a reference node uses the sampling only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub seed: u64,
    pub options: GenerateOptions,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Sent once, before any other request.
    Setup(Setup),
    /// Part `part` of `parts` of policy `version`'s weights: the frame carries the bytes
    /// `offset..offset + len` of the tensors `tensors` (listed in part 0, empty after) lays
    /// out end to end. The node loads them after the last part.
    Weights {
        version: u64,
        part: u32,
        parts: u32,
        offset: u64,
        tensors: Vec<TensorMeta>,
    },
    /// Sample one response per prompt, row i from the stream of `keys[i]`, as (a chunk of)
    /// rollout batch `batch`.
    Generate {
        prompts: Vec<Vec<i64>>,
        keys: Vec<EpisodeKey>,
        batch: u64,
    },
    /// Add the reference log-probs to the rollout the frame carries.
    Reference(RolloutHeader),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Done,
    Rollout(RolloutHeader),
    /// The node's error, as text.
    Failed(String),
}

/// A tensor's place in a frame's bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorMeta {
    pub name: String,
    pub kind: String,
    pub shape: Vec<i64>,
}

impl TensorMeta {
    pub fn bytes(&self) -> anyhow::Result<usize> {
        let size = kind_of(&self.kind)?.elt_size_in_bytes();
        self.shape
            .iter()
            .try_fold(size, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .ok_or_else(|| {
                anyhow!(
                    "tensor `{}`: shape {:?} is not a size",
                    self.name,
                    self.shape
                )
            })
    }
}

/// A rollout batch's identity and its tensors' layout.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutHeader {
    pub id: u64,
    pub policy_version: u64,
    pub tensors: Vec<TensorMeta>,
}

fn kind_name(kind: Kind) -> anyhow::Result<&'static str> {
    Ok(match kind {
        Kind::Float => "f32",
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        Kind::Int64 => "i64",
        Kind::Bool => "bool",
        other => bail!("no wire form for tensors of {other:?}"),
    })
}

fn kind_of(name: &str) -> anyhow::Result<Kind> {
    Ok(match name {
        "f32" => Kind::Float,
        "bf16" => Kind::BFloat16,
        "f16" => Kind::Half,
        "i64" => Kind::Int64,
        "bool" => Kind::Bool,
        other => bail!("unknown tensor kind `{other}` on the wire"),
    })
}

/// `tensors` laid out end to end (on the CPU, contiguous), and their layout.
pub fn pack(tensors: &[(String, Tensor)]) -> anyhow::Result<(Vec<TensorMeta>, Vec<u8>)> {
    let mut metas = Vec::with_capacity(tensors.len());
    let mut bytes = Vec::new();
    for (name, tensor) in tensors {
        let tensor = tensor.to_device(Device::Cpu).contiguous();
        let meta = TensorMeta {
            name: name.clone(),
            kind: kind_name(tensor.kind())?.into(),
            shape: tensor.size(),
        };
        let start = bytes.len();
        bytes.resize(start + meta.bytes()?, 0);
        tensor
            .f_copy_data_u8(&mut bytes[start..], tensor.numel())
            .with_context(|| format!("reading tensor `{name}`"))?;
        metas.push(meta);
    }
    Ok((metas, bytes))
}

/// The tensors `metas` lays out in `bytes` (all of them, exactly).
pub fn unpack(metas: &[TensorMeta], bytes: &[u8]) -> anyhow::Result<Vec<(String, Tensor)>> {
    let mut start = 0;
    let mut tensors = Vec::with_capacity(metas.len());
    for meta in metas {
        let end = start + meta.bytes()?;
        ensure!(
            end <= bytes.len(),
            "tensor `{}` runs past the message's {} bytes",
            meta.name,
            bytes.len()
        );
        let tensor =
            Tensor::f_from_data_size(&bytes[start..end], &meta.shape, kind_of(&meta.kind)?)?;
        tensors.push((meta.name.clone(), tensor));
        start = end;
    }
    ensure!(
        start == bytes.len(),
        "{} bytes after the last tensor",
        bytes.len() - start
    );
    Ok(tensors)
}

/// The frame of `header` followed by `raw`.
pub fn frame<H: Serialize>(header: &H, raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let head = serial::encode(&(PROTOCOL, header))?;
    let mut out = Vec::with_capacity(4 + head.len() + raw.len());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(raw);
    Ok(out)
}

/// A frame's header and raw bytes; `from` names the sender in errors.
pub fn unframe<'a, H: serde::de::DeserializeOwned>(
    bytes: &'a [u8],
    from: &str,
) -> anyhow::Result<(H, &'a [u8])> {
    let malformed = || anyhow!("malformed message from {from}; is it the same rlhf version?");
    let len = bytes.get(..4).ok_or_else(malformed)?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let head = bytes.get(4..4 + len).ok_or_else(malformed)?;
    let (protocol, header): (u32, H) =
        serial::decode(head).map_err(|e| malformed().context(format!("{e:#}")))?;
    if protocol != PROTOCOL {
        bail!("{from} speaks policy-node protocol {protocol}, this binary {PROTOCOL}: use the same rlhf version on both");
    }
    Ok((header, &bytes[4 + len..]))
}

/// A rollout batch as a header and raw bytes.
pub fn pack_rollout(batch: &RolloutBatch) -> anyhow::Result<(RolloutHeader, Vec<u8>)> {
    let mut tensors: Vec<(String, Tensor)> = [
        ("prompt_ids", &batch.prompt_ids),
        ("prompt_mask", &batch.prompt_mask),
        ("response_ids", &batch.response_ids),
        ("response_mask", &batch.response_mask),
        ("behaviour_logprobs", &batch.behaviour_logprobs),
        ("ended_with_eos", &batch.ended_with_eos),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t.shallow_clone()))
    .collect();
    for (name, t) in [
        ("ref_logprobs", &batch.ref_logprobs),
        ("scores", &batch.scores),
        ("monitor_scores", &batch.monitor_scores),
    ] {
        if let Some(t) = t {
            tensors.push((name.to_string(), t.shallow_clone()));
        }
    }
    let (metas, raw) = pack(&tensors)?;
    let header = RolloutHeader {
        id: batch.id,
        policy_version: batch.policy_version,
        tensors: metas,
    };
    Ok((header, raw))
}

/// The rollout batch a header and its raw bytes describe.
pub fn unpack_rollout(header: &RolloutHeader, raw: &[u8]) -> anyhow::Result<RolloutBatch> {
    let mut tensors: std::collections::HashMap<String, Tensor> =
        unpack(&header.tensors, raw)?.into_iter().collect();
    let mut take = |name: &str| {
        tensors
            .remove(name)
            .ok_or_else(|| anyhow!("the rollout on the wire has no `{name}`"))
    };
    Ok(RolloutBatch {
        id: header.id,
        policy_version: header.policy_version,
        prompt_ids: take("prompt_ids")?,
        prompt_mask: take("prompt_mask")?,
        response_ids: take("response_ids")?,
        response_mask: take("response_mask")?,
        behaviour_logprobs: take("behaviour_logprobs")?,
        ended_with_eos: take("ended_with_eos")?,
        ref_logprobs: take("ref_logprobs").ok(),
        scores: take("scores").ok(),
        monitor_scores: take("monitor_scores").ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_cross_the_wire_bit_for_bit() {
        let weights = vec![
            (
                "w".to_string(),
                Tensor::randn([3, 5], (Kind::Float, Device::Cpu)),
            ),
            // Non-contiguous, of another kind, and empty.
            (
                "t".to_string(),
                Tensor::randn([4, 2], (Kind::Float, Device::Cpu))
                    .tr()
                    .to_kind(Kind::BFloat16),
            ),
            (
                "e".to_string(),
                Tensor::zeros([0, 3], (Kind::Int64, Device::Cpu)),
            ),
            ("b".to_string(), Tensor::from_slice(&[true, false, true])),
        ];
        let (metas, raw) = pack(&weights).unwrap();
        assert_eq!(raw.len(), 15 * 4 + 8 * 2 + 3);
        let back = unpack(&metas, &raw).unwrap();
        for ((n, a), (m, b)) in weights.iter().zip(&back) {
            assert_eq!(n, m);
            assert_eq!(a.kind(), b.kind());
            assert!(a.equal(b), "{n}");
        }
        let e = unpack(&metas, &raw[..raw.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor `b` runs past the message's"), "{e}");
        let mut longer = raw.clone();
        longer.push(0);
        let e = unpack(&metas, &longer).unwrap_err().to_string();
        assert_eq!(e, "1 bytes after the last tensor");
    }

    #[test]
    fn frames_round_trip_and_refuse_other_protocols() {
        let request = Request::Generate {
            prompts: vec![vec![1, 2, 3]],
            keys: vec![EpisodeKey {
                prompt: 7,
                sample: 1,
            }],
            batch: 4,
        };
        let bytes = frame(&request, b"raw").unwrap();
        let (back, raw): (Request, &[u8]) = unframe(&bytes, "the trainer").unwrap();
        assert_eq!(back, request);
        assert_eq!(raw, b"raw");
        let head = serial::encode(&(PROTOCOL + 1, &request)).unwrap();
        let mut other = (head.len() as u32).to_le_bytes().to_vec();
        other.extend_from_slice(&head);
        let e = unframe::<Request>(&other, "node \"g\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node \"g\" speaks policy-node protocol 2, this binary 1"),
            "{e}"
        );
        let e = unframe::<Request>(b"\x09\0\0\0ab", "the trainer")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("malformed message from the trainer"), "{e}");
    }

    #[test]
    fn a_rollout_crosses_the_wire_whole() {
        let batch = RolloutBatch {
            id: 3,
            policy_version: 2,
            prompt_ids: Tensor::from_slice(&[0i64, 5, 6, 7]).view([2, 2]),
            prompt_mask: Tensor::from_slice(&[0i64, 1, 1, 1]).view([2, 2]),
            response_ids: Tensor::from_slice(&[8i64, 9, 1, 0]).view([2, 2]),
            response_mask: Tensor::from_slice(&[1f32, 1., 1., 0.]).view([2, 2]),
            behaviour_logprobs: Tensor::from_slice(&[-0.5f32, -1.25, -2., 0.]).view([2, 2]),
            ended_with_eos: Tensor::from_slice(&[false, true]),
            ref_logprobs: None,
            scores: Some(Tensor::from_slice(&[0.25f32, -1.0])),
            monitor_scores: None,
        };
        let (header, raw) = pack_rollout(&batch).unwrap();
        let back = unpack_rollout(&header, &raw).unwrap();
        assert_eq!((back.id, back.policy_version), (3, 2));
        assert!(back.prompt_ids.equal(&batch.prompt_ids));
        assert!(back.behaviour_logprobs.equal(&batch.behaviour_logprobs));
        assert!(back.ended_with_eos.equal(&batch.ended_with_eos));
        assert!(back.scores.unwrap().equal(batch.scores.as_ref().unwrap()));
        assert!(back.ref_logprobs.is_none() && back.monitor_scores.is_none());
    }
}
