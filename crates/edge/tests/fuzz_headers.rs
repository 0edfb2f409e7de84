//! Property tests: the header parsers and the routing decision never panic on any input, and
//! what they accept is well-formed.

use edge::config::{Backend, Debug, Edge, Route, Split};
use edge::router::{Decision, RequestFacts, Table};
use edge::{debug_routing, host, weighted};
use proptest::prelude::*;

fn table() -> Table {
    let b = |a: &str| Backend {
        addresses: vec![a.into()],
        ..Backend::default()
    };
    let edge = Edge {
        backends: [
            ("web".to_string(), b("127.0.0.1:1")),
            ("next".to_string(), b("127.0.0.1:2")),
            ("dbg".to_string(), b("127.0.0.1:3")),
        ]
        .into_iter()
        .collect(),
        debug: Debug {
            backends: vec!["dbg".into()],
        },
        routes: vec![Route {
            hosts: vec!["*.wiki.example".into(), "wiki.example".into()],
            path_prefix: Some("/w/".into()),
            backend: "web".into(),
            split: Some(Split {
                backend: "next".into(),
                default_percent: 37.5,
                host_percent: Default::default(),
                cookie: None,
            }),
        }],
    };
    Table::build(&edge, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn debug_header_never_panics(value in ".*") {
        if let Some(name) = debug_routing::backend_name(&value) {
            prop_assert!(!name.is_empty());
            prop_assert!(!name.contains(';'));
        }
    }

    #[test]
    fn debug_header_finds_backend_among_noise(
        before in "[a-z; =]{0,20}", name in "[a-z0-9-]{1,20}", after in "(; [a-z]{1,8}){0,3}"
    ) {
        let value = format!("{}backend={name}{after}", if before.is_empty() { String::new() } else { format!("{before};") });
        let found = debug_routing::backend_name(&value);
        // An earlier `backend=` in the noise may win; otherwise ours is found.
        if !before.contains("backend=") {
            prop_assert_eq!(found, Some(name.as_str()));
        }
    }

    #[test]
    fn cookie_parsing_never_panics(header in ".*", name in "[a-z_]{1,12}") {
        if let Some(b) = weighted::bucket_from_cookie_header(&header, &name) {
            prop_assert!(b < weighted::BUCKETS);
        }
    }

    #[test]
    fn cookie_round_trips(bucket in 0..weighted::BUCKETS, other in "[a-z]{1,5}=[^;]{0,10}") {
        let set = weighted::set_cookie("edge_bucket", bucket);
        let pair = set.split(';').next().unwrap();
        let header = format!("{other}; {pair}");
        prop_assert_eq!(weighted::bucket_from_cookie_header(&header, "edge_bucket"), Some(bucket));
    }

    #[test]
    fn host_parsing_never_panics(value in "\\PC*", pattern in "(\\*\\.)?\\PC{0,20}") {
        if let Some(h) = host::normalize(&value) {
            prop_assert!(!h.is_empty());
            prop_assert_eq!(h.to_ascii_lowercase(), h.clone());
            let _ = host::matches(&pattern, &h);
        }
        let _ = host::matches(&pattern, &value);
    }

    #[test]
    fn routing_never_panics(
        h in proptest::option::of("\\PC{0,30}"),
        path in "\\PC{0,30}",
        debug in proptest::option::of(".{0,40}"),
        cookie in proptest::option::of(".{0,40}"),
        r in any::<u32>(),
    ) {
        let t = table();
        let normalized = h.as_deref().and_then(host::normalize);
        let facts = RequestFacts {
            host: normalized.as_deref(),
            path: &path,
            debug: debug.as_deref(),
            cookie: cookie.as_deref(),
        };
        match t.decide(&facts, |n| r % n) {
            Decision::Forward { debug: true, backend, .. } => prop_assert_eq!(&backend.name, "dbg"),
            Decision::BadDebugBackend { known, .. } => prop_assert_eq!(known, vec!["dbg".to_string()]),
            _ => {}
        }
    }
}
