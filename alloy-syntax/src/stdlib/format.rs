//! `string.format`: Go's `fmt.Sprintf` over Alloy values, including Go's in-band error texts
//! (`%!d(string=x)`, `%!s(MISSING)`, `%!(EXTRA int=1)`), since Alloy hands the arguments to Go.
//! Alloy numbers written without a fraction are Go `int`s, the others `float64`.

use crate::scanner::quote;
use crate::value::Value;

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn is_int(n: f64) -> bool {
    n.fract() == 0.0 && n.abs() < 9.2e18
}

/// The Go type name `%!verb(type=value)` shows.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) | Value::Secret(_) => "string",
        Value::Number(n) if is_int(*n) => "int",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        _ => "interface {}",
    }
}

/// Go's `%v` of a value.
fn go_v(v: &Value, sharp: bool) -> String {
    match v {
        Value::String(s) if sharp => quote(s),
        Value::String(s) => s.clone(),
        Value::Secret(_) => "(secret)".into(),
        Value::Number(n) if is_int(*n) => format!("{}", *n as i64),
        Value::Number(n) => go_float(*n, 'g', None),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".into(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|x| go_v(x, sharp))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, x)| format!("{k}:{}", go_v(x, sharp)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// An f64's exact decimal expansion ends within 1,074 fractional (767 significant) digits;
/// digits asked for past this many are zeros. Rust's formatter takes precisions up to
/// 65,535 only, so longer ones are formatted to here and padded with zeros.
const EXACT_DIGITS: usize = 1100;

/// Go's `%e`/`%f`/`%g` (strconv.FormatFloat); `prec` None is the shortest representation.
fn go_float(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let exp_form = |s: String, upper: bool| -> String {
        // Rust writes `1.5e6` / `1.5e-7`; Go writes `1.5e+06` / `1.5e-07`.
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        let e = if upper { 'E' } else { 'e' };
        format!("{m}{e}{sign}{digits:0>2}")
    };
    match verb {
        'e' | 'E' => {
            let p = prec.unwrap_or(6);
            let mut s = format!("{:.*e}", p.min(EXACT_DIGITS), f);
            if let Some(at) = s.find('e') {
                s.insert_str(at, &"0".repeat(p.saturating_sub(EXACT_DIGITS)));
            }
            exp_form(s, verb == 'E')
        }
        'f' | 'F' => {
            let p = prec.unwrap_or(6);
            let mut s = format!("{:.*}", p.min(EXACT_DIGITS), f);
            s.push_str(&"0".repeat(p.saturating_sub(EXACT_DIGITS)));
            s
        }
        _ => {
            // Past the exact digits %g only adds zeros, which it trims.
            let prec = prec.map(|p| p.min(EXACT_DIGITS));
            // %g: shortest digits, exponent form when exp < -4 or exp >= precision (6 when
            // shortest).
            let sci = match prec {
                Some(p) => format!("{:.*e}", p.max(1) - 1, f),
                None => format!("{f:e}"),
            };
            let (m, e) = sci.split_once('e').unwrap_or((&sci, "0"));
            let exp: i32 = e.parse().unwrap_or(0);
            let digits = m.trim_start_matches('-').replace('.', "").len();
            let eprec = match prec {
                None => 6,
                Some(p) if p > digits && digits as i32 > exp => digits,
                Some(p) => p.max(1),
            } as i32;
            if exp < -4 || exp >= eprec {
                let m = if m.contains('.') {
                    m.trim_end_matches('0').trim_end_matches('.')
                } else {
                    m
                };
                exp_form(format!("{m}e{exp}"), verb == 'G')
            } else {
                let s = format!("{:.*}", (digits as i32 - exp - 1).max(0) as usize, f);
                if s.contains('.') {
                    s.trim_end_matches('0').trim_end_matches('.').to_string()
                } else {
                    s
                }
            }
        }
    }
}

fn pad(body: String, sp: Spec, numeric: bool) -> String {
    let w = sp.width.unwrap_or(0);
    let len = body.chars().count();
    if len >= w {
        return body;
    }
    let fill = w - len;
    if sp.minus {
        format!("{body}{}", " ".repeat(fill))
    } else if sp.zero && numeric {
        let (sign, rest) = match body.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), &body[1..]),
            _ => (String::new(), &body[..]),
        };
        format!("{sign}{}{rest}", "0".repeat(fill))
    } else {
        format!("{}{body}", " ".repeat(fill))
    }
}

fn signed(s: String, n: f64, sp: Spec) -> String {
    if n >= 0.0 && !s.starts_with('-') {
        if sp.plus {
            return format!("+{s}");
        }
        if sp.space {
            return format!(" {s}");
        }
    }
    s
}

/// Formats one argument; `None` when the verb does not apply to its type.
fn one(verb: char, v: &Value, sp: Spec) -> Option<(String, bool)> {
    Some(match (verb, v) {
        ('v', Value::Number(n)) if is_int(*n) => (signed(format!("{}", *n as i64), *n, sp), true),
        ('v', Value::Number(n)) => (signed(go_float(*n, 'g', sp.prec), *n, sp), true),
        ('v', v) => (go_v(v, sp.sharp), false),
        ('s', Value::String(s)) => (
            match sp.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            false,
        ),
        ('s', Value::Secret(_)) => ("(secret)".into(), false),
        ('q', Value::String(s)) => (quote(s), false),
        ('x' | 'X', Value::String(s)) => {
            let h: String = s.bytes().map(|b| format!("{b:02x}")).collect();
            (if verb == 'X' { h.to_uppercase() } else { h }, false)
        }
        ('t', Value::Bool(b)) => (b.to_string(), false),
        ('d', Value::Number(n)) if is_int(*n) => (signed(format!("{}", *n as i64), *n, sp), true),
        ('b', Value::Number(n)) if is_int(*n) => (signed(radix(*n as i64, 2, false), *n, sp), true),
        ('o', Value::Number(n)) if is_int(*n) => (signed(radix(*n as i64, 8, false), *n, sp), true),
        ('x' | 'X', Value::Number(n)) if is_int(*n) => {
            (signed(radix(*n as i64, 16, verb == 'X'), *n, sp), true)
        }
        ('c', Value::Number(n)) if is_int(*n) => (
            char::from_u32(*n as u32).unwrap_or('\u{fffd}').to_string(),
            false,
        ),
        ('e' | 'E' | 'f' | 'F' | 'g' | 'G', Value::Number(n)) if !is_int(*n) => {
            (signed(go_float(*n, verb, sp.prec), *n, sp), true)
        }
        _ => return None,
    })
}

fn radix(n: i64, base: u32, upper: bool) -> String {
    let neg = n < 0;
    let mut m = n.unsigned_abs();
    let mut digits = Vec::new();
    loop {
        let d = (m % u64::from(base)) as u32;
        let c = char::from_digit(d, base).unwrap_or('?');
        digits.push(if upper { c.to_ascii_uppercase() } else { c });
        m /= u64::from(base);
        if m == 0 {
            break;
        }
    }
    let s: String = digits.into_iter().rev().collect();
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

/// Go's `fmt.Sprintf(format, args...)`.
pub fn sprintf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    let mut next = 0;
    let mut reordered = false;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut sp = Spec::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => sp.minus = true,
                '+' => sp.plus = true,
                '#' => sp.sharp = true,
                ' ' => sp.space = true,
                '0' => sp.zero = true,
                _ => break,
            }
            i += 1;
        }
        // Explicit argument index `[n]` (one-based).
        let arg_index = |i: &mut usize, next: &mut usize, reordered: &mut bool| {
            if chars.get(*i) == Some(&'[') {
                if let Some(end) = chars[*i..].iter().position(|&c| c == ']') {
                    let n: String = chars[*i + 1..*i + end].iter().collect();
                    if let Ok(n) = n.parse::<usize>() {
                        if n >= 1 {
                            *next = n - 1;
                            *reordered = true;
                        }
                    }
                    *i += end + 1;
                }
            }
        };
        arg_index(&mut i, &mut next, &mut reordered);
        // Go's parsenum: a number past a million before its next digit is "a crazy long
        // number": the rest of the format is consumed (so `%!(NOVERB)` follows) instead of
        // padding to it.
        let num = |i: &mut usize| -> Option<usize> {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
                if n.is_some_and(|n| n > 1_000_000) {
                    *i = chars.len();
                    return None;
                }
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                *i += 1;
            }
            n
        };
        sp.width = num(&mut i);
        if chars.get(i) == Some(&'.') {
            i += 1;
            sp.prec = Some(num(&mut i).unwrap_or(0));
        }
        arg_index(&mut i, &mut next, &mut reordered);
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        match one(verb, arg, sp) {
            Some((body, numeric)) => out.push_str(&pad(body, sp, numeric)),
            None => out.push_str(&format!("%!{verb}({}={})", go_type(arg), go_v(arg, false))),
        }
    }
    if !reordered && next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", go_type(a), go_v(a, false)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }
    fn n(v: f64) -> Value {
        Value::Number(v)
    }

    /// Outputs as Go's fmt.Sprintf gives them for the same (int / float64 / string) arguments.
    #[test]
    fn sprintf_like_go() {
        let cases: &[(&str, Vec<Value>, &str)] = &[
            ("Hello %s", vec![s("World")], "Hello World"),
            ("%#v", vec![n(1.0)], "1"),
            ("%#v", vec![Value::Bool(true)], "true"),
            ("%#v", vec![s("x")], "\"x\""),
            ("%q", vec![s("hello")], "\"hello\""),
            ("There are %d lights", vec![n(4.0)], "There are 4 lights"),
            ("%5.1f|%-3s|", vec![n(2.5), s("x")], "  2.5|x  |"),
            ("%05d", vec![n(-42.0)], "-0042"),
            (
                "%x %X %o %b",
                vec![n(255.0), n(255.0), n(8.0), n(5.0)],
                "ff FF 10 101",
            ),
            ("%e", vec![n(1234.5678)], "1.234568e+03"),
            (
                "%g %g %v",
                vec![n(0.000012), n(1234567.5), n(2.5)],
                "1.2e-05 1.2345675e+06 2.5",
            ),
            ("%d", vec![s("x")], "%!d(string=x)"),
            ("%s", vec![n(5.0)], "%!s(int=5)"),
            ("%f", vec![n(2.0)], "%!f(int=2)"),
            ("%d %d", vec![n(1.0)], "1 %!d(MISSING)"),
            ("%d", vec![n(1.0), s("a")], "1%!(EXTRA string=a)"),
            ("%[2]s %[1]s", vec![s("a"), s("b")], "b a"),
            ("100%%", vec![], "100%"),
            // Found by the stdlib fuzz target: Go refuses widths past a million (this padded
            // to ten billion characters and ran out of memory).
            ("%9999999999d|", vec![n(1.0)], "%!(NOVERB)%!(EXTRA int=1)"),
            ("%.99999999f", vec![n(1.0)], "%!(NOVERB)%!(EXTRA int=1)"),
            ("%v", vec![Value::Array(vec![n(1.0), s("a")])], "[1 a]"),
            ("%t", vec![Value::Bool(false)], "false"),
        ];
        for (f, args, want) in cases {
            assert_eq!(sprintf(f, args), *want, "{f}");
        }
    }

    /// Found by the stdlib fuzz target: Rust's formatter panics on precisions past 65,535,
    /// Go's gives the exact digits and then zeros.
    #[test]
    fn precisions_past_rusts_formatter_limit() {
        let zeros = "0".repeat(69_999);
        assert_eq!(sprintf("%.70000f", &[n(2.5)]), format!("2.5{zeros}"));
        assert_eq!(sprintf("%.70000e", &[n(2.5)]), format!("2.5{zeros}e+00"));
        assert_eq!(sprintf("%.70000g", &[n(2.5)]), "2.5");
        assert_eq!(
            sprintf("%.70000v", &[n(0.1)]),
            "0.1000000000000000055511151231257827021181583404541015625"
        );
    }
}
