//! Nodes over ractor_cluster, on loopback.
//!
//! Remote reward: `rlhf node` serving the reward model to `rlhf ppo` (`[ppo.reward] kind =
//! "remote"`) gives the in-process scores; a node killed mid-run fails the run by name with
//! a checkpoint, or is replaced by a restarted one; a node that stops answering fails the
//! run after `1 + retries` timeouts; a node with the wrong secret is refused. Also measures
//! the remote actor's overhead per batch.
//!
//! Generator and reference nodes (`[ppo.actors.<kind>] nodes`): a run on them trains the
//! weights local replicas train, bit for bit; a generator or reference node killed with
//! SIGKILL mid-run hands its chunk to the other, and the run still trains those weights.

mod common;

use common::{
    error_line, lcg, ok, ppo_head, ppo_steps as steps, rlhf, signal, write, write_prompts, Tiny,
    WORDS,
};
use rlhf::config::{OnDisconnect, RemoteRewardConfig, RewardConfig};
use rlhf::device::DType;
use rlhf::model::{Head, Model};
use rlhf_actors::reward::{BuildContext, ModelReward, Reward, ScoreRequest};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A tokenizer and random policy from `rlhf init`, a reward model with a seeded random score
/// head, and PPO prompts; built once for every test of this file.
struct Fixture {
    dir: PathBuf,
    policy: PathBuf,
    reward_model: PathBuf,
    prompts: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Under target/tmp, replaced by each run and kept after it, for reading the logs.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tiny = Tiny {
            documents: 200,
            ..Tiny::default()
        };
        let config = write(dir.join("init.toml"), tiny.config(&dir.join("base")));
        ok(rlhf(&["init", "--config", config.to_str().unwrap()]));
        let policy = dir.join("base/init");
        tch::manual_seed(3);
        let (rm, _) = Model::load(&policy, Head::Scalar, DType::F32, tch::Device::Cpu).unwrap();
        let reward_model = dir.join("rm");
        rm.save(&reward_model).unwrap();
        let prompts = dir.join("prompts.jsonl");
        write_prompts(&prompts, "Tell me about", &WORDS[..8]);
        Fixture {
            dir,
            policy,
            reward_model,
            prompts,
        }
    })
}

/// A port to listen on, below Linux's ephemeral range (32768-60999): a port the kernel hands
/// out (`bind :0`) can meanwhile become the local port of another test's outgoing
/// connection, and the trainer's listen then fails with "address in use". Each call of this
/// process takes the next candidate (tests run in parallel), from an offset set by the pid.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 2_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A test's own folder with a secret file holding `secret`.
fn test_dir(tag: &str, secret: &str) -> (PathBuf, PathBuf) {
    let dir = fixture().dir.join(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    (dir, file)
}

/// A PPO config into `dir` (run under `dir/<run>`) with `reward` as its `[ppo.reward]`.
fn ppo_config(dir: &Path, run: &str, steps: u64, reward: &str) -> PathBuf {
    let f = fixture();
    let head = ppo_head(
        &dir.join(run),
        &f.policy,
        &f.reward_model,
        &f.prompts,
        steps,
    );
    let text = format!(
        r#"{head}rollout_batch_size = 16
max_new_tokens = 10
max_staleness = 0
[ppo.actors]
generator = {{ threads = 1 }}
reference = {{ threads = 1 }}
reward = {{ threads = 1 }}
learner = {{ threads = 1 }}
[ppo.reward]
{reward}
"#
    );
    write(dir.join(format!("{run}.toml")), text)
}

fn remote(port: u16, secret: &Path, wait: f64, on_disconnect: &str) -> String {
    format!(
        "kind = \"remote\"\nlisten = \"127.0.0.1:{port}\"\nsecret_file = \"{}\"\n\
         wait_for_node_seconds = {wait:?}\non_disconnect = \"{on_disconnect}\"",
        secret.display()
    )
}

/// A child process of the `rlhf` binary whose stderr goes to a file; killed if dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(args: &[&str], log: PathBuf) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_rlhf"))
            .args(args)
            .env_remove("RLHF_CLUSTER_SECRET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn node(config: &Path, name: &str) -> Proc {
        Proc::node_as(config, "reward", name)
    }

    fn node_as(config: &Path, role: &str, name: &str) -> Proc {
        let log = config.with_file_name(format!("{name}.log"));
        Proc::start(
            &[
                "node",
                "--role",
                role,
                "--config",
                config.to_str().unwrap(),
                "--name",
                name,
            ],
            log,
        )
    }

    fn ppo(config: &Path) -> Proc {
        Proc::start(
            &["ppo", "--config", config.to_str().unwrap()],
            config.with_extension("log"),
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status within `seconds`, or a panic showing the log.
    fn wait(&mut self, seconds: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {seconds}s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_steps(run: &Path, n: usize, trainer: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while steps(run).len() < n {
        assert!(
            trainer.child.try_wait().unwrap().is_none(),
            "the trainer ended early:\n{}",
            trainer.stderr()
        );
        assert!(
            Instant::now() < deadline,
            "no PPO step:\n{}",
            trainer.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ppo_with_a_remote_reward_node_scores_as_in_process() {
    let (dir, secret) = test_dir("same", "same-secret");
    let port = free_port();
    let config = ppo_config(&dir, "remote", 3, &remote(port, &secret, 120.0, "fail"));
    let mut trainer = Proc::ppo(&config);
    let mut node = Proc::node(&config, "node-a");
    assert!(trainer.wait(300).success(), "{}", trainer.stderr());
    // The trainer's exit closes the session; the node's job is done.
    assert!(node.wait(30).success(), "{}", node.stderr());
    let log = trainer.stderr();
    assert!(log.contains("reward node \"node-a\""), "{log}");

    let local = ppo_config(&dir, "local", 3, "kind = \"model\"");
    let mut in_process = Proc::ppo(&local);
    assert!(in_process.wait(300).success(), "{}", in_process.stderr());
    let (remote_steps, local_steps) = (steps(&dir.join("remote")), steps(&dir.join("local")));
    assert_eq!(remote_steps.len(), 3);
    assert_eq!(local_steps.len(), 3);
    for (r, l) in remote_steps.iter().zip(&local_steps) {
        let (r, l) = (
            r["score_mean"].as_f64().unwrap(),
            l["score_mean"].as_f64().unwrap(),
        );
        assert!(
            (r - l).abs() < 1e-5,
            "score_mean remote {r} vs in-process {l}"
        );
    }
}

/// A 64-row request of random token ids, as the reward model sees a rollout batch.
fn request(rows: usize) -> ScoreRequest {
    let mut next = lcg(99);
    let mut ids = |len: u64| -> Vec<i64> { (0..len).map(|_| 1 + next(399) as i64).collect() };
    let prompt_ids: Vec<Vec<i64>> = (0..rows).map(|i| ids(8 + (i as u64 % 17))).collect();
    let response_ids: Vec<Vec<i64>> = (0..rows).map(|i| ids(1 + (i as u64 % 10))).collect();
    ScoreRequest {
        batch_id: 1,
        policy_version: 0,
        prompts: vec!["Tell me about the river.".into(); rows],
        responses: vec!["It flows.".into(); rows],
        prompt_ids,
        response_ids,
    }
}

/// Median milliseconds of one `score(request)` call of each reward, calls interleaved (so
/// load from other processes hits both alike), after two warm-up calls each.
fn median_ms(rewards: &mut [&mut dyn Reward], request: &ScoreRequest, n: usize) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(n); rewards.len()];
    for round in 0..n + 2 {
        for (reward, times) in rewards.iter_mut().zip(&mut times) {
            let started = Instant::now();
            reward.score(request).unwrap();
            if round >= 2 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

#[test]
fn a_remote_node_gives_the_in_process_scores_and_its_overhead_is_measured() {
    let (dir, secret) = test_dir("direct", "direct-secret");
    let port = free_port();
    let config = ppo_config(&dir, "direct", 1, &remote(port, &secret, 120.0, "fail"));
    let mut node = Proc::node(&config, "node-e");
    let f = fixture();
    let path = f.reward_model.clone();
    let context = BuildContext {
        model: Arc::new(move |_: &str| {
            Ok(Model::load(&path, Head::Scalar, DType::F32, tch::Device::Cpu)?.0)
        }),
        runtime: None,
    };
    let config = RewardConfig::Remote(RemoteRewardConfig {
        listen: format!("127.0.0.1:{port}"),
        secret_file: Some(secret),
        secret_env: "RLHF_CLUSTER_SECRET".into(),
        wait_for_node_seconds: 120.0,
        timeout_seconds: 60.0,
        retries: 0,
        on_disconnect: OnDisconnect::Fail,
        tls: None,
    });
    let mut remote = rlhf_actors::reward::build(&config, "cpu", &context).unwrap();
    // One libtorch thread on both sides, as the node's config asks.
    tch::set_num_threads(1);
    let mut local = ModelReward {
        model: (context.model)("cpu").unwrap(),
    };
    let batch = request(64);
    let (r, l) = (remote.score(&batch).unwrap(), local.score(&batch).unwrap());
    assert_eq!(r.len(), 64);
    for (row, (a, b)) in r.iter().zip(&l).enumerate() {
        assert!(
            (a - b).abs() < 1e-5,
            "row {row}: remote {a} vs in-process {b}"
        );
    }
    let n = 40;
    let ms = median_ms(&mut [remote.as_mut(), &mut local], &batch, n);
    let empty = median_ms(&mut [remote.as_mut()], &request(0), n)[0];
    eprintln!(
        "reward per 64-row batch (median of {n}): remote {:.2} ms, in-process {:.2} ms, \
         overhead {:.2} ms; empty-request round trip {empty:.2} ms",
        ms[0],
        ms[1],
        ms[0] - ms[1]
    );
    drop(remote);
    assert!(node.wait(30).success(), "{}", node.stderr());
}

#[test]
fn killing_the_node_mid_run_fails_the_run_by_name_with_a_checkpoint() {
    let (dir, secret) = test_dir("kill", "kill-secret");
    let port = free_port();
    let config = ppo_config(&dir, "run", 100_000, &remote(port, &secret, 120.0, "fail"));
    let mut trainer = Proc::ppo(&config);
    let mut node = Proc::node(&config, "node-b");
    let run = dir.join("run");
    wait_for_steps(&run, 2, &mut trainer);
    node.child.kill().unwrap();
    let killed = Instant::now();
    let status = trainer.wait(120);
    let log = trainer.stderr();
    eprintln!(
        "the trainer exited {:.1}s after the kill",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(2), "{log}");
    let error = error_line(&log);
    assert!(
        error.contains("remote reward node \"node-b\" (127.0.0.1:")
            && error.contains("disconnected"),
        "{log}"
    );
    assert!(
        run.join("ppo/checkpoints/last/model.safetensors").exists(),
        "{log}"
    );
}

#[test]
fn a_node_with_the_wrong_secret_is_refused() {
    let (dir, secret) = test_dir("secret", "right-secret");
    let port = free_port();
    let config = ppo_config(&dir, "run", 2, &remote(port, &secret, 10.0, "fail"));
    let wrong = dir.join("wrong-secret");
    std::fs::write(&wrong, "wrong-secret").unwrap();
    let node_config = ppo_config(&dir, "node", 2, &remote(port, &wrong, 10.0, "fail"));
    let mut trainer = Proc::ppo(&config);
    let mut node = Proc::node(&node_config, "intruder");
    let status = node.wait(120);
    let node_log = node.stderr();
    assert_eq!(status.code(), Some(2), "{node_log}");
    assert!(
        error_line(&node_log).contains("refused this node: wrong cluster secret"),
        "{node_log}"
    );
    let status = trainer.wait(120);
    let log = trainer.stderr();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("refused node \"intruder\" at 127.0.0.1:")
            && log.contains("wrong cluster secret"),
        "{log}"
    );
    assert!(
        error_line(&log).contains("no reward node joined the cluster"),
        "{log}"
    );
    assert!(!dir.join("run/ppo/metrics.jsonl").exists() || steps(&dir.join("run")).is_empty());
}

/// `[ppo.reward.tls]` with the test CA's files (tests/fixtures/tls, from
/// scripts/make_tls_fixture.sh), trusting `ca`.
/// A `[<section>.tls]` table with the fixture certificates, trusting `ca`.
fn tls_in(section: &str, ca: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls");
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        "\n[{section}.tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        file("cert.pem"),
        file("key.pem"),
        file(ca)
    )
}

fn tls(ca: &str) -> String {
    tls_in("ppo.reward", ca)
}

/// With `[ppo.reward.tls]` the node joins over TLS and the run scores as before; a node
/// that trusts another CA gives up at once, naming TLS.
#[test]
fn a_tls_cluster_scores_and_refuses_a_node_trusting_another_ca() {
    let (dir, secret) = test_dir("tls", "tls-secret");
    let port = free_port();
    let reward = format!("{}{}", remote(port, &secret, 120.0, "fail"), tls("ca.pem"));
    let config = ppo_config(&dir, "run", 2, &reward);
    let mut trainer = Proc::ppo(&config);
    let other = format!(
        "{}{}",
        remote(port, &secret, 120.0, "fail"),
        tls("other-ca.pem")
    );
    let doubter = ppo_config(&dir, "doubter", 2, &other);
    let mut refused = Proc::node(&doubter, "doubter");
    let status = refused.wait(60);
    let refused_log = refused.stderr();
    assert_eq!(status.code(), Some(2), "{refused_log}");
    assert!(
        error_line(&refused_log).contains("TLS with the trainer at 127.0.0.1:"),
        "{refused_log}"
    );
    let mut node = Proc::node(&config, "trusted");
    assert!(trainer.wait(300).success(), "{}", trainer.stderr());
    assert!(node.wait(30).success(), "{}", node.stderr());
    assert!(trainer.stderr().contains("reward node \"trusted\""));
    assert_eq!(steps(&dir.join("run")).len(), 2);
}

#[test]
fn with_reconnect_a_restarted_node_takes_over() {
    let (dir, secret) = test_dir("reconnect", "reconnect-secret");
    let port = free_port();
    let config = ppo_config(&dir, "run", 12, &remote(port, &secret, 120.0, "reconnect"));
    let mut trainer = Proc::ppo(&config);
    let mut first = Proc::node(&config, "node-c1");
    let run = dir.join("run");
    wait_for_steps(&run, 2, &mut trainer);
    first.child.kill().unwrap();
    let mut second = Proc::node(&config, "node-c2");
    let status = trainer.wait(300);
    let log = trainer.stderr();
    assert!(status.success(), "{log}");
    assert_eq!(steps(&run).len(), 12, "{log}");
    assert!(
        log.contains("reward node \"node-c1\"") && log.contains("left the cluster"),
        "{log}"
    );
    assert!(log.contains("scoring on reward node \"node-c2\""), "{log}");
    assert!(second.wait(30).success(), "{}", second.stderr());
}

#[test]
fn a_node_that_stops_answering_fails_the_run_within_the_retry_bound() {
    let (dir, secret) = test_dir("hang", "hang-secret");
    let port = free_port();
    let reward = format!(
        "{}\ntimeout_seconds = 2.0\nretries = 1",
        remote(port, &secret, 120.0, "fail")
    );
    let config = ppo_config(&dir, "run", 100_000, &reward);
    let mut trainer = Proc::ppo(&config);
    let node = Proc::node(&config, "node-h");
    let run = dir.join("run");
    wait_for_steps(&run, 2, &mut trainer);
    // Frozen, not dead: the connection stays open and only the timeout can notice.
    signal(node.child.id(), "-STOP");
    let stopped = Instant::now();
    let status = trainer.wait(120);
    let log = trainer.stderr();
    let waited = stopped.elapsed().as_secs_f64();
    eprintln!("the trainer gave up {waited:.1}s after the node froze");
    assert_eq!(status.code(), Some(2), "{log}");
    let error = error_line(&log);
    assert!(
        error.contains("remote reward node \"node-h\"")
            && error.contains("did not answer rollout batch")
            && error.contains("gave up after 2 tries"),
        "{log}"
    );
    // Two tries of 2 s each, plus the step in flight and the checkpoint.
    assert!(waited < 30.0, "{waited}s");
    assert!(
        run.join("ppo/checkpoints/last/model.safetensors").exists(),
        "{log}"
    );
}

/// A PPO config into `dir` (run under `dir/<run>`) with `actors` as its `[ppo.actors]`
/// tables, a cluster at `port` with the secret in `secret` and `more` keys (when given),
/// fixed `rollout_chunks` and `max_staleness`.
fn policy_config(
    dir: &Path,
    run: &str,
    steps: u64,
    chunks: usize,
    staleness: u64,
    actors: &str,
    cluster: Option<(u16, &Path, &str)>,
) -> PathBuf {
    let f = fixture();
    let head = ppo_head(
        &dir.join(run),
        &f.policy,
        &f.reward_model,
        &f.prompts,
        steps,
    );
    let cluster = match cluster {
        Some((port, secret, more)) => format!(
            "[ppo.cluster]\nlisten = \"127.0.0.1:{port}\"\nsecret_file = \"{}\"\n\
             weight_chunk_mib = 1\n{more}",
            secret.display()
        ),
        None => String::new(),
    };
    let text = format!(
        "{head}rollout_batch_size = 16\nmax_new_tokens = 10\nmax_staleness = {staleness}\n\
         rollout_chunks = {chunks}\n[ppo.actors]\nreward = {{ threads = 1 }}\n\
         learner = {{ threads = 1 }}\n{actors}{cluster}"
    );
    write(dir.join(format!("{run}.toml")), text)
}

/// The final policy's tensors, by name.
fn final_policy(run: &Path) -> Vec<(String, tch::Tensor)> {
    let mut tensors =
        tch::Tensor::read_safetensors(run.join("ppo/checkpoints/last/model.safetensors")).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Runs `a` and `b` logged the same steps and trained bit-identical policies.
fn assert_same_training(a: &Path, b: &Path) {
    let (sa, sb) = (steps(a), steps(b));
    assert_eq!(sa.len(), sb.len());
    for (x, y) in sa.iter().zip(&sb) {
        for key in [
            "score_mean",
            "kl_per_sequence",
            "policy_loss",
            "response_length_mean",
        ] {
            assert_eq!(x[key], y[key], "{key}: {} vs {}", a.display(), b.display());
        }
    }
    let (pa, pb) = (final_policy(a), final_policy(b));
    assert_eq!(pa.len(), pb.len());
    for ((n, x), (m, y)) in pa.iter().zip(&pb) {
        assert_eq!(n, m);
        assert!(x.equal(y), "tensor {n} differs");
    }
}

/// Local replicas only, `chunks` chunks: what node layouts are compared with.
fn local_run(dir: &Path, steps: u64, chunks: usize, staleness: u64) -> PathBuf {
    let config = policy_config(
        dir,
        "local",
        steps,
        chunks,
        staleness,
        "generator = { threads = 1 }\nreference = { threads = 1 }\n",
        None,
    );
    let mut run = Proc::ppo(&config);
    assert!(run.wait(300).success(), "{}", run.stderr());
    dir.join("local")
}

#[test]
fn generator_and_reference_nodes_train_the_weights_local_replicas_train() {
    let (dir, secret) = test_dir("policy-nodes", "policy-secret");
    let port = free_port();
    let config = policy_config(
        &dir,
        "nodes",
        3,
        2,
        0,
        "generator = { replicas = 0, nodes = 2, threads = 1 }\n\
         reference = { replicas = 0, nodes = 1, threads = 1 }\n",
        Some((port, &secret, "")),
    );
    let mut trainer = Proc::ppo(&config);
    let mut nodes = [
        Proc::node_as(&config, "generator", "gen-a"),
        Proc::node_as(&config, "generator", "gen-b"),
        Proc::node_as(&config, "reference", "ref-a"),
    ];
    assert!(trainer.wait(300).success(), "{}", trainer.stderr());
    for node in &mut nodes {
        // The trainer's exit closes the session; the node's job is done.
        assert!(node.wait(30).success(), "{}", node.stderr());
    }
    let log = trainer.stderr();
    assert!(log.contains("generator node \"gen-a\""), "{log}");
    assert!(log.contains("reference node \"ref-a\""), "{log}");
    assert_same_training(&dir.join("nodes"), &local_run(&dir, 3, 2, 0));
}

/// Two `role` nodes, one SIGKILLed mid-run: its chunk goes to the other, the run finishes,
/// and it trains what an uninterrupted local run trains.
fn a_killed_node_hands_its_work_to_the_other(role: &str) {
    let (dir, secret) = test_dir(&format!("kill-{role}"), "kill-node-secret");
    let port = free_port();
    // Long enough that the kill lands mid-run on a loaded machine too.
    let steps = 40;
    let actors = match role {
        "generator" => {
            "generator = { replicas = 0, nodes = 2, threads = 1 }\nreference = { threads = 1 }\n"
        }
        _ => "generator = { threads = 1 }\nreference = { replicas = 0, nodes = 2, threads = 1 }\n",
    };
    let config = policy_config(
        &dir,
        "nodes",
        steps,
        4,
        1,
        actors,
        Some((port, &secret, "")),
    );
    let mut trainer = Proc::ppo(&config);
    let mut doomed = Proc::node_as(&config, role, "doomed");
    let mut survivor = Proc::node_as(&config, role, "survivor");
    let run = dir.join("nodes");
    wait_for_steps(&run, 2, &mut trainer);
    // SIGKILL: no goodbye on the wire, the session just ends.
    doomed.child.kill().unwrap();
    let _ = doomed.child.wait();
    assert!(trainer.wait(300).success(), "{}", trainer.stderr());
    assert!(survivor.wait(30).success(), "{}", survivor.stderr());
    let log = trainer.stderr();
    assert!(
        log.contains(&format!("{role}.doomed is gone; chunk")),
        "no re-queue logged:\n{log}"
    );
    // Every episode once: the same steps and weights as an uninterrupted local run.
    assert_same_training(&run, &local_run(&dir, steps, 4, 1));
}

#[test]
fn a_generator_node_killed_mid_run_hands_its_work_to_the_other() {
    a_killed_node_hands_its_work_to_the_other("generator");
}

#[test]
fn a_reference_node_killed_mid_run_hands_its_work_to_the_other() {
    a_killed_node_hands_its_work_to_the_other("reference");
}

/// A node started mid-run joins as a replica and takes chunks: after it joined, the
/// other two are killed one by one, and the run finishes on it alone, training what an
/// uninterrupted local run trains.
#[test]
fn a_generator_node_that_joins_mid_run_takes_chunks() {
    let (dir, secret) = test_dir("late-generator", "late-secret");
    let port = free_port();
    // Long enough for a node process to start and join while the run goes on.
    let steps = 150;
    let config = policy_config(
        &dir,
        "nodes",
        steps,
        4,
        1,
        "generator = { replicas = 0, nodes = 2, threads = 1 }\nreference = { threads = 1 }\n",
        Some((port, &secret, "")),
    );
    let mut trainer = Proc::ppo(&config);
    let mut first = Proc::node_as(&config, "generator", "first");
    let mut second = Proc::node_as(&config, "generator", "second");
    let run = dir.join("nodes");
    wait_for_steps(&run, 2, &mut trainer);
    first.child.kill().unwrap();
    let mut late = Proc::node_as(&config, "generator", "late");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !trainer.stderr().contains("generator.late joined mid-run") {
        assert!(
            Instant::now() < deadline,
            "no late join:\n{}",
            trainer.stderr()
        );
        assert!(
            trainer.child.try_wait().unwrap().is_none(),
            "the run ended before the late node joined:\n{}",
            trainer.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    second.child.kill().unwrap();
    assert!(trainer.wait(300).success(), "{}", trainer.stderr());
    assert!(late.wait(30).success(), "{}", late.stderr());
    let log = trainer.stderr();
    assert!(log.contains("generator.second is gone; chunk"), "{log}");
    assert_same_training(&run, &local_run(&dir, steps, 4, 1));
}

#[test]
fn bf16_weights_reach_a_generator_node_over_tls_and_missing_nodes_fail_the_run_by_count() {
    let (dir, secret) = test_dir("bf16-and-missing", "bf16-secret");
    let port = free_port();
    let config = policy_config(
        &dir,
        "bf16",
        3,
        1,
        0,
        "generator = { replicas = 0, nodes = 1, threads = 1 }\nreference = { threads = 1 }\n",
        Some((
            port,
            &secret,
            &format!(
                "weights_dtype = \"bf16\"\n{}",
                tls_in("ppo.cluster", "ca.pem")
            ),
        )),
    );
    let mut trainer = Proc::ppo(&config);
    let mut node = Proc::node_as(&config, "generator", "gen-bf16");
    assert!(trainer.wait(300).success(), "{}", trainer.stderr());
    assert!(node.wait(30).success(), "{}", node.stderr());
    // Step 1 samples with the initial policy, which the node loaded itself: exact. Later
    // steps sample with bf16-rounded weights, so they are only close.
    let local = local_run(&dir, 3, 1, 0);
    let (nodes, local) = (steps(&dir.join("bf16")), steps(&local));
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["score_mean"], local[0]["score_mean"]);

    let port = free_port();
    let config = policy_config(
        &dir,
        "missing",
        3,
        2,
        0,
        "generator = { replicas = 0, nodes = 2, threads = 1 }\nreference = { threads = 1 }\n",
        Some((port, &secret, "wait_for_nodes_seconds = 3.0\n")),
    );
    let mut trainer = Proc::ppo(&config);
    let _node = Proc::node_as(&config, "generator", "gen-lonely");
    let status = trainer.wait(120);
    let log = trainer.stderr();
    assert_eq!(status.code(), Some(2), "{log}");
    let error = error_line(&log);
    assert!(
        error.contains(&format!(
            "1 of 2 generator nodes joined the cluster at 127.0.0.1:{port} within 3s"
        )),
        "{log}"
    );
}
