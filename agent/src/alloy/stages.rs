//! `loki.process` stages as pure state machines over [`Entry`] values (spec §2.6): parsing
//! (cri, docker, json, logfmt, regex), labels, timestamps, output, filtering (drop, match,
//! limit), multiline joining, tenant and structured metadata.

pub mod decolorize;
pub mod gotemplate;
pub mod gotime;
pub mod json;
pub mod json_keys;
pub mod logfmt;
pub mod pack;
pub mod reads;
pub mod replace;
pub mod template;
pub mod timestamp;
pub mod truncate;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::DateTime;
use regex::Regex;

pub use json::JsonStage;
pub use logfmt::logfmt;
pub use replace::ReplaceStage;
pub use template::TemplateStage;
pub use timestamp::{OnFailure, TimeFormat, Timestamp};
pub use truncate::{TruncateRule, TruncateSource};

use super::pipeline::{Entry, Pipeline};
use super::relabel::Labels;
use super::shared_labels::LabelMemo;

/// The label Loki clients read the tenant from.
pub const TENANT_LABEL: &str = "__tenant_id__";

#[derive(Debug, Clone)]
pub enum Stage {
    Cri(Cri),
    Docker,
    Json(JsonStage),
    Decolorize,
    Replace(Box<ReplaceStage>),
    Template(Box<TemplateStage>),
    Truncate(Vec<TruncateRule>),
    Logfmt {
        mapping: Vec<(String, String)>,
        source: Option<String>,
    },
    Regex {
        expression: Regex,
        source: Option<String>,
        labels_from_groups: bool,
    },
    Labels {
        values: Vec<(String, String)>,
        from_structured_metadata: bool,
    },
    StaticLabels(Labels),
    LabelDrop(Vec<String>),
    LabelKeep(Vec<String>),
    StructuredMetadata {
        values: Vec<(String, String)>,
        regex: Option<Regex>,
    },
    Timestamp(Timestamp),
    Output {
        source: String,
    },
    Drop(DropStage),
    Match(Box<MatchStage>),
    Multiline(Multiline),
    Tenant(TenantFrom),
    Limit(Limit),
    Pack {
        labels: Vec<String>,
        ingest_timestamp: bool,
    },
    /// `loki.secretfilter`, run as a one-stage pipeline.
    SecretFilter(Box<super::components::secretfilter::SecretFilter>),
    /// `loki.echo` (its component id): logs each entry and consumes it.
    Echo(String),
}

#[derive(Debug, Clone)]
pub struct Cri {
    pub max_partial_lines: usize,
    pub max_partial_line_size: usize,
    pub max_partial_line_size_truncate: bool,
    /// Buffered `P` chunks per stream.
    pub partials: BTreeMap<String, Entry>,
}

impl Cri {
    pub fn new(max_partial_lines: usize, max_partial_line_size: usize, truncate: bool) -> Self {
        Cri {
            max_partial_lines,
            max_partial_line_size,
            max_partial_line_size_truncate: truncate,
            partials: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DropStage {
    pub source: Vec<String>,
    pub separator: String,
    pub expression: Option<Regex>,
    pub value: Option<String>,
    pub older_than: Option<Duration>,
    pub longer_than: Option<usize>,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct MatchStage {
    pub selector: Selector,
    pub drop: bool,
    pub reason: String,
    pub pipeline: Pipeline,
}

#[derive(Debug, Clone)]
pub struct Multiline {
    pub firstline: Regex,
    pub max_lines: usize,
    pub max_wait: Duration,
    pub trim_newlines: bool,
    /// Per stream: the entry being built, its line count and when it started waiting.
    pub buffers: BTreeMap<String, (Entry, usize, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TenantFrom {
    Label(String),
    Source(String),
    Value(String),
}

/// `stage.limit`: a token bucket like Go's `rate.Limiter` (`rate` tokens per second, at most
/// `burst`). With `drop` an entry without a token is dropped; without it the entry waits for
/// one: the stage stays pure and records when the entry may leave ([`Limit::ready_at`]), and the
/// agent holds the entry's output until then.
#[derive(Debug, Clone)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
    pub drop: bool,
    pub by_label_name: Option<String>,
    pub max_distinct_labels: usize,
    /// Buckets per label value ("" without `by_label_name`), recently used generation.
    pub buckets: BTreeMap<String, Bucket>,
    /// The generation before; a value found here moves back to `buckets`.
    pub old_buckets: BTreeMap<String, Bucket>,
    /// When the latest entry that had to wait may leave (Unix ns); taken by the pipeline.
    pub ready_at: Option<i64>,
}

/// One token bucket: tokens (negative while entries wait) as of `last` (Unix ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub last: i64,
}

/// `loki_process_dropped_lines_total{reason}` of `stage.limit` (Alloy's `ratelimitDropReason`).
pub const RATELIMIT_DROP_REASON: &str = "ratelimit_drop_stage";

/// Alloy raises `max_distinct_labels` to this when `by_label_name` is set.
pub const MIN_REASONABLE_MAX_DISTINCT_LABELS: usize = 10_000;

fn count_drop(dropped: &mut BTreeMap<String, u64>, reason: &str) {
    *dropped.entry(reason.to_string()).or_default() += 1;
}

impl Stage {
    /// Processes one entry, pushing what continues to `out`.
    pub fn process(
        &mut self,
        e: Entry,
        now: i64,
        out: &mut Vec<Entry>,
        dropped: &mut BTreeMap<String, u64>,
    ) {
        self.run(e, now, out, dropped, &mut LabelMemo::default())
    }

    /// [`Stage::process`] with the stage's memo of label sets it made (see [`LabelMemo`]):
    /// a stage that sets labels reuses the set it made for an earlier entry with the same
    /// labels and values instead of copying them again.
    pub fn run(
        &mut self,
        mut e: Entry,
        now: i64,
        out: &mut Vec<Entry>,
        dropped: &mut BTreeMap<String, u64>,
        memo: &mut LabelMemo,
    ) {
        match self {
            Stage::SecretFilter(f) => {
                if let Some(line) = f.redact(&e.line) {
                    e.line = line;
                }
                out.push(e);
            }
            Stage::Echo(id) => super::components::echo::echo(id, &e),
            Stage::Pack {
                labels,
                ingest_timestamp,
            } => {
                pack::pack(labels, *ingest_timestamp, &mut e, now);
                out.push(e);
            }
            Stage::Cri(c) => cri_memo(c, e, out, memo),
            Stage::Docker => {
                docker(&mut e);
                out.push(e);
            }
            Stage::Json(j) => match j.process(&mut e) {
                Ok(()) => out.push(e),
                // Alloy drops silently; the agent counts it so the loss is visible.
                Err(json::Malformed) if j.drop_malformed => count_drop(dropped, "drop_malformed"),
                Err(json::Malformed) => out.push(e),
            },
            Stage::Decolorize => {
                e.line = decolorize::decolorize(&e.line);
                out.push(e);
            }
            Stage::Replace(r) => {
                r.process(&mut e);
                out.push(e);
            }
            Stage::Template(t) => {
                t.process(&mut e);
                out.push(e);
            }
            Stage::Truncate(rules) => {
                truncate::truncate(rules, &mut e);
                out.push(e);
            }
            Stage::Logfmt { mapping, source } => {
                logfmt::extract(mapping, source.as_deref(), &mut e);
                out.push(e);
            }
            Stage::Regex {
                expression,
                source,
                labels_from_groups,
            } => {
                if let Some(s) = e.source(source.as_deref()) {
                    if let Some(c) = expression.captures(&s) {
                        for name in expression.capture_names().flatten() {
                            if let Some(m) = c.name(name) {
                                e.extracted.insert(name.to_string(), m.as_str().to_string());
                                if *labels_from_groups {
                                    e.labels.insert(name.to_string(), m.as_str().to_string());
                                }
                            }
                        }
                    }
                }
                out.push(e);
            }
            Stage::Labels {
                values,
                from_structured_metadata,
            } => {
                let pool = if *from_structured_metadata {
                    &e.structured_metadata
                } else {
                    &e.extracted
                };
                // (label, value) for every configured label whose source has a value.
                let found = || {
                    values.iter().filter_map(|(label, src)| {
                        let src = if src.is_empty() { label } else { src };
                        pool.get(src).map(|v| (label, v))
                    })
                };
                if !found().all(|(l, v)| e.labels.get(l) == Some(v)) {
                    e.labels = memo.apply(
                        &e.labels,
                        found().flat_map(|(l, v)| [l.as_str(), v.as_str()]),
                        |labels| {
                            for (l, v) in found() {
                                labels.insert(l.clone(), v.clone());
                            }
                        },
                    );
                }
                out.push(e);
            }
            Stage::StaticLabels(l) => {
                if !l.iter().all(|(k, v)| e.labels.get(k) == Some(v)) {
                    e.labels = memo.apply(&e.labels, std::iter::empty(), |labels| {
                        labels.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
                    });
                }
                out.push(e);
            }
            Stage::LabelDrop(names) => {
                if e.labels.keys().any(|k| names.contains(k)) {
                    e.labels = memo.apply(&e.labels, std::iter::empty(), |labels| {
                        labels.retain(|k, _| !names.contains(k));
                    });
                }
                out.push(e);
            }
            Stage::LabelKeep(names) => {
                if !e.labels.keys().all(|k| names.contains(k)) {
                    e.labels = memo.apply(&e.labels, std::iter::empty(), |labels| {
                        labels.retain(|k, _| names.contains(k));
                    });
                }
                out.push(e);
            }
            Stage::StructuredMetadata { values, regex } => {
                // Alloy's order: extracted values (by `values`, then by `regex`), then labels
                // (by `values` source name, then by `regex`), which move out of the labels.
                // Alloy appends duplicates; a name set twice keeps the later value here.
                for (name, src) in values.iter() {
                    let src = if src.is_empty() { name } else { src };
                    if let Some(v) = e.extracted.get(src) {
                        e.structured_metadata.insert(name.clone(), v.clone());
                    }
                }
                if let Some(re) = regex {
                    for (k, v) in &e.extracted {
                        if re.is_match(k) {
                            e.structured_metadata.insert(k.clone(), v.clone());
                        }
                    }
                }
                // Labels move only when one is named or matched: the set stays shared otherwise.
                let moves = values.iter().any(|(name, src)| {
                    e.labels
                        .contains_key(if src.is_empty() { name } else { src })
                }) || regex
                    .as_ref()
                    .is_some_and(|re| e.labels.keys().any(|k| re.is_match(k)));
                if !moves {
                    out.push(e);
                    return;
                }
                for (name, src) in values.iter() {
                    let src = if src.is_empty() { name } else { src };
                    if let Some(v) = e.labels.remove(src) {
                        e.structured_metadata.insert(name.clone(), v);
                    }
                }
                if let Some(re) = regex {
                    let moved: Vec<String> = e
                        .labels
                        .keys()
                        .filter(|k| re.is_match(k))
                        .cloned()
                        .collect();
                    for k in moved {
                        if let Some(v) = e.labels.remove(&k) {
                            e.structured_metadata.insert(k, v);
                        }
                    }
                }
                out.push(e);
            }
            Stage::Timestamp(t) => {
                t.process(&mut e, now);
                out.push(e);
            }
            Stage::Output { source } => {
                if let Some(v) = e.extracted.get(source.as_str()) {
                    e.line = v.clone();
                }
                out.push(e);
            }
            Stage::Drop(d) => {
                if d.matches(&e, now) {
                    count_drop(dropped, &d.reason);
                } else {
                    out.push(e);
                }
            }
            Stage::Match(m) => {
                if !m.selector.matches_memo(&e, memo) {
                    out.push(e);
                } else if m.drop {
                    count_drop(dropped, &m.reason);
                } else {
                    m.pipeline.process_into(e, now, out);
                }
            }
            Stage::Multiline(m) => m.process(e, now, out),
            Stage::Tenant(t) => {
                let v = match t {
                    TenantFrom::Label(l) => e.labels.get(l.as_str()).cloned(),
                    TenantFrom::Source(s) => e.extracted.get(s.as_str()).cloned(),
                    TenantFrom::Value(v) => Some(v.clone()),
                };
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    if e.labels.get(TENANT_LABEL) != Some(&v) {
                        e.labels.insert(TENANT_LABEL.into(), v);
                    }
                }
                out.push(e);
            }
            Stage::Limit(l) => {
                if !l.drop {
                    l.wait(now);
                    out.push(e);
                } else if l.allow(&e, now) {
                    out.push(e);
                } else {
                    count_drop(dropped, RATELIMIT_DROP_REASON);
                }
            }
        }
    }

    /// The smallest origin among entries this stage holds back.
    pub fn min_held(&self) -> Option<u64> {
        match self {
            Stage::Multiline(m) => m.buffers.values().map(|(e, _, _)| e.origin).min(),
            Stage::Cri(c) => c.partials.values().map(|e| e.origin).min(),
            Stage::Match(m) => m.pipeline.min_held(),
            _ => None,
        }
    }

    /// Releases held entries whose time is up (or all, when `force`).
    pub fn flush(&mut self, now: i64, force: bool) -> Vec<Entry> {
        match self {
            Stage::Multiline(m) => {
                let wait = m.max_wait.as_nanos() as i64;
                let due: Vec<String> = m
                    .buffers
                    .iter()
                    .filter(|(_, (_, _, t))| force || now - t >= wait)
                    .map(|(k, _)| k.clone())
                    .collect();
                let held: Vec<Entry> = due
                    .into_iter()
                    .filter_map(|k| m.buffers.remove(&k))
                    .map(|(e, _, _)| e)
                    .collect();
                held.into_iter().map(|e| m.finish(e)).collect()
            }
            Stage::Match(m) => m.pipeline.flush(now, force),
            Stage::Cri(c) if force => std::mem::take(&mut c.partials).into_values().collect(),
            _ => Vec::new(),
        }
    }
}

/// `stage.cri` without a memo (the unit tests').
#[cfg(test)]
fn cri(c: &mut Cri, e: Entry, out: &mut Vec<Entry>) {
    cri_memo(c, e, out, &mut LabelMemo::default())
}

/// `TS STREAM FLAGS CONTENT`; `P` chunks are held per stream until the `F` chunk. `memo`
/// keeps the label sets its `stream` label made.
fn cri_memo(c: &mut Cri, mut e: Entry, out: &mut Vec<Entry>, memo: &mut LabelMemo) {
    let Some(p) = crate_cri_split(&e.line) else {
        out.push(e); // not CRI: pass through unchanged
        return;
    };
    let (ts, stream, flags, content) = p;
    if let Some(t) = ts {
        e.ts = t;
    }
    if e.labels.get("stream") != Some(&stream) {
        e.labels = memo.apply(&e.labels, std::iter::once(stream.as_str()), |l| {
            l.insert("stream".into(), stream.clone());
        });
    }
    e.extracted.insert("stream".into(), stream);
    e.extracted.insert("flags".into(), flags.clone());
    e.extracted.insert("content".into(), content.clone());
    e.line = content;
    let partial = flags.split(':').any(|f| f == "P");
    if !partial && c.partials.is_empty() {
        // Nothing held and nothing to hold: no need for the stream key.
        out.push(e);
        return;
    }
    let key = e.stream_key();
    if let Some(mut held) = c.partials.remove(&key) {
        held.line.push_str(&e.line);
        if c.max_partial_line_size > 0
            && held.line.len() > c.max_partial_line_size
            && c.max_partial_line_size_truncate
        {
            let mut cut = c.max_partial_line_size;
            while !held.line.is_char_boundary(cut) {
                cut -= 1;
            }
            held.line.truncate(cut);
        }
        if partial {
            c.partials.insert(key, held);
        } else {
            held.extracted.insert("content".into(), held.line.clone());
            out.push(held);
        }
        return;
    }
    if partial {
        if c.partials.len() >= c.max_partial_lines {
            // At the cap every held partial goes out as its own entry.
            out.extend(std::mem::take(&mut c.partials).into_values());
        }
        c.partials.insert(key, e);
    } else {
        out.push(e);
    }
}

type CriParts = (Option<i64>, String, String, String);

fn crate_cri_split(line: &str) -> Option<CriParts> {
    let (ts, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(ts).ok()?.timestamp_nanos_opt();
    // The flags field may be missing: then it is a full line.
    let (flags, content) = match rest.split_once(' ') {
        Some((f, c)) if !f.is_empty() && f.split(':').all(|x| x == "P" || x == "F") => {
            (f.to_string(), c.to_string())
        }
        None if rest == "P" || rest == "F" => (rest.to_string(), String::new()),
        _ => ("F".to_string(), rest.to_string()),
    };
    Some((t, stream.to_string(), flags, content))
}

fn docker(e: &mut Entry) {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(&e.line)
    else {
        return;
    };
    let (Some(log), Some(stream)) = (
        o.get("log").and_then(|v| v.as_str()),
        o.get("stream").and_then(|v| v.as_str()),
    ) else {
        return;
    };
    if let Some(t) = o
        .get("time")
        .and_then(|v| v.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
    {
        e.ts = t;
    }
    if e.labels.get("stream").map(String::as_str) != Some(stream) {
        e.labels.insert("stream".into(), stream.into());
    }
    e.extracted.insert("stream".into(), stream.into());
    e.extracted.insert("output".into(), log.into());
    // Alloy keeps the trailing newline of `log`.
    e.line = log.to_string();
}

impl DropStage {
    /// All configured conditions must hold (AND), like Alloy.
    fn matches(&self, e: &Entry, now: i64) -> bool {
        let mut any = false;
        if self.expression.is_some() || self.value.is_some() {
            let v: std::borrow::Cow<'_, str> = match self.source.as_slice() {
                [] => e.line.as_str().into(),
                [one] => match e.extracted.get(one) {
                    Some(v) => v.as_str().into(),
                    None => return false,
                },
                many => {
                    let parts: Vec<Option<&String>> =
                        many.iter().map(|s| e.extracted.get(s)).collect();
                    if parts.iter().any(Option::is_none) {
                        return false;
                    }
                    parts
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(&self.separator)
                        .into()
                }
            };
            if let Some(re) = &self.expression {
                if !re.is_match(&v) {
                    return false;
                }
            }
            if let Some(want) = &self.value {
                if v.as_ref() != want.as_str() {
                    return false;
                }
            }
            any = true;
        } else if !self.source.is_empty() {
            // Only `source`: drop when every named value exists.
            if self.source.iter().any(|s| !e.extracted.contains_key(s)) {
                return false;
            }
            any = true;
        }
        if let Some(age) = self.older_than {
            if now - e.ts <= age.as_nanos() as i64 {
                return false;
            }
            any = true;
        }
        if let Some(n) = self.longer_than {
            if e.line.len() <= n {
                return false;
            }
            any = true;
        }
        any
    }
}

impl Multiline {
    fn finish(&self, mut e: Entry) -> Entry {
        if self.trim_newlines {
            while e.line.ends_with('\n') || e.line.ends_with('\r') {
                e.line.pop();
            }
        }
        e
    }

    fn process(&mut self, e: Entry, now: i64, out: &mut Vec<Entry>) {
        let key = e.stream_key();
        let first = self.firstline.is_match(&e.line);
        match self.buffers.remove(&key) {
            Some((mut held, n, t)) if !first => {
                held.line.push('\n');
                held.line.push_str(&e.line);
                if n + 1 >= self.max_lines {
                    out.push(self.finish(held));
                } else {
                    self.buffers.insert(key, (held, n + 1, t));
                }
            }
            prev => {
                if let Some((held, _, _)) = prev {
                    out.push(self.finish(held));
                }
                if first {
                    self.buffers.insert(key, (e, 1, now));
                } else {
                    // A continuation with no first line before it passes alone.
                    out.push(self.finish(e));
                }
            }
        }
    }
}

impl Limit {
    /// A limiter with Alloy's adjustment of `max_distinct_labels`.
    pub fn new(
        rate: f64,
        burst: f64,
        drop: bool,
        by_label_name: Option<String>,
        max_distinct_labels: usize,
    ) -> Self {
        let max_distinct_labels = if by_label_name.is_some() {
            max_distinct_labels.max(MIN_REASONABLE_MAX_DISTINCT_LABELS)
        } else {
            max_distinct_labels
        };
        Limit {
            rate,
            burst,
            drop,
            by_label_name,
            max_distinct_labels,
            buckets: BTreeMap::new(),
            old_buckets: BTreeMap::new(),
            ready_at: None,
        }
    }

    /// `drop = true`: takes a token if there is one (Go's `Allow`). Entries without the
    /// `by_label_name` label are not limited.
    fn allow(&mut self, e: &Entry, now: i64) -> bool {
        let key = match &self.by_label_name {
            Some(l) => match e.labels.get(l) {
                Some(v) => v.clone(),
                None => return true,
            },
            None => String::new(),
        };
        let (rate, burst) = (self.rate, self.burst);
        let b = self.bucket(key, now);
        let tokens = refill(b, now, rate, burst);
        if tokens >= 1.0 {
            *b = Bucket {
                tokens: tokens - 1.0,
                last: now,
            };
            true
        } else {
            // Go leaves the limiter untouched when it refuses.
            false
        }
    }

    /// `drop = false`: takes a token even if that leaves the bucket in debt, and records when
    /// the debt is paid (Go's `Wait`, which sleeps until then). Alloy only allows this without
    /// `by_label_name`, so there is one bucket.
    fn wait(&mut self, now: i64) {
        let (rate, burst) = (self.rate, self.burst);
        let b = self.bucket(String::new(), now);
        let tokens = refill(b, now, rate, burst) - 1.0;
        *b = Bucket { tokens, last: now };
        if tokens < 0.0 {
            // Go: Duration(float64(time.Second) * tokens / rate), truncated.
            let wait_ns = (1e9 * (-tokens) / rate) as i64;
            let at = now.saturating_add(wait_ns);
            self.ready_at = Some(self.ready_at.map_or(at, |r| r.max(at)));
        }
    }

    /// The bucket of a label value, created full. Like Alloy's generational map, the value
    /// that fills a generation turns it into the old one and a new one starts, so at most
    /// twice `max_distinct_labels` values are remembered and every value is still limited.
    fn bucket(&mut self, key: String, now: i64) -> &mut Bucket {
        let full = Bucket {
            tokens: self.burst,
            last: now,
        };
        if self.buckets.contains_key(&key) {
            return self.buckets.entry(key).or_insert(full);
        }
        let b = self.old_buckets.remove(&key).unwrap_or(full);
        let max = match self.by_label_name {
            Some(_) => self.max_distinct_labels.max(1),
            None => usize::MAX,
        };
        if self.buckets.len() + 1 >= max {
            self.old_buckets = std::mem::take(&mut self.buckets);
            return self.old_buckets.entry(key).or_insert(b);
        }
        self.buckets.entry(key).or_insert(b)
    }
}

/// Tokens of a bucket at `now`, refilled at `rate` per second up to `burst` (Go's `advance`:
/// a clock that went backwards counts as no time passed).
fn refill(b: &Bucket, now: i64, rate: f64, burst: f64) -> f64 {
    let elapsed = (now - b.last.min(now)) as f64 / 1e9;
    (b.tokens + elapsed * rate).min(burst)
}

/// A LogQL stream selector with optional line filters, for `stage.match`.
#[derive(Debug, Clone)]
pub struct Selector {
    pub matchers: Vec<(String, MatchOp, String, Option<Regex>)>,
    pub filters: Vec<(FilterOp, String, Option<Regex>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    NotRe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Contains,
    NotContains,
    Re,
    NotRe,
}

impl Selector {
    /// Parses `{a="x", b=~"y.*"} |= "err" !~ "debug"`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        let inner_end = s
            .find('}')
            .ok_or("selector must be a stream selector like {app=\"x\"}")?;
        let inner = s.strip_prefix('{').ok_or("selector must start with {")?;
        let body = &inner[..inner_end - 1];
        let mut matchers = Vec::new();
        let mut rest = body.trim();
        while !rest.is_empty() {
            let name_end = rest
                .find(['=', '!'])
                .ok_or_else(|| format!("invalid matcher in {s:?}"))?;
            let name = rest[..name_end].trim().to_string();
            let r = &rest[name_end..];
            let (op, r) = if let Some(r) = r.strip_prefix("=~") {
                (MatchOp::Re, r)
            } else if let Some(r) = r.strip_prefix("!~") {
                (MatchOp::NotRe, r)
            } else if let Some(r) = r.strip_prefix("!=") {
                (MatchOp::Neq, r)
            } else if let Some(r) = r.strip_prefix('=') {
                (MatchOp::Eq, r)
            } else {
                return Err(format!("invalid matcher operator in {s:?}"));
            };
            let (val, r) = take_quoted(r.trim_start())?;
            let re = match op {
                MatchOp::Re | MatchOp::NotRe => {
                    Some(Regex::new(&format!("^(?:{val})$")).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            matchers.push((name, op, val, re));
            rest = r.trim_start().trim_start_matches(',').trim_start();
        }
        if matchers.is_empty() {
            return Err("selector needs at least one label matcher".into());
        }
        let mut filters = Vec::new();
        let mut rest = s[inner_end + 1..].trim();
        while !rest.is_empty() {
            let (op, r) = if let Some(r) = rest.strip_prefix("|=") {
                (FilterOp::Contains, r)
            } else if let Some(r) = rest.strip_prefix("|~") {
                (FilterOp::Re, r)
            } else if let Some(r) = rest.strip_prefix("!=") {
                (FilterOp::NotContains, r)
            } else if let Some(r) = rest.strip_prefix("!~") {
                (FilterOp::NotRe, r)
            } else {
                return Err(format!(
                    "unsupported selector part {rest:?} (only |= != |~ !~ line filters)"
                ));
            };
            let (val, r) = take_quoted(r.trim_start())?;
            let re = match op {
                FilterOp::Re | FilterOp::NotRe => {
                    Some(Regex::new(&val).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            filters.push((op, val, re));
            rest = r.trim();
        }
        Ok(Selector { matchers, filters })
    }

    pub fn matches(&self, e: &Entry) -> bool {
        self.labels_match(&e.labels) && self.line_matches(e)
    }

    /// [`Selector::matches`] with the label matchers' result remembered per label set.
    fn matches_memo(&self, e: &Entry, memo: &mut LabelMemo) -> bool {
        memo.check(&e.labels, |l| self.labels_match(l)) && self.line_matches(e)
    }

    fn labels_match(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|(n, op, v, re)| {
            let have = labels.get(n).map(String::as_str).unwrap_or("");
            match op {
                MatchOp::Eq => have == v,
                MatchOp::Neq => have != v,
                MatchOp::Re => re.as_ref().is_some_and(|r| r.is_match(have)),
                MatchOp::NotRe => !re.as_ref().is_some_and(|r| r.is_match(have)),
            }
        })
    }

    fn line_matches(&self, e: &Entry) -> bool {
        self.filters.iter().all(|(op, v, re)| match op {
            FilterOp::Contains => e.line.contains(v.as_str()),
            FilterOp::NotContains => !e.line.contains(v.as_str()),
            FilterOp::Re => re.as_ref().is_some_and(|r| r.is_match(&e.line)),
            FilterOp::NotRe => !re.as_ref().is_some_and(|r| r.is_match(&e.line)),
        })
    }
}

fn take_quoted(s: &str) -> Result<(String, &str), String> {
    if let Some(r) = s.strip_prefix('`') {
        let end = r.find('`').ok_or("unterminated `")?;
        return Ok((r[..end].to_string(), &r[end + 1..]));
    }
    let r = s
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a quoted string at {s:?}"))?;
    let mut out = String::new();
    let mut it = r.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = it.next() {
                    out.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
            }
            '"' => return Ok((out, &r[i + 1..])),
            c => out.push(c),
        }
    }
    Err("unterminated string in selector".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: &str) -> Entry {
        let mut l = Labels::new();
        l.insert("job".into(), "x".into());
        Entry::new(l, 7, line)
    }

    fn run(stages: Vec<Stage>, lines: &[&str]) -> (Vec<Entry>, BTreeMap<String, u64>) {
        let mut p = Pipeline::new(stages);
        let mut out = Vec::new();
        for l in lines {
            out.extend(p.process(entry(l), 1_000_000_000_000));
        }
        out.extend(p.flush(i64::MAX, true));
        (out, p.dropped)
    }

    fn ex(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cri_table() {
        let cri_stage = || Stage::Cri(Cri::new(100, 0, false));
        // (lines, expected lines out)
        let cases: &[(&[&str], &[&str])] = &[
            (&["2024-05-01T10:00:00.123456789Z stdout F hi"], &["hi"]),
            (
                &[
                    "2024-05-01T10:00:00Z stdout P a",
                    "2024-05-01T10:00:01Z stdout P b",
                    "2024-05-01T10:00:02Z stdout F c",
                ],
                &["abc"],
            ),
            (
                &["2024-05-01T10:00:00Z stderr no flags here"],
                &["no flags here"],
            ),
            (&["not cri at all"], &["not cri at all"]),
            (
                &["2024-05-01T10:00:00+00:00 stdout F crio offset"],
                &["crio offset"],
            ),
        ];
        for (lines, want) in cases {
            let (out, _) = run(vec![cri_stage()], lines);
            assert_eq!(
                out.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
                *want,
                "{lines:?}"
            );
        }
        let (out, _) = run(vec![cri_stage()], &["2024-05-01T10:00:00.5Z stderr F x"]);
        assert_eq!(out[0].labels["stream"], "stderr");
        assert_eq!(out[0].ts, 1_714_557_600_500_000_000);
        // P chunks of different streams do not mix.
        let mut c = Cri::new(100, 0, false);
        let mut o = Vec::new();
        cri(&mut c, entry("2024-05-01T10:00:00Z stdout P a"), &mut o);
        cri(&mut c, entry("2024-05-01T10:00:00Z stderr F e"), &mut o);
        cri(&mut c, entry("2024-05-01T10:00:00Z stdout F b"), &mut o);
        assert_eq!(
            o.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
            ["e", "ab"]
        );
    }

    #[test]
    fn docker_keeps_trailing_newline() {
        let (out, _) = run(
            vec![Stage::Docker],
            &[
                r#"{"log":"hi\n","stream":"stderr","time":"2024-05-01T10:00:00Z"}"#,
                "plain",
            ],
        );
        assert_eq!(out[0].line, "hi\n");
        assert_eq!(out[0].labels["stream"], "stderr");
        assert_eq!(out[1].line, "plain");
    }

    #[test]
    fn json_logfmt_regex_extract() {
        let json = |exprs: &[(&str, &str)], drop_malformed: bool| {
            Stage::Json(JsonStage {
                expressions: exprs
                    .iter()
                    .map(|(n, e)| (n.to_string(), json::compile(n, e).unwrap()))
                    .collect(),
                source: None,
                drop_malformed,
            })
        };
        let (out, _) = run(
            vec![json(
                &[
                    ("level", ""),
                    ("user", "ctx.\"user-id\""),
                    ("first", "items[0]"),
                ],
                false,
            )],
            &[r#"{"level":"info","ctx":{"user-id":42},"items":["a"]}"#],
        );
        // The entry's labels are extracted values too, as in Alloy.
        assert_eq!(
            out[0].extracted,
            ex(&[
                ("level", "info"),
                ("user", "42"),
                ("first", "a"),
                ("job", "x")
            ])
        );
        // A line that is not JSON passes unless drop_malformed.
        let (out, d) = run(vec![json(&[("a", "")], true)], &["{bad", r#"{"a":1}"#]);
        assert_eq!(out.len(), 1);
        assert_eq!(d["drop_malformed"], 1);
        let (out, d) = run(vec![json(&[("a", "")], false)], &["{bad"]);
        assert_eq!((out.len(), d.len()), (1, 0));

        let lf = Stage::Logfmt {
            mapping: vec![("lvl".into(), "level".into()), ("msg".into(), "".into())],
            source: None,
        };
        let (out, _) = run(vec![lf], &[r#"level=warn msg="a b" x"#]);
        assert_eq!(
            out[0].extracted,
            ex(&[("lvl", "warn"), ("msg", "a b"), ("job", "x")])
        );

        let re = Stage::Regex {
            expression: Regex::new(r"^(?P<level>\w+) (?P<rest>.*)$").unwrap(),
            source: None,
            labels_from_groups: true,
        };
        let (out, _) = run(vec![re], &["ERROR boom"]);
        assert_eq!(
            out[0].extracted,
            ex(&[("level", "ERROR"), ("rest", "boom"), ("job", "x")])
        );
        assert_eq!(out[0].labels["level"], "ERROR");
    }

    #[test]
    fn label_stages_table() {
        let extract = Stage::Regex {
            expression: Regex::new(r"(?P<lvl>\w+)").unwrap(),
            source: None,
            labels_from_groups: false,
        };
        let cases: Vec<(Stage, &[(&str, &str)])> = vec![
            (
                Stage::Labels {
                    values: vec![("level".into(), "lvl".into()), ("lvl".into(), "".into())],
                    from_structured_metadata: false,
                },
                &[("job", "x"), ("level", "info"), ("lvl", "info")],
            ),
            (
                Stage::StaticLabels([("env".to_string(), "prod".to_string())].into()),
                &[("env", "prod"), ("job", "x")],
            ),
            (Stage::LabelDrop(vec!["job".into()]), &[]),
            (Stage::LabelKeep(vec!["nope".into()]), &[]),
            (
                Stage::Tenant(TenantFrom::Value("t1".into())),
                &[("__tenant_id__", "t1"), ("job", "x")],
            ),
            (
                Stage::Tenant(TenantFrom::Source("lvl".into())),
                &[("__tenant_id__", "info"), ("job", "x")],
            ),
            (
                Stage::Tenant(TenantFrom::Label("job".into())),
                &[("__tenant_id__", "x"), ("job", "x")],
            ),
        ];
        for (st, want) in cases {
            let name = format!("{st:?}");
            let (out, _) = run(vec![extract.clone(), st], &["info"]);
            let want: Labels = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(out[0].labels, want, "{name}");
        }
        let sm = Stage::StructuredMetadata {
            values: vec![("lvl".into(), "".into())],
            regex: None,
        };
        let to_label = Stage::Labels {
            values: vec![("lvl".into(), "".into())],
            from_structured_metadata: false,
        };
        let (out, _) = run(vec![extract, to_label, sm], &["info"]);
        assert!(!out[0].labels.contains_key("lvl"), "moved out of labels");
        assert_eq!(out[0].structured_metadata["lvl"], "info");
    }

    #[test]
    fn timestamp_and_output() {
        let extract = Stage::Regex {
            expression: Regex::new(r"^(?P<t>\S+) (?P<msg>.*)$").unwrap(),
            source: None,
            labels_from_groups: false,
        };
        let ts = |action| {
            Stage::Timestamp(Timestamp::new(
                "t".into(),
                vec![TimeFormat::new("RFC3339", None)],
                action,
            ))
        };
        let (out, _) = run(
            vec![
                extract.clone(),
                ts(OnFailure::Fudge),
                Stage::Output {
                    source: "msg".into(),
                },
            ],
            &["2024-05-01T10:00:00Z hello", "bad hi"],
        );
        assert_eq!(
            (out[0].ts, out[0].line.as_str()),
            (1_714_557_600_000_000_000, "hello")
        );
        assert_eq!(
            (out[1].ts, out[1].line.as_str()),
            (1_714_557_600_000_000_001, "hi"),
            "fudge: 1 ns after the stream's last time"
        );
        let (out, _) = run(
            vec![extract, ts(OnFailure::Skip)],
            &["2024-05-01T10:00:00Z hello", "bad hi"],
        );
        assert_eq!(out[1].ts, 7, "skip keeps the read time");
    }

    #[test]
    fn drop_table() {
        let d = |f: &dyn Fn(&mut DropStage)| {
            let mut s = DropStage {
                separator: ";".into(),
                reason: "drop_stage".into(),
                ..Default::default()
            };
            f(&mut s);
            Stage::Drop(s)
        };
        let cases: Vec<(Stage, &str, bool)> = vec![
            (
                d(&|s| s.expression = Some(Regex::new("debug").unwrap())),
                "a debug line",
                true,
            ),
            (
                d(&|s| s.expression = Some(Regex::new("debug").unwrap())),
                "info",
                false,
            ),
            (d(&|s| s.longer_than = Some(3)), "abcd", true),
            (d(&|s| s.longer_than = Some(3)), "abc", false),
            (
                d(&|s| s.older_than = Some(Duration::from_secs(1))),
                "old",
                true,
            ),
            (
                d(&|s| {
                    s.longer_than = Some(3);
                    s.expression = Some(Regex::new("x").unwrap());
                }),
                "abcd",
                false,
            ),
        ];
        for (st, line, dropped) in cases {
            let name = format!("{st:?} {line}");
            let (out, d) = run(vec![st], &[line]);
            assert_eq!(out.is_empty(), dropped, "{name}");
            assert_eq!(
                d.get("drop_stage").copied().unwrap_or(0),
                u64::from(dropped)
            );
        }
    }

    #[test]
    fn match_selects_and_runs_nested_stages() {
        let sel = Selector::parse(r#"{job="x", env!~"prod.*"} |= "err" != "ignore""#).unwrap();
        let m = Stage::Match(Box::new(MatchStage {
            selector: sel,
            drop: false,
            reason: "match_stage".into(),
            pipeline: Pipeline::new(vec![Stage::StaticLabels(
                [("hit".to_string(), "1".to_string())].into(),
            )]),
        }));
        let (out, _) = run(vec![m], &["an err", "fine", "err ignore"]);
        assert_eq!(
            out.iter()
                .map(|e| e.labels.contains_key("hit"))
                .collect::<Vec<_>>(),
            [true, false, false]
        );
        let drop = Stage::Match(Box::new(MatchStage {
            selector: Selector::parse(r#"{job=~"x|y"}"#).unwrap(),
            drop: true,
            reason: "match_stage".into(),
            pipeline: Pipeline::default(),
        }));
        let (out, d) = run(vec![drop], &["a"]);
        assert!(out.is_empty() && d["match_stage"] == 1);
        assert!(Selector::parse(r#"{a="b"} | json"#).is_err());
    }

    #[test]
    fn multiline_joins_stack_traces() {
        let ml = || {
            Stage::Multiline(Multiline {
                firstline: Regex::new(r"^\d{4}").unwrap(),
                max_lines: 3,
                max_wait: Duration::from_secs(3),
                trim_newlines: true,
                buffers: BTreeMap::new(),
            })
        };
        let (out, _) = run(
            vec![ml()],
            &["2024 boom", "  at a", "  at b", "2024 next", "  at c"],
        );
        assert_eq!(
            out.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
            ["2024 boom\n  at a\n  at b", "2024 next\n  at c"]
        );
        // max_lines cuts a long trace.
        let (out, _) = run(vec![ml()], &["2024 x", "1", "2", "3"]);
        assert_eq!(
            out.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
            ["2024 x\n1\n2", "3"]
        );
        // max_wait_time releases a held entry.
        let mut p = Pipeline::new(vec![ml()]);
        assert!(p.process(entry("2024 a"), 0).is_empty());
        assert!(p.flush(2_000_000_000, false).is_empty());
        assert_eq!(p.flush(3_000_000_000, false).len(), 1);
    }

    /// Runs `lines` (with optional `app` label values) through one limit stage, each at its
    /// own time in ms; returns per line: passed?, and the ready time (ms) it had to wait for.
    fn limit_run(l: Limit, lines: &[(i64, Option<&str>)]) -> (Vec<(bool, Option<i64>)>, u64) {
        let mut st = Stage::Limit(l);
        let mut dropped = BTreeMap::new();
        let mut res = Vec::new();
        for (ms, app) in lines {
            let mut e = entry("x");
            if let Some(a) = app {
                e.labels.insert("app".into(), a.to_string());
            }
            let mut out = Vec::new();
            st.process(e, ms * 1_000_000, &mut out, &mut dropped);
            let ready = match &mut st {
                Stage::Limit(l) => l.ready_at.take().map(|t| t / 1_000_000),
                _ => None,
            };
            res.push((out.len() == 1, ready));
        }
        (
            res,
            dropped.get(RATELIMIT_DROP_REASON).copied().unwrap_or(0),
        )
    }

    #[test]
    fn limit_drop_takes_a_token_or_drops_with_alloys_reason() {
        // rate 1/s, burst 2: two pass at once, the third is dropped, one more a second later.
        let (res, dropped) = limit_run(
            Limit::new(1.0, 2.0, true, None, 10),
            &[(0, None), (0, None), (0, None), (500, None), (1000, None)],
        );
        let passed: Vec<bool> = res.iter().map(|r| r.0).collect();
        assert_eq!(passed, [true, true, false, false, true]);
        assert!(res.iter().all(|r| r.1.is_none()), "dropping never waits");
        assert_eq!(dropped, 2);
    }

    #[test]
    fn limit_without_drop_passes_everything_and_says_when_each_may_leave() {
        // Go's rate.Limiter{limit: 10, burst: 5}.Wait: five at once, then one per 100 ms.
        let lines: Vec<(i64, Option<&str>)> = vec![(0, None); 25];
        let (res, dropped) = limit_run(Limit::new(10.0, 5.0, false, None, 10), &lines);
        let want: Vec<(bool, Option<i64>)> = (0..25)
            .map(|i| (true, (i >= 5).then(|| (i as i64 - 4) * 100)))
            .collect();
        assert_eq!(res, want);
        assert_eq!(dropped, 0);
        // Entries that arrive when their token is there do not wait; the debt is paid by time.
        let (res, _) = limit_run(
            Limit::new(10.0, 1.0, false, None, 10),
            &[(0, None), (0, None), (100, None), (350, None), (350, None)],
        );
        assert_eq!(
            res,
            [
                (true, None),
                (true, Some(100)),
                (true, Some(200)),
                (true, None),
                (true, Some(450)),
            ]
        );
    }

    #[test]
    fn limit_by_label_name_keeps_a_bucket_per_value_and_passes_unlabelled_entries() {
        let (res, dropped) = limit_run(
            Limit::new(1.0, 1.0, true, Some("app".into()), 10),
            &[
                (0, Some("a")),
                (0, Some("a")),
                (0, Some("b")),
                (0, None),
                (0, None),
                (0, Some("b")),
            ],
        );
        let passed: Vec<bool> = res.iter().map(|r| r.0).collect();
        assert_eq!(passed, [true, false, true, true, true, false]);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn limit_max_distinct_labels_is_raised_and_old_generations_still_limit() {
        assert_eq!(
            Limit::new(1.0, 1.0, true, Some("app".into()), 5).max_distinct_labels,
            MIN_REASONABLE_MAX_DISTINCT_LABELS
        );
        assert_eq!(Limit::new(1.0, 1.0, true, None, 5).max_distinct_labels, 5);
        let mut l = Limit::new(1.0, 1.0, true, Some("app".into()), 0);
        l.max_distinct_labels = 2;
        // a and b fill a generation; a found in the old one keeps its empty bucket; c, a value
        // beyond the limit, is limited too (it starts a new generation, it is not waved through).
        let (res, _) = limit_run(
            l,
            &[
                (0, Some("a")),
                (0, Some("b")),
                (0, Some("a")),
                (0, Some("c")),
                (0, Some("c")),
            ],
        );
        let passed: Vec<bool> = res.iter().map(|r| r.0).collect();
        assert_eq!(passed, [true, true, false, true, false]);
    }

    /// `stage.structured_metadata` as Alloy's structured_metadata.go: extracted values by
    /// `values` (name = source) and by `regex` (on extracted names) are copied; labels named by
    /// a `values` source or matching `regex` move out of the stream labels.
    #[test]
    fn structured_metadata_table() {
        let extract = Stage::Regex {
            expression: Regex::new(r"(?P<lvl>\w+) (?P<trace_id>\w+)").unwrap(),
            source: None,
            labels_from_groups: false,
        };
        let labels = Stage::StaticLabels(
            [("pod", "p1"), ("tmp_a", "1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        type Case<'a> = (
            Vec<(&'a str, &'a str)>,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
        );
        let cases: Vec<Case> = vec![
            // (values, regex, structured metadata, labels left)
            (
                vec![("lvl", "")],
                None,
                &[("lvl", "info")],
                &["job", "pod", "tmp_a"],
            ),
            (
                vec![("level", "lvl")],
                None,
                &[("level", "info")],
                &["job", "pod", "tmp_a"],
            ),
            (vec![("pod", "")], None, &[("pod", "p1")], &["job", "tmp_a"]),
            (vec![("p", "pod")], None, &[("p", "p1")], &["job", "tmp_a"]),
            (
                vec![],
                Some("^tr"),
                &[("trace_id", "abc")],
                &["job", "pod", "tmp_a"],
            ),
            (vec![], Some("^tmp_"), &[("tmp_a", "1")], &["job", "pod"]),
            (
                vec![("nope", "")],
                Some("^zzz"),
                &[],
                &["job", "pod", "tmp_a"],
            ),
        ];
        for (values, regex, want_sm, want_labels) in cases {
            let st = Stage::StructuredMetadata {
                values: values
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                regex: regex.map(|r| Regex::new(r).unwrap()),
            };
            let (out, _) = run(vec![extract.clone(), labels.clone(), st], &["info abc"]);
            let sm: Vec<(&str, &str)> = out[0]
                .structured_metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(sm, want_sm, "{values:?} {regex:?}");
            let left: Vec<&str> = out[0].labels.keys().map(String::as_str).collect();
            assert_eq!(left, want_labels, "{values:?} {regex:?}");
        }
    }
}
