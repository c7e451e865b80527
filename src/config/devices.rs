//! `[devices]`: what each device may hold, for the memory plan (`rlhf plan`, and the check
//! every training command runs at start). Without an entry, a CPU has the machine's
//! physical memory and a CUDA device its total memory as the driver reports it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[devices]`, e.g. `memory = { cpu = "20GiB", "cuda:0" = "80GiB" }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// Memory budget per device (`cpu`, `cuda` = `cuda:0`, `cuda:N`): a size such as
    /// `"20GiB"`, `"80GB"`, `"512MiB"` or a number of bytes.
    #[serde(default)]
    pub memory: BTreeMap<String, String>,
}

impl DevicesConfig {
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
        for (device, size) in &self.memory {
            crate::device::parse_device(device).map_err(|e| format!("devices.memory: {e}"))?;
            parse_size(size).map_err(|e| format!("devices.memory.\"{device}\": {e}"))?;
        }
        let mut seen = BTreeMap::new();
        for device in self.memory.keys() {
            if let Some(other) = seen.insert(canonical_device(device), device) {
                return Err(format!(
                    "devices.memory: `{other}` and `{device}` are the same device"
                ));
            }
        }
        Ok(())
    }

    /// The configured budget of `device` in bytes (`cuda` and `cuda:0` are one device).
    pub fn memory(&self, device: &str) -> Option<u64> {
        let device = canonical_device(device);
        self.memory
            .iter()
            .find(|(name, _)| canonical_device(name) == device)
            .and_then(|(_, size)| parse_size(size).ok())
    }
}

/// `cuda` is `cuda:0`; every other name is itself.
pub fn canonical_device(device: &str) -> String {
    match device {
        "cuda" => "cuda:0".into(),
        other => other.into(),
    }
}

/// A memory size: a number (decimals allowed) and an optional unit, `B`, `KB`/`MB`/`GB`/
/// `TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), with or without a
/// space: `"80GB"`, `"20 GiB"`, `"1.5GiB"`, `"4096"`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    let bad = || {
        format!(
            "`{text}` is not a size: expected a number and a unit such as \"80GiB\" or \"512MB\""
        )
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match unit {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = (value * scale).round();
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` must be at least one byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_both_unit_systems() {
        for (text, bytes) in [
            ("4096", 4096),
            ("80GB", 80_000_000_000),
            ("20 GiB", 20 << 30),
            ("1.5GiB", 3 << 29),
            ("512MiB", 512 << 20),
            ("2kB", 2000),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text).unwrap(), bytes, "{text}");
        }
        for bad in ["", "GiB", "80 gigs", "-1GB", "0", "1.2.3GB", "80gib"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn budgets_are_looked_up_by_device_and_checked() {
        let config: DevicesConfig =
            toml::from_str("memory = { cpu = \"20GiB\", cuda = \"80GB\" }").unwrap();
        config.validate().unwrap();
        assert_eq!(config.memory("cpu"), Some(20 << 30));
        assert_eq!(config.memory("cuda:0"), Some(80_000_000_000));
        assert_eq!(config.memory("cuda:1"), None);
        for (text, expected) in [
            (
                "memory = { gpu = \"1GB\" }",
                "devices.memory: unknown device `gpu`",
            ),
            (
                "memory = { cpu = \"lots\" }",
                "devices.memory.\"cpu\": `lots` is not a size",
            ),
            (
                "memory = { cuda = \"1GB\", \"cuda:0\" = \"2GB\" }",
                "devices.memory: `cuda` and `cuda:0` are the same device",
            ),
        ] {
            let config: DevicesConfig = toml::from_str(text).unwrap();
            let err = config.validate().unwrap_err();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
        assert!(toml::from_str::<DevicesConfig>("memroy = {}").is_err());
    }
}
