//! Component argument schemas and their validation: known attributes and blocks with Alloy's
//! names, required/optional/unsupported, duplicates, and "did you mean X?" for typos.

use std::collections::BTreeMap;

use super::ast::{Block, Stmt};
use super::diag::{suggest, Diagnostic, Diagnostics, Pos};
use super::eval::{eval, Scope};
use super::value::Value;

/// How an attribute is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum A {
    Required,
    Optional,
    /// Alloy has it; this agent rejects it (with the reason) rather than silently ignoring it.
    Unsupported(&'static str),
}

/// How a nested block is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B {
    One,
    Many,
    Unsupported(&'static str),
}

/// The arguments a block accepts.
#[derive(Debug)]
pub struct Schema {
    pub attrs: &'static [(&'static str, A)],
    pub blocks: &'static [(&'static str, B, &'static Schema)],
}

/// A schema with nothing in it (for blocks like `stage.docker {}`).
pub static EMPTY: Schema = Schema {
    attrs: &[],
    blocks: &[],
};

/// Validated, evaluated arguments of one block.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub pos: Pos,
    pub attrs: BTreeMap<String, (Value, Pos)>,
    /// Nested blocks in source order (stage order matters).
    pub blocks: Vec<(String, Args)>,
}

/// Separates a conversion error from its suggested fix (see [`Args::get`]).
pub const HINT_SEP: &str = "\u{1f}hint:";

/// Where diagnostics go.
pub struct Ctx<'a> {
    pub file: &'a str,
    pub diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    pub fn error(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(self.file, pos, msg));
    }
}

/// Checks a block body against a schema, evaluating attribute values in `scope`.
pub fn decode(body: &[Stmt], pos: Pos, schema: &Schema, scope: &Scope, ctx: &mut Ctx<'_>) -> Args {
    let mut args = Args {
        pos,
        ..Default::default()
    };
    let mut seen_blocks: BTreeMap<String, Pos> = BTreeMap::new();
    for s in body {
        match s {
            Stmt::Attr(a) => {
                let name = a.name.name.as_str();
                let Some((_, kind)) = schema.attrs.iter().find(|(n, _)| *n == name) else {
                    let mut d = Diagnostic::new(
                        ctx.file,
                        a.name.pos,
                        format!("unrecognized attribute name {name:?}"),
                    );
                    let block_named = schema.blocks.iter().any(|(b, _, _)| *b == name);
                    if block_named {
                        d = d.with_hint(format!("{name} is a block: write `{name} {{ … }}`"));
                    } else if let Some(s) = suggest(name, schema.attrs.iter().map(|(n, _)| *n)) {
                        d = d.with_hint(format!("did you mean {s}?"));
                    }
                    ctx.diags.push(d);
                    continue;
                };
                if let A::Unsupported(why) = kind {
                    ctx.diags.push(
                        Diagnostic::new(
                            ctx.file,
                            a.name.pos,
                            format!("attribute {name:?} is not supported by this agent"),
                        )
                        .with_hint(*why),
                    );
                    continue;
                }
                if args.attrs.contains_key(name) {
                    ctx.error(
                        a.name.pos,
                        format!("attribute {name:?} may only be provided once"),
                    );
                    continue;
                }
                match eval(&a.value, scope) {
                    Ok(v) => {
                        args.attrs.insert(name.to_string(), (v, a.name.pos));
                    }
                    Err(e) => ctx.error(e.pos, e.msg),
                }
            }
            Stmt::Block(b) => decode_block(b, schema, scope, ctx, &mut args, &mut seen_blocks),
        }
    }
    for (name, kind) in schema.attrs {
        if *kind == A::Required && !args.attrs.contains_key(*name) {
            ctx.error(pos, format!("missing required attribute {name:?}"));
        }
    }
    args
}

fn decode_block(
    b: &Block,
    schema: &Schema,
    scope: &Scope,
    ctx: &mut Ctx<'_>,
    args: &mut Args,
    seen: &mut BTreeMap<String, Pos>,
) {
    let name = b.full_name();
    let Some((_, kind, sub)) = schema.blocks.iter().find(|(n, _, _)| *n == name) else {
        let mut d = Diagnostic::new(
            ctx.file,
            b.name_pos,
            format!("unrecognized block name {name:?}"),
        );
        if let Some(s) = suggest(&name, schema.blocks.iter().map(|(n, _, _)| *n)) {
            d = d.with_hint(format!("did you mean {s}?"));
        }
        ctx.diags.push(d);
        return;
    };
    if let Some(lp) = b.label_pos {
        ctx.error(lp, format!("block {name:?} does not take a label"));
    }
    match kind {
        B::Unsupported(why) => {
            ctx.diags.push(
                Diagnostic::new(
                    ctx.file,
                    b.name_pos,
                    format!("block {name:?} is not supported by this agent"),
                )
                .with_hint(*why),
            );
            return;
        }
        B::One => {
            if let Some(prev) = seen.get(&name) {
                ctx.error(
                    b.name_pos,
                    format!(
                        "block {name:?} may only be provided once (first at {}:{})",
                        prev.line, prev.col
                    ),
                );
                return;
            }
            seen.insert(name.clone(), b.name_pos);
        }
        B::Many => {}
    }
    let inner = decode(&b.body, b.name_pos, sub, scope, ctx);
    args.blocks.push((name, inner));
}

impl Args {
    pub fn has(&self, name: &str) -> bool {
        self.attrs.contains_key(name)
    }

    pub fn pos_of(&self, name: &str) -> Pos {
        self.attrs.get(name).map(|(_, p)| *p).unwrap_or(self.pos)
    }

    /// Converts an attribute with `f`, reporting a type error at the attribute.
    pub fn get<T>(
        &self,
        name: &str,
        ctx: &mut Ctx<'_>,
        f: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let (v, pos) = self.attrs.get(name)?;
        match f(v) {
            Ok(t) => Some(t),
            Err(e) => {
                // A converter may append a fix after HINT_SEP.
                let (msg, hint) = match e.split_once(HINT_SEP) {
                    Some((m, h)) => (m.to_string(), Some(h.to_string())),
                    None => (e, None),
                };
                let mut d = Diagnostic::new(ctx.file, *pos, format!("attribute {name:?}: {msg}"));
                if let Some(h) = hint {
                    d = d.with_hint(h);
                }
                ctx.diags.push(d);
                None
            }
        }
    }

    pub fn string(&self, name: &str, default: &str, ctx: &mut Ctx<'_>) -> String {
        self.get(name, ctx, Value::to_str)
            .unwrap_or_else(|| default.to_string())
    }

    pub fn opt_string(&self, name: &str, ctx: &mut Ctx<'_>) -> Option<String> {
        self.get(name, ctx, Value::to_str)
    }

    pub fn bool(&self, name: &str, default: bool, ctx: &mut Ctx<'_>) -> bool {
        self.get(name, ctx, Value::to_bool).unwrap_or(default)
    }

    pub fn blocks_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Args> + 's {
        self.blocks
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, a)| a)
    }
}
