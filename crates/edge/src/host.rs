//! The Host of a request, and matching it against route patterns.

/// The host name of a `Host` header or `:authority`: port removed, lowercased, trailing dot
/// removed. `None` when nothing usable is left.
pub fn normalize(value: &str) -> Option<String> {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop the port.
        let end = rest.find(']')?;
        &value[..end + 2]
    } else {
        match value.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => value,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// Whether a normalized host matches a pattern: an exact name, `*.domain` (any name ending in
/// `.domain`, not `domain` itself) or `*` (anything).
pub fn matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            // Bytes, not str slicing: a non-ASCII host must not land a slice inside a char.
            let (h, d) = (host.as_bytes(), domain.as_bytes());
            h.len() > d.len() + 1
                && h[h.len() - d.len() - 1] == b'.'
                && h[h.len() - d.len()..].eq_ignore_ascii_case(d)
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize("En.Wiki.Example:443").as_deref(),
            Some("en.wiki.example")
        );
        assert_eq!(normalize("wiki.example.").as_deref(), Some("wiki.example"));
        assert_eq!(normalize("[::1]:8443").as_deref(), Some("[::1]"));
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("a b"), None);
    }

    #[test]
    fn wildcard() {
        assert!(matches("*.wiki.example", "en.wiki.example"));
        assert!(matches("*.wiki.example", "a.b.wiki.example"));
        assert!(!matches("*.wiki.example", "wiki.example"));
        assert!(!matches("*.wiki.example", "enwiki.example"));
        assert!(matches("wiki.example", "WIKI.example"));
        assert!(matches("*", "x"));
    }
}
