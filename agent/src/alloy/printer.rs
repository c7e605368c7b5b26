//! Canonical formatting for `agent fmt`, following Alloy's printer: tab indentation, `=`
//! aligned (with spaces) across consecutive one-line attributes, a blank line between blocks,
//! source blank lines kept, line layout of arrays/objects/calls kept, a trailing comma when the
//! closing bracket sits on its own line, and comments kept where they were.

use super::ast::*;
use super::diag::Pos;
use super::scanner::quote;

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
    for c in rest {
        if prev_line.is_some_and(|l| c.pos.line > l + 1) {
            p.out.push('\n');
        }
        p.out.push_str(&c.text);
        p.out.push('\n');
        prev_line = Some(c.pos.line + c.text.matches('\n').count());
    }
    p.out
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

    /// A comment on `line` right after a statement ends there (a trailing comment).
    fn take_trailing(&mut self, line: usize, after: usize) -> Option<String> {
        let c = self.comments.get(self.next_comment)?;
        if c.pos.line == line && c.pos.offset >= after && !c.text.contains('\n') {
            self.next_comment += 1;
            return Some(c.text.clone());
        }
        None
    }

    /// Prints statements at `indent`; `close` is the offset of the closing `}` so comments
    /// inside the block but after the last statement stay inside.
    fn body(&mut self, stmts: &[Stmt], indent: usize, close: Option<usize>) {
        // One-line attributes in a run get their `=` aligned; compute the runs first.
        let mut prev_end: Option<Pos> = None;
        let mut i = 0;
        while i < stmts.len() {
            // Gather a run: consecutive one-line attributes with no blank line or comment
            // between them.
            let mut run = vec![i];
            if is_one_line_attr(&stmts[i]) {
                while let Some(next) = stmts.get(run[run.len() - 1] + 1) {
                    let last = &stmts[run[run.len() - 1]];
                    let comment_between = self.comments[self.next_comment..].iter().any(|c| {
                        c.pos.offset > last.end().offset
                            && c.pos.offset < next.start().offset
                            && c.pos.line != last.end().line
                    });
                    if is_one_line_attr(next)
                        && next.start().line <= last.end().line + 1
                        && !comment_between
                    {
                        run.push(run[run.len() - 1] + 1);
                    } else {
                        break;
                    }
                }
            }
            let width = run
                .iter()
                .filter_map(|&k| match &stmts[k] {
                    Stmt::Attr(a) => Some(a.name.name.chars().count()),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            for &k in &run {
                let s = &stmts[k];
                let leading = self.take_comments_before(s.start().offset);
                let is_block = matches!(s, Stmt::Block(_));
                if let Some(pe) = prev_end {
                    let first_line = leading
                        .first()
                        .map(|c| c.pos.line)
                        .unwrap_or(s.start().line);
                    // Two blocks (or a block after anything) get a blank line; otherwise keep
                    // the source's blank lines.
                    if is_block || first_line > pe.line + 1 {
                        self.out.push('\n');
                    }
                }
                let mut last_line = leading.first().map(|c| c.pos.line);
                for c in &leading {
                    if let Some(l) = last_line {
                        if c.pos.line > l + 1 {
                            self.out.push('\n');
                        }
                    }
                    self.out.push_str(&tabs(indent));
                    self.out.push_str(&c.text);
                    self.out.push('\n');
                    last_line = Some(c.pos.line + c.text.matches('\n').count());
                }
                if let (Some(l), false) = (last_line, leading.is_empty()) {
                    if s.start().line > l + 1 {
                        self.out.push('\n');
                    }
                }
                self.out.push_str(&tabs(indent));
                match s {
                    Stmt::Attr(a) => {
                        let pad = if run.len() > 1 {
                            width - a.name.name.chars().count()
                        } else {
                            0
                        };
                        self.out.push_str(&a.name.name);
                        self.out.push_str(&" ".repeat(pad));
                        self.out.push_str(" = ");
                        let v = self.expr(&a.value, indent);
                        self.out.push_str(&v);
                    }
                    Stmt::Block(b) => self.block(b, indent),
                }
                if let Some(c) = self.take_trailing(s.end().line, s.end().offset) {
                    self.out.push(' ');
                    self.out.push_str(&c);
                }
                self.out.push('\n');
                prev_end = Some(s.end());
            }
            i = run[run.len() - 1] + 1;
        }
        if let Some(close) = close {
            let inner = self.take_comments_before(close);
            let mut last = prev_end.map(|p| p.line);
            for c in inner {
                if last.is_some_and(|l| c.pos.line > l + 1) {
                    self.out.push('\n');
                }
                self.out.push_str(&tabs(indent));
                self.out.push_str(&c.text);
                self.out.push('\n');
                last = Some(c.pos.line);
            }
        }
    }

    fn block(&mut self, b: &Block, indent: usize) {
        self.out.push_str(&b.full_name());
        if let Some(l) = &b.label {
            self.out.push(' ');
            self.out.push_str(&quote(l));
        }
        let has_inner_comments = self.comments[self.next_comment..]
            .iter()
            .any(|c| c.pos.offset > b.lcurly.offset && c.pos.offset < b.rcurly.offset);
        if b.body.is_empty() && !has_inner_comments {
            self.out.push_str(" { }");
            return;
        }
        self.out.push_str(" {\n");
        self.body(&b.body, indent + 1, Some(b.rcurly.offset));
        self.out.push_str(&tabs(indent));
        self.out.push('}');
    }

    /// Renders an expression; multi-line forms are indented relative to `indent`.
    fn expr(&mut self, e: &Expr, indent: usize) -> String {
        match &e.kind {
            ExprKind::Literal(l) => match l {
                Lit::Number(s) | Lit::Float(s) | Lit::String(s) => s.clone(),
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
            ExprKind::Array(items) => {
                let open = e.pos;
                let close_line = e.end.line;
                self.list("[", "]", items, open, close_line, indent, |p, x, ind| {
                    p.expr(x, ind)
                })
            }
            ExprKind::Call(f, args) => {
                let head = self.expr(f, indent);
                let open = f.end;
                let body = self.list("(", ")", args, open, e.end.line, indent, |p, x, ind| {
                    p.expr(x, ind)
                });
                format!("{head}{body}")
            }
            ExprKind::Object(fields) => self.object(fields, e, indent),
        }
    }

    /// Arrays and call arguments: an element that starts on a new line in the source starts
    /// on a new line here; a closing bracket on its own line gets a trailing comma first.
    #[allow(clippy::too_many_arguments)]
    fn list<F>(
        &mut self,
        open: &str,
        close: &str,
        items: &[Expr],
        open_pos: Pos,
        close_line: usize,
        indent: usize,
        f: F,
    ) -> String
    where
        F: Fn(&mut Self, &Expr, usize) -> String,
    {
        let mut s = open.to_string();
        let mut prev = open_pos;
        for (i, it) in items.iter().enumerate() {
            if different_lines(prev, it.pos) {
                for c in self.take_comments_before(it.pos.offset) {
                    s.push('\n');
                    s.push_str(&tabs(indent + 1));
                    s.push_str(&c.text);
                }
                s.push('\n');
                s.push_str(&tabs(indent + 1));
            } else if i > 0 {
                s.push(' ');
            }
            s.push_str(&f(self, it, indent + 1));
            if i + 1 < items.len() {
                s.push(',');
            }
            prev = it.end;
        }
        if !items.is_empty() && close_line != prev.line {
            s.push_str(",\n");
            s.push_str(&tabs(indent));
        }
        s.push_str(close);
        s
    }

    fn object(&mut self, fields: &[Field], e: &Expr, indent: usize) -> String {
        if fields.is_empty() {
            return "{}".into();
        }
        // Fields on their own lines are aligned like attributes.
        let multiline = fields.iter().any(|f| different_lines(e.pos, f.name.pos))
            || different_lines(e.pos, e.end);
        let key = |f: &Field| {
            if f.quoted || !super::scanner::is_valid_identifier(&f.name.name) {
                quote(&f.name.name)
            } else {
                f.name.name.clone()
            }
        };
        let width = fields
            .iter()
            .map(|f| key(f).chars().count())
            .max()
            .unwrap_or(0);
        let mut s = String::from("{");
        let mut prev = e.pos;
        for (i, f) in fields.iter().enumerate() {
            let k = key(f);
            if multiline && (different_lines(prev, f.name.pos) || f.name.pos.line == 0) {
                s.push('\n');
                s.push_str(&tabs(indent + 1));
                let pad = width - k.chars().count();
                s.push_str(&k);
                s.push_str(&" ".repeat(pad));
            } else {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(&k);
            }
            s.push_str(" = ");
            s.push_str(&self.expr(&f.value, indent + 1));
            if i + 1 < fields.len() {
                s.push(',');
            }
            prev = f.value.end;
        }
        if multiline && different_lines(prev, e.end) {
            s.push_str(",\n");
            s.push_str(&tabs(indent));
        }
        s.push('}');
        s
    }
}

fn is_one_line_attr(s: &Stmt) -> bool {
    matches!(s, Stmt::Attr(a) if a.name.pos.line == a.value.end.line)
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
}
