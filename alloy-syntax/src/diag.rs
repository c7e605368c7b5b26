//! Diagnostics: positions (`file:line:col`, col = byte offset in the line + 1, like Alloy's
//! `syntax/diag`), error collections, and the CLI renderer with context lines and a caret.

use std::fmt;

/// A position in a source file. `offset` is the byte offset from the start of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Pos {
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column: byte offset within the line plus one.
    pub col: usize,
}

impl Pos {
    /// 1:1, where problems of the whole file (nothing to point at) are reported.
    pub const START: Pos = Pos {
        offset: 0,
        line: 1,
        col: 1,
    };
}

/// Maps byte offsets to lines and columns.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            src.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    pub fn pos(&self, offset: usize) -> Pos {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        Pos {
            offset,
            line,
            col: offset - self.starts[line - 1] + 1,
        }
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    /// End of the offending span, when it is wider than one character.
    pub end: Option<Pos>,
    pub message: String,
    /// How to fix it, e.g. "use // for comments".
    pub hint: Option<String>,
    /// Context lines, e.g. "in instance of my_pipeline.a at main.alloy:12:1" for a problem
    /// inside a module.
    pub notes: Vec<String>,
    /// The text of `file` when it is not the file the caller renders against (an imported
    /// module), so [`Diagnostics::render`] shows the right lines.
    pub source: Option<std::sync::Arc<str>>,
}

impl Diagnostic {
    pub fn new(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            pos,
            end: None,
            message: message.into(),
            hint: None,
            notes: Vec::new(),
            source: None,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_end(mut self, end: Pos) -> Self {
        self.end = Some(end);
        self
    }

    /// `file:line:col`.
    /// `file:line:col`, or just `file` for a problem with no position (line 0: the file
    /// could not be read).
    pub fn location(&self) -> String {
        if self.pos.line == 0 {
            return self.file.clone();
        }
        format!("{}:{}:{}", self.file, self.pos.line, self.pos.col)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        for n in &self.notes {
            write!(f, " (note: {n})")?;
        }
        Ok(())
    }
}

/// Every problem found; the loader keeps going after the first so a user fixes all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// Sorted by position so the report reads top to bottom.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
    }

    /// Renders all diagnostics the way `alloy fmt`/`alloy run` print them: `Error: <pos>: <msg>`,
    /// a blank line, numbered context lines (one before and after) and a caret under the column.
    /// A diagnostic that carries its own source (an imported module) is shown against that.
    pub fn render(&self, src: &str) -> String {
        let mut out = String::new();
        for d in &self.0 {
            let lines: Vec<&str> = d.source.as_deref().unwrap_or(src).split('\n').collect();
            out.push_str(&format!("Error: {}: {}\n", d.location(), d.message));
            if let Some(h) = &d.hint {
                out.push_str(&format!("hint: {h}\n"));
            }
            for n in &d.notes {
                out.push_str(&format!("note: {n}\n"));
            }
            out.push('\n');
            let line = d.pos.line;
            if line == 0 {
                continue;
            }
            let first = line.saturating_sub(1).max(1);
            let last = (line + 1).min(lines.len());
            let width = last.to_string().len();
            for n in first..=last {
                let text = lines
                    .get(n - 1)
                    .copied()
                    .unwrap_or("")
                    .trim_end_matches('\r');
                // Tabs are shown as 4 spaces, so the caret column must count them that way too.
                out.push_str(&format!("{n:>width$} | {}\n", text.replace('\t', "    ")));
                if n == line {
                    let prefix: String = text
                        .bytes()
                        .take(d.pos.col.saturating_sub(1))
                        .map(|b| b as char)
                        .collect();
                    let pad = prefix
                        .chars()
                        .map(|c| if c == '\t' { 4 } else { 1 })
                        .sum::<usize>();
                    let span = match d.end {
                        Some(e) if e.line == line && e.col > d.pos.col => e.col - d.pos.col + 1,
                        _ => 1,
                    };
                    out.push_str(&format!(
                        "{:width$} | {}{}\n",
                        "",
                        " ".repeat(pad),
                        "^".repeat(span)
                    ));
                }
            }
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    /// Like Alloy: the first diagnostic, plus how many more there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => write!(f, "no errors"),
            [one] => write!(f, "{one}"),
            [first, rest @ ..] => write!(f, "{first} (and {} more diagnostics)", rest.len()),
        }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// Levenshtein distance, used for "did you mean X?" on unknown names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known name, if it is close enough to be a likely typo or a renamed attribute
/// (`min_backoff` → `min_backoff_period`): a prefix match or an edit distance within a third.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .filter_map(|k| {
            let d = edit_distance(name, k);
            let close = d <= (k.len().max(name.len()) / 3).max(2)
                || (name.len() >= 4 && (k.starts_with(name) || name.starts_with(k)));
            close.then_some((d, k))
        })
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_without_position_names_only_the_file_and_shows_no_snippet() {
        let d = Diagnostics::from(Diagnostic::new("c.alloy", Pos::default(), "cannot read"));
        assert_eq!(d.render("x = 1\n"), "Error: c.alloy: cannot read\n\n");
    }

    #[test]
    fn column_is_byte_offset_plus_one() {
        let idx = LineIndex::new("ab\n\tc");
        assert_eq!(
            idx.pos(0),
            Pos {
                offset: 0,
                line: 1,
                col: 1
            }
        );
        assert_eq!(
            idx.pos(4),
            Pos {
                offset: 4,
                line: 2,
                col: 2
            }
        );
    }

    #[test]
    fn suggests_renamed_backoff_attributes() {
        let known = [
            "min_backoff_period",
            "max_backoff_period",
            "max_backoff_retries",
            "url",
        ];
        assert_eq!(suggest("min_backoff", known), Some("min_backoff_period"));
        assert_eq!(suggest("max_backoff", known), Some("max_backoff_period"));
        assert_eq!(suggest("zzz", known), None);
    }

    #[test]
    fn render_shows_context_and_caret() {
        let src = "a = 1\nb = # x\nc = 2\n";
        let d = Diagnostics(vec![Diagnostic::new(
            "f.alloy",
            LineIndex::new(src).pos(10),
            "illegal character U+0023 '#'",
        )
        .with_hint("use // for comments")]);
        let r = d.render(src);
        assert!(
            r.starts_with("Error: f.alloy:2:5: illegal character U+0023 '#'\n"),
            "{r}"
        );
        assert!(r.contains("2 | b = # x\n  |     ^\n"), "{r}");
        assert!(
            r.contains("1 | a = 1\n") && r.contains("3 | c = 2\n"),
            "{r}"
        );
    }
}
