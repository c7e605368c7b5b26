//! LogQL parser: recursive descent over the lexer's tokens, producing Loki's error texts
//! (`parse error at line L, col C: syntax error: unexpected X, expecting Y or Z`).

use regex::Regex;

use super::ast::*;
use super::lexer::{lex, Tok, Token};
use super::matcher::{MatchOp, Matcher};
use super::pattern::Pattern;
use super::template::Template;
use super::Error;

/// Loki's message when no matcher selects anything specific.
pub const EMPTY_MATCHERS: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

/// A positionless parse error (`parse error : msg`).
pub fn plain(msg: impl std::fmt::Display) -> Error {
    Error {
        message: format!("parse error : {msg}"),
    }
}

/// Deepest nesting of parentheses, aggregations, range functions and unary signs.
/// Loki (Go, growable stacks) has no such limit; fake-loki's evaluator and the drop of
/// the tree recurse on a fixed thread stack, so a query past it is a 400, not a crash.
pub const MAX_NESTING: usize = 128;
/// Most binary operators (metric and label-filter `and`/`or`) in one query: a chain of
/// them is a tree as deep as it is long.
pub const MAX_BINARY_OPS: usize = 256;

struct Parser {
    toks: Vec<Token>,
    i: usize,
    /// Current nesting depth (see [`MAX_NESTING`]).
    depth: usize,
    /// Binary operators built so far (see [`MAX_BINARY_OPS`]).
    binary_ops: usize,
}

type R<T> = Result<T, Error>;

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends with an Eof token, and `bump` never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn is(&self, tok: Tok) -> bool {
        self.peek().tok == tok
    }

    fn is_kw(&self, kw: &str) -> bool {
        self.peek().tok == Tok::Keyword && self.peek().text == kw
    }

    /// A syntax error at the current token, listing `expected` like goyacc (at most four).
    fn unexpected(&self, expected: &[&str]) -> Error {
        let t = self.peek();
        if let Some(e) = &t.err {
            return Error {
                message: format!("parse error at line {}, col {}: {}", t.line, t.col, e),
            };
        }
        let mut msg = format!("syntax error: unexpected {}", t.display());
        if !expected.is_empty() && expected.len() <= 4 {
            msg.push_str(", expecting ");
            msg.push_str(&expected.join(" or "));
        }
        Error {
            message: format!("parse error at line {}, col {}: {}", t.line, t.col, msg),
        }
    }

    fn expect(&mut self, tok: Tok, expected: &[&str]) -> R<Token> {
        if self.is(tok) && self.peek().err.is_none() {
            Ok(self.bump())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// Enters one nesting level; [`Parser::leave`] undoes it.
    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let t = self.peek();
            return Err(Error {
                message: format!(
                    "parse error at line {}, col {}: expression nested too deeply (more than {MAX_NESTING} levels)",
                    t.line, t.col
                ),
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Counts one binary operator against [`MAX_BINARY_OPS`].
    fn binary_op(&mut self) -> R<()> {
        self.binary_ops += 1;
        if self.binary_ops > MAX_BINARY_OPS {
            let t = self.peek();
            return Err(Error {
                message: format!(
                    "parse error at line {}, col {}: too many binary operations (more than {MAX_BINARY_OPS})",
                    t.line, t.col
                ),
            });
        }
        Ok(())
    }

    fn check_lex_err(&self) -> R<()> {
        if self.peek().err.is_some() {
            return Err(self.unexpected(&[]));
        }
        Ok(())
    }

    // ---- selectors ----

    fn selector(&mut self) -> R<Vec<Matcher>> {
        self.expect(Tok::LBrace, &["{"])?;
        let mut out = Vec::new();
        if self.is(Tok::RBrace) {
            self.bump();
            return Ok(out);
        }
        loop {
            out.push(self.matcher()?);
            self.check_lex_err()?;
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                    if self.is(Tok::RBrace) {
                        self.bump();
                        return Ok(out);
                    }
                }
                Tok::RBrace => {
                    self.bump();
                    return Ok(out);
                }
                _ => return Err(self.unexpected(&["}", ","])),
            }
        }
    }

    fn matcher(&mut self) -> R<Matcher> {
        let name = self.expect(Tok::Ident, &["IDENTIFIER", "}"])?.text;
        let op = match self.peek().tok {
            Tok::Eq => MatchOp::Eq,
            Tok::Neq => MatchOp::Neq,
            Tok::Re => MatchOp::Re,
            Tok::Nre => MatchOp::Nre,
            _ => return Err(self.unexpected(&["=", "=~", "!~", "!="])),
        };
        self.bump();
        let value = self.expect(Tok::Str, &["STRING"])?.text;
        Matcher::new(name, op, value).map_err(plain)
    }

    // ---- pipelines ----

    fn line_filter(&mut self) -> R<LineFilter> {
        let op = match self.bump().tok {
            Tok::PipeExact => LineOp::Contains,
            Tok::Neq => LineOp::NotContains,
            Tok::PipeMatch => LineOp::Match,
            Tok::Nre => LineOp::NotMatch,
            Tok::PipePattern => LineOp::Pattern,
            _ => LineOp::NotPattern,
        };
        let mut alts = Vec::new();
        loop {
            if self.is_kw("ip") {
                return Err(plain("ip line filters are not supported by fake-loki"));
            }
            let s = self.expect(Tok::Str, &["STRING", "ip"])?.text;
            alts.push(match op {
                LineOp::Contains | LineOp::NotContains => LineMatcher::Substr(Box::new(
                    memchr::memmem::Finder::new(s.as_bytes()).into_owned(),
                )),
                LineOp::Match | LineOp::NotMatch => {
                    LineMatcher::Regex(Regex::new(&s).map_err(|e| plain(regex_err(&e)))?)
                }
                LineOp::Pattern | LineOp::NotPattern => {
                    LineMatcher::Pattern(Pattern::parse(&s, false).map_err(plain)?)
                }
            });
            if self.is_kw("or")
                && matches!(self.toks.get(self.i + 1).map(|t| t.tok), Some(Tok::Str))
            {
                self.bump();
                continue;
            }
            return Ok(alts_filter(op, alts));
        }
    }

    fn stages(&mut self) -> R<Vec<Stage>> {
        let mut stages = Vec::new();
        loop {
            self.check_lex_err()?;
            match self.peek().tok {
                Tok::PipeExact
                | Tok::Neq
                | Tok::PipeMatch
                | Tok::Nre
                | Tok::PipePattern
                | Tok::Npa => {
                    stages.push(Stage::LineFilter(self.line_filter()?));
                }
                Tok::Pipe if !self.at_unwrap() => {
                    self.bump();
                    stages.push(self.stage()?);
                }
                _ => return Ok(stages),
            }
        }
    }

    /// Whether the next tokens are `| unwrap` (it ends a pipeline inside a range function).
    fn at_unwrap(&self) -> bool {
        self.is(Tok::Pipe)
            && self
                .toks
                .get(self.i + 1)
                .is_some_and(|t| t.tok == Tok::Keyword && t.text == "unwrap")
    }

    /// `| unwrap label`, `| unwrap bytes(label)`, `| unwrap duration(label)`, with the label
    /// filters that follow it (`| unwrap x | __error__=""`).
    fn unwrap_expr(&mut self) -> R<Unwrap> {
        self.bump();
        self.bump();
        let t = self.peek().clone();
        let (label, conv) = if t.tok == Tok::Func {
            let conv = match t.text.as_str() {
                "bytes" => Conv::Bytes,
                "duration" | "duration_seconds" => Conv::Duration,
                _ => return Err(self.unexpected(&["IDENTIFIER"])),
            };
            self.bump();
            self.expect(Tok::LParen, &["("])?;
            let label = self.expect(Tok::Ident, &["IDENTIFIER"])?.text;
            self.expect(Tok::RParen, &[")"])?;
            (label, conv)
        } else {
            (self.expect(Tok::Ident, &["IDENTIFIER"])?.text, Conv::Float)
        };
        let mut post = Vec::new();
        while self.is(Tok::Pipe)
            && self
                .toks
                .get(self.i + 1)
                .is_some_and(|t| matches!(t.tok, Tok::Ident | Tok::LParen))
        {
            self.bump();
            post.push(self.label_filter_or()?);
        }
        Ok(Unwrap { label, conv, post })
    }

    fn stage(&mut self) -> R<Stage> {
        self.check_lex_err()?;
        let t = self.peek().clone();
        match t.tok {
            Tok::Keyword => match t.text.as_str() {
                "json" => {
                    self.bump();
                    let params = self.extraction_params()?;
                    let mut out = Vec::new();
                    for (name, path) in params {
                        out.push((name, parse_json_path(&path).map_err(plain)?));
                    }
                    Ok(Stage::Json(out))
                }
                "logfmt" => {
                    self.bump();
                    let (mut strict, mut keep_empty) = (false, false);
                    while self.is(Tok::Flag) {
                        match self.bump().text.as_str() {
                            "--strict" => strict = true,
                            _ => keep_empty = true,
                        }
                    }
                    let params = self.extraction_params()?;
                    Ok(Stage::Logfmt {
                        strict,
                        keep_empty,
                        params,
                    })
                }
                "regexp" => {
                    self.bump();
                    let s = self.expect(Tok::Str, &["STRING"])?.text;
                    let re = Regex::new(&s).map_err(|e| plain(regex_err(&e)))?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err(plain("at least one named capture must be supplied"));
                    }
                    for n in re.capture_names().flatten() {
                        if !loki_wire::labels::is_valid_label_name(n) {
                            return Err(plain(format!("invalid extracted label name '{n}'")));
                        }
                    }
                    Ok(Stage::Regexp(re))
                }
                "pattern" => {
                    self.bump();
                    let s = self.expect(Tok::Str, &["STRING"])?.text;
                    Ok(Stage::Pattern(Pattern::parse(&s, true).map_err(plain)?))
                }
                "unpack" => {
                    self.bump();
                    Ok(Stage::Unpack)
                }
                "decolorize" => {
                    self.bump();
                    Ok(Stage::Decolorize)
                }
                "line_format" => {
                    self.bump();
                    let s = self.expect(Tok::Str, &["STRING"])?.text;
                    Ok(Stage::LineFormat(Template::parse(&s).map_err(plain)?))
                }
                "label_format" => {
                    self.bump();
                    let mut items = Vec::new();
                    loop {
                        let dst = self.expect(Tok::Ident, &["IDENTIFIER"])?.text;
                        self.expect(Tok::Eq, &["="])?;
                        let v = self.peek().clone();
                        match v.tok {
                            Tok::Ident => {
                                self.bump();
                                items.push(LabelFmt::Rename { dst, src: v.text });
                            }
                            Tok::Str => {
                                self.bump();
                                let tpl = Template::parse(&v.text).map_err(plain)?;
                                items.push(LabelFmt::Template { dst, tpl });
                            }
                            _ => return Err(self.unexpected(&["IDENTIFIER", "STRING"])),
                        }
                        if self.is(Tok::Comma) {
                            self.bump();
                            continue;
                        }
                        break;
                    }
                    Ok(Stage::LabelFormat(items))
                }
                "drop" | "keep" => {
                    self.bump();
                    let mut items = Vec::new();
                    loop {
                        let name = self.expect(Tok::Ident, &["IDENTIFIER"])?.text;
                        if matches!(self.peek().tok, Tok::Eq | Tok::Neq | Tok::Re | Tok::Nre) {
                            let op = match self.bump().tok {
                                Tok::Eq => MatchOp::Eq,
                                Tok::Neq => MatchOp::Neq,
                                Tok::Re => MatchOp::Re,
                                _ => MatchOp::Nre,
                            };
                            let v = self.expect(Tok::Str, &["STRING"])?.text;
                            items.push(NamedMatcher::Matcher(
                                Matcher::new(name, op, v).map_err(plain)?,
                            ));
                        } else {
                            items.push(NamedMatcher::Name(name));
                        }
                        if self.is(Tok::Comma) {
                            self.bump();
                            continue;
                        }
                        break;
                    }
                    Ok(if t.text == "drop" {
                        Stage::Drop(items)
                    } else {
                        Stage::Keep(items)
                    })
                }
                _ => Err(self.unexpected(&[])),
            },
            Tok::Ident | Tok::LParen => Ok(Stage::LabelFilter(self.label_filter_or()?)),
            _ => Err(self.unexpected(&[])),
        }
    }

    /// `name="path", name2, ...` after json/logfmt (none is fine).
    fn extraction_params(&mut self) -> R<Vec<(String, String)>> {
        let mut out = Vec::new();
        while self.is(Tok::Ident) {
            let name = self.bump().text;
            let path = if self.is(Tok::Eq) {
                self.bump();
                self.expect(Tok::Str, &["STRING"])?.text
            } else {
                name.clone()
            };
            out.push((name, path));
            if self.is(Tok::Comma) {
                self.bump();
                if !self.is(Tok::Ident) {
                    return Err(self.unexpected(&["IDENTIFIER"]));
                }
            } else {
                break;
            }
        }
        Ok(out)
    }

    fn label_filter_or(&mut self) -> R<LabelFilter> {
        let mut left = self.label_filter_and()?;
        while self.is_kw("or") {
            self.bump();
            self.binary_op()?;
            let right = self.label_filter_and()?;
            left = LabelFilter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn label_filter_and(&mut self) -> R<LabelFilter> {
        let mut left = self.label_filter_primary()?;
        loop {
            if self.is_kw("and") || self.is(Tok::Comma) {
                self.bump();
            } else if !(self.is(Tok::Ident) || self.is(Tok::LParen)) {
                return Ok(left);
            }
            self.binary_op()?;
            let right = self.label_filter_primary()?;
            left = LabelFilter::And(Box::new(left), Box::new(right));
        }
    }

    fn label_filter_primary(&mut self) -> R<LabelFilter> {
        self.check_lex_err()?;
        if self.is(Tok::LParen) {
            self.enter()?;
            self.bump();
            let f = self.label_filter_or()?;
            self.expect(Tok::RParen, &[")"])?;
            self.leave();
            return Ok(f);
        }
        let name = self.expect(Tok::Ident, &["IDENTIFIER", "("])?.text;
        let op_tok = self.peek().tok;
        let cmp = match op_tok {
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Gte => Some(CmpOp::Gte),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Lte => Some(CmpOp::Lte),
            Tok::CmpEq | Tok::Eq => Some(CmpOp::Eq),
            Tok::Neq => Some(CmpOp::Neq),
            _ => None,
        };
        let string_op = match op_tok {
            Tok::Eq => Some(MatchOp::Eq),
            Tok::Neq => Some(MatchOp::Neq),
            Tok::Re => Some(MatchOp::Re),
            Tok::Nre => Some(MatchOp::Nre),
            _ => None,
        };
        if cmp.is_none() && string_op.is_none() {
            return Err(self.unexpected(&[]));
        }
        self.bump();
        self.check_lex_err()?;
        let v = self.peek().clone();
        match (v.tok, string_op, cmp) {
            (Tok::Str, Some(op), _) => {
                self.bump();
                Ok(LabelFilter::Matcher(
                    Matcher::new(name, op, v.text).map_err(plain)?,
                ))
            }
            (Tok::Number, _, Some(op)) => {
                self.bump();
                let value: f64 = v
                    .text
                    .parse()
                    .map_err(|_| plain(format!("invalid number {}", v.text)))?;
                Ok(LabelFilter::Num {
                    name,
                    op,
                    kind: NumKind::Number,
                    value,
                })
            }
            (Tok::Duration, _, Some(op)) => {
                self.bump();
                Ok(LabelFilter::Num {
                    name,
                    op,
                    kind: NumKind::Duration,
                    value: v.num as f64,
                })
            }
            (Tok::Bytes, _, Some(op)) => {
                self.bump();
                Ok(LabelFilter::Num {
                    name,
                    op,
                    kind: NumKind::Bytes,
                    value: v.num as f64,
                })
            }
            (Tok::Keyword, _, _) if v.text == "ip" => {
                Err(plain("ip label filters are not supported by fake-loki"))
            }
            _ => Err(self.unexpected(&[])),
        }
    }

    // ---- log and metric expressions ----

    fn log_expr(&mut self) -> R<LogExpr> {
        let matchers = self.selector()?;
        let stages = self.stages()?;
        Ok(LogExpr { matchers, stages })
    }

    /// The argument of a range function: selector, pipeline, `unwrap` and `[range]` in any
    /// of the orders Loki's grammar accepts.
    fn log_range(&mut self) -> R<(LogExpr, i64, i64, Option<Unwrap>)> {
        let paren = self.is(Tok::LParen);
        if paren {
            self.bump();
        }
        let mut log = self.log_expr()?;
        let mut unwrap = None;
        if self.at_unwrap() {
            unwrap = Some(self.unwrap_expr()?);
        }
        if paren {
            self.expect(Tok::RParen, &[")"])?;
        }
        let range = self.expect(Tok::Range, &["RANGE"])?.num;
        let mut offset = 0;
        if self.is_kw("offset") {
            self.bump();
            offset = self.expect(Tok::Duration, &["DURATION"])?.num;
        }
        if !paren && unwrap.is_none() {
            let more = self.stages()?;
            log.stages.extend(more);
            if self.at_unwrap() {
                unwrap = Some(self.unwrap_expr()?);
            }
        }
        Ok((log, range, offset, unwrap))
    }

    fn grouping(&mut self) -> R<Grouping> {
        let without = self.bump().text == "without";
        self.expect(Tok::LParen, &["("])?;
        let mut labels = Vec::new();
        if !self.is(Tok::RParen) {
            loop {
                labels.push(self.expect(Tok::Ident, &["IDENTIFIER"])?.text);
                if self.is(Tok::Comma) {
                    self.bump();
                    continue;
                }
                break;
            }
        }
        self.expect(Tok::RParen, &[",", ")"])?;
        Ok(Grouping { without, labels })
    }

    /// A metric expression with binary operators (precedence climbing).
    fn metric(&mut self) -> R<MetricExpr> {
        let lhs = self.metric_unary()?;
        self.metric_binop(lhs, 0)
    }

    fn peek_binop(&self) -> Option<BinOp> {
        let t = self.peek();
        Some(match t.tok {
            Tok::Add => BinOp::Add,
            Tok::Sub => BinOp::Sub,
            Tok::Mul => BinOp::Mul,
            Tok::Div => BinOp::Div,
            Tok::Mod => BinOp::Mod,
            Tok::Pow => BinOp::Pow,
            Tok::CmpEq => BinOp::Eq,
            Tok::Neq => BinOp::Neq,
            Tok::Gt => BinOp::Gt,
            Tok::Gte => BinOp::Gte,
            Tok::Lt => BinOp::Lt,
            Tok::Lte => BinOp::Lte,
            Tok::Keyword if t.text == "or" => BinOp::Or,
            Tok::Keyword if t.text == "and" => BinOp::And,
            Tok::Keyword if t.text == "unless" => BinOp::Unless,
            _ => return None,
        })
    }

    fn metric_binop(&mut self, mut lhs: MetricExpr, min_prec: u8) -> R<MetricExpr> {
        while let Some(op) = self.peek_binop() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.binary_op()?;
            self.bump();
            let mut bool_mod = false;
            if self.is_kw("bool") {
                if !op.is_comparison() {
                    return Err(plain(
                        "bool modifier can only be used on comparison operators",
                    ));
                }
                self.bump();
                bool_mod = true;
            }
            let matching = self.vector_matching()?;
            let mut rhs = self.metric_unary()?;
            while let Some(next) = self.peek_binop() {
                // `^` is right-associative; everything else is left-associative.
                let np = next.precedence();
                if np > prec || (np == prec && next == BinOp::Pow) {
                    self.enter()?;
                    rhs = self.metric_binop(rhs, np)?;
                    self.leave();
                } else {
                    break;
                }
            }
            if op.is_set() && (lhs.is_scalar() || rhs.is_scalar()) {
                return Err(plain(format!(
                    "unexpected literal for right leg of logical/set binary operation ({}): {}",
                    binop_name(op),
                    "literal"
                )));
            }
            if op.is_comparison() && lhs.is_scalar() && rhs.is_scalar() && !bool_mod {
                return Err(plain("comparisons between scalars must use BOOL modifier"));
            }
            lhs = MetricExpr::Binary {
                op,
                bool_mod,
                matching,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    fn metric_unary(&mut self) -> R<MetricExpr> {
        if self.is(Tok::Sub) || self.is(Tok::Add) {
            self.enter()?;
            let neg = self.bump().tok == Tok::Sub;
            let inner = self.metric_unary()?;
            self.leave();
            return Ok(match inner {
                MetricExpr::Literal(v) if neg => MetricExpr::Literal(-v),
                e if neg => MetricExpr::Binary {
                    op: BinOp::Mul,
                    bool_mod: false,
                    matching: VectorMatching::default(),
                    lhs: Box::new(MetricExpr::Literal(-1.0)),
                    rhs: Box::new(e),
                },
                e => e,
            });
        }
        self.metric_primary()
    }

    fn metric_primary(&mut self) -> R<MetricExpr> {
        self.check_lex_err()?;
        let t = self.peek().clone();
        match t.tok {
            Tok::Number => {
                self.bump();
                let v: f64 = t
                    .text
                    .parse()
                    .map_err(|_| plain(format!("invalid number {}", t.text)))?;
                Ok(MetricExpr::Literal(v))
            }
            Tok::LParen => {
                self.enter()?;
                self.bump();
                let m = self.metric()?;
                self.expect(Tok::RParen, &[")"])?;
                self.leave();
                Ok(m)
            }
            Tok::Func => {
                self.enter()?;
                let m = self.function(t);
                self.leave();
                m
            }
            _ => Err(self.unexpected(&[])),
        }
    }

    /// A range function (`rate(...)`) or an aggregation (`sum by (x) (...)`) at `t`.
    fn function(&mut self, t: Token) -> R<MetricExpr> {
        if let Some(op) = RangeOp::from_name(&t.text) {
            return self.range_function(op);
        }
        if t.text == "label_replace" {
            return self.label_replace();
        }
        let vec_op = match t.text.as_str() {
            "sum" => VecOp::Sum,
            "avg" => VecOp::Avg,
            "count" => VecOp::Count,
            "min" => VecOp::Min,
            "max" => VecOp::Max,
            "topk" => VecOp::Topk,
            "bottomk" => VecOp::Bottomk,
            "stddev" => VecOp::Stddev,
            "stdvar" => VecOp::Stdvar,
            "sort" => VecOp::Sort,
            "sort_desc" => VecOp::SortDesc,
            "vector" => {
                self.bump();
                self.expect(Tok::LParen, &["("])?;
                let n = self.expect(Tok::Number, &["NUMBER"])?;
                let v: f64 = n
                    .text
                    .parse()
                    .map_err(|_| plain(format!("invalid number {}", n.text)))?;
                self.expect(Tok::RParen, &[")"])?;
                return Ok(MetricExpr::Vector {
                    op: VecOp::Sum,
                    param: None,
                    grouping: None,
                    inner: Box::new(MetricExpr::Literal(v)),
                });
            }
            _ => return Err(plain(format!("{} is not supported by fake-loki", t.text))),
        };
        self.bump();
        let mut grouping = None;
        if self.is_kw("by") || self.is_kw("without") {
            grouping = Some(self.grouping()?);
        }
        self.expect(Tok::LParen, &["("])?;
        let mut param = None;
        if matches!(vec_op, VecOp::Topk | VecOp::Bottomk) {
            let n = self.expect(Tok::Number, &["NUMBER"])?;
            param = Some(
                n.text
                    .parse::<f64>()
                    .map_err(|_| plain(format!("invalid parameter {}", n.text)))?,
            );
            self.expect(Tok::Comma, &[","])?;
        }
        let inner = self.metric()?;
        self.expect(Tok::RParen, &[")"])?;
        if grouping.is_none() && (self.is_kw("by") || self.is_kw("without")) {
            grouping = Some(self.grouping()?);
        }
        if let Some(p) = param {
            if p.fract() != 0.0 || p <= 0.0 {
                return Err(plain(format!(
                    "invalid parameter (must be greater than 0) {}({}",
                    t.text, p
                )));
            }
        }
        if matches!(vec_op, VecOp::Sort | VecOp::SortDesc)
            && grouping.as_ref().is_some_and(|g| !g.labels.is_empty())
        {
            return Err(plain("sort and sort_desc doesn't allow grouping by "));
        }
        Ok(MetricExpr::Vector {
            op: vec_op,
            param,
            grouping,
            inner: Box::new(inner),
        })
    }

    /// `op([φ,] log-range) [by|without (..)]` with Loki's validation order: grouping, then
    /// unwrap.
    fn range_function(&mut self, op: RangeOp) -> R<MetricExpr> {
        self.bump();
        self.expect(Tok::LParen, &["("])?;
        let mut raw_param = None;
        if self.is(Tok::Number) {
            raw_param = Some(self.bump().text);
            self.expect(Tok::Comma, &[","])?;
        }
        let (log, range, offset, unwrap) = self.log_range()?;
        self.expect(Tok::RParen, &[")"])?;
        let mut grouping = None;
        if self.is_kw("by") || self.is_kw("without") {
            grouping = Some(self.grouping()?);
        }
        let param = match raw_param {
            Some(raw) if op != RangeOp::Quantile => {
                return Err(plain(format!(
                    "parameter {raw} not supported for operation {}",
                    op.name()
                )));
            }
            Some(raw) => Some(raw.parse::<f64>().map_err(|_| {
                plain(format!(
                    "invalid parameter for operation {}: strconv.ParseFloat: parsing {}: invalid syntax",
                    op.name(),
                    loki_wire::labels::go_quote(&raw)
                ))
            })?),
            None if op == RangeOp::Quantile => {
                return Err(plain(
                    "parameter required for operation quantile_over_time",
                ));
            }
            None => None,
        };
        if grouping.is_some() && !op.allows_grouping() {
            return Err(plain(format!(
                "grouping not allowed for {} aggregation",
                op.name()
            )));
        }
        match &unwrap {
            Some(_) if !op.allows_unwrap() => {
                return Err(plain(format!(
                    "invalid aggregation {} with unwrap",
                    op.name()
                )));
            }
            None if !op.allows_lines() => {
                return Err(plain(format!(
                    "invalid aggregation {} without unwrap",
                    op.name()
                )));
            }
            _ => {}
        }
        Ok(MetricExpr::Range {
            op,
            log,
            range,
            offset,
            unwrap,
            grouping,
            param,
        })
    }

    /// `label_replace(expr, "dst", "replacement", "src", "regex")`.
    fn label_replace(&mut self) -> R<MetricExpr> {
        self.bump();
        self.expect(Tok::LParen, &["("])?;
        let inner = self.metric()?;
        let mut args = Vec::with_capacity(4);
        for _ in 0..4 {
            self.expect(Tok::Comma, &[","])?;
            args.push(self.expect(Tok::Str, &["STRING"])?.text);
        }
        self.expect(Tok::RParen, &[")"])?;
        let [dst, replacement, src, re] = <[String; 4]>::try_from(args)
            .map_err(|_| plain("label_replace needs four arguments"))?;
        let regex = Regex::new(&format!("^(?:{re})$")).map_err(|e| {
            plain(format!(
                "invalid regex in label_replace(): {}",
                regex_err(&e)
            ))
        })?;
        if !loki_wire::labels::is_valid_label_name(&dst) {
            return Err(plain(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        Ok(MetricExpr::LabelReplace {
            inner: Box::new(inner),
            dst,
            replacement,
            src,
            regex,
        })
    }

    /// `on(..)`/`ignoring(..)` and `group_left(..)`/`group_right(..)` after an operator.
    fn vector_matching(&mut self) -> R<VectorMatching> {
        let mut m = VectorMatching::default();
        if !(self.is_kw("on") || self.is_kw("ignoring")) {
            return Ok(m);
        }
        m.on = self.bump().text == "on";
        m.labels = self.label_list()?;
        if self.is_kw("group_left") || self.is_kw("group_right") {
            m.card = if self.bump().text == "group_left" {
                Card::ManyToOne
            } else {
                Card::OneToMany
            };
            if self.is(Tok::LParen) {
                m.include = self.label_list()?;
            }
        }
        Ok(m)
    }

    /// `(a, b, ...)`, possibly empty.
    fn label_list(&mut self) -> R<Vec<String>> {
        self.expect(Tok::LParen, &["("])?;
        let mut labels = Vec::new();
        if !self.is(Tok::RParen) {
            loop {
                labels.push(self.expect(Tok::Ident, &["IDENTIFIER"])?.text);
                if self.is(Tok::Comma) {
                    self.bump();
                    continue;
                }
                break;
            }
        }
        self.expect(Tok::RParen, &[",", ")"])?;
        Ok(labels)
    }

    fn query(&mut self) -> R<Query> {
        self.check_lex_err()?;
        let q = match self.peek().tok {
            Tok::LBrace => Query::Log(self.log_expr()?),
            Tok::LParen => {
                // `(selector | pipeline)` or a parenthesised metric.
                let save = self.i;
                self.bump();
                if self.is(Tok::LBrace) {
                    let l = self.log_expr()?;
                    self.expect(Tok::RParen, &[")"])?;
                    Query::Log(l)
                } else {
                    self.i = save;
                    Query::Metric(self.metric()?)
                }
            }
            _ => Query::Metric(self.metric()?),
        };
        if !self.is(Tok::Eof) || self.peek().err.is_some() {
            return Err(self.unexpected(&[]));
        }
        Ok(q)
    }
}

fn binop_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Or => "or",
        BinOp::And => "and",
        _ => "unless",
    }
}

fn alts_filter(op: LineOp, alts: Vec<LineMatcher>) -> LineFilter {
    LineFilter { op, alts }
}

/// Go-style regexp error text.
pub fn regex_err(e: &regex::Error) -> String {
    format!("error parsing regexp: {e}")
}

/// Parses a `json` parameter path: `a.b`, `a[0]`, `["a b"]`, `a.b[1].c`.
pub fn parse_json_path(p: &str) -> Result<Vec<JsonPathPart>, String> {
    let mut out = Vec::new();
    let mut rest = p;
    let mut key = String::new();
    while let Some(c) = rest.chars().next() {
        match c {
            '.' => {
                if !key.is_empty() {
                    out.push(JsonPathPart::Key(std::mem::take(&mut key)));
                }
                rest = &rest[1..];
            }
            '[' => {
                if !key.is_empty() {
                    out.push(JsonPathPart::Key(std::mem::take(&mut key)));
                }
                let end = rest
                    .find(']')
                    .ok_or_else(|| format!("unexpected end of expression: {p}"))?;
                let inner = rest[1..end].trim();
                if inner.starts_with(['"', '\'']) {
                    let (s, _) =
                        loki_wire::labels::unquote_prefix(inner).map_err(|e| e.to_string())?;
                    out.push(JsonPathPart::Key(s));
                } else {
                    let i: usize = inner
                        .parse()
                        .map_err(|_| format!("invalid array index {inner}"))?;
                    out.push(JsonPathPart::Index(i));
                }
                rest = &rest[end + 1..];
            }
            _ => {
                key.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !key.is_empty() {
        out.push(JsonPathPart::Key(key));
    }
    if out.is_empty() {
        return Err(format!("invalid JSON path {p}"));
    }
    Ok(out)
}

fn check_matchers(ms: &[Matcher]) -> R<()> {
    if ms.iter().any(|m| !m.matches_empty()) {
        Ok(())
    } else {
        Err(plain(EMPTY_MATCHERS))
    }
}

fn parse_raw(q: &str) -> R<Query> {
    if q.len() > 128 * 1024 {
        return Err(plain(format!(
            "input size too long ({} > {})",
            q.len(),
            128 * 1024
        )));
    }
    let mut p = Parser {
        toks: lex(q),
        i: 0,
        depth: 0,
        binary_ops: 0,
    };
    p.query()
}

/// Parses and validates a query.
pub fn parse_query(q: &str) -> R<Query> {
    let query = parse_raw(q)?;
    match &query {
        Query::Log(l) => check_matchers(&l.matchers)?,
        Query::Metric(m) => {
            for s in m.selectors() {
                check_matchers(s)?;
            }
        }
    }
    Ok(query)
}

/// Parses a bare selector (no empty-matcher rule).
pub fn parse_selector(q: &str) -> R<Vec<Matcher>> {
    match parse_raw(q)? {
        Query::Log(l) if l.stages.is_empty() => Ok(l.matchers),
        _ => Err(Error {
            message: "only label matchers are supported".into(),
        }),
    }
}
