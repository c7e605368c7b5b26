//! `stage.replace`: rewrites every capture group of `expression` in the line (or in the
//! extracted `source`) with the `replace` template, like Alloy's `stages/replace.go`: `.Value`
//! is the captured text, other extracted values are available by name, and named groups of the
//! first match are extracted with their replaced text.

use std::collections::BTreeMap;

use regex::Regex;

use super::gotemplate::Template;
use crate::alloy::pipeline::Entry;

#[derive(Debug, Clone)]
pub struct ReplaceStage {
    pub expression: Regex,
    pub source: Option<String>,
    pub replace: Template,
}

impl ReplaceStage {
    pub fn process(&self, e: &mut Entry) {
        let input = match &self.source {
            Some(s) => match e.extracted.get(s) {
                Some(v) => v.clone(),
                None => return,
            },
            None => e.line.clone(),
        };
        let all: Vec<regex::Captures<'_>> = self.expression.captures_iter(&input).collect();
        let Some(first) = all.first() else {
            return;
        };
        let mut data = e.extracted.clone();
        let mut result = String::new();
        let mut prev = 0;
        let mut replaced: BTreeMap<&str, String> = BTreeMap::new();
        for caps in &all {
            for m in caps.iter().skip(1).flatten() {
                data.insert("Value".into(), m.as_str().to_string());
                // A template that fails to run leaves the entry as it was, as in Alloy.
                let Ok(st) = self.replace.execute(&data) else {
                    return;
                };
                // Alloy's rule for nested groups: only a group starting at or after the end of
                // the last replaced one is replaced in the output.
                if prev == 0 || prev <= m.start() {
                    result.push_str(&input[prev..m.start()]);
                    result.push_str(&st);
                    prev = m.end();
                }
                replaced.insert(m.as_str(), st);
            }
        }
        result.push_str(&input[prev..]);
        let named: Vec<(String, String)> = self
            .expression
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| {
                let name = name.filter(|_| i != 0)?;
                let text = first.get(i).map_or("", |m| m.as_str());
                Some((name.to_string(), replaced.get(text)?.clone()))
            })
            .collect();
        match &self.source {
            Some(s) => {
                e.extracted.insert(s.clone(), result);
            }
            None => e.line = result,
        }
        e.extracted.extend(named);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloy::relabel::Labels;

    fn stage(expr: &str, source: Option<&str>, replace: &str) -> ReplaceStage {
        ReplaceStage {
            expression: Regex::new(expr).unwrap(),
            source: source.map(String::from),
            replace: Template::parse(replace).unwrap(),
        }
    }

    /// Alloy's documented examples and its code's comments.
    #[test]
    fn replace_table() {
        // (expression, source, replace, line, extracted before, line after, extracted after)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a str,
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case] = &[
            (
                r"password (\S+)",
                None,
                "****",
                "i'm a log message who has sensitive information with password xyz!",
                &[],
                "i'm a log message who has sensitive information with password ****",
                &[],
            ),
            (
                r"(\d{2}.\d{2}.\d{2}.\d{2}) - (\S+)",
                None,
                "{{ .Value | ToUpper }}",
                "11.11.11.11 - frank 12.12.12.12 - frank",
                &[],
                "11.11.11.11 - FRANK 12.12.12.12 - FRANK",
                &[],
            ),
            (
                r"^(?P<ip>\S+) - (?P<user>\S+) ",
                None,
                "{{ .Value | ToUpper }}",
                "11.11.11.11 - frank [25/Jan/2000:14:00:01 -0500]",
                &[],
                "11.11.11.11 - FRANK [25/Jan/2000:14:00:01 -0500]",
                &[("ip", "11.11.11.11"), ("user", "FRANK")],
            ),
            (
                r"(\d+)",
                Some("msg"),
                "N",
                "line stays",
                &[("msg", "took 25 ms, 3 tries")],
                "line stays",
                &[("msg", "took N ms, N tries")],
            ),
            // Source missing: nothing happens.
            (r"(\d+)", Some("nope"), "N", "1 2", &[], "1 2", &[]),
            // No match: nothing happens.
            (r"(zzz)", None, "N", "1 2", &[], "1 2", &[]),
            // Other extracted values are available to the template.
            (
                r"user=(\S+)",
                None,
                "{{ .team }}/{{ .Value }}",
                "user=ann ok",
                &[("team", "ops")],
                "user=ops/ann ok",
                &[("team", "ops")],
            ),
            // A template that fails at run time changes nothing.
            (r"(a)", None, "{{ ToUpper .nope }}", "abc", &[], "abc", &[]),
        ];
        for (expr, source, replace, line, before, want_line, want_ex) in cases {
            let st = stage(expr, *source, replace);
            let mut e = Entry::new(Labels::new(), 0, *line);
            for (k, v) in *before {
                e.extracted.insert(k.to_string(), v.to_string());
            }
            st.process(&mut e);
            let want: BTreeMap<String, String> = want_ex
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(
                (e.line.as_str(), &e.extracted),
                (*want_line, &want),
                "{expr} {replace}"
            );
        }
    }
}
