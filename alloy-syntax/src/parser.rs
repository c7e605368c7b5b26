//! Recursive-descent parser for the Alloy syntax (spec §1.2). It recovers after errors and
//! keeps collecting them, dropping a second parser error on the same line as Alloy does.

use super::ast::*;
use super::diag::{Diagnostic, Diagnostics, LineIndex, Pos};
use super::scanner::{is_valid_identifier, unquote, Scanner, Tok, Token};

/// Parses a whole file. The tree is returned even when there are errors: it holds every
/// statement that could be recovered, so later checks can still report their problems.
pub fn parse_file(name: &str, src: &str) -> (File, Diagnostics) {
    let mut p = Parser::new(name, src);
    let body = p.body(Tok::Eof);
    let mut diags = p.diags;
    diags.sort();
    (
        File {
            name: name.to_string(),
            body,
            comments: p.comments,
        },
        diags,
    )
}

/// Parses a single expression (used by tests and the evaluator's helpers).
pub fn parse_expr(src: &str) -> Result<Expr, Diagnostics> {
    let mut p = Parser::new("expr", src);
    let e = p.expr();
    if p.tok() == Tok::Terminator {
        p.next();
    }
    if p.tok() != Tok::Eof {
        p.error(format!("expected EOF, got {}", p.tok()));
    }
    if p.diags.is_empty() {
        Ok(e)
    } else {
        Err(p.diags)
    }
}

struct Parser {
    file: String,
    idx: LineIndex,
    toks: Vec<Token>,
    i: usize,
    /// End offset of the last consumed token (exclusive).
    prev_end: usize,
    comments: Vec<Comment>,
    diags: Diagnostics,
    last_error_line: usize,
}

impl Parser {
    fn new(name: &str, src: &str) -> Self {
        let idx = LineIndex::new(src);
        let mut sc = Scanner::new(src);
        let mut toks = Vec::new();
        let mut comments = Vec::new();
        loop {
            let t = sc.scan();
            match t.tok {
                Tok::Comment => comments.push(Comment {
                    pos: idx.pos(t.offset),
                    text: t.lit,
                }),
                Tok::Eof => {
                    toks.push(t);
                    break;
                }
                _ => toks.push(t),
            }
        }
        let mut diags = Diagnostics::default();
        for e in sc.errors {
            let mut d = Diagnostic::new(name, idx.pos(e.offset), e.msg);
            d.hint = e.hint.map(str::to_string);
            diags.push(d);
        }
        Parser {
            file: name.to_string(),
            idx,
            toks,
            i: 0,
            prev_end: 0,
            comments,
            diags,
            last_error_line: 0,
        }
    }

    fn tok(&self) -> Tok {
        self.cur().tok
    }

    fn cur(&self) -> &Token {
        // The token list always ends with EOF and `next` never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn pos(&self) -> Pos {
        self.idx.pos(self.cur().offset)
    }

    fn next(&mut self) {
        if self.i < self.toks.len() - 1 {
            let t = &self.toks[self.i];
            let len = if t.lit.is_empty() {
                t.tok.op_str().len().max(1)
            } else {
                t.lit.len()
            };
            // A terminator has no width of its own: the expression ended before it.
            if t.tok != Tok::Terminator {
                self.prev_end = t.offset + len;
            }
            self.i += 1;
        }
    }

    fn end_pos(&self) -> Pos {
        self.idx.pos(self.prev_end)
    }

    fn error(&mut self, msg: String) {
        // The scanner already reported the illegal character itself (with its fix hint); a
        // second "expected X, got ILLEGAL" at the same spot only adds noise.
        if self.tok() == Tok::Illegal {
            return;
        }
        let pos = self.pos();
        if pos.line == self.last_error_line {
            return;
        }
        self.last_error_line = pos.line;
        self.diags.push(Diagnostic::new(&self.file, pos, msg));
    }

    fn expect(&mut self, t: Tok) -> (Pos, bool) {
        let pos = self.pos();
        let ok = self.tok() == t;
        if !ok {
            self.error(format!("expected {t}, got {}", self.tok()));
        }
        self.next();
        (pos, ok)
    }

    fn advance_to(&mut self, t: Tok) {
        while self.tok() != Tok::Eof && self.tok() != t {
            self.next();
        }
    }

    fn body(&mut self, until: Tok) -> Vec<Stmt> {
        let mut out = Vec::new();
        while self.tok() != until && self.tok() != Tok::Eof {
            if let Some(s) = self.stmt() {
                out.push(s);
            }
            if self.tok() == until {
                break;
            }
            if self.tok() != Tok::Terminator {
                self.error(format!("expected TERMINATOR, got {}", self.tok()));
                self.consume_statement();
            }
            self.next();
        }
        out
    }

    /// Skips to the terminator that ends the current statement, balancing brackets.
    fn consume_statement(&mut self) {
        let (mut c, mut b, mut p) = (0i32, 0i32, 0i32);
        while self.tok() != Tok::Eof {
            match self.tok() {
                Tok::LCurly => c += 1,
                Tok::RCurly => c -= 1,
                Tok::LBrack => b += 1,
                Tok::RBrack => b -= 1,
                Tok::LParen => p += 1,
                Tok::RParen => p -= 1,
                Tok::Terminator if c <= 0 && b <= 0 && p <= 0 => return,
                _ => {}
            }
            self.next();
        }
    }

    fn stmt(&mut self) -> Option<Stmt> {
        if self.tok() != Tok::Ident {
            self.error(format!("expected identifier, got {}", self.tok()));
            self.advance_to(Tok::Ident);
            return None;
        }
        let start = self.pos();
        let mut frags = vec![self.cur().lit.clone()];
        self.next();
        while self.tok() == Tok::Dot {
            self.next();
            if self.tok() != Tok::Ident {
                self.error(format!("expected identifier, got {}", self.tok()));
            }
            frags.push(self.cur().lit.clone());
            self.next();
        }
        let mut label = None;
        let mut label_pos = None;
        if self.tok() != Tok::Assign && self.tok() != Tok::LCurly {
            if self.tok() == Tok::String {
                let lit = self.cur().lit.clone();
                if !lit.starts_with('"') {
                    self.error(format!(
                        "expected block label to be a double quoted string, but got {lit:?}"
                    ));
                }
                let value = unquote(&lit);
                if !value.is_empty() && !is_valid_identifier(&value) {
                    self.error(format!(
                        "expected block label to be a valid identifier, but got {value:?}"
                    ));
                }
                label_pos = Some(self.pos());
                label = Some(value);
            } else {
                self.error(format!("expected block label, got {}", self.tok()));
            }
            self.next();
        }
        match self.tok() {
            Tok::Assign => {
                self.next();
                if frags.len() != 1 {
                    let name = frags.join(".");
                    let end = self.idx.pos(start.offset + name.len() - 1);
                    self.diags.push(
                        Diagnostic::new(&self.file, start, r#"attribute names may only consist of a single identifier with no ".""#)
                            .with_end(end),
                    );
                } else if let Some(lp) = label_pos {
                    self.diags.push(Diagnostic::new(
                        &self.file,
                        lp,
                        "attribute names may not have labels",
                    ));
                }
                let value = self.expr();
                Some(Stmt::Attr(Attribute {
                    name: Ident {
                        name: frags.swap_remove(0),
                        pos: start,
                    },
                    value,
                }))
            }
            Tok::LCurly => {
                let (lcurly, _) = self.expect(Tok::LCurly);
                let body = self.body(Tok::RCurly);
                let (rcurly, _) = self.expect(Tok::RCurly);
                Some(Stmt::Block(Block {
                    name: frags,
                    name_pos: start,
                    label,
                    label_pos,
                    body,
                    lcurly,
                    rcurly,
                }))
            }
            t => {
                if frags.len() == 1 && label.is_none() {
                    self.error(format!(
                        "expected attribute assignment or block body, got {t}"
                    ));
                } else {
                    self.error(format!("expected block body, got {t}"));
                }
                self.advance_to(Tok::Ident);
                None
            }
        }
    }

    pub fn expr(&mut self) -> Expr {
        self.binop(1)
    }

    fn binop(&mut self, min_prec: u8) -> Expr {
        let mut lhs = self.pow();
        loop {
            let op = self.tok();
            let prec = op.precedence();
            // `^` is handled (right-associatively) by `pow`.
            if prec == 0 || prec < min_prec || op == Tok::Pow {
                return lhs;
            }
            self.next();
            let rhs = self.binop(prec + 1);
            lhs = Expr {
                pos: lhs.pos,
                end: rhs.end,
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
            };
        }
    }

    fn pow(&mut self) -> Expr {
        let lhs = self.unary();
        if self.tok() == Tok::Pow {
            self.next();
            let rhs = self.pow();
            return Expr {
                pos: lhs.pos,
                end: rhs.end,
                kind: ExprKind::Binary(Tok::Pow, Box::new(lhs), Box::new(rhs)),
            };
        }
        lhs
    }

    fn unary(&mut self) -> Expr {
        if matches!(self.tok(), Tok::Not | Tok::Sub) {
            let (op, pos) = (self.tok(), self.pos());
            self.next();
            let inner = self.unary();
            return Expr {
                pos,
                end: inner.end,
                kind: ExprKind::Unary(op, Box::new(inner)),
            };
        }
        let mut e = self.primary();
        loop {
            match self.tok() {
                Tok::Dot => {
                    self.next();
                    let npos = self.pos();
                    let name = self.cur().lit.clone();
                    self.expect(Tok::Ident);
                    e = Expr {
                        pos: e.pos,
                        end: self.end_pos(),
                        kind: ExprKind::Access(Box::new(e), Ident { name, pos: npos }),
                    };
                }
                Tok::LBrack => {
                    self.next();
                    let idx = self.expr();
                    self.expect(Tok::RBrack);
                    e = Expr {
                        pos: e.pos,
                        end: self.end_pos(),
                        kind: ExprKind::Index(Box::new(e), Box::new(idx)),
                    };
                }
                Tok::LParen => {
                    self.next();
                    let args = if self.tok() != Tok::RParen {
                        self.list(Tok::RParen)
                    } else {
                        Vec::new()
                    };
                    self.expect(Tok::RParen);
                    e = Expr {
                        pos: e.pos,
                        end: self.end_pos(),
                        kind: ExprKind::Call(Box::new(e), args),
                    };
                }
                Tok::String | Tok::LCurly => {
                    // Someone wrote a block where a value goes (`x = foo "l" { }`): parse it as a
                    // block only to say so clearly.
                    if self.tok() == Tok::String {
                        self.next();
                    }
                    if !self.expect(Tok::LCurly).1 {
                        self.consume_statement();
                        return e;
                    }
                    self.body(Tok::RCurly);
                    if !self.expect(Tok::RCurly).1 {
                        self.consume_statement();
                        return e;
                    }
                    self.diags.push(
                        Diagnostic::new(&self.file, e.pos, "cannot use a block as an expression")
                            .with_end(self.end_pos()),
                    );
                }
                _ => return e,
            }
        }
    }

    fn primary(&mut self) -> Expr {
        let pos = self.pos();
        let lit = self.cur().lit.clone();
        let kind = match self.tok() {
            Tok::Ident => {
                self.next();
                ExprKind::Ident(lit)
            }
            Tok::String => {
                self.next();
                ExprKind::Literal(Lit::String(lit))
            }
            Tok::Number => {
                self.next();
                ExprKind::Literal(Lit::Number(lit))
            }
            Tok::Float => {
                self.next();
                ExprKind::Literal(Lit::Float(lit))
            }
            Tok::Bool => {
                self.next();
                ExprKind::Literal(Lit::Bool(lit == "true"))
            }
            Tok::Null => {
                self.next();
                ExprKind::Literal(Lit::Null)
            }
            Tok::LParen => {
                self.next();
                let inner = self.expr();
                self.expect(Tok::RParen);
                ExprKind::Paren(Box::new(inner))
            }
            Tok::LBrack => {
                self.next();
                let v = if self.tok() != Tok::RBrack {
                    self.list(Tok::RBrack)
                } else {
                    Vec::new()
                };
                self.expect(Tok::RBrack);
                ExprKind::Array(v)
            }
            Tok::LCurly => {
                self.next();
                let v = if self.tok() != Tok::RCurly {
                    self.fields()
                } else {
                    Vec::new()
                };
                self.expect(Tok::RCurly);
                ExprKind::Object(v)
            }
            t => {
                self.error(format!("expected expression, got {t}"));
                // Eat up the rest of the element or line.
                while !matches!(
                    self.tok(),
                    Tok::Eof
                        | Tok::Terminator
                        | Tok::RParen
                        | Tok::RCurly
                        | Tok::RBrack
                        | Tok::Comma
                ) {
                    self.next();
                }
                ExprKind::Literal(Lit::Null)
            }
        };
        Expr {
            kind,
            pos,
            end: self.end_pos(),
        }
    }

    fn list(&mut self, until: Tok) -> Vec<Expr> {
        let mut out = Vec::new();
        while self.tok() != until && self.tok() != Tok::Eof {
            out.push(self.expr());
            if self.tok() == until {
                break;
            }
            if self.tok() != Tok::Comma {
                self.error("missing ',' in expression list".into());
            }
            self.next();
        }
        out
    }

    fn fields(&mut self) -> Vec<Field> {
        let mut out = Vec::new();
        while self.tok() != Tok::RCurly && self.tok() != Tok::Eof {
            let pos = self.pos();
            let (name, quoted) = match self.tok() {
                Tok::Ident => {
                    let n = self.cur().lit.clone();
                    self.next();
                    (n, false)
                }
                Tok::String => {
                    let n = unquote(&self.cur().lit);
                    self.next();
                    (n, true)
                }
                t => {
                    self.error(format!(
                        "expected field name (string or identifier), got {t}"
                    ));
                    self.advance_to(Tok::Assign);
                    (String::new(), false)
                }
            };
            self.expect(Tok::Assign);
            let value = self.expr();
            out.push(Field {
                name: Ident { name, pos },
                quoted,
                value,
            });
            if self.tok() == Tok::RCurly {
                break;
            }
            if self.tok() != Tok::Comma {
                self.error("missing ',' in field list".into());
            }
            self.next();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        let (_, d) = parse_file("t.alloy", src);
        d.iter()
            .map(|d| format!("{}:{}: {}", d.pos.line, d.pos.col, d.message))
            .collect()
    }

    #[test]
    fn parses_blocks_attributes_and_expressions() {
        let src = "discovery.relabel \"pods\" {\n  targets = [{a = 1, \"b.c\" = `x`},]\n  rule { action = \"keep\" }\n}\nx = -1 + 2 * 3 ^ 2 ^ 1 || !false\n";
        let (f, d) = parse_file("t", src);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(f.body.len(), 2);
        let Stmt::Block(b) = &f.body[0] else { panic!() };
        assert_eq!(b.full_name(), "discovery.relabel");
        assert_eq!(b.label.as_deref(), Some("pods"));
        assert_eq!(b.body.len(), 2);
    }

    #[test]
    fn error_positions_table() {
        let cases: &[(&str, &str)] = &[
            (
                "a = [\n  1,\n  2\n]\n",
                "3:4: missing ',' in expression list",
            ),
            ("a = {\n  x = 1\n}\n", "2:8: missing ',' in field list"),
            (
                "b \"my-label\" {\n}\n",
                "1:3: expected block label to be a valid identifier, but got \"my-label\"",
            ),
            (
                "rule { a = 1  b = 2 }\n",
                "1:15: expected TERMINATOR, got IDENT",
            ),
            (
                "foo.bar = 1\n",
                "1:1: attribute names may only consist of a single identifier with no \".\"",
            ),
            ("a \"x\" = 1\n", "1:3: attribute names may not have labels"),
            ("a = 1 # c\n", "1:7: illegal character U+0023 '#'"),
            ("a = )\n", "1:5: expected expression, got )"),
            (
                "x = foo \"l\" { }\n",
                "1:5: cannot use a block as an expression",
            ),
            ("a b\n", "1:3: expected block label, got IDENT"),
        ];
        for (src, want) in cases {
            let got = errors(src);
            assert!(
                got.iter().any(|g| g == want),
                "{src:?}: got {got:?}, want {want}"
            );
        }
    }

    #[test]
    fn keeps_collecting_after_errors() {
        let got = errors("a = 1 # one\nb = [1 2]\nc {\n  d = 'x'\n}\n");
        assert_eq!(got.len(), 3, "{got:?}");
    }
}
