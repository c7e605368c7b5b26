//! Lexer for the Alloy configuration syntax: tokens, Go-style string escapes, raw strings,
//! comments, and automatic TERMINATOR insertion at line ends (spec §1.1, §1.3).

use std::fmt;

/// Token kinds. `Display` gives the names Alloy uses in messages ("IDENT", "TERMINATOR", "=").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tok {
    Illegal,
    Eof,
    Comment,
    Ident,
    Number,
    Float,
    String,
    Bool,
    Null,
    Or,
    And,
    Not,
    Neq,
    Assign,
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    LCurly,
    RCurly,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Dot,
    Terminator,
}

impl Tok {
    /// Binary operator precedence (spec §1.2); 0 for non-operators.
    pub fn precedence(self) -> u8 {
        match self {
            Tok::Or => 1,
            Tok::And => 2,
            Tok::Eq | Tok::Neq | Tok::Lt | Tok::Lte | Tok::Gt | Tok::Gte => 3,
            Tok::Add | Tok::Sub => 4,
            Tok::Mul | Tok::Div | Tok::Mod => 5,
            Tok::Pow => 6,
            _ => 0,
        }
    }

    /// The operator's source text.
    pub fn op_str(self) -> &'static str {
        match self {
            Tok::Or => "||",
            Tok::And => "&&",
            Tok::Not => "!",
            Tok::Neq => "!=",
            Tok::Assign => "=",
            Tok::Eq => "==",
            Tok::Lt => "<",
            Tok::Lte => "<=",
            Tok::Gt => ">",
            Tok::Gte => ">=",
            Tok::Add => "+",
            Tok::Sub => "-",
            Tok::Mul => "*",
            Tok::Div => "/",
            Tok::Mod => "%",
            Tok::Pow => "^",
            Tok::LCurly => "{",
            Tok::RCurly => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrack => "[",
            Tok::RBrack => "]",
            Tok::Comma => ",",
            Tok::Dot => ".",
            _ => "",
        }
    }
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::Illegal => "ILLEGAL",
            Tok::Eof => "EOF",
            Tok::Comment => "COMMENT",
            Tok::Ident => "IDENT",
            Tok::Number => "NUMBER",
            Tok::Float => "FLOAT",
            Tok::String => "STRING",
            Tok::Bool => "BOOL",
            Tok::Null => "NULL",
            Tok::Terminator => "TERMINATOR",
            other => other.op_str(),
        };
        f.write_str(s)
    }
}

/// One scanned token: kind, byte offset and literal text (idents, numbers, strings with their
/// quotes, comments, the illegal character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub offset: usize,
    pub lit: String,
}

/// A lexical error at a byte offset, with an optional fix hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub offset: usize,
    pub msg: String,
    pub hint: Option<&'static str>,
}

/// The scanner. It always makes progress and keeps going after errors so the parser can
/// report everything in one pass.
pub struct Scanner<'a> {
    src: &'a str,
    /// Offset of the next unread character.
    off: usize,
    /// A newline (or EOF) now produces a TERMINATOR.
    insert_term: bool,
    pub errors: Vec<ScanError>,
}

impl<'a> Scanner<'a> {
    pub fn new(src: &'a str) -> Self {
        let mut s = Scanner {
            src,
            off: 0,
            insert_term: false,
            errors: Vec::new(),
        };
        if s.src.starts_with('\u{feff}') {
            s.off = 3; // a BOM is allowed as the very first character only
        }
        s
    }

    fn peek(&self) -> Option<char> {
        self.src[self.off..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.off..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        if c == '\0' {
            self.err(self.off, "illegal character NUL");
        } else if c == '\u{feff}' {
            self.err(self.off, "illegal byte order mark");
        }
        self.off += c.len_utf8();
        Some(c)
    }

    fn err(&mut self, offset: usize, msg: impl Into<String>) {
        self.errors.push(ScanError {
            offset,
            msg: msg.into(),
            hint: None,
        });
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == '\r' || (c == '\n' && !self.insert_term) {
                self.off += 1;
            } else {
                break;
            }
        }
    }

    /// Scans the next token (comments included).
    pub fn scan(&mut self) -> Token {
        self.skip_ws();
        let start = self.off;
        let mut insert = false;
        let Some(c) = self.peek() else {
            if self.insert_term {
                self.insert_term = false;
                return Token {
                    tok: Tok::Terminator,
                    offset: start,
                    lit: "\n".into(),
                };
            }
            return Token {
                tok: Tok::Eof,
                offset: start,
                lit: String::new(),
            };
        };
        let (tok, lit) = if is_letter(c) {
            let lit = self.ident();
            insert = true;
            let tok = match lit.as_str() {
                "true" | "false" => Tok::Bool,
                "null" => Tok::Null,
                _ => Tok::Ident,
            };
            (tok, lit)
        } else if c.is_ascii_digit()
            || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()))
        {
            insert = true;
            self.number()
        } else {
            self.bump();
            match c {
                '\n' => {
                    self.insert_term = false;
                    return Token {
                        tok: Tok::Terminator,
                        offset: start,
                        lit: "\n".into(),
                    };
                }
                '\'' => {
                    self.err(start, "illegal single-quoted string; use double quotes");
                    insert = true;
                    (Tok::Illegal, self.string('\'', start))
                }
                '"' => {
                    insert = true;
                    (Tok::String, self.string('"', start))
                }
                '`' => {
                    insert = true;
                    (Tok::String, self.raw_string(start))
                }
                '|' => {
                    if self.peek() == Some('|') {
                        self.bump();
                    } else {
                        self.err(self.off, "missing second | in ||");
                    }
                    (Tok::Or, String::new())
                }
                '&' => {
                    if self.peek() == Some('&') {
                        self.bump();
                    } else {
                        self.err(self.off, "missing second & in &&");
                    }
                    (Tok::And, String::new())
                }
                '!' => (self.switch2(Tok::Not, Tok::Neq), String::new()),
                '=' => (self.switch2(Tok::Assign, Tok::Eq), String::new()),
                '<' => (self.switch2(Tok::Lt, Tok::Lte), String::new()),
                '>' => (self.switch2(Tok::Gt, Tok::Gte), String::new()),
                '+' => (Tok::Add, String::new()),
                '-' => (Tok::Sub, String::new()),
                '*' => (Tok::Mul, String::new()),
                '/' if matches!(self.peek(), Some('/') | Some('*')) => {
                    // A comment that runs to the line end ends the statement before it, so the
                    // pending terminator is emitted first and the comment is scanned next time.
                    if self.insert_term && self.comment_reaches_line_end(start) {
                        self.off = start;
                        self.insert_term = false;
                        return Token {
                            tok: Tok::Terminator,
                            offset: start,
                            lit: "\n".into(),
                        };
                    }
                    let lit = self.comment(start);
                    self.insert_term = false;
                    return Token {
                        tok: Tok::Comment,
                        offset: start,
                        lit,
                    };
                }
                '/' => (Tok::Div, String::new()),
                '%' => (Tok::Mod, String::new()),
                '^' => (Tok::Pow, String::new()),
                '{' => (Tok::LCurly, String::new()),
                '}' => {
                    insert = true;
                    (Tok::RCurly, String::new())
                }
                '(' => (Tok::LParen, String::new()),
                ')' => {
                    insert = true;
                    (Tok::RParen, String::new())
                }
                '[' => (Tok::LBrack, String::new()),
                ']' => {
                    insert = true;
                    (Tok::RBrack, String::new())
                }
                ',' => (Tok::Comma, String::new()),
                '.' => (Tok::Dot, String::new()),
                other => {
                    if other != '\u{feff}' && other != '\0' {
                        self.errors.push(ScanError {
                            offset: start,
                            msg: format!("illegal character {}", go_unicode(other)),
                            // Users coming from YAML/HCL write `#` comments; Alloy has none.
                            hint: (other == '#').then_some("use // for comments"),
                        });
                    }
                    // An illegal character keeps the pending terminator state, like Alloy.
                    insert = self.insert_term;
                    (Tok::Illegal, other.to_string())
                }
            }
        };
        self.insert_term = insert;
        Token {
            tok,
            offset: start,
            lit,
        }
    }

    fn switch2(&mut self, one: Tok, two: Tok) -> Tok {
        if self.peek() == Some('=') {
            self.bump();
            two
        } else {
            one
        }
    }

    fn ident(&mut self) -> String {
        let start = self.off;
        while let Some(c) = self.peek() {
            if is_letter(c) || c.is_numeric() {
                self.off += c.len_utf8();
            } else {
                break;
            }
        }
        self.src[start..self.off].to_string()
    }

    fn digits(&mut self) -> usize {
        let mut n = 0;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.off += 1;
            n += 1;
        }
        n
    }

    fn number(&mut self) -> (Tok, String) {
        let start = self.off;
        let mut tok = Tok::Number;
        if self.peek() != Some('.') {
            self.digits();
        }
        if self.peek() == Some('.') {
            tok = Tok::Float;
            self.off += 1;
            self.digits();
        }
        if matches!(self.peek(), Some('e') | Some('E')) {
            tok = Tok::Float;
            self.off += 1;
            if matches!(self.peek(), Some('+') | Some('-')) {
                self.off += 1;
            }
            if self.digits() == 0 {
                self.err(start, "exponent has no digits");
            }
        }
        (tok, self.src[start..self.off].to_string())
    }

    fn string(&mut self, quote: char, start: usize) -> String {
        loop {
            match self.peek() {
                None | Some('\n') => {
                    self.err(start, "string literal not terminated");
                    break;
                }
                Some(c) => {
                    self.bump();
                    if c == quote {
                        break;
                    }
                    if c == '\\' {
                        self.escape();
                    }
                }
            }
        }
        self.src[start..self.off].to_string()
    }

    fn raw_string(&mut self, start: usize) -> String {
        loop {
            match self.bump() {
                None => {
                    self.err(start, "string literal not terminated");
                    break;
                }
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.src[start..self.off].to_string()
    }

    /// Validates one escape after a backslash; on error stops at the offending character.
    fn escape(&mut self) {
        let at = self.off;
        let (n, base, max): (usize, u32, u32) = match self.peek() {
            // Alloy accepts no `\'`: single quotes never delimit strings.
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '"') => {
                self.bump();
                return;
            }
            Some('0'..='7') => (3, 8, 255),
            Some('x') => {
                self.bump();
                (2, 16, 255)
            }
            Some('u') => {
                self.bump();
                (4, 16, 0x10FFFF)
            }
            Some('U') => {
                self.bump();
                (8, 16, 0x10FFFF)
            }
            None => {
                self.err(at, "escape sequence not terminated");
                return;
            }
            Some(_) => {
                self.err(at, "unknown escape sequence");
                return;
            }
        };
        let mut x: u32 = 0;
        for _ in 0..n {
            match self.peek().and_then(|c| c.to_digit(base)) {
                Some(d) => {
                    x = x.saturating_mul(base).saturating_add(d);
                    self.bump();
                }
                None => {
                    let msg = match self.peek() {
                        None => "escape sequence not terminated".to_string(),
                        Some(c) => {
                            format!("illegal character {} in escape sequence", go_unicode(c))
                        }
                    };
                    self.err(at, msg);
                    return;
                }
            }
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            self.err(at, "escape sequence is invalid Unicode code point");
        }
    }

    /// A comment's literal, with carriage returns removed as Alloy does (Windows line ends).
    fn comment(&mut self, start: usize) -> String {
        let block = self.peek() != Some('/');
        if !block {
            while self.peek().is_some_and(|c| c != '\n') {
                self.bump();
            }
        } else {
            self.bump(); // '*'
            loop {
                match self.bump() {
                    None => {
                        self.err(start, "block comment not terminated");
                        break;
                    }
                    Some('*') if self.peek() == Some('/') => {
                        self.bump();
                        break;
                    }
                    _ => {}
                }
            }
        }
        let lit = &self.src[start..self.off];
        let lit = lit.strip_suffix('\r').unwrap_or(lit);
        if lit.contains('\r') {
            strip_cr(lit, block)
        } else {
            lit.to_string()
        }
    }

    /// Whether the comment starting at `start` (and any comments after it) reaches the end of
    /// the line, so the newline terminator belongs before it.
    fn comment_reaches_line_end(&self, start: usize) -> bool {
        let rest = &self.src[start..];
        if rest.starts_with("//") {
            return true;
        }
        let Some(end) = rest.find("*/") else {
            return true;
        };
        if rest[..end].contains('\n') {
            return true;
        }
        let after = rest[end + 2..].trim_start_matches([' ', '\t', '\r']);
        after.is_empty()
            || after.starts_with('\n')
            || (after.starts_with("//") || after.starts_with("/*")) && {
                let next = start + (rest.len() - after.len());
                self.comment_reaches_line_end(next)
            }
    }
}

/// Removes carriage returns, except one between `*` and `/` inside a block comment, where
/// removing it would close the comment early.
fn strip_cr(lit: &str, block: bool) -> String {
    let b = lit.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    for (j, &ch) in b.iter().enumerate() {
        let keep =
            block && out.len() > 2 && out.last() == Some(&b'*') && b.get(j + 1) == Some(&b'/');
        if ch != b'\r' || keep {
            out.push(ch);
        }
    }
    // Only ASCII `\r` bytes were removed, so the rest is still valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Go's `%#U`: `U+0023 '#'`, without the quoted character when it is not printable.
fn go_unicode(c: char) -> String {
    if c.is_control()
        || c.is_whitespace() && c != ' '
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{feff}')
    {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

/// Whether `s` is a valid identifier (block labels must be).
pub fn is_valid_identifier(s: &str) -> bool {
    let mut it = s.chars();
    it.next().is_some_and(is_letter) && it.all(|c| is_letter(c) || c.is_numeric())
}

/// Decodes a string literal (with its quotes) into its value. The scanner has already
/// reported any bad escape, so bad input here only yields a best-effort value.
pub fn unquote(lit: &str) -> String {
    if let Some(raw) = lit.strip_prefix('`') {
        return raw.strip_suffix('`').unwrap_or(raw).to_string();
    }
    let inner = lit.strip_prefix('"').unwrap_or(lit);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut bytes: Vec<u8> = Vec::new(); // pending \x / octal bytes, which may form UTF-8
    let mut chars = inner.chars().peekable();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else { break };
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            _ => None,
        };
        if let Some(s) = simple {
            flush(&mut bytes, &mut out);
            out.push(s);
            continue;
        }
        let (n, base) = match e {
            '0'..='7' => (2, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => continue,
        };
        let mut x: u32 = if base == 8 {
            e.to_digit(8).unwrap_or(0)
        } else {
            0
        };
        for _ in 0..n {
            if let Some(d) = chars.peek().and_then(|c| c.to_digit(base)) {
                x = x.saturating_mul(base).saturating_add(d);
                chars.next();
            }
        }
        if matches!(e, 'u' | 'U') {
            flush(&mut bytes, &mut out);
            out.push(char::from_u32(x).unwrap_or('\u{fffd}'));
        } else {
            bytes.push(x as u8);
        }
    }
    flush(&mut bytes, &mut out);
    out
}

/// Quotes a string as a double-quoted Alloy literal (Go `%q` style escapes).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let mut s = Scanner::new(src);
        let mut v = Vec::new();
        loop {
            let t = s.scan();
            if t.tok == Tok::Eof {
                return v;
            }
            v.push(t.tok);
        }
    }

    #[test]
    fn newline_after_value_is_a_terminator() {
        use Tok::*;
        assert_eq!(
            toks("a = 1\nb {\n}\n"),
            vec![Ident, Assign, Number, Terminator, Ident, LCurly, RCurly, Terminator]
        );
        // no terminator after an operator: the expression continues on the next line
        assert_eq!(
            toks("a = 1 +\n2"),
            vec![Ident, Assign, Number, Add, Number, Terminator]
        );
    }

    #[test]
    fn line_comment_after_value_yields_terminator_then_comment() {
        use Tok::*;
        assert_eq!(
            toks("a = 1 // c\n"),
            vec![Ident, Assign, Number, Terminator, Comment]
        );
    }

    #[test]
    fn hash_is_illegal_with_hint() {
        let mut s = Scanner::new("a = 1 # c\n");
        while s.scan().tok != Tok::Eof {}
        assert_eq!(s.errors[0].msg, "illegal character U+0023 '#'");
        assert_eq!(s.errors[0].offset, 6);
        assert_eq!(s.errors[0].hint, Some("use // for comments"));
    }

    #[test]
    fn escapes_table() {
        let cases = [
            (r#""a\nb""#, "a\nb"),
            (r#""\x41\101\u00e9\U0001F600""#, "AA\u{e9}\u{1F600}"),
            (r#""\xc3\xa9""#, "\u{e9}"),
            (r#""q\"\\\'""#, "q\"\\'"),
            ("`raw\\n`", "raw\\n"),
        ];
        for (lit, want) in cases {
            assert_eq!(unquote(lit), want, "{lit}");
        }
        for (src, msg) in [
            (r#""\q""#, "unknown escape sequence"),
            (
                r#""\uD800""#,
                "escape sequence is invalid Unicode code point",
            ),
            ("\"abc\n", "string literal not terminated"),
            ("'x'", "illegal single-quoted string; use double quotes"),
            ("1e", "exponent has no digits"),
            ("/* x", "block comment not terminated"),
        ] {
            let mut s = Scanner::new(src);
            while s.scan().tok != Tok::Eof {}
            assert_eq!(s.errors.first().map(|e| e.msg.as_str()), Some(msg), "{src}");
        }
    }

    #[test]
    fn quote_roundtrips() {
        for s in ["", "a\"b", "tab\there", "\u{7}\u{0}é"] {
            assert_eq!(unquote(&quote(s)), s);
        }
    }
}
