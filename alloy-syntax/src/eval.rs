//! Expression evaluation: operators, references into a scope of nested objects (stdlib
//! namespaces and component exports), indexing and function calls.

use std::collections::BTreeMap;

use super::ast::{Expr, ExprKind, Lit};
use super::diag::Pos;
use super::scanner::{unquote, Tok};
use super::stdlib;
use super::value::Value;

/// An evaluation error at the expression that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct EvalError {
    pub pos: Pos,
    pub msg: String,
}

fn err<T>(pos: Pos, msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError {
        pos,
        msg: msg.into(),
    })
}

/// What expressions can see: the root scope object, the environment lookup used by `sys.env`
/// and the hooks through which the embedding program handles its capsules. The caller supplies
/// everything that comes from the machine (environment, hostname): this crate does no IO.
/// Cloning is cheap for the environment (shared) and copies the root object (module instances
/// start from a clone of the bare scope).
#[derive(Clone)]
pub struct Scope {
    pub root: BTreeMap<String, Value>,
    pub env: EnvLookup,
    /// `array.concat` with a capsule among its arguments (run-time targets) calls this.
    pub capsule_concat: Option<CapsuleConcat>,
}

/// Looks up an environment variable.
pub type EnvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Combines `array.concat` arguments of which at least one is a capsule.
pub type CapsuleConcat = fn(&[Value]) -> Result<Value, String>;

impl Scope {
    /// The standard library with `sys.env` answered by `env` and `constants.hostname` set to
    /// `localhost`.
    pub fn with_env(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self::with_host(env, "localhost")
    }

    /// The standard library with `sys.env` answered by `env` and the given
    /// `constants.hostname`.
    pub fn with_host(
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        hostname: &str,
    ) -> Self {
        Scope {
            root: stdlib::namespaces(hostname),
            env: std::sync::Arc::new(env),
            capsule_concat: None,
        }
    }

    /// Inserts a value at a dotted path (component exports: `loki.write.default` → object).
    pub fn insert_path(&mut self, path: &[String], v: Value) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut cur = &mut self.root;
        for p in parents {
            let entry = cur
                .entry(p.clone())
                .or_insert_with(|| Value::Object(BTreeMap::new()));
            if !matches!(entry, Value::Object(_)) {
                *entry = Value::Object(BTreeMap::new());
            }
            let Value::Object(o) = entry else { return };
            cur = o;
        }
        cur.insert(last.clone(), v);
    }
}

/// Evaluates an expression.
pub fn eval(e: &Expr, scope: &Scope) -> Result<Value, EvalError> {
    match &e.kind {
        ExprKind::Literal(l) => Ok(match l {
            Lit::Null => Value::Null,
            Lit::Bool(b) => Value::Bool(*b),
            Lit::String(s) => Value::String(unquote(s)),
            Lit::Number(s) | Lit::Float(s) => match s.parse::<f64>() {
                Ok(n) => Value::Number(n),
                Err(_) => return err(e.pos, format!("invalid number {s}")),
            },
        }),
        ExprKind::Ident(n) => match scope.root.get(n) {
            Some(v) => Ok(v.clone()),
            None => err(e.pos, format!("identifier {n:?} does not exist")),
        },
        ExprKind::Access(inner, name) => {
            let v = eval(inner, scope)?;
            match v {
                Value::Object(o) => match o.get(&name.name) {
                    Some(v) => Ok(v.clone()),
                    None => {
                        let what = inner
                            .reference_path()
                            .map(|p| p.join("."))
                            .unwrap_or_else(|| "object".into());
                        err(
                            name.pos,
                            format!("field {:?} does not exist in {what}", name.name),
                        )
                    }
                },
                other => err(
                    name.pos,
                    format!(
                        "cannot access field {:?} on a value of type {}",
                        name.name,
                        other.type_name()
                    ),
                ),
            }
        }
        ExprKind::Index(inner, idx) => {
            let v = eval(inner, scope)?;
            let i = eval(idx, scope)?;
            match (v, i) {
                // A missing key gives null (unlike `.` access), so configs can probe maps.
                (Value::Object(o), Value::String(k)) => {
                    Ok(o.get(&k).cloned().unwrap_or(Value::Null))
                }
                (Value::Array(a), Value::Number(n)) => {
                    if n < 0.0 || n.fract() != 0.0 || n as usize >= a.len() {
                        err(
                            idx.pos,
                            format!(
                                "index {} is out of range for array of length {}",
                                crate::value::format_number(n),
                                a.len()
                            ),
                        )
                    } else {
                        Ok(a[n as usize].clone())
                    }
                }
                (v, i) => err(
                    idx.pos,
                    format!("cannot index {} with {}", v.type_name(), i.type_name()),
                ),
            }
        }
        ExprKind::Call(f, args) => {
            let fv = eval(f, scope)?;
            let Value::Function(name) = fv else {
                return err(
                    f.pos,
                    format!("cannot call a value of type {}", fv.type_name()),
                );
            };
            let vals = args
                .iter()
                .map(|a| eval(a, scope))
                .collect::<Result<Vec<_>, _>>()?;
            // Errors name the function as the config wrote it (`base64_decode` or
            // `encoding.from_base64`), as Alloy does.
            let shown = f
                .reference_path()
                .map(|p| p.join("."))
                .unwrap_or_else(|| name.to_string());
            stdlib::call(name, &shown, &vals, scope).map_err(|msg| EvalError { pos: e.pos, msg })
        }
        ExprKind::Paren(inner) => eval(inner, scope),
        ExprKind::Unary(op, inner) => {
            let v = eval(inner, scope)?;
            match (op, v) {
                (Tok::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
                (Tok::Sub, Value::Number(n)) => Ok(Value::Number(-n)),
                (op, v) => err(
                    e.pos,
                    format!("cannot apply {} to {}", op.op_str(), v.type_name()),
                ),
            }
        }
        ExprKind::Binary(op, l, r) => {
            let lv = eval(l, scope)?;
            // Short-circuit like Alloy for && and ||.
            match (op, &lv) {
                (Tok::And, Value::Bool(false)) => return Ok(Value::Bool(false)),
                (Tok::Or, Value::Bool(true)) => return Ok(Value::Bool(true)),
                _ => {}
            }
            let rv = eval(r, scope)?;
            binary(*op, lv, rv).map_err(|msg| EvalError { pos: e.pos, msg })
        }
        ExprKind::Array(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| eval(i, scope))
                .collect::<Result<_, _>>()?,
        )),
        ExprKind::Object(fields) => {
            // A repeated key is allowed and the last value wins, as in Alloy's vm.
            let mut o = BTreeMap::new();
            for f in fields {
                o.insert(f.name.name.clone(), eval(&f.value, scope)?);
            }
            Ok(Value::Object(o))
        }
    }
}

fn binary(op: Tok, l: Value, r: Value) -> Result<Value, String> {
    use Value::*;
    Ok(match (op, l, r) {
        (Tok::Eq, a, b) => Bool(a == b),
        (Tok::Neq, a, b) => Bool(a != b),
        (Tok::And, Bool(a), Bool(b)) => Bool(a && b),
        (Tok::Or, Bool(a), Bool(b)) => Bool(a || b),
        (Tok::Add, Number(a), Number(b)) => Number(a + b),
        (Tok::Add, String(a), String(b)) => String(a + &b),
        (Tok::Add, Secret(a), String(b) | Secret(b)) | (Tok::Add, String(a), Secret(b)) => {
            Secret(a + &b)
        }
        (Tok::Sub, Number(a), Number(b)) => Number(a - b),
        (Tok::Mul, Number(a), Number(b)) => Number(a * b),
        (Tok::Div | Tok::Mod, Number(_), Number(0.0)) => return Err("division by zero".into()),
        (Tok::Div, Number(a), Number(b)) => Number(a / b),
        (Tok::Mod, Number(a), Number(b)) => Number(a % b),
        (Tok::Pow, Number(a), Number(b)) => Number(a.powf(b)),
        (Tok::Lt | Tok::Lte | Tok::Gt | Tok::Gte, a, b) => {
            let ord = match (&a, &b) {
                (Number(x), Number(y)) => x.partial_cmp(y),
                (String(x), String(y)) => Some(x.cmp(y)),
                _ => None,
            };
            let Some(ord) = ord else {
                return Err(format!(
                    "cannot compare {} and {}",
                    a.type_name(),
                    b.type_name()
                ));
            };
            Bool(match op {
                Tok::Lt => ord.is_lt(),
                Tok::Lte => ord.is_le(),
                Tok::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        (op, a, b) => {
            return Err(format!(
                "cannot apply {} to {} and {}",
                op.op_str(),
                a.type_name(),
                b.type_name()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse_expr;
    use super::*;

    fn ev(src: &str) -> Result<Value, EvalError> {
        let scope = Scope::with_env(|k| (k == "HOME").then(|| "/root".to_string()));
        eval(
            &parse_expr(src).map_err(|d| EvalError {
                pos: Pos::default(),
                msg: d.to_string(),
            })?,
            &scope,
        )
    }

    #[test]
    fn operators_and_precedence() {
        let cases = [
            ("1 + 2 * 3", Value::Number(7.0)),
            ("2 ^ 3 ^ 2", Value::Number(512.0)),
            ("-2 ^ 2", Value::Number(4.0)),
            ("7 % 4 == 3 && !false", Value::Bool(true)),
            ("\"a\" + \"b\"", Value::String("ab".into())),
            ("\"a\" < \"b\" || 1 > 2", Value::Bool(true)),
            ("{a = [1, 2]}.a[1]", Value::Number(2.0)),
            ("{a = 1}[\"missing\"]", Value::Null),
        ];
        for (src, want) in cases {
            assert_eq!(ev(src), Ok(want), "{src}");
        }
    }

    /// Regression: `{job = "a", job = "b"}` was rejected ("may only be provided once"); Alloy
    /// accepts it and keeps the last value.
    #[test]
    fn repeated_object_key_last_value_wins() {
        let mut want = BTreeMap::new();
        want.insert("job".to_string(), Value::String("b".into()));
        want.insert("x".to_string(), Value::Number(1.0));
        assert_eq!(
            ev(r#"{job = "a", x = 1, job = "b"}"#),
            Ok(Value::Object(want))
        );
        assert_eq!(ev(r#"{"k" = 1, k = 2, "k" = 3}.k"#), Ok(Value::Number(3.0)));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(ev("{a = 1}.b")
            .unwrap_err()
            .msg
            .contains("field \"b\" does not exist"));
        assert!(ev("nope")
            .unwrap_err()
            .msg
            .contains("identifier \"nope\" does not exist"));
        assert!(ev("1 + \"a\"").is_err());
        assert!(ev("[1][3]").is_err());
    }
}
