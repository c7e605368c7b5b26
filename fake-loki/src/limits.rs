//! Loki's per-tenant limits, read from YAML with Loki's own key names.
//!
//! The file holds a `limits_config:` block (as in Loki's config file) and an optional
//! `overrides:` map of tenant → partial limits (as in Loki's runtime config), so users
//! can reuse their real Loki settings. Sizes accept Loki's forms (`256KB`, `6MB`, `1MiB`,
//! plain bytes; base 2), durations Prometheus' forms (`7d`, `1w`, `168h`, `1h30m`).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::Error;

/// Service-name discovery labels, in Loki's default order.
pub const DEFAULT_DISCOVER_SERVICE_NAME: &[&str] = &[
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

/// The limits that change what fake-loki accepts or returns. Defaults are Loki 3.7's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub ingestion_rate_strategy: String,
    pub ingestion_rate_mb: f64,
    pub ingestion_burst_size_mb: f64,
    #[serde(deserialize_with = "de_bytes")]
    pub max_line_size: u64,
    pub max_line_size_truncate: bool,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_label_names_per_series: usize,
    pub reject_old_samples: bool,
    #[serde(deserialize_with = "de_duration")]
    pub reject_old_samples_max_age: i64,
    #[serde(deserialize_with = "de_duration")]
    pub creation_grace_period: i64,
    pub max_streams_per_user: usize,
    pub max_global_streams_per_user: usize,
    #[serde(deserialize_with = "de_bytes")]
    pub per_stream_rate_limit: u64,
    #[serde(deserialize_with = "de_bytes")]
    pub per_stream_rate_limit_burst: u64,
    pub allow_structured_metadata: bool,
    #[serde(deserialize_with = "de_bytes")]
    pub max_structured_metadata_size: u64,
    pub max_structured_metadata_entries_count: usize,
    pub max_entries_limit_per_query: usize,
    pub max_query_series: usize,
    #[serde(deserialize_with = "de_duration")]
    pub max_query_length: i64,
    pub discover_service_name: Vec<String>,
    pub discover_log_levels: bool,
    pub increment_duplicate_timestamp: bool,
    /// How long the compactor keeps a tenant's entries (0 = forever, Loki's default).
    #[serde(deserialize_with = "de_duration")]
    pub retention_period: i64,
    /// Per-stream retention rules; the matching rule with the highest priority wins.
    pub retention_stream: Vec<StreamRetention>,
    /// Queries never look further back than this (0 = no limit): `start` is clamped.
    #[serde(deserialize_with = "de_duration")]
    pub max_query_lookback: i64,
    /// Accepted for compatibility; stream sharding is not reproduced (see README).
    pub shard_streams: Option<serde_norway::Value>,
}

const NS_PER_SEC: i64 = 1_000_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ingestion_rate_strategy: "global".into(),
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            max_line_size: 256 * 1024,
            max_line_size_truncate: false,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_label_names_per_series: 15,
            reject_old_samples: true,
            reject_old_samples_max_age: 7 * 24 * 3600 * NS_PER_SEC,
            creation_grace_period: 10 * 60 * NS_PER_SEC,
            max_streams_per_user: 0,
            max_global_streams_per_user: 5000,
            per_stream_rate_limit: 3 << 20,
            per_stream_rate_limit_burst: 15 << 20,
            allow_structured_metadata: true,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries_count: 128,
            max_entries_limit_per_query: 5000,
            max_query_series: 500,
            max_query_length: 721 * 3600 * NS_PER_SEC,
            discover_service_name: DEFAULT_DISCOVER_SERVICE_NAME
                .iter()
                .map(|s| s.to_string())
                .collect(),
            discover_log_levels: true,
            increment_duplicate_timestamp: false,
            retention_period: 0,
            retention_stream: Vec::new(),
            max_query_lookback: 0,
            shard_streams: None,
        }
    }
}

impl Limits {
    /// Ingestion rate in bytes per second.
    pub fn ingestion_rate_bytes(&self) -> f64 {
        self.ingestion_rate_mb * 1_048_576.0
    }

    /// Ingestion burst in bytes.
    pub fn ingestion_burst_bytes(&self) -> f64 {
        self.ingestion_burst_size_mb * 1_048_576.0
    }

    /// The active-stream limit a single-ingester Loki applies (0 = unlimited).
    pub fn max_streams(&self) -> usize {
        match (self.max_streams_per_user, self.max_global_streams_per_user) {
            (0, g) => g,
            (l, 0) => l,
            (l, g) => l.min(g),
        }
    }
}

/// One `retention_stream` rule: streams matching `selector` keep entries for `period`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRetention {
    pub selector: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(deserialize_with = "de_duration")]
    pub period: i64,
    /// Compiled from `selector` when the limits are validated, as Loki does.
    #[serde(skip)]
    pub matchers: Vec<crate::logql::Matcher>,
}

impl StreamRetention {
    /// A validated rule (as if read from a limits file).
    pub fn new(selector: &str, priority: i64, period_ns: i64) -> Result<Self, String> {
        let mut l = Limits {
            retention_stream: vec![StreamRetention {
                selector: selector.to_string(),
                priority,
                period: period_ns,
                matchers: Vec::new(),
            }],
            ..Limits::default()
        };
        l.validate()?;
        Ok(l.retention_stream.remove(0))
    }
}

impl PartialEq for StreamRetention {
    fn eq(&self, other: &Self) -> bool {
        // The matchers are derived from the selector.
        (self.selector.as_str(), self.priority, self.period)
            == (other.selector.as_str(), other.priority, other.period)
    }
}

impl Limits {
    /// Loki's `Limits.Validate` for what fake-loki reads: stream rules need a valid
    /// selector and a period of at least 24h. Compiles the rules' matchers.
    pub fn validate(&mut self) -> Result<(), String> {
        for rule in &mut self.retention_stream {
            rule.matchers = crate::logql::parse_selector(&rule.selector)
                .map_err(|e| format!("invalid labels matchers: {}", e.message))?;
            if rule.period < 24 * 3600 * NS_PER_SEC {
                return Err(format!(
                    "retention period must be >= 24h was {}",
                    model_duration(rule.period)
                ));
            }
        }
        Ok(())
    }
}

/// Prometheus' `model.Duration.String()`: largest units first (`y`, `w`, `d`, `h`, `m`,
/// `s`, `ms`), zero parts left out, `0s` for zero.
pub fn model_duration(ns: i64) -> String {
    let mut ms = ns / 1_000_000;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
        ms = -ms;
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Default limits plus per-tenant overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsConfig {
    pub defaults: Limits,
    pub overrides: HashMap<String, Limits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default)]
    limits_config: Option<serde_norway::Value>,
    #[serde(default)]
    overrides: HashMap<String, serde_norway::Value>,
}

impl LimitsConfig {
    /// Reads a limits file (see the module docs).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Self::from_yaml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses limits YAML.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let file: LimitsFile =
            serde_norway::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let base = file
            .limits_config
            .unwrap_or(serde_norway::Value::Mapping(Default::default()));
        let mut defaults: Limits = serde_norway::from_value(base.clone())
            .map_err(|e| Error::Config(format!("limits_config: {e}")))?;
        defaults
            .validate()
            .map_err(|e| Error::Config(format!("limits_config: {e}")))?;
        let mut overrides = HashMap::new();
        for (tenant, partial) in file.overrides {
            // An override starts from the tenant-less limits, as in Loki.
            let merged = merge_yaml(base.clone(), partial);
            let mut limits: Limits = serde_norway::from_value(merged)
                .map_err(|e| Error::Config(format!("overrides.{tenant}: {e}")))?;
            limits
                .validate()
                .map_err(|e| Error::Config(format!("invalid override for tenant {tenant}: {e}")))?;
            overrides.insert(tenant, limits);
        }
        Ok(LimitsConfig {
            defaults,
            overrides,
        })
    }

    /// The limits in force for `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> &Limits {
        self.overrides.get(tenant).unwrap_or(&self.defaults)
    }
}

fn merge_yaml(base: serde_norway::Value, over: serde_norway::Value) -> serde_norway::Value {
    match (base, over) {
        (serde_norway::Value::Mapping(mut b), serde_norway::Value::Mapping(o)) => {
            for (k, v) in o {
                b.insert(k, v);
            }
            serde_norway::Value::Mapping(b)
        }
        (_, o) => o,
    }
}

/// Parses a byte size: plain number, or a number with `B`, `KB`, `MB`, `GB`, `TB`
/// (base 2, as Loki's flagext.ByteSize) or `KiB`, `MiB`, `GiB`, `TiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    Ok((n * mult) as u64)
}

/// Parses a Prometheus-style duration (`1w2d3h4m5s6ms`, `0`) into nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ns: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "w" => 7.0 * 86400e9,
            "y" => 365.0 * 86400e9,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total = total.saturating_add((n * unit_ns) as i64);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    // YAML `0` is an integer; Go's YAML decoder hands it to the duration parser as "0".
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        S(String),
    }
    let s = match Raw::deserialize(d)? {
        Raw::N(n) => n.to_string(),
        Raw::S(s) => s,
    };
    parse_duration(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("256KB").unwrap(), 262_144);
        assert_eq!(parse_bytes("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("1XB").is_err());
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86_400 * NS_PER_SEC);
        assert_eq!(parse_duration("1w").unwrap(), 7 * 86_400 * NS_PER_SEC);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400 * NS_PER_SEC);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert!(parse_duration("10").is_err());
        let l: Limits =
            serde_norway::from_str("max_query_length: 0\nretention_period: 1d").unwrap();
        assert_eq!(
            (l.max_query_length, l.retention_period),
            (0, 86_400 * NS_PER_SEC)
        );
        assert!(serde_norway::from_str::<Limits>("retention_period: 5").is_err());
    }

    #[test]
    fn reads_loki_keys_and_overrides() {
        let cfg = LimitsConfig::from_yaml(
            "limits_config:\n  max_line_size: 1KB\n  reject_old_samples_max_age: 1h\n  ingestion_rate_mb: 1\n\
             overrides:\n  big:\n    max_line_size: 4KB\n",
        )
        .unwrap();
        assert_eq!(cfg.for_tenant("x").max_line_size, 1024);
        assert_eq!(cfg.for_tenant("big").max_line_size, 4096);
        // Overrides inherit the file's limits_config, not Loki's defaults.
        assert_eq!(cfg.for_tenant("big").ingestion_rate_mb, 1.0);
        assert_eq!(cfg.for_tenant("big").max_label_names_per_series, 15);
    }

    #[test]
    fn retention_keys_and_validation() {
        let cfg = LimitsConfig::from_yaml(
            "limits_config:\n  retention_period: 30d\n  max_query_lookback: 30d\n\
             overrides:\n  dev:\n    retention_period: 7d\n    retention_stream:\n\
             \x20     - selector: '{namespace=\"debug\"}'\n        priority: 2\n        period: 24h\n",
        )
        .unwrap();
        assert_eq!(
            cfg.for_tenant("x").retention_period,
            30 * 86_400 * NS_PER_SEC
        );
        let dev = cfg.for_tenant("dev");
        assert_eq!(dev.retention_period, 7 * 86_400 * NS_PER_SEC);
        assert_eq!(dev.max_query_lookback, 30 * 86_400 * NS_PER_SEC);
        assert_eq!(dev.retention_stream[0].matchers.len(), 1);
        let err = LimitsConfig::from_yaml(
            "overrides:\n  \"29\":\n    retention_stream:\n      - selector: '{app=\"foo\"}'\n        period: 5h\n        priority: 10\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "config: invalid override for tenant 29: retention period must be >= 24h was 5h"
        );
        assert!(LimitsConfig::from_yaml(
            "limits_config:\n  retention_stream:\n    - selector: 'app=\"foo\"'\n      period: 48h\n"
        )
        .unwrap_err()
        .to_string()
        .contains("invalid labels matchers"));
        assert_eq!(model_duration(24 * 3600 * NS_PER_SEC), "1d");
        assert_eq!(model_duration(90 * 60 * NS_PER_SEC), "1h30m");
        assert_eq!(model_duration(0), "0s");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(LimitsConfig::from_yaml("limits_config:\n  max_line_sise: 1KB\n").is_err());
    }
}
