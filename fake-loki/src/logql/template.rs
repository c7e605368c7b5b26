//! A subset of Go `text/template` for `line_format` and `label_format`: text, `{{.label}}`,
//! `{{- -}}` trimming, pipelines with common string functions, `__line__`, `__timestamp__`.

/// An argument or command head.
#[derive(Debug, Clone)]
enum Arg {
    Field(String),
    Str(String),
    Line,
    Timestamp,
}

/// One command of a pipeline: a value, or a function with arguments.
#[derive(Debug, Clone)]
enum Cmd {
    Value(Arg),
    Func(String, Vec<Arg>),
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Pipe(Vec<Cmd>),
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

const FUNCS: &[&str] = &[
    "ToLower",
    "ToUpper",
    "lower",
    "upper",
    "title",
    "Title",
    "trim",
    "TrimSpace",
    "trimSpace",
    "trimPrefix",
    "trimSuffix",
    "TrimPrefix",
    "TrimSuffix",
    "replace",
    "Replace",
    "default",
    "__line__",
    "__timestamp__",
    "len",
    "trunc",
    "substr",
];

/// Splits an action body into words, keeping quoted strings whole.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if rest.starts_with(['"', '`']) {
            let (_, n) =
                loki_wire::labels::unquote_prefix(rest).map_err(|e| format!("template: {e}"))?;
            out.push(rest[..n].to_string());
            rest = rest[n..].trim_start();
        } else if let Some(r) = rest.strip_prefix('|') {
            out.push("|".into());
            rest = r.trim_start();
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '|')
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

fn arg(w: &str) -> Result<Arg, String> {
    if w.starts_with(['"', '`']) {
        let (s, _) = loki_wire::labels::unquote_prefix(w).map_err(|e| format!("template: {e}"))?;
        return Ok(Arg::Str(s));
    }
    if let Some(f) = w.strip_prefix('.') {
        return Ok(Arg::Field(f.to_string()));
    }
    match w {
        "__line__" => Ok(Arg::Line),
        "__timestamp__" => Ok(Arg::Timestamp),
        _ if w.parse::<f64>().is_ok() => Ok(Arg::Str(w.to_string())),
        _ => Err(format!("template: {w}: function \"{w}\" not defined")),
    }
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            let mut body_start = open + 2;
            if rest[body_start..].starts_with("- ") || rest[body_start..].starts_with("-\t") {
                text = text.trim_end();
                body_start += 1;
            }
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
            let close = rest[body_start..]
                .find("}}")
                .ok_or_else(|| "template: line:1: unclosed action".to_string())?;
            let mut body = &rest[body_start..body_start + close];
            let mut after = &rest[body_start + close + 2..];
            if body.ends_with(" -") || body.ends_with("\t-") {
                body = &body[..body.len() - 1];
                after = after.trim_start();
            }
            let body = body.trim();
            if body.starts_with("/*") {
                rest = after;
                continue;
            }
            let ws = words(body)?;
            let mut cmds = Vec::new();
            for group in ws.split(|w| w == "|") {
                let Some(head) = group.first() else {
                    return Err("template: line:1: missing value for command".into());
                };
                if FUNCS.contains(&head.as_str()) && head != "__line__" && head != "__timestamp__" {
                    let args = group[1..]
                        .iter()
                        .map(|w| arg(w))
                        .collect::<Result<Vec<_>, _>>()?;
                    cmds.push(Cmd::Func(head.clone(), args));
                } else if group.len() == 1 {
                    cmds.push(Cmd::Value(arg(head)?));
                } else {
                    return Err(format!("template: line:1: function \"{head}\" not defined"));
                }
            }
            parts.push(Part::Pipe(cmds));
            rest = after;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders with `get` resolving label names (missing labels render as empty).
    pub fn render(
        &self,
        line: &str,
        ts: i64,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Pipe(cmds) => {
                    let mut prev: Option<String> = None;
                    for c in cmds {
                        let eval = |a: &Arg| -> String {
                            match a {
                                Arg::Field(f) => get(f).unwrap_or_default(),
                                Arg::Str(s) => s.clone(),
                                Arg::Line => line.to_string(),
                                Arg::Timestamp => format_ts(ts),
                            }
                        };
                        let v = match c {
                            Cmd::Value(a) => eval(a),
                            Cmd::Func(name, args) => {
                                let mut vals: Vec<String> = args.iter().map(eval).collect();
                                if let Some(p) = prev.take() {
                                    vals.push(p);
                                }
                                call(name, &vals)?
                            }
                        };
                        prev = Some(v);
                    }
                    out.push_str(&prev.unwrap_or_default());
                }
            }
        }
        Ok(out)
    }
}

fn format_ts(ts: i64) -> String {
    chrono::DateTime::from_timestamp(
        ts.div_euclid(1_000_000_000),
        ts.rem_euclid(1_000_000_000) as u32,
    )
    .map(|d| d.format("%Y-%m-%d %H:%M:%S%.f %z UTC").to_string())
    .unwrap_or_default()
}

fn call(name: &str, v: &[String]) -> Result<String, String> {
    let need = |n: usize| -> Result<(), String> {
        if v.len() == n {
            Ok(())
        } else {
            Err(format!(
                "template: line:1: wrong number of args for {name}: want {n} got {}",
                v.len()
            ))
        }
    };
    Ok(match name {
        "ToLower" | "lower" => {
            need(1)?;
            v[0].to_lowercase()
        }
        "ToUpper" | "upper" => {
            need(1)?;
            v[0].to_uppercase()
        }
        "title" | "Title" => {
            need(1)?;
            let mut out = String::new();
            let mut start = true;
            for c in v[0].chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = c.is_whitespace();
            }
            out
        }
        "trim" | "TrimSpace" | "trimSpace" => {
            need(1)?;
            v[0].trim().to_string()
        }
        "trimPrefix" => {
            need(2)?;
            v[1].strip_prefix(v[0].as_str())
                .unwrap_or(&v[1])
                .to_string()
        }
        "trimSuffix" => {
            need(2)?;
            v[1].strip_suffix(v[0].as_str())
                .unwrap_or(&v[1])
                .to_string()
        }
        "TrimPrefix" => {
            need(2)?;
            v[0].strip_prefix(v[1].as_str())
                .unwrap_or(&v[0])
                .to_string()
        }
        "TrimSuffix" => {
            need(2)?;
            v[0].strip_suffix(v[1].as_str())
                .unwrap_or(&v[0])
                .to_string()
        }
        "replace" => {
            need(3)?;
            v[2].replace(v[0].as_str(), &v[1])
        }
        "Replace" => {
            need(4)?;
            let n: i64 = v[3].parse().unwrap_or(-1);
            if n < 0 {
                v[0].replace(v[1].as_str(), &v[2])
            } else {
                v[0].replacen(v[1].as_str(), &v[2], n as usize)
            }
        }
        "default" => {
            need(2)?;
            if v[1].is_empty() {
                v[0].clone()
            } else {
                v[1].clone()
            }
        }
        "len" => {
            need(1)?;
            v[0].len().to_string()
        }
        "trunc" => {
            need(2)?;
            let n: i64 = v[0].parse().unwrap_or(0);
            let chars: Vec<char> = v[1].chars().collect();
            if n >= 0 {
                chars.iter().take(n as usize).collect()
            } else {
                let k = chars.len().saturating_sub(n.unsigned_abs() as usize);
                chars[k..].iter().collect()
            }
        }
        "substr" => {
            need(3)?;
            let chars: Vec<char> = v[2].chars().collect();
            let a = v[0].parse::<usize>().unwrap_or(0).min(chars.len());
            let b = v[1]
                .parse::<usize>()
                .unwrap_or(chars.len())
                .min(chars.len())
                .max(a);
            chars[a..b].iter().collect()
        }
        _ => return Err(format!("template: line:1: function \"{name}\" not defined")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn get(n: &str) -> Option<String> {
        match n {
            "user" => Some("u0".into()),
            "msg" => Some("render 0".into()),
            _ => None,
        }
    }

    #[test]
    fn renders_fields_and_functions() {
        let t = Template::parse("{{.user}}: {{ .msg }}").unwrap();
        assert_eq!(t.render("l", 0, &get).unwrap(), "u0: render 0");
        let t = Template::parse("{{ .msg | ToUpper }} {{.missing}}|{{ __line__ }}").unwrap();
        assert_eq!(t.render("l", 0, &get).unwrap(), "RENDER 0 |l");
        let t = Template::parse("a  {{- .user -}}  b").unwrap();
        assert_eq!(t.render("l", 0, &get).unwrap(), "au0b");
        assert!(Template::parse("{{ nope .x }}").is_err());
    }
}
