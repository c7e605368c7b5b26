//! `loki.secretfilter`: redacts secrets in log lines before they leave the node.
//!
//! Alloy embeds the whole Gitleaks rule set; this agent has a fixed subset of high-value
//! rules, each named by its Gitleaks id so `types` and `$SECRET_NAME` read the same:
//!
//! | id | matches |
//! |---|---|
//! | `aws-access-token` | AWS access key ids (`AKIA…`, `ASIA…`, `ABIA…`, `ACCA…`, `A3T…`) |
//! | `github-pat`, `github-fine-grained-pat`, `github-oauth`, `github-app-token`, `github-refresh-token` | `ghp_…`, `github_pat_…`, `gho_…`, `ghu_…`/`ghs_…`, `ghr_…` |
//! | `gitlab-pat` | `glpat-…` |
//! | `slack-bot-token`, `slack-user-token`, `slack-app-token`, `slack-webhook-url` | `xoxb-…`, `xoxp-…`, `xapp-…`, `hooks.slack.com/services/…` |
//! | `private-key` | a `-----BEGIN … PRIVATE KEY-----` block (to its END line) |
//! | `jwt` | three base64url parts, the first two starting `eyJ` |
//! | `generic-api-key` (only with `include_generic`) | the value of `api_key`, `apikey`, `secret`, `token`, `password`, `passwd`, `access_key` written as `name=value` / `name: value` (8+ characters) |

use regex::Regex;

use crate::alloy::args::{Args, Ctx, Schema, A};
use crate::alloy::value::Value;

const DEFAULT_REDACT: &str = "<REDACTED-SECRET:$SECRET_NAME>";

pub static SECRETFILTER: Schema = Schema {
    attrs: &[
        ("forward_to", A::Required),
        ("redact_with", A::Optional),
        ("include_generic", A::Optional),
        ("allowlist", A::Optional),
        ("types", A::Optional),
        ("partial_mask", A::Optional),
        (
            "gitleaks_config",
            A::Unsupported(
                "this agent has a built-in subset of the Gitleaks rules (see agent/README.md)",
            ),
        ),
        (
            "enable_entropy",
            A::Unsupported("secrets are found by the built-in rules only"),
        ),
    ],
    blocks: &[],
};

/// `(id, pattern)`; a pattern's first capture group, when it has one, is the secret.
const RULES: &[(&str, &str)] = &[
    (
        "aws-access-token",
        r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b",
    ),
    ("github-pat", r"\b(ghp_[0-9a-zA-Z]{36})\b"),
    (
        "github-fine-grained-pat",
        r"\b(github_pat_[0-9a-zA-Z_]{82})\b",
    ),
    ("github-oauth", r"\b(gho_[0-9a-zA-Z]{36})\b"),
    ("github-app-token", r"\b((?:ghu|ghs)_[0-9a-zA-Z]{36})\b"),
    ("github-refresh-token", r"\b(ghr_[0-9a-zA-Z]{36})\b"),
    ("gitlab-pat", r"\b(glpat-[0-9a-zA-Z_\-]{20})\b"),
    (
        "slack-bot-token",
        r"\b(xoxb-[0-9]{10,13}-[0-9]{10,13}[a-zA-Z0-9-]*)",
    ),
    (
        "slack-user-token",
        r"\b(xox[pe](?:-[0-9]{10,13}){3}-[a-zA-Z0-9-]{28,34})",
    ),
    (
        "slack-app-token",
        r"(?i)\b(xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)",
    ),
    (
        "slack-webhook-url",
        r"(https?://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{43,56})",
    ),
    (
        "private-key",
        r"(?i)(-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----)",
    ),
    (
        "jwt",
        r"\b(ey[A-Za-z0-9]{17,}\.ey[A-Za-z0-9/_-]{17,}\.(?:[A-Za-z0-9/_-]{10,}={0,2})?)",
    ),
];

const GENERIC: (&str, &str) = (
    "generic-api-key",
    r#"(?i)\b(?:api[_-]?key|apikey|secret|token|passwd|password|access[_-]?key)["']?\s*[:=]\s*["']?([A-Za-z0-9_\-./+=]{8,})"#,
);

/// The compiled rules and how matches are replaced.
#[derive(Debug, Clone)]
pub struct SecretFilter {
    rules: Vec<(&'static str, Regex)>,
    redact_with: String,
    allowlist: Vec<Regex>,
    partial_mask: usize,
}

impl SecretFilter {
    /// The line with every secret replaced; `None` when nothing was found.
    pub fn redact(&self, line: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for (id, re) in &self.rules {
            let cur = out.as_deref().unwrap_or(line);
            let mut changed = false;
            let mut buf = String::with_capacity(cur.len());
            let mut last = 0;
            for c in re.captures_iter(cur) {
                let Some(m) = c.get(1).or_else(|| c.get(0)) else {
                    continue;
                };
                let secret = m.as_str();
                if self.allowlist.iter().any(|a| a.is_match(secret)) {
                    continue;
                }
                buf.push_str(&cur[last..m.start()]);
                buf.push_str(&self.replacement(id, secret));
                last = m.end();
                changed = true;
            }
            if changed {
                buf.push_str(&cur[last..]);
                out = Some(buf);
            }
        }
        out
    }

    fn replacement(&self, id: &str, secret: &str) -> String {
        let text = self.redact_with.replace("$SECRET_NAME", id).replace(
            "$SECRET_HASH",
            &format!("{:08x}", crc32fast::hash(secret.as_bytes())),
        );
        // Never more than half of the secret shows.
        let keep = self.partial_mask.min(secret.chars().count() / 2);
        if keep == 0 {
            return text;
        }
        let shown: String = secret.chars().take(keep).collect();
        format!("{shown}{text}")
    }
}

/// Builds the filter from the component's arguments.
pub fn build(args: &Args, ctx: &mut Ctx<'_>) -> SecretFilter {
    let types = args
        .get("types", ctx, Value::to_string_list)
        .unwrap_or_default();
    let include_generic = args.bool("include_generic", false, ctx);
    let wanted = |id: &str| types.is_empty() || types.iter().any(|t| id.starts_with(t.as_str()));
    let mut rules: Vec<(&'static str, Regex)> = RULES
        .iter()
        .chain(include_generic.then_some(&GENERIC))
        .filter(|(id, _)| wanted(id))
        .filter_map(|(id, re)| Regex::new(re).ok().map(|r| (*id, r)))
        .collect();
    // Specific rules first, the generic one last (it would hide what they name).
    rules.sort_by_key(|(id, _)| *id == GENERIC.0);
    let allowlist = args
        .get("allowlist", ctx, Value::to_string_list)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match Regex::new(&p) {
            Ok(r) => Some(r),
            Err(e) => {
                ctx.error(
                    args.pos_of("allowlist"),
                    format!("attribute \"allowlist\": invalid regex {p:?}: {e}"),
                );
                None
            }
        })
        .collect();
    let partial_mask = args
        .get("partial_mask", ctx, |v| match v {
            Value::Number(n) if *n >= 0.0 && n.fract() == 0.0 => Ok(*n as usize),
            other => Err(format!(
                "expected a non-negative whole number, got {}",
                other.type_name()
            )),
        })
        .unwrap_or(0);
    SecretFilter {
        rules,
        redact_with: args.string("redact_with", DEFAULT_REDACT, ctx),
        allowlist,
        partial_mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include_generic: bool) -> SecretFilter {
        SecretFilter {
            rules: RULES
                .iter()
                .chain(include_generic.then_some(&GENERIC))
                .map(|(id, re)| (*id, Regex::new(re).expect("rule compiles")))
                .collect(),
            redact_with: DEFAULT_REDACT.into(),
            allowlist: Vec::new(),
            partial_mask: 0,
        }
    }

    #[test]
    fn every_rule_compiles() {
        assert_eq!(filter(true).rules.len(), RULES.len() + 1);
    }

    #[test]
    fn each_rule_redacts_its_secret_and_leaves_the_rest() {
        let f = filter(false);
        let cases = [
            ("key AKIAIOSFODNN7EXAMPLE used", "key <REDACTED-SECRET:aws-access-token> used"),
            (
                "token=ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ ok",
                "token=<REDACTED-SECRET:github-pat> ok",
            ),
            ("glpat-abcdefghij0123456789 x", "<REDACTED-SECRET:gitlab-pat> x"),
            (
                "slack xoxb-1234567890-1234567890123-abcdefghijABCDEFGHIJ1234 sent",
                "slack <REDACTED-SECRET:slack-bot-token> sent",
            ),
            (
                "k=-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY----- end",
                "k=<REDACTED-SECRET:private-key> end",
            ),
            (
                "auth eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U done",
                "auth <REDACTED-SECRET:jwt> done",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(f.redact(line).as_deref(), Some(want), "{line}");
        }
        assert_eq!(f.redact("GET /healthz 200 in 3ms"), None);
        // Generic assignments only with include_generic.
        assert_eq!(f.redact("password=hunter2hunter2"), None);
        assert_eq!(
            filter(true)
                .redact("user=bob password=hunter2hunter2 ok")
                .as_deref(),
            Some("user=bob password=<REDACTED-SECRET:generic-api-key> ok")
        );
    }

    #[test]
    fn allowlist_redact_with_and_partial_mask() {
        let mut f = filter(false);
        f.allowlist = vec![Regex::new("EXAMPLE$").expect("re")];
        assert_eq!(f.redact("AKIAIOSFODNN7EXAMPLE"), None);
        let mut f = filter(false);
        f.redact_with = "***$SECRET_NAME***".into();
        f.partial_mask = 4;
        assert_eq!(
            f.redact("id AKIAIOSFODNN7EXAMPLX").as_deref(),
            Some("id AKIA***aws-access-token***")
        );
    }
}
