//! Fuzzes the standard-library functions that take arbitrary strings (decoders, the Go-style
//! formatter, JSONPath): any input must give a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // Two string arguments: the input split at the char boundary nearest its middle.
    let mid = (0..=src.len() / 2)
        .rev()
        .find(|&i| src.is_char_boundary(i))
        .unwrap_or(0);
    let (a, b) = src.split_at(mid);
    let (a, b) = (
        alloy_syntax::scanner::quote(a),
        alloy_syntax::scanner::quote(b),
    );
    let scope = alloy_syntax::Scope::with_env(|_| None);
    for expr in [
        format!("encoding.from_base64({a})"),
        format!("encoding.from_URLbase64({a})"),
        format!("encoding.url_decode({a})"),
        format!("encoding.from_json({a})"),
        format!("encoding.from_yaml({a})"),
        format!("string.format({a}, 1, 2.5, {b}, true, [1], {{k = 1}})"),
        format!("json_path({a}, {b})"),
        format!("array.group_by(encoding.from_json({a}), {b}, false)"),
    ] {
        if let Ok(e) = alloy_syntax::parser::parse_expr(&expr) {
            let _ = alloy_syntax::eval::eval(&e, &scope);
        }
    }
});
