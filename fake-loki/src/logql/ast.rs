//! LogQL syntax tree: what the parser produces and the evaluator runs.

use regex::Regex;

use super::matcher::Matcher;
use super::pattern::Pattern;
use super::template::Template;

/// A log query: stream selector plus pipeline stages.
#[derive(Debug, Clone)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

/// `|=`, `!=`, `|~`, `!~`, `|>`, `!>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Match,
    NotMatch,
    Pattern,
    NotPattern,
}

/// One alternative of a line filter.
#[derive(Debug, Clone)]
pub enum LineMatcher {
    /// Substring test; the needle is kept owned so the finder can borrow it per call.
    Substr(Box<memchr::memmem::Finder<'static>>),
    Regex(Regex),
    Pattern(Pattern),
}

impl LineMatcher {
    pub fn is_match(&self, line: &str) -> bool {
        match self {
            LineMatcher::Substr(f) => f.needle().is_empty() || f.find(line.as_bytes()).is_some(),
            LineMatcher::Regex(r) => r.is_match(line),
            LineMatcher::Pattern(p) => p.matches(line),
        }
    }
}

/// A line filter with its `or` alternatives.
#[derive(Debug, Clone)]
pub struct LineFilter {
    pub op: LineOp,
    pub alts: Vec<LineMatcher>,
}

impl LineFilter {
    /// Whether the line passes. A negated filter with `or` rejects a line matching any alternative.
    pub fn keep(&self, line: &str) -> bool {
        let any = self.alts.iter().any(|m| m.is_match(line));
        match self.op {
            LineOp::Contains | LineOp::Match | LineOp::Pattern => any,
            LineOp::NotContains | LineOp::NotMatch | LineOp::NotPattern => !any,
        }
    }
}

/// Numeric comparison of a label filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl CmpOp {
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Neq => a != b,
        }
    }
}

/// What a numeric label filter parses the label value as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumKind {
    Number,
    Duration,
    Bytes,
}

/// A label filter expression.
#[derive(Debug, Clone)]
pub enum LabelFilter {
    Matcher(Matcher),
    Num {
        name: String,
        op: CmpOp,
        kind: NumKind,
        value: f64,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

/// One `label_format` item.
#[derive(Debug, Clone)]
pub enum LabelFmt {
    Rename { dst: String, src: String },
    Template { dst: String, tpl: Template },
}

/// A `drop`/`keep` item: a bare name or a matcher.
#[derive(Debug, Clone)]
pub enum NamedMatcher {
    Name(String),
    Matcher(Matcher),
}

/// A pipeline stage.
#[derive(Debug, Clone)]
pub enum Stage {
    LineFilter(LineFilter),
    Json(Vec<(String, Vec<JsonPathPart>)>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<(String, String)>,
    },
    Regexp(Regex),
    Pattern(Pattern),
    Unpack,
    LabelFilter(LabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<LabelFmt>),
    Drop(Vec<NamedMatcher>),
    Keep(Vec<NamedMatcher>),
    Decolorize,
}

/// One step of a `json` parameter path (`a.b[0]`, `["a b"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPathPart {
    Key(String),
    Index(usize),
}

/// Range aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Count,
    Rate,
    Bytes,
    BytesRate,
    Absent,
    RateCounter,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Stdvar,
    Quantile,
    First,
    Last,
}

impl RangeOp {
    pub const ALL: [RangeOp; 15] = [
        RangeOp::Count,
        RangeOp::Rate,
        RangeOp::Bytes,
        RangeOp::BytesRate,
        RangeOp::Absent,
        RangeOp::RateCounter,
        RangeOp::Sum,
        RangeOp::Avg,
        RangeOp::Min,
        RangeOp::Max,
        RangeOp::Stddev,
        RangeOp::Stdvar,
        RangeOp::Quantile,
        RangeOp::First,
        RangeOp::Last,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RangeOp::Count => "count_over_time",
            RangeOp::Rate => "rate",
            RangeOp::Bytes => "bytes_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::Absent => "absent_over_time",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::Sum => "sum_over_time",
            RangeOp::Avg => "avg_over_time",
            RangeOp::Min => "min_over_time",
            RangeOp::Max => "max_over_time",
            RangeOp::Stddev => "stddev_over_time",
            RangeOp::Stdvar => "stdvar_over_time",
            RangeOp::Quantile => "quantile_over_time",
            RangeOp::First => "first_over_time",
            RangeOp::Last => "last_over_time",
        }
    }

    pub fn from_name(name: &str) -> Option<RangeOp> {
        RangeOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Loki's rule: only these may carry `by`/`without`.
    pub fn allows_grouping(self) -> bool {
        matches!(
            self,
            RangeOp::Avg
                | RangeOp::Stddev
                | RangeOp::Stdvar
                | RangeOp::Quantile
                | RangeOp::Max
                | RangeOp::Min
                | RangeOp::First
                | RangeOp::Last
        )
    }

    /// Loki's rule: what may read an unwrapped value.
    pub fn allows_unwrap(self) -> bool {
        !matches!(self, RangeOp::Count | RangeOp::Bytes | RangeOp::BytesRate)
    }

    /// Loki's rule: what may count lines without an unwrap.
    pub fn allows_lines(self) -> bool {
        matches!(
            self,
            RangeOp::Count | RangeOp::Rate | RangeOp::Bytes | RangeOp::BytesRate | RangeOp::Absent
        )
    }
}

/// How `unwrap` turns a label value into a sample value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// Go's `strconv.ParseFloat`.
    Float,
    /// Go's `time.ParseDuration`, in seconds (`duration` and `duration_seconds`).
    Duration,
    /// go-humanize's `ParseBytes`.
    Bytes,
}

/// `| unwrap [conv(]label[)]` and the label filters after it.
#[derive(Debug, Clone)]
pub struct Unwrap {
    pub label: String,
    pub conv: Conv,
    pub post: Vec<LabelFilter>,
}

/// Which side of a vector-vector operation may repeat a match group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    OneToOne,
    /// `group_left`: the left side is the "many".
    ManyToOne,
    /// `group_right`: the right side is the "many".
    OneToMany,
}

/// `on(..)`/`ignoring(..)` with `group_left(..)`/`group_right(..)`.
#[derive(Debug, Clone)]
pub struct VectorMatching {
    pub card: Card,
    /// `on` when true, `ignoring` otherwise.
    pub on: bool,
    pub labels: Vec<String>,
    /// Labels copied from the "one" side.
    pub include: Vec<String>,
}

impl Default for VectorMatching {
    /// No modifier: one-to-one on every label.
    fn default() -> Self {
        VectorMatching {
            card: Card::OneToOne,
            on: false,
            labels: Vec::new(),
            include: Vec::new(),
        }
    }
}

/// Vector aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VecOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Topk,
    Bottomk,
    Stddev,
    Stdvar,
    Sort,
    SortDesc,
}

/// `by (..)` or `without (..)`.
#[derive(Debug, Clone)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

/// A metric (sample) expression.
#[derive(Debug, Clone)]
pub enum MetricExpr {
    Range {
        op: RangeOp,
        log: LogExpr,
        range: i64,
        offset: i64,
        unwrap: Option<Unwrap>,
        grouping: Option<Grouping>,
        /// `quantile_over_time`'s φ.
        param: Option<f64>,
    },
    Vector {
        op: VecOp,
        param: Option<f64>,
        grouping: Option<Grouping>,
        inner: Box<MetricExpr>,
    },
    Literal(f64),
    Binary {
        op: BinOp,
        bool_mod: bool,
        matching: VectorMatching,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
    },
    /// `label_replace(inner, dst, replacement, src, regex)`; the regex is anchored.
    LabelReplace {
        inner: Box<MetricExpr>,
        dst: String,
        replacement: String,
        src: String,
        regex: Regex,
    },
}

/// Binary operators between metric expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Unless,
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl BinOp {
    /// Binding power: higher binds tighter (Prometheus precedence).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::Or | BinOp::And | BinOp::Unless)
    }

    /// Arithmetic or comparison (1.0 for true, 0.0 for false) on two values.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        let t = |x: bool| if x { 1.0 } else { 0.0 };
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            // Loki answers NaN, not ±Inf, for a zero divisor.
            BinOp::Div if b == 0.0 => f64::NAN,
            BinOp::Div => a / b,
            BinOp::Mod if b == 0.0 => f64::NAN,
            BinOp::Mod => a % b,
            BinOp::Pow => a.powf(b),
            BinOp::Eq => t(a == b),
            BinOp::Neq => t(a != b),
            BinOp::Gt => t(a > b),
            BinOp::Gte => t(a >= b),
            BinOp::Lt => t(a < b),
            BinOp::Lte => t(a <= b),
            BinOp::Or | BinOp::And | BinOp::Unless => a,
        }
    }
}

impl MetricExpr {
    /// Every selector the expression reads, for validation.
    pub fn selectors(&self) -> Vec<&[Matcher]> {
        match self {
            MetricExpr::Range { log, .. } => vec![&log.matchers],
            MetricExpr::Vector { inner, .. } | MetricExpr::LabelReplace { inner, .. } => {
                inner.selectors()
            }
            MetricExpr::Literal(_) => vec![],
            MetricExpr::Binary { lhs, rhs, .. } => {
                let mut v = lhs.selectors();
                v.extend(rhs.selectors());
                v
            }
        }
    }

    /// Whether the expression is a scalar (literals combined with literals).
    pub fn is_scalar(&self) -> bool {
        match self {
            MetricExpr::Literal(_) => true,
            MetricExpr::Binary { lhs, rhs, .. } => lhs.is_scalar() && rhs.is_scalar(),
            _ => false,
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone)]
pub enum Query {
    Log(LogExpr),
    Metric(MetricExpr),
}
