//! Syntax tree of an Alloy file: statements (attributes and blocks) and expressions, each with
//! the source positions that diagnostics and the formatter need.

use super::diag::Pos;
use super::scanner::Tok;

/// A parsed file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub name: String,
    pub body: Vec<Stmt>,
    /// Every comment, in source order; the printer re-attaches them by position.
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub pos: Pos,
    /// Text including `//` or `/* */`.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Attr(Attribute),
    Block(Block),
}

impl Stmt {
    pub fn start(&self) -> Pos {
        match self {
            Stmt::Attr(a) => a.name.pos,
            Stmt::Block(b) => b.name_pos,
        }
    }
    pub fn end(&self) -> Pos {
        match self {
            Stmt::Attr(a) => a.value.end,
            Stmt::Block(b) => b.rcurly,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub pos: Pos,
}

/// `name = value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: Ident,
    pub value: Expr,
}

/// `a.b.c "label" { body }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub name: Vec<String>,
    pub name_pos: Pos,
    pub label: Option<String>,
    pub label_pos: Option<Pos>,
    pub body: Vec<Stmt>,
    pub lcurly: Pos,
    pub rcurly: Pos,
}

impl Block {
    /// Dotted name, e.g. `loki.source.file`.
    pub fn full_name(&self) -> String {
        self.name.join(".")
    }
}

/// An expression with its span (`end` is exclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub pos: Pos,
    pub end: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Lit),
    Ident(String),
    Array(Vec<Expr>),
    Object(Vec<Field>),
    Access(Box<Expr>, Ident),
    Index(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Vec<Expr>),
    Unary(Tok, Box<Expr>),
    Binary(Tok, Box<Expr>, Box<Expr>),
    Paren(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// Source text of an integer.
    Number(String),
    /// Source text of a float.
    Float(String),
    /// Source text of a string literal, quotes included (raw strings keep their backticks).
    String(String),
    Bool(bool),
    Null,
}

/// `name = value` inside an object; `quoted` when the key was written as a string.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: Ident,
    pub quoted: bool,
    pub value: Expr,
}

impl Expr {
    pub fn new(kind: ExprKind) -> Self {
        Expr {
            kind,
            pos: Pos::default(),
            end: Pos::default(),
        }
    }

    /// The dotted path of a reference like `loki.write.default.receiver`, if it is one.
    pub fn reference_path(&self) -> Option<Vec<String>> {
        match &self.kind {
            ExprKind::Ident(n) => Some(vec![n.clone()]),
            ExprKind::Access(inner, name) => {
                let mut p = inner.reference_path()?;
                p.push(name.name.clone());
                Some(p)
            }
            _ => None,
        }
    }
}

/// Resets every position (used to compare trees that came from different sources).
pub fn strip_positions(f: &mut File) {
    f.comments.clear();
    f.name.clear();
    for s in &mut f.body {
        strip_stmt(s);
    }
}

fn strip_stmt(s: &mut Stmt) {
    match s {
        Stmt::Attr(a) => {
            a.name.pos = Pos::default();
            strip_expr(&mut a.value);
        }
        Stmt::Block(b) => {
            b.name_pos = Pos::default();
            b.label_pos = b.label_pos.map(|_| Pos::default());
            b.lcurly = Pos::default();
            b.rcurly = Pos::default();
            for s in &mut b.body {
                strip_stmt(s);
            }
        }
    }
}

fn strip_expr(e: &mut Expr) {
    e.pos = Pos::default();
    e.end = Pos::default();
    match &mut e.kind {
        ExprKind::Literal(_) | ExprKind::Ident(_) => {}
        ExprKind::Array(v) => v.iter_mut().for_each(strip_expr),
        ExprKind::Object(fs) => {
            for f in fs {
                f.name.pos = Pos::default();
                strip_expr(&mut f.value);
            }
        }
        ExprKind::Access(a, id) => {
            strip_expr(a);
            id.pos = Pos::default();
        }
        ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => {
            strip_expr(a);
            strip_expr(b);
        }
        ExprKind::Call(f, args) => {
            strip_expr(f);
            args.iter_mut().for_each(strip_expr);
        }
        ExprKind::Unary(_, a) | ExprKind::Paren(a) => strip_expr(a),
    }
}
