//! `X-Wikimedia-Debug`: send one request to a named debug backend.
//!
//! The header is a `;`-separated list of attributes, e.g.
//! `backend=mwdebug1001; profile; readonly`. Only `backend` matters here; the others are for
//! MediaWiki and pass through untouched. A debug response must never be cached, because it
//! comes from a backend running code that ordinary users must not see: the proxy replaces its
//! `Cache-Control` with [`UNCACHEABLE`].

/// The request header that selects a debug backend.
pub const HEADER: &str = "x-wikimedia-debug";

/// The `Cache-Control` value set on every response to a debug request.
pub const UNCACHEABLE: &str = "private, no-cache, no-store, must-revalidate";

/// The backend named by an `X-Wikimedia-Debug` value, if it has a `backend=NAME` attribute.
///
/// Attribute names are case-insensitive; the value may be quoted. The first `backend` wins.
pub fn backend_name(value: &str) -> Option<&str> {
    value.split(';').find_map(|attr| {
        let (key, val) = attr.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("backend") {
            return None;
        }
        let val = val.trim();
        let val = val
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(val)
            .trim();
        (!val.is_empty()).then_some(val)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_backend_among_attributes() {
        assert_eq!(backend_name("backend=mwdebug1001"), Some("mwdebug1001"));
        assert_eq!(
            backend_name("profile; Backend = mwdebug1002 ; readonly"),
            Some("mwdebug1002")
        );
        assert_eq!(
            backend_name("backend=\"k8s-debug\"; log"),
            Some("k8s-debug")
        );
        assert_eq!(backend_name("profile; readonly"), None);
        assert_eq!(backend_name("backend="), None);
        assert_eq!(backend_name(""), None);
    }
}
