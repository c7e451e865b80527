//! Defaults several sections share.

/// The device of a section that names none: every run works on a CPU-only machine.
pub(super) const DEFAULT_DEVICE: &str = "cpu";
/// How many of the newest training-state checkpoints a stage keeps (SFT, RM and PPO): the
/// newest, and the one before in case the newest cannot be read.
pub(super) const DEFAULT_KEEP_CHECKPOINTS: usize = 2;

/// Serde's default for every `device` field.
pub(super) fn default_device() -> String {
    DEFAULT_DEVICE.into()
}
