//! Canonical formatting for `agent fmt`, following Alloy's printer: tab indentation, `=`
//! aligned (with spaces) across consecutive one-line attributes, a blank line between blocks,
//! source blank lines kept, line layout of arrays/objects/calls kept, a trailing comma when the
//! closing bracket sits on its own line, and comments kept where they were.

use super::ast::*;
use super::diag::Pos;
use super::scanner::quote;

/// Ends an aligned cell, like the `\v` (before `=`) and `\t` (before a trailing comment)
/// that Alloy's printer feeds its tabwriter.
const CELL: char = '\u{E000}';
/// A line break that keeps the current alignment block going (Alloy's plain newline); every
/// `\n` in the intermediate text ends the block (Alloy's formfeed).
const LINE: char = '\u{E001}';
/// A newline inside a (raw, multi-line) string literal: the literal is one opaque cell, as
/// Alloy's printer escapes literals for its tabwriter, so its lines are neither split into
/// alignment blocks nor stripped of trailing whitespace (that would change the value).
const LITERAL_NEWLINE: char = '\u{E002}';
/// Escapes one of these marker characters found in the source's own text (a string,
/// label or comment may hold any character): followed by `'0'..='3'`.
const ESCAPE: char = '\u{E003}';
const MARKERS: [char; 4] = [CELL, LINE, LITERAL_NEWLINE, ESCAPE];

/// Source text the aligner must pass through unchanged: marker characters escaped and, for
/// literals (`keep_lines`), newlines too, so the literal is one cell whose lines are neither
/// split into alignment blocks nor trimmed. [`align`] restores both.
fn opaque(text: &str, keep_lines: bool) -> String {
    let special = |c: char| MARKERS.contains(&c) || (keep_lines && c == '\n');
    if !text.contains(special) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if let Some(i) = MARKERS.iter().position(|&m| m == c) {
            out.push(ESCAPE);
            out.push(char::from(b'0' + i as u8));
        } else if keep_lines && c == '\n' {
            out.push(LITERAL_NEWLINE);
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes [`opaque`] on the aligned text.
fn restore(text: String) -> String {
    if !text.contains([LITERAL_NEWLINE, ESCAPE]) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            LITERAL_NEWLINE => out.push('\n'),
            ESCAPE => {
                let m = chars.next().and_then(|d| d.to_digit(10));
                out.push(
                    m.and_then(|i| MARKERS.get(i as usize).copied())
                        .unwrap_or(ESCAPE),
                );
            }
            c => out.push(c),
        }
    }
    out
}

/// Display width of an aligned cell (escapes take no room).
fn cell_width(cell: &str) -> usize {
    cell.chars().count() - cell.matches(ESCAPE).count()
}

/// Formats a parsed file.
pub fn print_file(f: &File) -> String {
    let mut p = Printer {
        comments: f.comments.clone(),
        next_comment: 0,
        out: String::new(),
    };
    p.body(&f.body, 0, None);
    // Comments after the last statement.
    let rest: Vec<Comment> = p.comments[p.next_comment..].to_vec();
    let mut prev_line = f.body.last().map(|s| s.end().line);
    if !rest.is_empty() {
        p.break_line();
    }
    for c in rest {
        if prev_line.is_some_and(|l| c.pos.line > l + 1) {
            p.out.push('\n');
        }
        p.out.push_str(&opaque(&c.text, false));
        p.out.push('\n');
        prev_line = Some(c.end_line());
    }
    align(&p.out)
}

struct Printer {
    comments: Vec<Comment>,
    next_comment: usize,
    out: String,
}

fn tabs(n: usize) -> String {
    "\t".repeat(n)
}

fn different_lines(a: Pos, b: Pos) -> bool {
    a.line != b.line
}

impl Comment {
    fn end_line(&self) -> usize {
        self.pos.line + self.text.matches('\n').count()
    }
}

impl Printer {
    /// Comments that start before `offset` and were not printed yet.
    fn take_comments_before(&mut self, offset: usize) -> Vec<Comment> {
        let mut v = Vec::new();
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.pos.offset < offset {
                v.push(c.clone());
                self.next_comment += 1;
            } else {
                break;
            }
        }
        v
    }

    /// A comment on `line` at or after `after` (a trailing comment), if it is the next one and
    /// starts before `before`.
    fn take_trailing(&mut self, line: usize, after: usize, before: usize) -> Option<String> {
        let c = self.comments.get(self.next_comment)?;
        if c.pos.line == line && c.pos.offset >= after && c.pos.offset < before {
            self.next_comment += 1;
            return Some(opaque(&c.text, false));
        }
        None
    }

    /// Ends the current alignment block: what follows starts a new one.
    fn break_line(&mut self) {
        if self.out.ends_with(LINE) {
            self.out.pop();
            self.out.push('\n');
        }
    }

    /// Prints statements at `indent`. In a block, `inside` is the line of its `{` (a blank line
    /// after it before a comment is kept, as Alloy does) and the offset of its `}` (comments
    /// after the last statement stay inside).
    fn body(&mut self, stmts: &[Stmt], indent: usize, inside: Option<(usize, Pos)>) {
        let open_line = inside.map(|(l, _)| l);
        let mut prev_end: Option<Pos> = None;
        for s in stmts {
            let leading = self.take_comments_before(s.start().offset);
            let is_block = matches!(s, Stmt::Block(_));
            if let Some(pe) = prev_end {
                let first_line = leading
                    .first()
                    .map(|c| c.pos.line)
                    .unwrap_or(s.start().line);
                // Two blocks (or a block after anything) get a blank line; otherwise the
                // source's blank lines are kept.
                if is_block || first_line > pe.line + 1 {
                    self.break_line();
                    self.out.push('\n');
                }
            }
            if !leading.is_empty() || is_block {
                self.break_line();
            }
            let mut last_line = match prev_end {
                None => open_line.or(leading.first().map(|c| c.pos.line)),
                Some(_) => leading.first().map(|c| c.pos.line),
            };
            for c in &leading {
                if last_line.is_some_and(|l| c.pos.line > l + 1) {
                    self.out.push('\n');
                }
                self.out.push_str(&tabs(indent));
                self.out.push_str(&opaque(&c.text, false));
                self.out.push('\n');
                last_line = Some(c.end_line());
            }
            if !leading.is_empty() && last_line.is_some_and(|l| s.start().line > l + 1) {
                self.out.push('\n');
            }
            self.out.push_str(&tabs(indent));
            match s {
                Stmt::Attr(a) => {
                    self.out.push_str(&a.name.name);
                    self.out.push(CELL);
                    self.out.push_str("= ");
                    let v = self.expr(&a.value, indent);
                    self.out.push_str(&v);
                }
                Stmt::Block(b) => self.block(b, indent),
            }
            if let Some(c) = self.take_trailing(s.end().line, s.end().offset, usize::MAX) {
                self.out.push(CELL);
                self.out.push_str(&c);
            }
            // A statement spanning lines ends the alignment block it started in.
            self.out.push(if s.start().line == s.end().line {
                LINE
            } else {
                '\n'
            });
            prev_end = Some(s.end());
        }
        if let Some((_, close)) = inside {
            let inner = self.take_comments_before(close.offset);
            if !inner.is_empty() {
                self.break_line();
            }
            let mut last = prev_end.map(|p| p.line).or(open_line);
            let commented = !inner.is_empty();
            for c in inner {
                if last.is_some_and(|l| c.pos.line > l + 1) {
                    self.out.push('\n');
                }
                self.out.push_str(&tabs(indent));
                self.out.push_str(&opaque(&c.text, false));
                self.out.push('\n');
                last = Some(c.end_line());
            }
            // A blank line between the last comment and the `}` is kept too.
            if commented && last.is_some_and(|l| close.line > l + 1) {
                self.out.push('\n');
            }
        }
    }

    fn block(&mut self, b: &Block, indent: usize) {
        self.out.push_str(&b.full_name());
        if let Some(l) = &b.label {
            self.out.push(' ');
            self.out.push_str(&opaque(&quote(l), true));
        }
        let first = b
            .body
            .first()
            .map(|s| s.start().offset)
            .unwrap_or(b.rcurly.offset);
        // A comment on the header line stays there: `block { // why`.
        let header = self.take_trailing(b.lcurly.line, b.lcurly.offset, first);
        let has_inner_comments = self.comments[self.next_comment..]
            .iter()
            .any(|c| c.pos.offset > b.lcurly.offset && c.pos.offset < b.rcurly.offset);
        if b.body.is_empty() && header.is_none() && !has_inner_comments {
            self.out.push_str(" { }");
            return;
        }
        self.out.push_str(" {");
        if let Some(c) = header {
            self.out.push(CELL);
            self.out.push_str(&c);
        }
        self.out.push('\n');
        self.body(&b.body, indent + 1, Some((b.lcurly.line, b.rcurly)));
        self.break_line();
        self.out.push_str(&tabs(indent));
        self.out.push('}');
    }

    /// Renders an expression; `indent` is the indentation of the line it starts on.
    fn expr(&mut self, e: &Expr, indent: usize) -> String {
        match &e.kind {
            ExprKind::Literal(l) => match l {
                Lit::Number(s) | Lit::Float(s) => s.clone(),
                Lit::String(s) => opaque(s, true),
                Lit::Bool(b) => b.to_string(),
                Lit::Null => "null".into(),
            },
            ExprKind::Ident(n) => n.clone(),
            ExprKind::Access(v, name) => format!("{}.{}", self.expr(v, indent), name.name),
            ExprKind::Index(v, i) => format!("{}[{}]", self.expr(v, indent), self.expr(i, indent)),
            ExprKind::Unary(op, v) => format!("{}{}", op.op_str(), self.expr(v, indent)),
            ExprKind::Binary(op, l, r) => {
                format!(
                    "{} {} {}",
                    self.expr(l, indent),
                    op.op_str(),
                    self.expr(r, indent)
                )
            }
            ExprKind::Paren(v) => format!("({})", self.expr(v, indent)),
            ExprKind::Array(items) => self.list("[", "]", items, e.pos, e.end, indent),
            ExprKind::Call(f, args) => {
                let head = self.expr(f, indent);
                let body = self.list("(", ")", args, f.end, e.end, indent);
                format!("{head}{body}")
            }
            ExprKind::Object(fields) => self.object(fields, e, indent),
        }
    }

    /// Comments on their own lines before `offset`, each on a new line at `indent`, with at
    /// most one blank line kept before each and before what follows (at line `next`), as
    /// Alloy does. `prev` is the line where the previous token ended. Whether any was printed.
    fn own_line_comments(
        &mut self,
        s: &mut String,
        offset: usize,
        indent: usize,
        prev: usize,
        next: usize,
    ) -> bool {
        let cs = self.take_comments_before(offset);
        let mut last = prev;
        for c in &cs {
            if c.pos.line > last + 1 {
                s.push('\n');
            }
            s.push('\n');
            s.push_str(&tabs(indent));
            s.push_str(&opaque(&c.text, false));
            last = c.end_line();
        }
        if !cs.is_empty() && next > last + 1 {
            s.push('\n');
        }
        !cs.is_empty()
    }

    /// Block comments between two elements on one line stay there, a space on each side.
    fn inline_comments(&mut self, s: &mut String, offset: usize) {
        for c in self.take_comments_before(offset) {
            s.push_str(&opaque(&c.text, false));
            s.push(' ');
        }
    }

    /// Arrays and call arguments (Alloy's walker): an element that starts on a new line in
    /// the source starts on a new line here, one level deeper than the line the bracket is
    /// on; a closing bracket on its own line gets a trailing comma first.
    fn list(
        &mut self,
        open: &str,
        close: &str,
        items: &[Expr],
        open_pos: Pos,
        end: Pos,
        indent: usize,
    ) -> String {
        let close_offset = end.offset.saturating_sub(1);
        let mut s = open.to_string();
        let mut prev = open_pos;
        for (i, it) in items.iter().enumerate() {
            if different_lines(prev, it.pos) {
                if let Some(c) = self.take_trailing(prev.line, prev.offset, it.pos.offset) {
                    s.push(CELL);
                    s.push_str(&c);
                }
                self.own_line_comments(&mut s, it.pos.offset, indent + 1, prev.line, it.pos.line);
                s.push('\n');
                s.push_str(&tabs(indent + 1));
                s.push_str(&self.expr(it, indent + 1));
            } else {
                if i > 0 {
                    s.push(' ');
                }
                self.inline_comments(&mut s, it.pos.offset);
                s.push_str(&self.expr(it, indent));
            }
            if i + 1 < items.len() {
                s.push(',');
            }
            prev = it.end;
        }
        if !items.is_empty() && end.line != prev.line {
            s.push(',');
            if let Some(c) = self.take_trailing(prev.line, prev.offset, close_offset) {
                s.push(CELL);
                s.push_str(&c);
            }
            self.own_line_comments(&mut s, close_offset, indent + 1, prev.line, end.line);
            s.push('\n');
            s.push_str(&tabs(indent));
        }
        s.push_str(close);
        s
    }

    /// Objects: fields always one level deeper; consecutive one-line fields align their `=`.
    fn object(&mut self, fields: &[Field], e: &Expr, indent: usize) -> String {
        if fields.is_empty() {
            return "{}".into();
        }
        let key = |f: &Field| {
            if f.quoted || !super::scanner::is_valid_identifier(&f.name.name) {
                opaque(&quote(&f.name.name), true)
            } else {
                f.name.name.clone()
            }
        };
        let close_offset = e.end.offset.saturating_sub(1);
        let mut s = String::from("{");
        let mut prev = e.pos;
        for (i, f) in fields.iter().enumerate() {
            if different_lines(prev, f.name.pos) {
                if let Some(c) = self.take_trailing(prev.line, prev.offset, f.name.pos.offset) {
                    s.push(CELL);
                    s.push_str(&c);
                }
                let commented = self.own_line_comments(
                    &mut s,
                    f.name.pos.offset,
                    indent + 1,
                    prev.line,
                    f.name.pos.line,
                );
                let prev_one_line = i > 0 && fields[i - 1].value.pos.line == prev.line;
                s.push(if prev_one_line && !commented {
                    LINE
                } else {
                    '\n'
                });
                s.push_str(&tabs(indent + 1));
            } else if i > 0 {
                s.push(' ');
            }
            self.inline_comments(&mut s, f.name.pos.offset);
            s.push_str(&key(f));
            s.push(CELL);
            s.push_str("= ");
            s.push_str(&self.expr(&f.value, indent + 1));
            if i + 1 < fields.len() {
                s.push(',');
            }
            prev = f.value.end;
        }
        if different_lines(prev, e.end) {
            s.push(',');
            if let Some(c) = self.take_trailing(prev.line, prev.offset, close_offset) {
                s.push(CELL);
                s.push_str(&c);
            }
            self.own_line_comments(&mut s, close_offset, indent + 1, prev.line, e.end.line);
            s.push('\n');
            s.push_str(&tabs(indent));
        }
        s.push('}');
        s
    }
}

/// Go's `text/tabwriter` as Alloy's printer configures it (padding 1, spaces): within a block
/// of lines joined by [`LINE`], cell `k` of consecutive lines that have one is padded to the
/// widest such cell plus one space. Trailing whitespace is trimmed, as Alloy's trimmer does.
fn align(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, block) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let lines: Vec<Vec<&str>> = block.split(LINE).map(|l| l.split(CELL).collect()).collect();
        let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len() - 1]).collect();
        format_column(&lines, &mut widths, 0, lines.len(), 0);
        for (i, cells) in lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let mut line = String::new();
            for (k, c) in cells.iter().enumerate() {
                line.push_str(c);
                if k + 1 < cells.len() {
                    let pad = widths[i][k] - cell_width(c);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end_matches([' ', '\t']));
        }
    }
    restore(out)
}

/// Sets the width of column `col` for each run of consecutive lines in `lo..hi` that have a
/// terminated cell there, then recurses into the next column within that run.
fn format_column(lines: &[Vec<&str>], widths: &mut [Vec<usize>], lo: usize, hi: usize, col: usize) {
    let mut i = lo;
    while i < hi {
        if lines[i].len() - 1 <= col {
            i += 1;
            continue;
        }
        let start = i;
        let mut w = 0;
        while i < hi && lines[i].len() - 1 > col {
            w = w.max(cell_width(lines[i][col]) + 1);
            i += 1;
        }
        for row in widths.iter_mut().take(i).skip(start) {
            row[col] = w;
        }
        format_column(lines, widths, start, i, col + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse_file;
    use super::*;

    #[test]
    fn formats_like_alloy() {
        let src = "// head\nloki.write \"default\" {\n  endpoint {\n    url = \"http://x\" // where\n    tenant_id = \"t\"\n  }\n  external_labels = {\n    cluster = \"dev\",\n    \"app.kubernetes.io/name\" = \"a\",\n  }\n}\nloki.process \"p\" {\n  forward_to = [loki.write.default.receiver]\n  stage.cri {}\n}\n";
        let (f, d) = parse_file("t", src);
        assert!(d.is_empty(), "{d:?}");
        let out = print_file(&f);
        let want = "// head\nloki.write \"default\" {\n\tendpoint {\n\t\turl       = \"http://x\" // where\n\t\ttenant_id = \"t\"\n\t}\n\texternal_labels = {\n\t\tcluster                  = \"dev\",\n\t\t\"app.kubernetes.io/name\" = \"a\",\n\t}\n}\n\nloki.process \"p\" {\n\tforward_to = [loki.write.default.receiver]\n\n\tstage.cri { }\n}\n";
        assert_eq!(out, want, "\n{out}");
        // Formatting is idempotent.
        let (f2, _) = parse_file("t", &out);
        assert_eq!(print_file(&f2), out);
    }

    /// Found by the `parse` fuzz target: trailing blanks on a line inside a raw string
    /// were trimmed, changing the string's value.
    #[test]
    fn keeps_trailing_blanks_inside_a_raw_string() {
        let src = "import.string \"lib\" {\n  content = `\nexport \"a\" { \n\tvalue = 1\t\n}\n`\n  other = 1\n}\n";
        let (f, d) = parse_file("t", src);
        assert!(d.is_empty(), "{d:?}");
        let out = print_file(&f);
        let want = "import.string \"lib\" {\n\tcontent = `\nexport \"a\" { \n\tvalue = 1\t\n}\n`\n\tother = 1\n}\n";
        assert_eq!(out, want, "\n{out}");
        let (f2, _) = parse_file("t", &out);
        assert_eq!(print_file(&f2), out);
    }

    /// Found by the `parse` fuzz target: the printer's own marker characters inside a
    /// string, quoted key or comment split it into alignment cells.
    #[test]
    fn marker_characters_in_source_text_pass_through() {
        let src = "a \"lb\" {\n  // c\u{E000}d\n  x = `p\u{E000}q\u{E001}r\u{E003}0s`\n  obj = {\"k\u{E002}\" = 1, k2 = 2}\n}\n";
        let (f, d) = parse_file("t", src);
        assert!(d.is_empty(), "{d:?}");
        let out = print_file(&f);
        let want = "a \"lb\" {\n\t// c\u{E000}d\n\tx   = `p\u{E000}q\u{E001}r\u{E003}0s`\n\tobj = {\"k\u{E002}\" = 1, k2 = 2}\n}\n";
        assert_eq!(out, want, "\n{out}");
        let (f2, _) = parse_file("t", &out);
        assert_eq!(print_file(&f2), out);
    }

    /// Alloy's printer keeps (at most one) blank line between a comment and the token before
    /// or after it, but none between elements or after `{` without a comment.
    #[test]
    fn keeps_blank_lines_around_comments_like_alloy() {
        let src = "block {\n\n  // after blank\n  attr = 1\n\n\n\n  // before close\n\n}\nb {\n\n  x = 1\n}\narr = [\n\n  // c1\n\n  1,\n\n  2,\n  // end\n]\n";
        let (f, d) = parse_file("t", src);
        assert!(d.is_empty(), "{d:?}");
        let want = "block {\n\n\t// after blank\n\tattr = 1\n\n\t// before close\n\n}\n\nb {\n\tx = 1\n}\narr = [\n\n\t// c1\n\n\t1,\n\t2,\n\t// end\n]\n";
        assert_eq!(print_file(&f), want);
    }
}
