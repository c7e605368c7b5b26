//! Runtime values of the Alloy language and the conversions component arguments need
//! (number→string, string→secret, durations, byte sizes, targets).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A value produced by evaluating an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
    /// A standard-library function, by its full name (`sys.env`).
    Function(&'static str),
    /// Opaque values passed between components.
    Capsule(Capsule),
    /// A string that must not be printed; only `convert.nonsensitive` turns it back.
    Secret(String),
}

/// An opaque value passed between components (a logs receiver, run-time targets, relabel
/// rules). The language only carries it; the embedding program puts its own types in and takes
/// them out again with [`Capsule::get`].
#[derive(Clone)]
pub struct Capsule {
    type_name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
    eq: fn(&Capsule, &Capsule) -> bool,
    debug: fn(&Capsule, &mut fmt::Formatter<'_>) -> fmt::Result,
}

impl Capsule {
    /// Wraps a value compared by content. `type_name` is the type as Alloy prints it in type
    /// errors, e.g. `capsule("loki.LogsReceiver")`.
    pub fn new<T: Any + Send + Sync + PartialEq + fmt::Debug>(
        type_name: &'static str,
        v: T,
    ) -> Self {
        Capsule {
            type_name,
            value: Arc::new(v),
            eq: |a, b| match (a.get::<T>(), b.get::<T>()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
            debug: debug_as::<T>,
        }
    }

    /// Wraps a value that has no content equality: two capsules are equal only when they are
    /// clones of the same one.
    pub fn opaque<T: Any + Send + Sync + fmt::Debug>(type_name: &'static str, v: T) -> Self {
        Capsule {
            type_name,
            value: Arc::new(v),
            eq: |a, b| Arc::ptr_eq(&a.value, &b.value),
            debug: debug_as::<T>,
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The wrapped value, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }
}

fn debug_as<T: Any + fmt::Debug>(c: &Capsule, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match c.get::<T>() {
        Some(v) => write!(f, "Capsule({:?}, {v:?})", c.type_name),
        None => write!(f, "Capsule({:?})", c.type_name),
    }
}

impl PartialEq for Capsule {
    fn eq(&self, other: &Self) -> bool {
        self.type_name == other.type_name && (self.eq)(self, other)
    }
}

impl fmt::Debug for Capsule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.debug)(self, f)
    }
}

impl Value {
    /// Alloy's type names, used in "expected X, got Y".
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Function(_) => "function",
            Value::Capsule(c) => c.type_name(),
            Value::Secret(_) => "secret",
        }
    }

    /// Whether this is the zero value of its type (for `coalesce`).
    pub fn is_zero(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => *n == 0.0,
            Value::String(s) | Value::Secret(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Function(_) | Value::Capsule(_) => false,
        }
    }

    /// A string, converting numbers and bools as Alloy does; secrets are refused.
    pub fn to_str(&self) -> Result<String, String> {
        match self {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(format_number(*n)),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Secret(_) => {
                Err("expected string, got secret (use convert.nonsensitive to reveal it)".into())
            }
            other => Err(format!("expected string, got {}", other.type_name())),
        }
    }

    /// A secret: strings are promoted, secrets stay.
    pub fn to_secret(&self) -> Result<String, String> {
        match self {
            Value::Secret(s) => Ok(s.clone()),
            other => other.to_str(),
        }
    }

    pub fn to_bool(&self) -> Result<bool, String> {
        match self {
            Value::Bool(b) => Ok(*b),
            other => Err(format!("expected bool, got {}", other.type_name())),
        }
    }

    pub fn to_number(&self) -> Result<f64, String> {
        match self {
            Value::Number(n) => Ok(*n),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("cannot convert {s:?} to number")),
            other => Err(format!("expected number, got {}", other.type_name())),
        }
    }

    pub fn to_u64(&self) -> Result<u64, String> {
        let n = self.to_number()?;
        if n < 0.0 || n.fract() != 0.0 || n > u64::MAX as f64 {
            return Err(format!(
                "expected a non-negative integer, got {}",
                format_number(n)
            ));
        }
        Ok(n as u64)
    }

    /// A Go duration string (`"250ms"`, `"5m"`, `"1h30m"`).
    pub fn to_duration(&self) -> Result<Duration, String> {
        let s = self.to_str()?;
        parse_go_duration(&s)
            .ok_or_else(|| format!("invalid duration {s:?} (e.g. \"250ms\", \"5m\")"))
    }

    /// A byte size as Alloy reads one (`units.ParseBase2Bytes`): `"1MiB"`, `"512KB"` (also
    /// 1024-based), `"1.5MiB"`, `"1MiB512KiB"`; a bare number has no unit and is refused.
    pub fn to_bytes(&self) -> Result<usize, String> {
        let s = self.to_str()?;
        parse_base2_bytes(&s).map_err(|e| {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                format!(
                    "{e}{}a size needs a unit: write \"{s}B\" or \"{}\"",
                    crate::args::HINT_SEP,
                    base2_string(s.parse().unwrap_or(0))
                )
            } else {
                e
            }
        })
    }

    pub fn to_string_list(&self) -> Result<Vec<String>, String> {
        match self {
            Value::Array(a) => a.iter().map(Value::to_str).collect(),
            other => Err(format!("expected array, got {}", other.type_name())),
        }
    }

    pub fn to_string_map(&self) -> Result<BTreeMap<String, String>, String> {
        match self {
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.to_str().map_err(|e| format!("{k}: {e}"))?)))
                .collect(),
            other => Err(format!("expected object, got {}", other.type_name())),
        }
    }
}

/// Numbers print like Go's `%v`: integers without a fraction.
pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (ns, us, µs, ms, s, m, h).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[u_end..];
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{}", format_number(*n)),
            Value::String(s) => write!(f, "{}", crate::scanner::quote(s)),
            Value::Array(a) => {
                write!(f, "[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
            Value::Object(o) => {
                write!(f, "{{")?;
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{} = {v}", crate::scanner::quote(k))?;
                }
                write!(f, "}}")
            }
            Value::Function(n) => write!(f, "function({n})"),
            Value::Capsule(c) => write!(f, "{}", c.type_name()),
            Value::Secret(_) => write!(f, "(secret)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("-1s"), None);
    }

    #[test]
    fn conversions() {
        assert_eq!(Value::Number(3.0).to_str(), Ok("3".into()));
        assert!(Value::Secret("x".into()).to_str().is_err());
        assert_eq!(Value::String("x".into()).to_secret(), Ok("x".into()));
        assert_eq!(Value::String("12".into()).to_number(), Ok(12.0));
        assert!(Value::Number(0.0).is_zero() && !Value::String("a".into()).is_zero());
    }
}

/// A byte count the way `units.Base2Bytes.String()` prints it: `1048576` → `1MiB`.
fn base2_string(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n == 0 {
        return "0B".into();
    }
    let mut parts = Vec::new();
    let mut rest = n;
    for unit in UNITS {
        let r = rest % 1024;
        if r != 0 {
            parts.push(format!("{r}{unit}"));
        }
        rest /= 1024;
        if rest == 0 {
            break;
        }
    }
    parts.reverse();
    parts.concat()
}

/// Go's `alecthomas/units.ParseBase2Bytes`: `[+-]?([0-9]*(\.[0-9]*)?UNIT)+` with `B`, `KiB`…`EiB`
/// and `KB`…`EB` all powers of 1024 (`kB` is refused); `"0"` alone is zero.
pub fn parse_base2_bytes(orig: &str) -> Result<usize, String> {
    let invalid = || format!("units: invalid {orig}");
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !s.is_empty() {
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (int, rest) = s.split_at(int_end);
        let mut value: f64 = if int.is_empty() {
            0.0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut rest = rest;
        let mut frac_digits = false;
        if let Some(r) = rest.strip_prefix('.') {
            let frac_end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            let (frac, r2) = r.split_at(frac_end);
            if !frac.is_empty() {
                let f: f64 = format!("0.{frac}").parse().map_err(|_| invalid())?;
                value += f;
                frac_digits = true;
            }
            rest = r2;
        } else if int.is_empty() {
            return Err(invalid());
        }
        if int.is_empty() && !frac_digits {
            return Err(invalid());
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, r3) = rest.split_at(unit_end);
        let power = match unit {
            "B" => 0,
            "KiB" | "KB" => 1,
            "MiB" | "MB" => 2,
            "GiB" | "GB" => 3,
            "TiB" | "TB" => 4,
            "PiB" | "PB" => 5,
            "EiB" | "EB" => 6,
            _ => return Err(format!("units: unknown unit {unit} in {orig}")),
        };
        total += value * 1024f64.powi(power);
        s = r3;
    }
    if neg && total > 0.0 {
        return Err(format!("a size cannot be negative: {orig}"));
    }
    if total >= usize::MAX as f64 {
        return Err("units: overflow parsing unit".to_string());
    }
    Ok(total as usize)
}

#[cfg(test)]
mod base2_bytes_tests {
    use super::parse_base2_bytes;

    #[test]
    fn sizes_parse_like_alloy() {
        let ok: &[(&str, usize)] = &[
            ("0", 0),
            ("1B", 1),
            ("1KiB", 1024),
            ("1KB", 1024),
            ("1MiB", 1 << 20),
            ("1MB", 1 << 20),
            ("10MiB", 10 << 20),
            ("1.5MiB", 3 << 19),
            (".5KiB", 512),
            ("1MiB512KiB", (1 << 20) + (512 << 10)),
            ("+2GiB", 2 << 30),
        ];
        for (s, want) in ok {
            assert_eq!(parse_base2_bytes(s), Ok(*want), "{s}");
        }
        let bad: &[(&str, &str)] = &[
            ("1048576", "units: unknown unit  in 1048576"),
            ("1kB", "units: unknown unit kB in 1kB"),
            ("1 MiB", "units: unknown unit  MiB in 1 MiB"),
            ("MiB", "units: invalid MiB"),
            ("", "units: invalid "),
            (".MiB", "units: invalid .MiB"),
        ];
        for (s, want) in bad {
            assert_eq!(parse_base2_bytes(s), Err(want.to_string()), "{s}");
        }
    }
}
