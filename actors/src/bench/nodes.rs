//! `rlhf bench ppo --generator-nodes N --reference-nodes M`: the policy replicas as node
//! processes on loopback (`rlhf node` of this very binary), as a multi-machine run would
//! place them. The nodes read a config this bench writes: the policy folder (a random
//! model of the bench's shape is saved for them), the cluster's port and a fresh secret.

use anyhow::Context;
use rlhf::config::{PpoStage, RunConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Node processes serving one bench run; killed if still running when dropped.
pub struct NodeProcs {
    children: Vec<(String, Child, PathBuf)>,
}

impl NodeProcs {
    /// Point `stage` at a cluster on a free loopback port with a secret in `dir`, write the
    /// nodes' config there, and start `generators` generator and `references` reference
    /// nodes. `policy` is the folder the nodes load.
    pub fn start(
        dir: &Path,
        stage: &mut PpoStage,
        policy: &Path,
        (generators, references): (usize, usize),
    ) -> anyhow::Result<NodeProcs> {
        let secret = dir.join("cluster-secret");
        std::fs::write(
            &secret,
            format!(
                "bench-{}-{:?}\n",
                std::process::id(),
                std::time::Instant::now()
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        stage.cluster.listen = format!("127.0.0.1:{port}");
        stage.cluster.secret_file = Some(secret);
        let mut config = RunConfig::for_ppo(dir.join("node-run"), 0, stage.clone());
        if let Some(ppo) = config.ppo.as_mut() {
            ppo.policy = policy.to_path_buf();
        }
        let file = dir.join("nodes.toml");
        std::fs::write(&file, toml::to_string(&config)?)?;
        let exe = std::env::current_exe().context("finding the rlhf binary for its nodes")?;
        let mut children = Vec::new();
        let roles = std::iter::repeat_n("generator", generators)
            .chain(std::iter::repeat_n("reference", references));
        for (i, role) in roles.enumerate() {
            let name = format!("{role}-{i}");
            let log = dir.join(format!("{name}.log"));
            let child = Command::new(&exe)
                .args(["node", "--role", role, "--name", &name, "--config"])
                .arg(&file)
                .env_remove("RLHF_CLUSTER_SECRET")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| format!("starting node {name}"))?;
            children.push((name, child, log));
        }
        Ok(NodeProcs { children })
    }

    /// Wait (boundedly) for every node to end after the trainer closed the cluster; a node
    /// that failed is an error showing its log's last line.
    pub fn finish(mut self) -> anyhow::Result<()> {
        for (name, child, log) in &mut self.children {
            let mut waited = Duration::ZERO;
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                anyhow::ensure!(waited < Duration::from_secs(30), "node {name} did not end");
                std::thread::sleep(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            };
            if !status.success() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                anyhow::bail!("node {name} failed: {}", text.lines().last().unwrap_or(""));
            }
        }
        Ok(())
    }
}

impl Drop for NodeProcs {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
