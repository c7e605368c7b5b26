//! LogQL lexer: turns a query into tokens the way Loki's lexer (`syntax/lex.go`) does,
//! including the positions its parse errors report.

/// Kinds of token. Names match Loki's token table, which error messages print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    Eof,
    Ident,
    Str,
    Number,
    Duration,
    Bytes,
    Range,
    Flag,
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Dot,
    Eq,
    Neq,
    Re,
    Nre,
    PipeExact,
    PipeMatch,
    PipePattern,
    Npa,
    Pipe,
    CmpEq,
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
    /// A keyword from Loki's `tokens` table (by, json, and, ...), lower-cased in `text`.
    Keyword,
    /// A function name followed by `(` (or by/without + `(`): sum, rate, ...
    Func,
}

/// One token and where it started.
#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    /// Source text (lower-cased for keywords and functions), or the decoded string.
    pub text: String,
    /// Durations and ranges in ns, bytes as a count.
    pub num: i64,
    /// Line as Loki reports it: 0 when Loki's scanner had advanced with `Next` inside the token.
    pub line: usize,
    pub col: usize,
    /// A lexing error to report when the parser reaches this token.
    pub err: Option<String>,
}

impl Token {
    /// How a yacc error message names this token.
    pub fn display(&self) -> String {
        match self.tok {
            Tok::Eof => "$end".into(),
            Tok::Ident => "IDENTIFIER".into(),
            Tok::Str => "STRING".into(),
            Tok::Number => "NUMBER".into(),
            Tok::Duration => "DURATION".into(),
            Tok::Bytes => "BYTES".into(),
            Tok::Range => "RANGE".into(),
            Tok::Flag => "FUNCTION_FLAG".into(),
            Tok::Func => self.text.to_uppercase(),
            _ => self.text.clone(),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "bool",
    "offset",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "or",
    "and",
    "unless",
    "json",
    "regexp",
    "logfmt",
    "unpack",
    "pattern",
    "label_format",
    "line_format",
    "ip",
    "decolorize",
    "drop",
    "keep",
    "unwrap",
    "label_replace",
    "variants",
    "of",
];

const FUNCTIONS: &[&str] = &[
    "rate",
    "rate_counter",
    "count_over_time",
    "bytes_rate",
    "bytes_over_time",
    "avg_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "quantile_over_time",
    "first_over_time",
    "last_over_time",
    "absent_over_time",
    "vector",
    "sum",
    "avg",
    "max",
    "min",
    "count",
    "stddev",
    "stdvar",
    "bottomk",
    "topk",
    "sort",
    "sort_desc",
    "label_replace",
    "approx_topk",
    "bytes",
    "duration",
    "duration_seconds",
    "ip",
];

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    out: Vec<Token>,
}

/// Lexes the whole query. Lexing never fails; bad tokens carry `err`.
pub fn lex(src: &str) -> Vec<Token> {
    let mut l = Lexer {
        src,
        pos: 0,
        out: Vec::new(),
    };
    l.run();
    l.out
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn is_duration_rune(c: char) -> bool {
    matches!(c, 'n' | 'u' | 'µ' | 'm' | 's' | 'h' | 'd' | 'w' | 'y')
}

fn is_bytes_rune(c: char) -> bool {
    matches!(c, 'B' | 'i' | 'k' | 'K' | 'M' | 'G' | 'T' | 'P')
}

impl Lexer<'_> {
    /// Loki's (line, col) of a byte offset: 1-based line, 1-based char column.
    fn at(&self, off: usize) -> (usize, usize) {
        let before = &self.src[..off];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn push(&mut self, tok: Tok, start: usize, text: String, num: i64, advanced: bool) {
        let (line, col) = self.at(start);
        self.out.push(Token {
            tok,
            text,
            num,
            line: if advanced { 0 } else { line },
            col,
            err: None,
        });
    }

    fn push_err(&mut self, start: usize, msg: String, advanced: bool) {
        self.push(Tok::Eof, start, String::new(), 0, advanced);
        if let Some(t) = self.out.last_mut() {
            t.err = Some(msg);
        }
    }

    fn run(&mut self) {
        loop {
            // Skip whitespace.
            while let Some(c) = self.peek() {
                if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            let start = self.pos;
            let Some(c) = self.peek() else {
                self.push(Tok::Eof, start, String::new(), 0, false);
                return;
            };
            if c == '#' {
                // Comment to end of line.
                match self.src[self.pos..].find('\n') {
                    Some(i) => self.pos += i,
                    None => self.pos = self.src.len(),
                }
                continue;
            }
            // Single quotes are Go char literals, which Loki's grammar rejects.
            if c == '"' || c == '`' {
                self.string(start);
                if self.out.last().is_some_and(|t| t.err.is_some()) {
                    return;
                }
                continue;
            }
            if c.is_ascii_digit()
                || (c == '.' && self.src[self.pos + 1..].starts_with(|d: char| d.is_ascii_digit()))
            {
                self.number(start);
                continue;
            }
            if is_ident_start(c) {
                self.word(start);
                continue;
            }
            if c == '[' {
                match self.src[self.pos + 1..].find(']') {
                    Some(i) => {
                        let body = &self.src[self.pos + 1..self.pos + 1 + i];
                        self.pos += i + 2;
                        match parse_prom_duration(body) {
                            Some(d) => self.push(Tok::Range, start, body.to_string(), d, true),
                            None => {
                                self.push_err(
                                    start,
                                    format!(
                                        "not a valid duration string: {}",
                                        loki_wire::labels::go_quote(body)
                                    ),
                                    true,
                                );
                                return;
                            }
                        }
                    }
                    None => {
                        self.pos = self.src.len();
                        self.push_err(start, "missing closing ']' in duration".into(), true);
                        return;
                    }
                }
                continue;
            }
            if c == '-' {
                // Parser flags (--strict) and negative durations.
                let rest = &self.src[self.pos + 1..];
                if rest.starts_with('-') {
                    let len = rest
                        .chars()
                        .take_while(|c| c.is_alphabetic() || *c == '-')
                        .map(char::len_utf8)
                        .sum::<usize>();
                    let flag = &self.src[self.pos..self.pos + 1 + len];
                    if flag == "--strict" || flag == "--keep-empty" {
                        self.pos += 1 + len;
                        self.push(Tok::Flag, start, flag.to_string(), 0, true);
                        continue;
                    }
                }
                let len = dur_len(rest);
                if len > 0 {
                    if let Some(d) = parse_duration(&rest[..len]) {
                        self.pos += 1 + len;
                        self.push(Tok::Duration, start, format!("-{}", &rest[..len]), -d, true);
                        continue;
                    }
                }
            }
            let two = self.src[self.pos..].chars().take(2).collect::<String>();
            let pair = match two.as_str() {
                "!=" => Some(Tok::Neq),
                "=~" => Some(Tok::Re),
                "!~" => Some(Tok::Nre),
                "!>" => Some(Tok::Npa),
                "|=" => Some(Tok::PipeExact),
                "|~" => Some(Tok::PipeMatch),
                "|>" => Some(Tok::PipePattern),
                "==" => Some(Tok::CmpEq),
                ">=" => Some(Tok::Gte),
                "<=" => Some(Tok::Lte),
                _ => None,
            };
            if let Some(t) = pair {
                self.pos += 2;
                self.push(t, start, two, 0, true);
                continue;
            }
            let single = match c {
                '{' => Some(Tok::LBrace),
                '}' => Some(Tok::RBrace),
                '(' => Some(Tok::LParen),
                ')' => Some(Tok::RParen),
                ',' => Some(Tok::Comma),
                '.' => Some(Tok::Dot),
                '=' => Some(Tok::Eq),
                '|' => Some(Tok::Pipe),
                '>' => Some(Tok::Gt),
                '<' => Some(Tok::Lt),
                '+' => Some(Tok::Add),
                '-' => Some(Tok::Sub),
                '*' => Some(Tok::Mul),
                '/' => Some(Tok::Div),
                '%' => Some(Tok::Mod),
                '^' => Some(Tok::Pow),
                _ => None,
            };
            self.pos += c.len_utf8();
            match single {
                Some(t) => self.push(t, start, c.to_string(), 0, false),
                // Loki returns unknown characters as identifiers, which the grammar rejects.
                None => self.push(Tok::Ident, start, c.to_string(), 0, false),
            }
        }
    }

    fn string(&mut self, start: usize) {
        match loki_wire::labels::unquote_prefix(&self.src[self.pos..]) {
            Ok((s, n)) => {
                self.pos += n;
                self.push(Tok::Str, start, s, 0, false);
            }
            Err(e) => {
                let msg = if e.contains("unterminated") {
                    "literal not terminated".to_string()
                } else {
                    "invalid syntax".to_string()
                };
                self.push_err(start, msg, false);
            }
        }
    }

    fn number(&mut self, start: usize) {
        let rest = &self.src[self.pos..];
        let mut len = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if rest[len..].starts_with('.') {
            len += 1 + rest[len + 1..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .count();
        }
        let num_end_exp = {
            let r = &rest[len..];
            if r.starts_with(['e', 'E']) {
                let mut k = 1;
                if r[1..].starts_with(['+', '-']) {
                    k += 1;
                }
                let digits = r[k..].chars().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 {
                    len + k + digits
                } else {
                    len
                }
            } else {
                len
            }
        };
        let numtext = &rest[..num_end_exp];
        let after = &rest[num_end_exp..];
        {
            let dl = dur_len(after);
            if dl > 0 {
                if let Some(d) = parse_duration(&rest[..num_end_exp + dl]) {
                    self.pos += num_end_exp + dl;
                    self.push(
                        Tok::Duration,
                        start,
                        rest[..num_end_exp + dl].to_string(),
                        d,
                        true,
                    );
                    return;
                }
            }
            let bl = after
                .chars()
                .take_while(|c| {
                    !c.is_whitespace() && (c.is_numeric() || is_bytes_rune(*c) || *c == '.')
                })
                .map(char::len_utf8)
                .sum::<usize>();
            if bl > 0 {
                if let Some(b) = parse_bytes(&rest[..num_end_exp + bl]) {
                    self.pos += num_end_exp + bl;
                    self.push(
                        Tok::Bytes,
                        start,
                        rest[..num_end_exp + bl].to_string(),
                        b,
                        true,
                    );
                    return;
                }
            }
        }
        self.pos += num_end_exp;
        self.push(Tok::Number, start, numtext.to_string(), 0, false);
    }

    fn word(&mut self, start: usize) {
        let len = self.src[self.pos..]
            .char_indices()
            .find(|&(_, c)| !is_ident_char(c))
            .map_or(self.src.len() - self.pos, |(i, _)| i);
        let text = &self.src[self.pos..self.pos + len];
        self.pos += len;
        let lower = text.to_lowercase();
        if FUNCTIONS.contains(&lower.as_str()) && self.is_function() {
            self.push(Tok::Func, start, lower, 0, false);
        } else if KEYWORDS.contains(&lower.as_str()) {
            self.push(Tok::Keyword, start, lower, 0, false);
        } else {
            self.push(Tok::Ident, start, text.to_string(), 0, false);
        }
    }

    /// Whether the next non-space text is `(` or `by (`/`without (` (Loki's `isFunction`).
    fn is_function(&self) -> bool {
        let rest = self.src[self.pos..].trim_start();
        if rest.starts_with('(') {
            return true;
        }
        let lower = rest.to_lowercase();
        for kw in ["by", "without"] {
            if let Some(r) = lower.strip_prefix(kw) {
                return r.trim_start().starts_with('(');
            }
        }
        false
    }
}

/// Length of the duration-looking suffix Loki's `tryScanDuration` would consume.
fn dur_len(s: &str) -> usize {
    s.chars()
        .take_while(|c| !c.is_whitespace() && (c.is_numeric() || is_duration_rune(*c) || *c == '.'))
        .map(char::len_utf8)
        .sum()
}

/// Parses a duration the way Loki does: Prometheus syntax first, then Go's `time.ParseDuration`.
pub fn parse_duration(s: &str) -> Option<i64> {
    parse_prom_duration(s).or_else(|| parse_go_duration(s))
}

/// Prometheus `model.ParseDuration`: `1h30m`, units y w d h m s ms, integers only, in order.
pub fn parse_prom_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: &[(&str, i64)] = &[
        ("y", 365 * 24 * 3_600_000_000_000),
        ("w", 7 * 24 * 3_600_000_000_000),
        ("d", 24 * 3_600_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit = 0usize;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let ul = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..ul];
        rest = &rest[ul..];
        let idx = UNITS.iter().position(|(u, _)| *u == unit)?;
        // Units must be in decreasing order and not repeat.
        if idx < last_unit || (total != 0 && idx == last_unit && last_unit != 0) {
            return None;
        }
        last_unit = idx + 1;
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
    }
    Some(total)
}

/// Go's `time.ParseDuration` (units ns us µs ms s m h; fractions allowed).
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let nl = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .count();
        if nl == 0 {
            return None;
        }
        let n: f64 = rest[..nl].parse().ok()?;
        rest = &rest[nl..];
        let ul = rest
            .chars()
            .take_while(|c| !c.is_ascii_digit() && *c != '.')
            .map(char::len_utf8)
            .sum::<usize>();
        let mult = match &rest[..ul] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[ul..];
        total += n * mult;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let v = total.round() as i64;
    Some(if neg { -v } else { v })
}

/// `humanize.ParseBytes`: a number and an SI (kB, MB) or IEC (KiB) unit; B alone is bytes.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    let nl = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .count();
    let n: f64 = s[..nl].parse().ok()?;
    let unit = s[nl..].trim().to_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    let v = n * mult;
    if v >= 9.2e18 {
        return None;
    }
    Some(v as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(300_000_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("100ms"), Some(100_000_000));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_bytes("10KB"), Some(10_000));
        assert_eq!(parse_bytes("1KiB"), Some(1024));
    }

    #[test]
    fn tokens_and_positions() {
        let t = lex(r#"{app="api" |= "x""#);
        let kinds: Vec<Tok> = t.iter().map(|t| t.tok).collect();
        assert_eq!(
            kinds,
            vec![
                Tok::LBrace,
                Tok::Ident,
                Tok::Eq,
                Tok::Str,
                Tok::PipeExact,
                Tok::Str,
                Tok::Eof
            ]
        );
        assert_eq!((t[4].line, t[4].col), (0, 12));
        assert_eq!((t[1].line, t[1].col), (1, 2));
        let t = lex("sum by (app) (count_over_time({a=\"b\"}[5m]))");
        assert_eq!(t[0].tok, Tok::Func);
        assert_eq!(t[1].tok, Tok::Keyword);
        let r = t.iter().find(|t| t.tok == Tok::Range).map(|t| t.num);
        assert_eq!(r, Some(300_000_000_000));
    }
}
