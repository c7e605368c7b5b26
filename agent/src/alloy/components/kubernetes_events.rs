//! `loki.source.kubernetes_events`: the schema, the arguments the watcher needs, the log line
//! Alloy makes of a core/v1 Event (logfmt or JSON, field names and order as Alloy's
//! `parseEvent`), and the delivered-events record that lets a restart skip what Loki already
//! has. Watching the API is the run-time side's job (`crate::k8s::events`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::alloy::args::{Args, Ctx, Schema, A, B};
use crate::alloy::value::Value;

/// Alloy's default `job_name`.
pub const DEFAULT_JOB: &str = "loki.source.kubernetes_events";

pub static SOURCE_KUBERNETES_EVENTS: Schema = Schema {
    attrs: &[
        ("forward_to", A::Required),
        ("job_name", A::Optional),
        ("namespaces", A::Optional),
        ("log_format", A::Optional),
    ],
    blocks: &[("client", B::One, &super::remote::CLIENT)],
};

/// `log_format`: Alloy's "logfmt" (default) or "json".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

/// One `loki.source.kubernetes_events` component as the watcher needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsSpec {
    /// Component id; also the `instance` label (Alloy uses the component id).
    pub id: String,
    pub job_name: String,
    /// Namespaces watched one by one; empty: all namespaces (one cluster-wide watch).
    pub namespaces: Vec<String>,
    pub log_format: LogFormat,
    /// `client { kubeconfig_file }`; otherwise in-cluster or `$KUBECONFIG`.
    pub kubeconfig_file: Option<PathBuf>,
}

/// Reads and validates the arguments (Alloy's `Validate`: non-empty job, known format).
pub fn spec(id: &str, args: &Args, ctx: &mut Ctx<'_>) -> EventsSpec {
    let job_name = args.string("job_name", DEFAULT_JOB, ctx);
    if job_name.is_empty() {
        ctx.error(
            args.pos_of("job_name"),
            "attribute \"job_name\": job_name must not be an empty string",
        );
    }
    let log_format = match args.string("log_format", "logfmt", ctx).as_str() {
        "logfmt" => LogFormat::Logfmt,
        "json" => LogFormat::Json,
        other => {
            ctx.error(
                args.pos_of("log_format"),
                format!("attribute \"log_format\": {other:?}: supported values of log_format are logfmt and json"),
            );
            LogFormat::Logfmt
        }
    };
    EventsSpec {
        id: id.to_string(),
        job_name,
        namespaces: args
            .get("namespaces", ctx, Value::to_string_list)
            .unwrap_or_default(),
        log_format,
        kubeconfig_file: args
            .blocks_named("client")
            .next()
            .and_then(|c| c.opt_string("kubeconfig_file", ctx))
            .map(PathBuf::from),
    }
}

/// The parts of a core/v1 Event the line is made of; empty strings and a zero count are
/// "not set", as in the API's Go types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFields {
    pub object_name: String,
    pub object_kind: String,
    pub object_namespace: String,
    pub object_api_version: String,
    pub object_resource_version: String,
    pub action: String,
    pub resource_version: String,
    pub reporting_instance: String,
    /// JSON `reportingComponent` (Go's `ReportingController`).
    pub reporting_controller: String,
    pub source_component: String,
    pub source_host: String,
    pub reason: String,
    pub type_: String,
    pub count: i32,
    pub message: String,
}

impl EventFields {
    /// `(key, value)` in Alloy's order; `None` value = field left out. `msg` is always there.
    fn pairs(&self) -> Vec<(&'static str, Field<'_>)> {
        let mut out = vec![("name", Field::Str(&self.object_name))];
        let opt = [
            ("kind", &self.object_kind),
            ("action", &self.action),
            ("objectAPIversion", &self.object_api_version),
            ("objectRV", &self.object_resource_version),
            ("eventRV", &self.resource_version),
            ("reportinginstance", &self.reporting_instance),
            ("reportingcontroller", &self.reporting_controller),
            ("sourcecomponent", &self.source_component),
            ("sourcehost", &self.source_host),
            ("reason", &self.reason),
            ("type", &self.type_),
        ];
        out.extend(
            opt.into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, Field::Str(v))),
        );
        if self.count != 0 {
            out.push(("count", Field::Int(self.count)));
        }
        out.push(("msg", Field::Msg(&self.message)));
        out
    }
}

enum Field<'a> {
    Str(&'a str),
    Int(i32),
    /// Quoted in logfmt (Go's `%q`), a plain string in JSON.
    Msg(&'a str),
}

/// The log line Alloy writes for an event, or `None` for an event without an involved object
/// (Alloy drops those with an error).
///
/// logfmt: `key=value ` for each field (every one followed by a space, the last too), the
/// message Go-quoted. json: one object with the same keys, sorted, encoded like Go's
/// `json.Marshal` (HTML characters escaped).
pub fn format_line(ev: &EventFields, format: LogFormat) -> Option<String> {
    if ev.object_name.is_empty() {
        return None;
    }
    let pairs = ev.pairs();
    let mut out = String::with_capacity(128 + ev.message.len());
    match format {
        LogFormat::Logfmt => {
            for (k, v) in pairs {
                out.push_str(k);
                out.push('=');
                match v {
                    Field::Str(s) => out.push_str(s),
                    Field::Int(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Field::Msg(s) => go_quote(s, &mut out),
                }
                out.push(' ');
            }
        }
        LogFormat::Json => {
            let sorted: BTreeMap<&str, Field<'_>> = pairs.into_iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, &mut out);
                out.push(':');
                match v {
                    Field::Str(s) | Field::Msg(s) => go_json_string(s, &mut out),
                    Field::Int(n) => {
                        let _ = write!(out, "{n}");
                    }
                }
            }
            out.push('}');
        }
    }
    Some(out)
}

/// Go's `strconv.Quote`: printable characters as they are, `\"` and `\\`, the C escapes, and
/// other non-printable characters as `\xNN` (ASCII), `\uNNNN` or `\UNNNNNNNN`.
pub fn go_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Go's `strconv.IsPrint`, approximated: not a control character, and no space other than
/// U+0020 (Go treats other spaces as unprintable), nor the common invisible format characters.
fn go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// A JSON string as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 as
/// `\u` escapes, `\b \f \n \r \t`, other control characters as `\u00NN`.
fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Which event versions reached Loki, per watched namespace ("" = all): event uid → the
/// resource version delivered. A restart skips an event whose current version is recorded
/// and sends every other one (new events and events updated since), so nothing delivered is
/// sent again and nothing new is skipped. Only events the API still lists are kept, so the
/// record is as large as the API's own event list (events expire after an hour by default).
///
/// Alloy keeps one timestamp per namespace instead and skips events not newer than it, which
/// can drop events sharing the last second; the uid/version record has no such gap.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Delivered {
    pub namespaces: BTreeMap<String, HashMap<String, String>>,
}

/// Why the delivered-events file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a delivered-events file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl Delivered {
    /// Reads the record; a missing file is a first start (empty record).
    pub fn load(path: &Path) -> Result<Delivered, StateError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| StateError::Parse {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Delivered::default()),
            Err(source) => Err(StateError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Writes the record atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let bytes = serde_json::to_vec(self).map_err(|source| StateError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Where a component keeps its delivered-events record: next to the positions file, one file
/// per component id (Alloy keeps one per component in its data path).
pub fn state_path(positions: &Path, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    positions
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("kubernetes_events.{safe}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventFields {
        EventFields {
            object_name: "web-7d9f".into(),
            object_kind: "Pod".into(),
            object_namespace: "shop".into(),
            object_api_version: "v1".into(),
            object_resource_version: "4711".into(),
            action: String::new(),
            resource_version: "4720".into(),
            reporting_instance: String::new(),
            reporting_controller: "kubelet".into(),
            source_component: "kubelet".into(),
            source_host: "node-1".into(),
            reason: "BackOff".into(),
            type_: "Warning".into(),
            count: 3,
            message: "Back-off restarting failed container app in pod \"web\" <x&y>".into(),
        }
    }

    #[test]
    fn logfmt_line_is_alloys() {
        assert_eq!(
            format_line(&sample(), LogFormat::Logfmt).as_deref(),
            Some(
                "name=web-7d9f kind=Pod objectAPIversion=v1 objectRV=4711 eventRV=4720 reportingcontroller=kubelet sourcecomponent=kubelet sourcehost=node-1 reason=BackOff type=Warning count=3 msg=\"Back-off restarting failed container app in pod \\\"web\\\" <x&y>\" "
            )
        );
        let bare = EventFields {
            object_name: "n".into(),
            message: "tab\there\u{0}\u{a0}é\u{1F600}".into(),
            ..Default::default()
        };
        assert_eq!(
            format_line(&bare, LogFormat::Logfmt).as_deref(),
            Some("name=n msg=\"tab\\there\\x00\\u00a0é\u{1F600}\" ")
        );
    }

    #[test]
    fn json_line_is_go_marshal_of_the_field_map() {
        assert_eq!(
            format_line(&sample(), LogFormat::Json).as_deref(),
            Some(
                r#"{"count":3,"eventRV":"4720","kind":"Pod","msg":"Back-off restarting failed container app in pod \"web\" \u003cx\u0026y\u003e","name":"web-7d9f","objectAPIversion":"v1","objectRV":"4711","reason":"BackOff","reportingcontroller":"kubelet","sourcecomponent":"kubelet","sourcehost":"node-1","type":"Warning"}"#
            )
        );
    }

    #[test]
    fn an_event_without_involved_object_makes_no_line() {
        assert_eq!(
            format_line(&EventFields::default(), LogFormat::Logfmt),
            None
        );
    }

    #[test]
    fn delivered_record_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = state_path(
            &dir.path().join("positions.yaml"),
            "mod.a/loki.source.kubernetes_events.ev",
        );
        assert_eq!(
            p.file_name().and_then(|n| n.to_str()),
            Some("kubernetes_events.mod.a_loki.source.kubernetes_events.ev.json")
        );
        assert_eq!(Delivered::load(&p).expect("load"), Delivered::default());
        let mut d = Delivered::default();
        d.namespaces
            .entry(String::new())
            .or_default()
            .insert("uid-1".into(), "17".into());
        d.save(&p).expect("save");
        assert_eq!(Delivered::load(&p).expect("load"), d);
        std::fs::write(&p, "not json").expect("write");
        assert!(matches!(Delivered::load(&p), Err(StateError::Parse { .. })));
    }
}
