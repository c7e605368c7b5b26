//! `stage.template`: renders a Go template over the extracted map and stores the result under
//! `source`, as Alloy's `stages/template.go` does: the data is every extracted value by name,
//! `.Value` (the value of `source`, when it exists) and `.Entry` (the log line); an empty
//! result deletes `source`; a template that fails to run leaves the entry unchanged.

use super::gotemplate::Template;
use crate::alloy::pipeline::Entry;

#[derive(Debug, Clone)]
pub struct TemplateStage {
    pub source: String,
    pub template: Template,
}

impl TemplateStage {
    pub fn process(&self, e: &mut Entry) {
        let mut data = e.extracted.clone();
        if let Some(v) = e.extracted.get(&self.source) {
            data.insert("Value".into(), v.clone());
        }
        data.insert("Entry".into(), e.line.clone());
        let Ok(out) = self.template.execute(&data) else {
            return;
        };
        if out.is_empty() {
            e.extracted.remove(&self.source);
        } else {
            e.extracted.insert(self.source.clone(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloy::relabel::Labels;

    fn run(source: &str, template: &str, extracted: &[(&str, &str)], line: &str) -> Entry {
        let stage = TemplateStage {
            source: source.into(),
            template: Template::parse(template).expect("template"),
        };
        let mut e = Entry::new(Labels::new(), 0, line);
        for (k, v) in extracted {
            e.extracted.insert((*k).into(), (*v).into());
        }
        stage.process(&mut e);
        e
    }

    #[test]
    fn behaves_like_alloys_template_stage() {
        // A new key from a constant.
        let e = run("new_key", "hello world!", &[], "l");
        assert_eq!(e.extracted["new_key"], "hello world!");
        // .Value is the source's value.
        let e = run("app", "{{ .Value }}_some_suffix", &[("app", "loki")], "l");
        assert_eq!(e.extracted["app"], "loki_some_suffix");
        let e = run("app", "{{ ToLower .Value }}", &[("app", "LOKI")], "l");
        assert_eq!(e.extracted["app"], "loki");
        // Other keys by name, and the line as .Entry.
        let e = run(
            "msg",
            "{{ .level }}: {{ .Entry }}",
            &[("level", "warn")],
            "disk full",
        );
        assert_eq!(e.extracted["msg"], "warn: disk full");
        // Without the source, .Value prints as Go prints a missing map key.
        let e = run("x", "{{ .Value }}", &[], "l");
        assert_eq!(e.extracted["x"], "<no value>");
        // An empty result deletes the key.
        let e = run("app", "{{ TrimSpace .Value }}", &[("app", "  ")], "l");
        assert!(!e.extracted.contains_key("app"));
        // A failing template (a function given a missing value) changes nothing.
        let e = run("app", "{{ ToUpper .missing }}", &[("app", "v")], "l");
        assert_eq!(e.extracted["app"], "v");
    }
}
