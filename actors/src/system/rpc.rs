//! The one request-reply helper every caller of an actor uses.

use anyhow::anyhow;
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

/// The reply port of a request whose handler can fail.
pub type Reply<T> = RpcReplyPort<anyhow::Result<T>>;

/// Send `actor` (called `name` in errors) the request `message` builds around a reply
/// port, and wait for its answer.
pub async fn ask<M: Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    name: &str,
    message: impl FnOnce(Reply<T>) -> M,
) -> anyhow::Result<T> {
    match actor
        .call(message, None)
        .await
        .map_err(|e| anyhow!("{name} unreachable: {e}"))?
    {
        CallResult::Success(result) => result,
        _ => Err(anyhow!("the {name} stopped without answering")),
    }
}
