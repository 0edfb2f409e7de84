//! Weighted shares between two backends (legacy -> Kubernetes, `main` -> `next`), and the
//! cookie that keeps a client on its side.
//!
//! Each client is given a random bucket in `0..BUCKETS`, stored in a cookie. A request goes to
//! the split's backend when `bucket < threshold`, where `threshold = percent * 100`. The same
//! bucket always lands on the same side for a given percentage, and raising the percentage
//! only moves clients from the old side to the new one: a migration from 0.5 % to 100 % never
//! bounces a user back and forth.

/// Number of buckets: a resolution of 0.01 percentage points.
pub const BUCKETS: u32 = 10_000;

/// How long the pinning cookie lives, in seconds (one year: migrations take that long).
pub const COOKIE_MAX_AGE: u32 = 365 * 24 * 3600;

/// Turns a percentage (0 to 100) into the bucket threshold.
pub fn threshold(percent: f64) -> u32 {
    if percent.is_nan() {
        return 0;
    }
    // Clamped first, so the cast is exact.
    (percent.clamp(0.0, 100.0) * 100.0).round() as u32
}

/// Whether a client in `bucket` goes to the split's backend at this `threshold`.
pub fn to_split(bucket: u32, threshold: u32) -> bool {
    bucket < threshold
}

/// The bucket stored in cookie `name` of a `Cookie` header value, if present and valid.
pub fn bucket_from_cookie_header(header: &str, name: &str) -> Option<u32> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k.trim() != name {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // Only plain decimal digits: `parse` alone would accept a leading `+`.
        if v.is_empty() || v.len() > 5 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse::<u32>().ok().filter(|b| *b < BUCKETS)
    })
}

/// The `Set-Cookie` value that pins a client to `bucket`.
pub fn set_cookie(name: &str, bucket: u32) -> String {
    format!("{name}={bucket}; Path=/; Max-Age={COOKIE_MAX_AGE}; Secure; HttpOnly; SameSite=Lax")
}

/// A new random bucket for a client that has none.
pub fn new_bucket<R: FnMut(u32) -> u32>(mut random_below: R) -> u32 {
    random_below(BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(threshold(0.5), 50);
        assert_eq!(threshold(100.0), BUCKETS);
        assert_eq!(threshold(-3.0), 0);
        assert_eq!(threshold(f64::NAN), 0);
        assert!(!to_split(50, 50));
        assert!(to_split(49, 50));
        assert!((0..BUCKETS).all(|b| to_split(b, BUCKETS)));
        assert!((0..BUCKETS).all(|b| !to_split(b, 0)));
    }

    #[test]
    fn cookies() {
        assert_eq!(
            bucket_from_cookie_header("a=1; edge_bucket=42", "edge_bucket"),
            Some(42)
        );
        assert_eq!(
            bucket_from_cookie_header("edge_bucket=10000", "edge_bucket"),
            None
        );
        assert_eq!(
            bucket_from_cookie_header("edge_bucket=+1", "edge_bucket"),
            None
        );
        assert_eq!(
            bucket_from_cookie_header("xedge_bucket=1", "edge_bucket"),
            None
        );
        assert_eq!(bucket_from_cookie_header("", "edge_bucket"), None);
        assert!(set_cookie("edge_bucket", 7).starts_with("edge_bucket=7; Path=/"));
    }
}
