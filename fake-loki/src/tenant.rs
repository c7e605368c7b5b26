//! Tenant IDs from `X-Scope-OrgID`, validated as Loki (dskit `tenant`) validates them.

/// Longest tenant ID Loki accepts.
pub const MAX_TENANT_ID_LENGTH: usize = 150;

/// Why a request's tenant header was refused, with Loki's status and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantError {
    pub status: u16,
    pub message: String,
}

fn bad(message: String) -> TenantError {
    TenantError {
        status: 400,
        message,
    }
}

/// Validates one tenant ID.
pub fn validate(id: &str) -> Result<(), TenantError> {
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(bad(format!(
            "tenant ID is too long: max {MAX_TENANT_ID_LENGTH} characters"
        )));
    }
    if id == "." || id == ".." {
        return Err(bad("tenant ID is '.' or '..'".into()));
    }
    if let Some(c) = id.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')'))
    }) {
        return Err(bad(format!(
            "tenant ID '{id}' contains unsupported character '{c}'"
        )));
    }
    Ok(())
}

/// The tenants named by a header value: `|`-separated, anything after `:` dropped,
/// sorted and de-duplicated (as dskit's `TenantIDs`).
pub fn resolve(header: Option<&str>) -> Result<Vec<String>, TenantError> {
    let raw = match header {
        None | Some("") => {
            return Err(TenantError {
                status: 401,
                message: "no org id".into(),
            })
        }
        Some(h) => h,
    };
    // dskit keeps only what precedes the first ':' as the org ID.
    let raw = raw.split(':').next().unwrap_or_default();
    let mut ids: Vec<String> = Vec::new();
    for id in raw.split('|') {
        validate(id)?;
        ids.push(id.to_string());
    }
    ids.sort();
    ids.dedup();
    if ids.iter().any(String::is_empty) {
        return Err(TenantError {
            status: 401,
            message: "no org id".into(),
        });
    }
    Ok(ids)
}

/// A single tenant for push and tail: more than one is `multiple org IDs present`.
pub fn single(header: Option<&str>) -> Result<String, TenantError> {
    let mut ids = resolve(header)?;
    if ids.len() > 1 {
        return Err(bad("multiple org IDs present".into()));
    }
    Ok(ids.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_tenant_rules() {
        assert_eq!(single(None).unwrap_err().status, 401);
        assert_eq!(single(Some("")).unwrap_err().message, "no org id");
        assert_eq!(single(Some("team-a_1.(x)*!'")).unwrap(), "team-a_1.(x)*!'");
        assert_eq!(
            single(Some("a b")).unwrap_err().message,
            "tenant ID 'a b' contains unsupported character ' '"
        );
        assert_eq!(
            single(Some("..")).unwrap_err().message,
            "tenant ID is '.' or '..'"
        );
        assert_eq!(
            single(Some(&"x".repeat(151))).unwrap_err().message,
            "tenant ID is too long: max 150 characters"
        );
        assert_eq!(single(Some(&"x".repeat(150))).unwrap(), "x".repeat(150));
        assert_eq!(
            single(Some("a|b")).unwrap_err().message,
            "multiple org IDs present"
        );
        assert_eq!(single(Some("a|a")).unwrap(), "a");
        assert_eq!(single(Some("a:meta")).unwrap(), "a");
        assert_eq!(resolve(Some("b|a|b")).unwrap(), ["a", "b"]);
    }
}
