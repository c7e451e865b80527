//! Atomic, verifiable checkpoint folders: `<root>/step-00000042/` with the stage's files and a
//! `manifest.json` listing each file's size and checksum (XXH3-64, named in the manifest).
//!
//! A checkpoint is written into a temporary sibling folder, every file and the folder are
//! fsynced, and only then is it renamed into place, so a crash or a full disk never leaves a
//! half-written checkpoint under a real name and never touches the previous ones. Resuming
//! takes the newest folder whose manifest verifies and reports the ones it skipped.

use crate::model::Model;
use crate::optim::AdamW;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tch::Tensor;
use xxhash_rust::xxh3::Xxh3;

const MANIFEST: &str = "manifest.json";
/// The checksum of every manifest this build writes: XXH3 64-bit (seed 0), hex. It runs at
/// memory speed on GB-sized weight files and catches truncation and bit rot, not tampering.
pub const CHECKSUM: &str = "xxh3-64";
/// The algorithm of a manifest that names none: the FNV-1a 64 of earlier builds.
const UNNAMED_CHECKSUM: &str = "fnv1a64";
/// Bytes read per call while checksumming.
const CHUNK: usize = 1 << 20;
const PREFIX: &str = "step-";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The stage's step count when the checkpoint was taken.
    pub step: u64,
    /// The checksum algorithm of every entry ([`CHECKSUM`]).
    pub algorithm: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Path relative to the checkpoint folder.
    pub path: String,
    pub bytes: u64,
    /// The contents' checksum under the manifest's `algorithm`, hex.
    pub checksum: String,
}

/// A checkpoint being written: files go into `dir`.
pub struct Staging {
    pub dir: PathBuf,
    target: PathBuf,
    step: u64,
}

/// The checkpoints of one stage under `root`, the newest `keep` kept.
pub struct Checkpoints {
    root: PathBuf,
    keep: usize,
}

impl Checkpoints {
    pub fn new(root: impl Into<PathBuf>, keep: usize) -> Checkpoints {
        Checkpoints {
            root: root.into(),
            keep: keep.max(1),
        }
    }

    /// Start checkpoint `step`: a fresh temporary folder to write the files into. On any
    /// failure [`Checkpoints::finish`] removes it, leaves the earlier checkpoints untouched,
    /// and its error says which one a resume would use.
    pub fn begin(&self, step: u64) -> Result<Staging> {
        let target = self.root.join(format!("{PREFIX}{step:08}"));
        self.stage(step)
            .map_err(|e| self.failed(&target, e))
            .map(|dir| Staging { dir, target, step })
    }

    /// A fresh, empty staging folder for checkpoint `step`.
    fn stage(&self, step: u64) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        // Staging folders of a process that died mid-write are garbage.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!(".{PREFIX}"))
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = self
            .root
            .join(format!(".{PREFIX}{step:08}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }

    /// The error of a checkpoint that could not be written (a full disk, a file-size
    /// limit...): it names the checkpoint and the one a resume would now use, untouched.
    fn failed(&self, target: &Path, e: Error) -> Error {
        let previous = match self.latest_valid().0 {
            Some((p, _)) => format!(
                "the previous checkpoint {} is intact (--resume continues from it)",
                p.display()
            ),
            None => "there is no earlier checkpoint".to_string(),
        };
        Error::Invalid(format!(
            "writing checkpoint {}: {e}; {previous}",
            target.display()
        ))
    }

    /// The second half: given how writing the files went, seal the folder (manifest,
    /// fsync, rename) or remove it; then drop checkpoints beyond `keep`.
    pub fn finish(&self, staging: Staging, written: Result<()>) -> Result<PathBuf> {
        let Staging { dir, target, step } = staging;
        let sealed = written
            .and_then(|_| write_manifest(&dir, step))
            .and_then(|_| sync_dir(&dir))
            .and_then(|_| self.replace(&dir, &target, step))
            .and_then(|_| sync_dir(&self.root));
        if let Err(e) = sealed {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(self.failed(&target, e));
        }
        for old in self.list().iter().rev().skip(self.keep) {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(target)
    }

    /// Puts the sealed `dir` at `target`. A checkpoint already there (a resumed run saving
    /// the same step again) is first renamed aside, out of [`Checkpoints::list`]'s sight,
    /// and removed only after the new one is in place: deleting it in place could be cut
    /// short by a kill and leave a half-deleted folder under a checkpoint's name.
    fn replace(&self, dir: &Path, target: &Path, step: u64) -> Result<()> {
        let displaced = self
            .root
            .join(format!(".{PREFIX}{step:08}.old-{}", std::process::id()));
        let replacing = target.exists();
        if replacing {
            let _ = std::fs::remove_dir_all(&displaced);
            std::fs::rename(target, &displaced).map_err(|e| Error::io(target, e))?;
        }
        std::fs::rename(dir, target).map_err(|e| Error::io(target, e))?;
        if replacing {
            let _ = std::fs::remove_dir_all(&displaced);
        }
        Ok(())
    }

    /// Finished checkpoint folders, oldest first.
    pub fn list(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix(PREFIX)?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, p)| p).collect()
    }

    /// The newest checkpoint that verifies, with a line for each newer one skipped.
    pub fn latest_valid(&self) -> (Option<(PathBuf, Manifest)>, Vec<String>) {
        let mut skipped = Vec::new();
        for dir in self.list().into_iter().rev() {
            match verify(&dir) {
                Ok(manifest) => return (Some((dir, manifest)), skipped),
                Err(e) => skipped.push(format!("skipped {}: {e}", dir.display())),
            }
        }
        (None, skipped)
    }
}

/// Write a model's weights and its optimizer's state as `<name>.safetensors` and
/// `<name>-optimizer.safetensors` into a checkpoint folder.
pub fn save_trainable(dir: &Path, name: &str, model: &Model, optimizer: &AdamW) -> Result<()> {
    crate::model::weights::write(&dir.join(format!("{name}.safetensors")), &model.trainable())?;
    crate::model::weights::write(
        &dir.join(format!("{name}-optimizer.safetensors")),
        &optimizer.state(),
    )
}

/// Restore what [`save_trainable`] wrote; errors name the file and the tensor.
pub fn load_trainable(
    dir: &Path,
    name: &str,
    model: &mut Model,
    optimizer: &mut AdamW,
) -> Result<()> {
    let path = dir.join(format!("{name}.safetensors"));
    let weights: Vec<(String, Tensor)> = crate::model::weights::read(&path)?.into_iter().collect();
    crate::model::load_weights(model, &weights).map_err(|e| Error::format(&path, e.to_string()))?;
    let path = dir.join(format!("{name}-optimizer.safetensors"));
    optimizer
        .load_state(&crate::model::weights::read(&path)?)
        .map_err(|e| Error::format(&path, e.to_string()))
}

/// The manifest of `dir` if every file it lists is there with its size and checksum.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let not_a_manifest =
        |e: serde_json::Error| Error::format(&path, format!("not a checkpoint manifest: {e}"));
    // The algorithm first, so that a manifest of another one is named as such rather
    // than failing on its fields or on every checksum.
    let value: serde_json::Value = serde_json::from_str(&text).map_err(not_a_manifest)?;
    let algorithm = match value.get("algorithm") {
        None => UNNAMED_CHECKSUM,
        Some(a) => a.as_str().unwrap_or("(not a string)"),
    };
    if algorithm != CHECKSUM {
        return Err(Error::format(
            &path,
            format!(
                "checksums are `{algorithm}`, this build verifies `{CHECKSUM}` only: not a valid checkpoint"
            ),
        ));
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(not_a_manifest)?;
    for entry in &manifest.files {
        let file = dir.join(&entry.path);
        let (bytes, sum) = checksum(&file)?;
        if bytes != entry.bytes || sum != entry.checksum {
            return Err(Error::format(
                &file,
                format!(
                    "corrupt: {bytes} bytes with checksum {sum}, the manifest says {} bytes with {}",
                    entry.bytes, entry.checksum
                ),
            ));
        }
    }
    Ok(manifest)
}

fn write_manifest(dir: &Path, step: u64) -> Result<()> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort_by(|a: &FileEntry, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        step,
        algorithm: CHECKSUM.into(),
        files,
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).expect("manifests serialise");
    let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(&path, e))
}

/// Every file under `dir` (fsynced), as manifest entries relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
            sync_dir(&path)?;
            continue;
        }
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        let (bytes, checksum) = checksum(&path)?;
        let relative = path.strip_prefix(root).expect("under root");
        out.push(FileEntry {
            path: relative.to_string_lossy().into_owned(),
            bytes,
            checksum,
        });
    }
    Ok(())
}

/// The size of the file at `path` and its [`CHECKSUM`] in hex, streamed in chunks.
fn checksum(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let (mut hasher, mut bytes) = (Xxh3::new(), 0u64);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, format!("{:016x}", hasher.digest())))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rlhf-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// `begin`, `fill`, `finish`: one whole checkpoint.
    fn commit(
        ckpts: &Checkpoints,
        step: u64,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let staging = ckpts.begin(step)?;
        let written = fill(&staging.dir);
        ckpts.finish(staging, written)
    }

    fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
        std::fs::write(dir.join(name), text).map_err(|e| Error::io(dir, e))
    }

    #[test]
    fn checksums_are_xxh3_64_streamed() {
        let dir = root("xxh3");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        // The published XXH3-64 (seed 0) of the empty input.
        assert_eq!(
            checksum(&dir.join("empty")).unwrap(),
            (0, "2d06800538d394c2".into())
        );
        // Streamed over several chunks, the same as the one-shot hash of the whole.
        let data: Vec<u8> = (0..2 * CHUNK + 12_345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(dir.join("big"), &data).unwrap();
        assert_eq!(
            checksum(&dir.join("big")).unwrap(),
            (
                data.len() as u64,
                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&data))
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_manifest_of_another_algorithm_is_not_valid() {
        let dir = root("algorithm");
        let ckpts = Checkpoints::new(&dir, 3);
        let path = commit(&ckpts, 1, |d| write(d, "w", "a")).unwrap();
        let manifest = verify(&path).unwrap();
        assert_eq!(manifest.algorithm, "xxh3-64");
        // A manifest of an earlier build: FNV-1a, its algorithm unnamed.
        let old =
            r#"{"step": 1, "files": [{"path": "w", "bytes": 1, "fnv1a64": "af63dc4c8601ec8c"}]}"#;
        std::fs::write(path.join(MANIFEST), old).unwrap();
        let e = verify(&path).unwrap_err().to_string();
        assert!(
            e.contains("checksums are `fnv1a64`, this build verifies `xxh3-64` only"),
            "{e}"
        );
        let other = r#"{"step": 1, "algorithm": "crc32", "files": []}"#;
        std::fs::write(path.join(MANIFEST), other).unwrap();
        let e = verify(&path).unwrap_err().to_string();
        assert!(e.contains("checksums are `crc32`"), "{e}");
        assert!(ckpts.latest_valid().0.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_newest_valid_checkpoint_wins_and_corruption_falls_back() {
        let dir = root("fallback");
        let ckpts = Checkpoints::new(&dir, 2);
        for step in [1, 2, 3] {
            commit(&ckpts, step, |d| {
                std::fs::create_dir_all(d.join("model")).unwrap();
                write(&d.join("model"), "w", &format!("weights {step}"))
            })
            .unwrap();
        }
        // Only the newest two are kept.
        let names: Vec<String> = ckpts
            .list()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step-00000002", "step-00000003"]);
        let (best, skipped) = ckpts.latest_valid();
        assert_eq!(best.unwrap().1.step, 3);
        assert!(skipped.is_empty());

        // Flip the newest one's weights: the previous checkpoint is used, and the skip says why.
        std::fs::write(dir.join("step-00000003/model/w"), "weights 9").unwrap();
        let (best, skipped) = ckpts.latest_valid();
        assert_eq!(best.unwrap().1.step, 2);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("model/w: corrupt"), "{skipped:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn saving_a_step_again_replaces_it_whole_and_leaves_nothing_aside() {
        let dir = root("replace");
        let ckpts = Checkpoints::new(&dir, 3);
        commit(&ckpts, 1, |d| {
            write(d, "w", "first")?;
            write(d, "extra", "only in the first")
        })
        .unwrap();
        // What a kill in the middle of a replacement leaves: the old folder set aside.
        let aside = dir.join(".step-00000001.old-999");
        std::fs::create_dir_all(&aside).unwrap();
        write(&aside, "w", "stale").unwrap();
        assert_eq!(
            ckpts.list().len(),
            1,
            "a set-aside folder is not a checkpoint"
        );

        let path = commit(&ckpts, 1, |d| write(d, "w", "second")).unwrap();
        assert_eq!(std::fs::read_to_string(path.join("w")).unwrap(), "second");
        assert!(!path.join("extra").exists());
        assert_eq!(ckpts.latest_valid().0.unwrap().1.step, 1);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step-00000001"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind_and_names_the_intact_checkpoint() {
        let dir = root("failed");
        let ckpts = Checkpoints::new(&dir, 3);
        commit(&ckpts, 1, |d| write(d, "w", "one")).unwrap();
        let e = commit(&ckpts, 2, |d| {
            write(d, "w", "half")?;
            Err(Error::Invalid("No space left on device".into()))
        })
        .unwrap_err()
        .to_string();
        let first = dir.join("step-00000001");
        for part in [
            format!(
                "writing checkpoint {}: ",
                dir.join("step-00000002").display()
            ),
            "No space left on device".to_string(),
            format!(
                "the previous checkpoint {} is intact (--resume continues from it)",
                first.display()
            ),
        ] {
            assert!(e.contains(&part), "no {part:?} in {e}");
        }
        assert_eq!(ckpts.list().len(), 1);
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "the staging folder was not removed");

        // A staging folder that cannot even be created says the same.
        let blocker = dir.join(format!(".step-00000003.tmp-{}", std::process::id()));
        std::fs::write(&blocker, "in the way").unwrap();
        let e = ckpts.begin(3).err().expect("begin fails").to_string();
        assert!(e.contains("writing checkpoint"), "{e}");
        assert!(e.contains("step-00000001 is intact"), "{e}");
        std::fs::remove_file(&blocker).unwrap();

        // The checkpoint named is the newest one that verifies, not a corrupt newer one.
        commit(&ckpts, 2, |d| write(d, "w", "two")).unwrap();
        std::fs::write(dir.join("step-00000002/w"), "tw0").unwrap();
        let e = commit(&ckpts, 3, |_| Err(Error::Invalid("disk full".into())))
            .unwrap_err()
            .to_string();
        assert!(e.contains("step-00000001 is intact"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
