//! Pipeline execution for one entry: line filters, parsers, label filters, formatters,
//! with Loki's label categories (stream > structured metadata > parsed) and `__error__`.

use std::borrow::Cow;

use loki_wire::LabelSet;

use super::ast::*;
use super::jsonwalk::{lookup, object_each, string_value, unescape, Kind, Step, WalkError};

/// Where a label came from; the derive order is the folding precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cat {
    Stream,
    Meta,
    Parsed,
}

/// Label pairs in name order.
pub type Pairs = Vec<(String, String)>;

pub const ERROR_LABEL: &str = "__error__";
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// The labels of one entry while the pipeline runs.
#[derive(Debug, Clone)]
pub struct Lbs {
    items: Vec<(String, String, Cat)>,
    stream_names: Vec<String>,
    pub err: Option<String>,
    pub details: Option<String>,
}

impl Lbs {
    pub fn new(stream: &LabelSet, meta: &[(String, String)]) -> Lbs {
        let mut items: Vec<(String, String, Cat)> = stream
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string(), Cat::Stream))
            .collect();
        for (k, v) in meta {
            items.push((k.clone(), v.clone(), Cat::Meta));
        }
        Lbs {
            stream_names: stream.iter().map(|(k, _)| k.to_string()).collect(),
            items,
            err: None,
            details: None,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            ERROR_LABEL => return self.err.as_deref(),
            ERROR_DETAILS_LABEL => return self.details.as_deref(),
            _ => {}
        }
        self.items
            .iter()
            .filter(|(k, _, _)| k == name)
            .min_by_key(|(_, _, c)| *c)
            .map(|(_, v, _)| v.as_str())
    }

    /// Whether the original stream labels have `name` (the `_extracted` rule).
    fn base_has(&self, name: &str) -> bool {
        self.stream_names.iter().any(|k| k == name)
    }

    pub fn has_err(&self) -> bool {
        self.err.is_some()
    }

    pub fn set_err(&mut self, err: &str, details: Option<String>) {
        if self.err.is_none() {
            self.err = Some(err.to_string());
            self.details = details;
        }
    }

    /// Adds a label extracted by a parser, renaming it when it collides with a stream label.
    pub fn set_parsed(&mut self, name: &str, value: &str) {
        let name = if self.base_has(name) {
            Cow::Owned(format!("{name}_extracted"))
        } else {
            Cow::Borrowed(name)
        };
        if let Some(it) = self
            .items
            .iter_mut()
            .find(|(k, _, c)| *k == *name && *c == Cat::Parsed)
        {
            it.1 = value.to_string();
        } else {
            self.items
                .push((name.into_owned(), value.to_string(), Cat::Parsed));
        }
    }

    /// Sets a label wherever it lives (label_format), or adds it as parsed.
    pub fn set_any(&mut self, name: &str, value: &str) {
        match name {
            ERROR_LABEL => {
                self.err = (!value.is_empty()).then(|| value.to_string());
                return;
            }
            ERROR_DETAILS_LABEL => {
                self.details = (!value.is_empty()).then(|| value.to_string());
                return;
            }
            _ => {}
        }
        let best = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, (k, _, _))| k == name)
            .min_by_key(|(_, (_, _, c))| *c)
            .map(|(i, _)| i);
        match best {
            Some(i) => self.items[i].1 = value.to_string(),
            None => self
                .items
                .push((name.to_string(), value.to_string(), Cat::Parsed)),
        }
    }

    pub fn delete(&mut self, name: &str) {
        match name {
            ERROR_LABEL => self.err = None,
            ERROR_DETAILS_LABEL => self.details = None,
            _ => self.items.retain(|(k, _, _)| k != name),
        }
    }

    /// Every visible (name, value), folded by precedence; includes the error labels.
    pub fn visible(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String, Cat)> = Vec::with_capacity(self.items.len() + 2);
        for (k, v, c) in &self.items {
            match out.iter_mut().find(|(ok, _, _)| ok == k) {
                Some(e) if *c < e.2 => {
                    e.1 = v.clone();
                    e.2 = *c;
                }
                Some(_) => {}
                None => out.push((k.clone(), v.clone(), *c)),
            }
        }
        let mut out: Vec<(String, String)> = out.into_iter().map(|(k, v, _)| (k, v)).collect();
        if let Some(e) = &self.err {
            out.push((ERROR_LABEL.into(), e.clone()));
        }
        if let Some(d) = &self.details {
            out.push((ERROR_DETAILS_LABEL.into(), d.clone()));
        }
        out
    }

    /// The folded label set (what the default encoding prints).
    pub fn folded(&self) -> LabelSet {
        LabelSet::from_pairs(self.visible())
    }

    /// Split by category for the categorize-labels encoding: (stream, metadata, parsed).
    pub fn categorized(&self) -> (LabelSet, Pairs, Pairs) {
        let pick = |cat: Cat| -> Vec<(String, String)> {
            let mut v: Vec<(String, String)> = self
                .items
                .iter()
                .filter(|(_, val, c)| *c == cat && !val.is_empty())
                .map(|(k, v, _)| (k.clone(), v.clone()))
                .collect();
            v.sort();
            v
        };
        let stream = LabelSet::from_pairs(pick(Cat::Stream));
        let meta = pick(Cat::Meta);
        let mut parsed = pick(Cat::Parsed);
        if let Some(e) = &self.err {
            parsed.push((ERROR_LABEL.into(), e.clone()));
        }
        if let Some(d) = &self.details {
            parsed.push((ERROR_DETAILS_LABEL.into(), d.clone()));
        }
        parsed.sort();
        (stream, meta, parsed)
    }
}

/// A compiled pipeline: leading line filters run without allocating.
#[derive(Debug, Clone)]
pub struct Pipeline<'e> {
    pub prefix: Vec<&'e LineFilter>,
    pub rest: &'e [Stage],
}

impl<'e> Pipeline<'e> {
    pub fn new(stages: &'e [Stage]) -> Pipeline<'e> {
        let mut prefix = Vec::new();
        let mut n = 0;
        for s in stages {
            match s {
                Stage::LineFilter(f) => prefix.push(f),
                _ => break,
            }
            n += 1;
        }
        Pipeline {
            prefix,
            rest: &stages[n..],
        }
    }

    /// Whether only line filters are involved (labels never change).
    pub fn is_filter_only(&self) -> bool {
        self.rest.is_empty()
    }

    /// The cheap first part: leading line filters.
    #[inline]
    pub fn prefilter(&self, line: &str) -> bool {
        self.prefix.iter().all(|f| f.keep(line))
    }

    /// Runs the remaining stages. Returns the final line when the entry is kept.
    pub fn run_rest(&self, ts: i64, line: &str, lbs: &mut Lbs) -> Option<String> {
        let mut line = line.to_string();
        for st in self.rest {
            if !run_stage(st, ts, &mut line, lbs) {
                return None;
            }
        }
        Some(line)
    }
}

fn run_stage(st: &Stage, ts: i64, line: &mut String, lbs: &mut Lbs) -> bool {
    match st {
        Stage::LineFilter(f) => f.keep(line),
        Stage::Json(params) => {
            json_stage(line, params, lbs);
            true
        }
        Stage::Logfmt {
            strict,
            keep_empty,
            params,
        } => {
            logfmt_stage(line, *strict, *keep_empty, params, lbs);
            true
        }
        Stage::Regexp(re) => {
            if let Some(caps) = re.captures(line) {
                for name in re.capture_names().flatten() {
                    let v = caps.name(name).map_or("", |m| m.as_str());
                    let key = sanitize_key(name);
                    lbs.set_parsed(&key, v);
                }
            }
            true
        }
        Stage::Pattern(p) => {
            if let Some(caps) = p.captures(line) {
                for (name, v) in caps {
                    lbs.set_parsed(name, v);
                }
            }
            true
        }
        Stage::Unpack => {
            unpack_stage(line, lbs);
            true
        }
        Stage::LabelFilter(f) => label_filter(f, lbs),
        Stage::LineFormat(t) => {
            let rendered = {
                let get = |n: &str| lbs.get(n).map(str::to_string);
                t.render(line, ts, &get)
            };
            match rendered {
                Ok(s) => *line = s,
                Err(e) => lbs.set_err("TemplateFormatErr", Some(e)),
            }
            true
        }
        Stage::LabelFormat(items) => {
            for it in items {
                match it {
                    LabelFmt::Rename { dst, src } => {
                        let v = lbs.get(src).unwrap_or("").to_string();
                        lbs.delete(src);
                        lbs.set_any(dst, &v);
                    }
                    LabelFmt::Template { dst, tpl } => {
                        let rendered = {
                            let get = |n: &str| lbs.get(n).map(str::to_string);
                            tpl.render(line, ts, &get)
                        };
                        match rendered {
                            Ok(s) => lbs.set_any(dst, &s),
                            Err(e) => lbs.set_err("TemplateFormatErr", Some(e)),
                        }
                    }
                }
            }
            true
        }
        Stage::Drop(items) => {
            for it in items {
                match it {
                    NamedMatcher::Name(n) => lbs.delete(n),
                    NamedMatcher::Matcher(m) => {
                        if lbs.get(&m.name).is_some_and(|v| m.matches(v)) {
                            lbs.delete(&m.name);
                        }
                    }
                }
            }
            true
        }
        Stage::Keep(items) => {
            let names: Vec<String> = lbs.visible().into_iter().map(|(k, _)| k).collect();
            for n in names {
                let keep = items.iter().any(|it| match it {
                    NamedMatcher::Name(k) => *k == n,
                    NamedMatcher::Matcher(m) => {
                        m.name == n && lbs.get(&n).is_some_and(|v| m.matches(v))
                    }
                });
                if !keep {
                    lbs.delete(&n);
                }
            }
            true
        }
        Stage::Decolorize => {
            *line = decolorize(line);
            true
        }
    }
}

fn decolorize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Skip parameters up to the final byte of the CSI sequence.
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Loki's `sanitizeLabelKey`: invalid characters become `_`, a leading digit gets `_`.
pub fn sanitize_key(k: &str) -> String {
    let k = k.trim();
    let mut out = String::with_capacity(k.len() + 1);
    if k.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in k.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    out
}

pub(super) fn label_filter(f: &LabelFilter, lbs: &mut Lbs) -> bool {
    match f {
        LabelFilter::Matcher(m) => m.matches(lbs.get(&m.name).unwrap_or("")),
        LabelFilter::Num {
            name,
            op,
            kind,
            value,
        } => {
            if lbs.has_err() {
                // Only string matchers can drop lines that already carry an error.
                return true;
            }
            let Some(v) = lbs.get(name) else {
                return false;
            };
            let parsed: Result<f64, String> = match kind {
                NumKind::Number => v.trim().parse::<f64>().map_err(|_| {
                    format!(
                        "strconv.ParseFloat: parsing {}: invalid syntax",
                        loki_wire::labels::go_quote(v)
                    )
                }),
                NumKind::Duration => super::lexer::parse_go_duration(v)
                    .map(|d| d as f64)
                    .ok_or_else(|| {
                        format!("time: invalid duration {}", loki_wire::labels::go_quote(v))
                    }),
                NumKind::Bytes => super::lexer::parse_bytes(v)
                    .map(|b| b as f64)
                    .ok_or_else(|| {
                        format!(
                            "strconv.ParseFloat: parsing {}: invalid syntax",
                            loki_wire::labels::go_quote(v)
                        )
                    }),
            };
            match parsed {
                Ok(x) => op.apply(x, *value),
                Err(e) => {
                    lbs.set_err("LabelFilterErr", Some(e));
                    true
                }
            }
        }
        LabelFilter::And(a, b) => {
            let l = label_filter(a, lbs);
            let r = label_filter(b, lbs);
            l && r
        }
        LabelFilter::Or(a, b) => label_filter(a, lbs) || label_filter(b, lbs),
    }
}

// ---- JSON ----

/// Loki's `json` without parameters: every member, nested objects flattened with `_`,
/// arrays skipped. Members before a syntax error keep their labels, as in Loki.
fn json_all(prefix: &str, data: &[u8], lbs: &mut Lbs) -> Result<(), WalkError> {
    object_each(data, &mut |k, v, kind| {
        let key = if prefix.is_empty() {
            sanitize_key(k)
        } else {
            format!("{prefix}_{}", sanitize_key(k))
        };
        if key.is_empty() {
            return Ok(());
        }
        match kind {
            Kind::Object => json_all(&key, v, lbs),
            Kind::String => {
                lbs.set_parsed(&key, &string_value(v));
                Ok(())
            }
            Kind::Number | Kind::Boolean => {
                lbs.set_parsed(&key, &String::from_utf8_lossy(v));
                Ok(())
            }
            Kind::Array | Kind::Null => Ok(()),
        }
    })
}

fn json_stage(line: &str, params: &[(String, Vec<JsonPathPart>)], lbs: &mut Lbs) {
    if params.is_empty() {
        if let Err(e) = json_all("", line.as_bytes(), lbs) {
            lbs.set_err("JSONParserErr", Some(e.message().to_string()));
        }
        return;
    }
    // With expressions Loki only checks the first byte; a value it cannot find is "".
    if !line.starts_with(['"', '{', '[']) {
        lbs.set_err("JSONParserErr", None);
        return;
    }
    for (name, path) in params {
        let steps: Vec<Step<'_>> = path
            .iter()
            .map(|p| match p {
                JsonPathPart::Key(k) => Step::Key(k),
                JsonPathPart::Index(i) => Step::Index(*i),
            })
            .collect();
        let val = match lookup(line.as_bytes(), &steps) {
            Ok(Some((v, Kind::Object))) => String::from_utf8_lossy(v).into_owned(),
            Ok(Some((v, _))) => string_value(v),
            Ok(None) => String::new(),
            Err(e) => {
                lbs.set_err("JSONParserErr", Some(e.message().to_string()));
                continue;
            }
        };
        lbs.set_parsed(name, &val);
    }
}

/// Loki's `unpack`: string members become labels (none on a syntax error), `_entry`
/// replaces the line.
fn unpack_stage(line: &mut String, lbs: &mut Lbs) {
    if line.is_empty() {
        return;
    }
    if !line.starts_with('{') {
        lbs.set_err(
            "JSONParserErr",
            Some("expecting json object(6), but it is not".into()),
        );
        return;
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut entry = None;
    let walked = object_each(line.as_bytes(), &mut |k, v, kind| {
        if kind != Kind::String {
            return Ok(());
        }
        if k == "_entry" {
            entry = Some(unescape(v).ok_or(WalkError::MalformedStringEscape)?);
        } else {
            labels.push((k.to_string(), string_value(v)));
        }
        Ok(())
    });
    match walked {
        Ok(()) => {
            for (k, v) in labels {
                lbs.set_parsed(&sanitize_key(&k), &v);
            }
            if let Some(e) = entry {
                *line = e;
            }
        }
        Err(e) => lbs.set_err("JSONParserErr", Some(e.message().to_string())),
    }
}

// ---- logfmt ----

/// One logfmt pair, or a syntax error at a byte position.
fn logfmt_pairs(line: &str, strict: bool) -> Result<Vec<(String, String)>, String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // Skip separators.
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        if i == ks {
            // A key cannot start with '=' or '"'.
            if strict {
                return Err(format!(
                    "logfmt syntax error at pos {} : unexpected '{}'",
                    i + 1,
                    b[i] as char
                ));
            }
            i = skip_token(b, i);
            continue;
        }
        let key = &line[ks..i];
        if i >= b.len() || b[i] <= b' ' {
            out.push((key.to_string(), String::new()));
            continue;
        }
        if b[i] == b'"' {
            if strict {
                return Err(format!(
                    "logfmt syntax error at pos {} : unexpected '\"'",
                    i + 1
                ));
            }
            i = skip_token(b, i);
            continue;
        }
        // b[i] == '='
        i += 1;
        if i >= b.len() || b[i] <= b' ' {
            out.push((key.to_string(), String::new()));
            continue;
        }
        if b[i] == b'"' {
            match loki_wire::labels::unquote_prefix(&line[i..]) {
                Ok((v, n)) => {
                    out.push((key.to_string(), v));
                    i += n;
                }
                Err(_) => {
                    // Find the closing quote ourselves to tell "unterminated" from a bad escape.
                    if strict {
                        return Err(format!(
                            "logfmt syntax error at pos {} : unterminated quoted value",
                            b.len() + 1
                        ));
                    }
                    i = skip_token(b, i + 1);
                }
            }
            continue;
        }
        let vs = i;
        let mut bad = false;
        while i < b.len() && b[i] > b' ' {
            if b[i] == b'=' || b[i] == b'"' {
                bad = true;
            }
            i += 1;
        }
        if bad {
            if strict {
                return Err(format!(
                    "logfmt syntax error at pos {} : unexpected '='",
                    vs + 1
                ));
            }
            continue;
        }
        out.push((key.to_string(), line[vs..i].to_string()));
    }
    Ok(out)
}

fn skip_token(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] > b' ' {
        i += 1;
    }
    i
}

fn logfmt_stage(
    line: &str,
    strict: bool,
    keep_empty: bool,
    params: &[(String, String)],
    lbs: &mut Lbs,
) {
    let pairs = match logfmt_pairs(line, strict) {
        Ok(p) => p,
        Err(e) => {
            lbs.set_err("LogfmtParserErr", Some(e));
            return;
        }
    };
    if params.is_empty() {
        for (k, v) in pairs {
            let key = sanitize_key(&k);
            if key.is_empty() || (v.is_empty() && !keep_empty) {
                continue;
            }
            lbs.set_parsed(&key, &v);
        }
    } else {
        for (name, key) in params {
            if let Some((_, v)) = pairs.iter().rev().find(|(k, _)| k == key) {
                lbs.set_parsed(name, v);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn lbs() -> Lbs {
        Lbs::new(&LabelSet::from_pairs([("app", "a"), ("level", "x")]), &[])
    }

    #[test]
    fn json_flattens_and_renames() {
        let mut l = lbs();
        json_stage(
            r#"{"a":{"b":1.50,"c d":"x"},"arr":[1],"n":null,"level":"info"}"#,
            &[],
            &mut l,
        );
        let f = l.folded().to_string();
        assert_eq!(
            f,
            r#"{a_b="1.50", a_c_d="x", app="a", level="x", level_extracted="info"}"#
        );
        let mut l = lbs();
        json_stage("not json", &[], &mut l);
        assert_eq!(l.err.as_deref(), Some("JSONParserErr"));
    }

    #[test]
    fn json_params() {
        let mut l = lbs();
        let p = vec![(
            "x".to_string(),
            super::super::parser::parse_json_path("a.b[1]").unwrap(),
        )];
        json_stage(r#"{"a":{"b":[1,"two"]}}"#, &p, &mut l);
        assert_eq!(l.get("x"), Some("two"));
    }

    #[test]
    fn logfmt_parses() {
        let mut l = lbs();
        logfmt_stage(
            r#"level=info msg="GET /items/0" status=500 flag dur="#,
            false,
            false,
            &[],
            &mut l,
        );
        assert_eq!(l.get("msg"), Some("GET /items/0"));
        assert_eq!(l.get("status"), Some("500"));
        assert_eq!(l.get("level_extracted"), Some("info"));
        assert_eq!(l.get("flag"), None);
        let mut l = lbs();
        logfmt_stage(r#"a="unterminated"#, true, false, &[], &mut l);
        assert_eq!(l.err.as_deref(), Some("LogfmtParserErr"));
    }

    #[test]
    fn decolorizes() {
        assert_eq!(decolorize("\u{1b}[31mred\u{1b}[0m"), "red");
    }
}
