//! Loki's `pattern` expressions (`<name> literal <_>`): the `| pattern` parser and `|>` filter.

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Literal(String),
    /// A capture; `None` for `<_>`.
    Capture(Option<String>),
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    nodes: Vec<Node>,
}

fn is_name(s: &str) -> bool {
    loki_wire::labels::is_valid_label_name(s)
}

impl Pattern {
    /// Parses a pattern; `need_capture` is set for the parser form, which needs a named capture.
    pub fn parse(src: &str, need_capture: bool) -> Result<Pattern, String> {
        let mut nodes = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('<') {
                if let Some(end) = after.find('>') {
                    let name = &after[..end];
                    if name == "_" || is_name(name) {
                        if !lit.is_empty() {
                            nodes.push(Node::Literal(std::mem::take(&mut lit)));
                        }
                        if matches!(nodes.last(), Some(Node::Capture(_))) {
                            return Err("found consecutive capture: invalid expression".into());
                        }
                        nodes.push(Node::Capture((name != "_").then(|| name.to_string())));
                        rest = &after[end + 1..];
                        continue;
                    }
                }
            }
            let c = rest.chars().next().unwrap_or_default();
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            nodes.push(Node::Literal(lit));
        }
        let named = nodes
            .iter()
            .filter(|n| matches!(n, Node::Capture(Some(_))))
            .count();
        if need_capture && named == 0 {
            return Err("at least one capture is required: invalid expression".into());
        }
        let mut seen = std::collections::HashSet::new();
        for n in &nodes {
            if let Node::Capture(Some(name)) = n {
                if !seen.insert(name.clone()) {
                    return Err(format!(
                        "duplicate capture name ({name}): invalid expression"
                    ));
                }
            }
        }
        Ok(Pattern { nodes })
    }

    /// Extracts captures: literals are searched left to right, a capture runs to the next
    /// literal, the last capture takes the rest. `None` when a literal is missing.
    pub fn captures<'l>(&self, line: &'l str) -> Option<Vec<(&str, &'l str)>> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while i < self.nodes.len() {
            match &self.nodes[i] {
                Node::Literal(l) => {
                    if !line[pos..].starts_with(l.as_str()) {
                        return None;
                    }
                    pos += l.len();
                }
                Node::Capture(name) => {
                    let end = match self.nodes.get(i + 1) {
                        Some(Node::Literal(l)) => pos + line[pos..].find(l.as_str())?,
                        _ => line.len(),
                    };
                    if let Some(n) = name {
                        out.push((n.as_str(), &line[pos..end]));
                    }
                    pos = end;
                }
            }
            i += 1;
        }
        Some(out)
    }

    /// Whether the whole line matches (the `|>` filter): captures match anything.
    pub fn matches(&self, line: &str) -> bool {
        let mut pos = 0;
        let n = self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Node::Literal(l) = node {
                if i == 0 {
                    if !line.starts_with(l.as_str()) {
                        return false;
                    }
                    pos = l.len();
                } else if i == n - 1 {
                    return line.len() >= pos + l.len() && line.ends_with(l.as_str());
                } else {
                    match line[pos..].find(l.as_str()) {
                        Some(at) => pos += at + l.len(),
                        None => return false,
                    }
                }
            }
        }
        // Ends with a capture (matches the rest) or is a single literal that must be the line.
        match self.nodes.last() {
            Some(Node::Literal(_)) => pos == line.len(),
            _ => true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn captures_and_matching() {
        let p = Pattern::parse("<ip> - <_> \"<method> <path>\"", true).unwrap();
        let c = p.captures("1.2.3.4 - x \"GET /a\"").unwrap();
        assert_eq!(
            c,
            vec![("ip", "1.2.3.4"), ("method", "GET"), ("path", "/a")]
        );
        let f = Pattern::parse("<_> error <_>", false).unwrap();
        assert!(f.matches("a error b"));
        assert!(!f.matches("a warn b"));
        assert!(Pattern::parse("<a><b>", true).is_err());
        assert!(Pattern::parse("abc", true).is_err());
    }
}
