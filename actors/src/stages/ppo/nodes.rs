//! The replicas on nodes: the ones the run waits for before its first batch, and the ones
//! that join later (a restarted node, or one more) and take chunks from then on.

use super::replica::{intern, Replica};
use crate::system::policy_node::link::{Cluster, NodeLink};
use crate::system::policy_node::node::Role;
use crate::system::policy_node::proxy::ProxyArgs;
use crate::system::policy_node::wire::Setup;
use crate::system::supervisor::Supervised;
use std::sync::Arc;

/// What replicas on nodes are made of: the cluster they join, how they are set up, and the
/// supervisor their stand-in actors are linked to.
#[derive(Clone)]
pub struct Nodes {
    cluster: Arc<Cluster>,
    setup: Setup,
    supervised: Arc<Supervised>,
}

impl Nodes {
    pub fn new(cluster: Arc<Cluster>, setup: Setup, supervised: Arc<Supervised>) -> Nodes {
        Nodes {
            cluster,
            setup,
            supervised,
        }
    }

    /// Replicas of `role` for `count` nodes, named `role.<node name>`, each a stand-in
    /// `proxy` actor for its node: the cluster's nodes as they join.
    pub async fn join<A>(
        &self,
        role: Role,
        count: usize,
        proxy: A,
    ) -> anyhow::Result<Vec<Replica<A::Msg>>>
    where
        A: ractor::Actor<Arguments = ProxyArgs> + Clone,
    {
        let mut replicas = Vec::new();
        for link in self.cluster.wait_for(role, count).await? {
            replicas.push(self.replica(role, link, proxy.clone()).await?);
        }
        Ok(replicas)
    }

    /// A replica for a `role` node that joined since the last look, if one did.
    pub async fn late<A>(&self, role: Role, proxy: A) -> anyhow::Result<Option<Replica<A::Msg>>>
    where
        A: ractor::Actor<Arguments = ProxyArgs>,
    {
        match self.cluster.next_node(role) {
            Some(link) => Ok(Some(self.replica(role, link, proxy).await?)),
            None => Ok(None),
        }
    }

    async fn replica<A>(
        &self,
        role: Role,
        link: NodeLink,
        proxy: A,
    ) -> anyhow::Result<Replica<A::Msg>>
    where
        A: ractor::Actor<Arguments = ProxyArgs>,
    {
        let config = self.cluster.config();
        let name = intern(format!("{}.{}", role.name(), link.name));
        let args = ProxyArgs {
            name,
            link,
            setup: self.setup.clone(),
            weights_kind: config.weights_dtype.kind(),
            weight_chunk_bytes: config.weight_chunk_mib << 20,
        };
        let actor = self.supervised.spawn(name, proxy, args).await?;
        Ok(Replica { name, actor })
    }

    /// End every node's session.
    pub fn close(&self) {
        self.cluster.close();
    }
}
