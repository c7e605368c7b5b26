//! The part of Go's `text/template` that `stage.replace` and `stage.template` use in practice:
//! text, `{{ .Name }}` lookups in the extracted map (`.Value`, `.Entry`), string and integer
//! literals, pipes, and Alloy's functions `ToLower`, `ToUpper`, `TrimSpace`, `Trim`,
//! `TrimLeft`, `TrimRight`, `TrimPrefix`, `TrimSuffix`, `Replace`, `regexReplaceAll`,
//! `regexReplaceAllLiteral`. Everything else (`if`, `range`, variables, other sprig functions,
//! `Hash`, `Sha2Hash`) is refused when the config is loaded, so a template never silently does
//! less than Alloy's.

use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::Regex;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Vec<Cmd>),
}

/// One command of a pipeline: a function call, or a single value.
#[derive(Debug, Clone, PartialEq)]
enum Cmd {
    Call(Func, Vec<Arg>),
    Value(Arg),
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Field(String),
    Str(String),
    Int(i64),
    /// A string literal given as the pattern of a regex function, compiled at load.
    Regex(Pattern),
}

/// A compiled regex that compares by its source.
#[derive(Debug, Clone)]
struct Pattern(Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    ToLower,
    ToUpper,
    TrimSpace,
    Trim,
    TrimLeft,
    TrimRight,
    TrimPrefix,
    TrimSuffix,
    Replace,
    RegexReplaceAll,
    RegexReplaceAllLiteral,
}

impl Func {
    fn by_name(name: &str) -> Option<Func> {
        Some(match name {
            "ToLower" => Func::ToLower,
            "ToUpper" => Func::ToUpper,
            "TrimSpace" => Func::TrimSpace,
            "Trim" => Func::Trim,
            "TrimLeft" => Func::TrimLeft,
            "TrimRight" => Func::TrimRight,
            "TrimPrefix" => Func::TrimPrefix,
            "TrimSuffix" => Func::TrimSuffix,
            "Replace" => Func::Replace,
            "regexReplaceAll" => Func::RegexReplaceAll,
            "regexReplaceAllLiteral" => Func::RegexReplaceAllLiteral,
            _ => return None,
        })
    }

    fn arity(self) -> usize {
        match self {
            Func::ToLower | Func::ToUpper | Func::TrimSpace => 1,
            Func::Replace => 4,
            Func::RegexReplaceAll | Func::RegexReplaceAllLiteral => 3,
            _ => 2,
        }
    }
}

/// A value while executing: Go prints a missing map key as `<no value>`.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    NoValue,
}

/// Why a template could not run (Alloy then leaves the entry unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecError(pub String);

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut nodes = Vec::new();
        let mut rest = src;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            if trim_next {
                text = text.trim_start();
            }
            let after = &rest[open + 2..];
            let (trim_prev, inner_start) = match after.strip_prefix('-') {
                Some(r) if r.starts_with([' ', '\t', '\n', '\r']) => (true, r),
                _ => (false, after),
            };
            if trim_prev {
                text = text.trim_end();
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_string()));
            }
            let close = find_close(inner_start).ok_or("unclosed action: missing }}")?;
            let mut inner = &inner_start[..close];
            rest = &inner_start[close + 2..];
            trim_next = false;
            if let Some(i) = inner.strip_suffix('-') {
                if i.ends_with([' ', '\t', '\n', '\r']) {
                    inner = i;
                    trim_next = true;
                }
            }
            let inner = inner.trim();
            if inner.starts_with("/*") && inner.ends_with("*/") {
                continue;
            }
            nodes.push(Node::Action(parse_pipeline(inner)?));
        }
        let text = if trim_next { rest.trim_start() } else { rest };
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_string()));
        }
        Ok(Template { nodes })
    }

    /// Renders with `data` as `.`.
    pub fn execute(&self, data: &BTreeMap<String, String>) -> Result<String, ExecError> {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(cmds) => {
                    let mut piped: Option<Val> = None;
                    for c in cmds {
                        piped = Some(run(c, piped, data)?);
                    }
                    match piped {
                        Some(Val::Str(s)) => out.push_str(&s),
                        Some(Val::Int(i)) => out.push_str(&i.to_string()),
                        Some(Val::NoValue) => out.push_str("<no value>"),
                        None => {}
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The `}}` that ends an action, skipping over quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_pipeline(src: &str) -> Result<Vec<Cmd>, String> {
    let tokens = tokenize(src)?;
    let mut cmds = Vec::new();
    for (i, words) in tokens.split(|t| *t == Tok::Pipe).enumerate() {
        let piped = usize::from(i > 0);
        let Some((first, rest)) = words.split_first() else {
            return Err(format!("missing command in {{{{ {src} }}}}"));
        };
        let arg = |t: &Tok| -> Result<Arg, String> {
            match t {
                Tok::Field(f) => Ok(Arg::Field(f.clone())),
                Tok::Str(s) => Ok(Arg::Str(s.clone())),
                Tok::Int(n) => Ok(Arg::Int(*n)),
                Tok::Ident(name) => Err(format!(
                    "{name:?} can only be called first in a command in {{{{ {src} }}}}"
                )),
                Tok::Pipe => Err("unexpected |".into()),
            }
        };
        match first {
            Tok::Ident(name) => {
                let f = Func::by_name(name).ok_or_else(|| {
                    format!(
                        "template function {name:?} is not supported by this agent (supported: ToLower, ToUpper, TrimSpace, Trim, TrimLeft, TrimRight, TrimPrefix, TrimSuffix, Replace, regexReplaceAll, regexReplaceAllLiteral)"
                    )
                })?;
                if rest.len() + piped != f.arity() {
                    return Err(format!(
                        "wrong number of args for {name}: want {} got {}",
                        f.arity(),
                        rest.len() + piped
                    ));
                }
                let mut args: Vec<Arg> = rest.iter().map(arg).collect::<Result<_, _>>()?;
                if matches!(f, Func::RegexReplaceAll | Func::RegexReplaceAllLiteral) {
                    // A literal pattern is compiled once; a bad one is a load error (Alloy
                    // would accept the config and leave every entry unchanged).
                    if let Some(Arg::Str(p)) = args.first() {
                        let re = Regex::new(p).map_err(|e| format!("{name}: {e}"))?;
                        args[0] = Arg::Regex(Pattern(re));
                    }
                }
                cmds.push(Cmd::Call(f, args));
            }
            t => {
                if !rest.is_empty() || piped == 1 {
                    return Err(format!(
                        "can't give argument to non-function in {{{{ {src} }}}}"
                    ));
                }
                cmds.push(Cmd::Value(arg(t)?));
            }
        }
    }
    Ok(cmds)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(String),
    Str(String),
    Int(i64),
    Ident(String),
    Pipe,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    "nil", "true", "false",
];

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '|' => {
                chars.next();
                toks.push(Tok::Pipe);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string".into()),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, 'r')) => s.push('\r'),
                            Some((_, '\\')) => s.push('\\'),
                            Some((_, '"')) => s.push('"'),
                            Some((_, other)) => {
                                return Err(format!(
                                    "unsupported escape \\{other} in template string"
                                ))
                            }
                            None => return Err("unterminated quoted string".into()),
                        },
                        Some((_, ch)) => s.push(ch),
                    }
                }
                toks.push(Tok::Str(s));
            }
            '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated raw string".into()),
                        Some((_, '`')) => break,
                        Some((_, ch)) => s.push(ch),
                    }
                }
                toks.push(Tok::Str(s));
            }
            _ => {
                let end = src[i..]
                    .find(|ch: char| ch.is_whitespace() || ch == '|')
                    .map_or(src.len(), |n| i + n);
                let word = &src[i..end];
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
                toks.push(word_token(word)?);
            }
        }
    }
    Ok(toks)
}

fn word_token(word: &str) -> Result<Tok, String> {
    if let Some(field) = word.strip_prefix('.') {
        if field.is_empty() || field.contains('.') {
            return Err(format!(
                "{word:?}: only single-level lookups like .Value are supported by this agent"
            ));
        }
        if !field.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("bad field name {word:?}"));
        }
        return Ok(Tok::Field(field.to_string()));
    }
    if let Ok(n) = word.parse::<i64>() {
        return Ok(Tok::Int(n));
    }
    if word.starts_with('$') || word.starts_with('(') || KEYWORDS.contains(&word) {
        return Err(format!(
            "{word:?}: template variables, parentheses and control structures are not supported by this agent"
        ));
    }
    if word.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Ok(Tok::Ident(word.to_string()));
    }
    Err(format!("unexpected {word:?} in template"))
}

fn value(a: &Arg, data: &BTreeMap<String, String>) -> Val {
    match a {
        Arg::Field(f) => data.get(f).map_or(Val::NoValue, |s| Val::Str(s.clone())),
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Int(n) => Val::Int(*n),
        Arg::Regex(p) => Val::Str(p.0.as_str().to_string()),
    }
}

fn run(c: &Cmd, piped: Option<Val>, data: &BTreeMap<String, String>) -> Result<Val, ExecError> {
    let (f, args) = match c {
        Cmd::Value(a) => return Ok(value(a, data)),
        Cmd::Call(f, args) => (*f, args),
    };
    let vals: Vec<Val> = args.iter().map(|a| value(a, data)).chain(piped).collect();
    let s = |i: usize| match vals.get(i) {
        Some(Val::Str(s)) => Ok(s.as_str()),
        other => Err(ExecError(format!(
            "{f:?}: argument {i} is {other:?}, expected a string"
        ))),
    };
    Ok(Val::Str(match f {
        Func::ToLower => s(0)?.to_lowercase(),
        Func::ToUpper => s(0)?.to_uppercase(),
        Func::TrimSpace => s(0)?.trim().to_string(),
        Func::Trim => {
            let cut = s(1)?;
            s(0)?.trim_matches(|c| cut.contains(c)).to_string()
        }
        Func::TrimLeft => {
            let cut = s(1)?;
            s(0)?.trim_start_matches(|c| cut.contains(c)).to_string()
        }
        Func::TrimRight => {
            let cut = s(1)?;
            s(0)?.trim_end_matches(|c| cut.contains(c)).to_string()
        }
        Func::TrimPrefix => {
            let (v, p) = (s(0)?, s(1)?);
            v.strip_prefix(p).unwrap_or(v).to_string()
        }
        Func::TrimSuffix => {
            let (v, p) = (s(0)?, s(1)?);
            v.strip_suffix(p).unwrap_or(v).to_string()
        }
        Func::Replace => {
            let (v, old, new) = (s(0)?, s(1)?, s(2)?);
            let Some(Val::Int(n)) = vals.get(3) else {
                return Err(ExecError("Replace: argument 3 must be an integer".into()));
            };
            // Go's strings.Replace: n < 0 means all.
            match usize::try_from(*n) {
                Ok(n) => v.replacen(old, new, n),
                Err(_) => v.replace(old, new),
            }
        }
        Func::RegexReplaceAll | Func::RegexReplaceAllLiteral => {
            let re = match args.first() {
                Some(Arg::Regex(p)) => Cow::Borrowed(&p.0),
                _ => Cow::Owned(Regex::new(s(0)?).map_err(|e| ExecError(format!("{f:?}: {e}")))?),
            };
            let (v, repl) = (s(1)?, s(2)?);
            // Go's ReplaceAllString expands $1 / ${name} like the regex crate does.
            if f == Func::RegexReplaceAll {
                re.replace_all(v, repl).into_owned()
            } else {
                re.replace_all(v, regex::NoExpand(repl)).into_owned()
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_table() {
        let data: BTreeMap<String, String> = [("Value", "Frank"), ("ip", "1.2.3.4")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cases = [
            ("****", "****"),
            ("", ""),
            ("{{ .Value }}", "Frank"),
            ("{{.Value | ToUpper}}", "FRANK"),
            ("{{ ToLower .Value }}", "frank"),
            ("<{{ .ip }}>", "<1.2.3.4>"),
            ("{{ .missing }}", "<no value>"),
            ("{{ .Value | TrimPrefix \"Fr\" }}", "Fr"),
            ("{{ TrimPrefix .Value \"Fr\" }}", "ank"),
            ("{{ Replace .Value \"a\" \"4\" -1 }}", "Fr4nk"),
            ("{{ Replace .ip \".\" \"-\" 2 }}", "1-2-3.4"),
            ("{{ Trim .Value `Fk` }}", "ran"),
            ("a {{- .Value -}} b", "aFrankb"),
            ("{{/* note */}}x", "x"),
            ("{{ \"lit}}\" }}", "lit}}"),
            ("{{ 42 }}", "42"),
            (
                "{{ regexReplaceAll `(\\d+)` .ip \"<$1>\" }}",
                "<1>.<2>.<3>.<4>",
            ),
            (
                "{{ regexReplaceAllLiteral `\\d` .ip \"$1\" }}",
                "$1.$1.$1.$1",
            ),
        ];
        for (src, want) in cases {
            let t = Template::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(t.execute(&data), Ok(want.to_string()), "{src}");
        }
        let t = Template::parse("{{ .missing | ToUpper }}").unwrap();
        assert!(t.execute(&data).is_err(), "no value is not a string");
    }

    #[test]
    fn unsupported_templates_are_refused() {
        for src in [
            "{{ if .Value }}x{{ end }}",
            "{{ $x := .Value }}",
            "{{ .Value | Hash \"salt\" }}",
            "{{ .a.b }}",
            "{{ ToUpper }}",
            "{{ .Value | ToUpper .Value }}",
            "{{ .Value",
            "{{ .Value \"x\" }}",
        ] {
            assert!(Template::parse(src).is_err(), "{src}");
        }
    }
}
