//! Edge mode speaking TLS to its backends: real TLS upstreams (the edge binary in pod mode, as
//! in the cakes), certificates verified against the backend's CA file, failures answered with
//! 502 and seen by the health checks, the CA file re-read when it changes.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A self-signed certificate for `names`, as the cakes have; `ca_flag` marks it as a CA, as
/// `openssl req -x509` does by default.
fn self_signed(dir: &Path, file: &str, names: &[&str], ca_flag: bool) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    if ca_flag {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// The edge binary in pod mode with this certificate, in front of `backend`: a cake's `tls`.
fn cake(dir: &Path, cert: &Path, key: &Path, backend: &Backend) -> Edge {
    std::fs::create_dir_all(dir).unwrap();
    let (port, mport) = (free_port(), free_port());
    let config = pod_config(
        port,
        mport,
        "",
        &[(cert, key, &["wiki.example"])],
        &backend.addr.to_string(),
    );
    Edge::start(dir, &config, port, mport)
}

fn healthy(metrics: &str, backend: &str) -> Option<i64> {
    endpoint_healthy(metrics, "backend", backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_backends_are_verified_and_failures_are_502_and_unhealthy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let httpd = Backend::start("httpd", 0).await;

    // Three cakes: a plain self-signed certificate, a self-signed one flagged as a CA, and
    // one signed by a CA.
    let (plain_c, plain_k) = self_signed(dir, "plain", &["wiki.example"], false);
    let (flag_c, flag_k) = self_signed(dir, "flagged", &["wiki.example"], true);
    let pki = Pki::new(dir);
    let (chain_c, chain_k) = pki.leaf("chained", "wiki.example", &["wiki.example"]);
    let plain = cake(&dir.join("plain"), &plain_c, &plain_k, &httpd);
    let flagged = cake(&dir.join("flagged"), &flag_c, &flag_k, &httpd);
    let chained = cake(&dir.join("chained"), &chain_c, &chain_k, &httpd);

    // An unrelated certificate, as the CA of the backends that must fail; the rotating one is
    // replaced by the right certificate later in the test.
    let (stranger, _) = self_signed(dir, "stranger", &["wiki.example"], false);
    let rotating = dir.join("rotating.pem");
    std::fs::copy(&stranger, &rotating).unwrap();

    let (front_c, front_k) = pki.leaf("front", "front", &["*.wiki.example"]);
    let (port, mport) = (free_port(), free_port());
    let a = |e: &Edge| format!("127.0.0.1:{}", e.port);
    let tls = |ca: &Path, name: &str| {
        format!("{{ ca = \"{}\", server_name = \"{name}\" }}", ca.display())
    };
    let health =
        r#"{ path = "/healthz", interval_ms = 100, timeout_ms = 1000, fall = 2, rise = 2 }"#;
    let mut config = format!(
        r#"
[listen]
address = "127.0.0.1:{port}"
metrics = "127.0.0.1:{mport}"
reload_interval_ms = 100

[[tls.certificates]]
names = ["*.wiki.example"]
cert = "{}"
key = "{}"
"#,
        front_c.display(),
        front_k.display()
    );
    let backends = [
        ("plain", a(&plain), tls(&plain_c, "wiki.example"), true),
        ("flagged", a(&flagged), tls(&flag_c, "WIKI.example"), true),
        (
            "chained",
            a(&chained),
            tls(&pki.ca_pem, "wiki.example"),
            true,
        ),
        (
            "wrongname",
            a(&plain),
            tls(&plain_c, "other.example"),
            false,
        ),
        (
            "wrongname-checked",
            a(&plain),
            tls(&plain_c, "other.example"),
            true,
        ),
        ("wrongca", a(&plain), tls(&stranger, "wiki.example"), false),
        (
            "flagged-wrongca",
            a(&flagged),
            tls(&stranger, "wiki.example"),
            false,
        ),
        ("rotating", a(&plain), tls(&rotating, "wiki.example"), true),
        // TLS spoken to a plain-HTTP server.
        (
            "nottls",
            httpd.addr.to_string(),
            tls(&plain_c, "wiki.example"),
            false,
        ),
    ];
    for (name, address, tls, checked) in &backends {
        config += &format!("[edge.backends.{name}]\naddresses = [\"{address}\"]\ntls = {tls}\n");
        if *checked {
            // Without the panic threshold, so that a backend taken out answers 503 (with it,
            // its one endpoint would take requests anyway).
            config += &format!("health = {health}\npanic_threshold_percent = 0\n");
        }
    }
    for (name, ..) in &backends {
        config +=
            &format!("[[edge.routes]]\nhosts = [\"{name}.wiki.example\"]\nbackend = \"{name}\"\n");
    }
    let edge = Edge::start(
        &dir.join("edge"),
        &{
            std::fs::create_dir_all(dir.join("edge")).unwrap();
            config
        },
        port,
        mport,
    );

    let get = |name: &str, extra: &[&str]| {
        curl(
            &edge,
            &pki.ca_pem,
            &format!("{name}.wiki.example"),
            "/w/index.php?title=X",
            extra,
        )
    };
    for name in ["plain", "flagged", "chained"] {
        for extra in [&[][..], &["--http2"][..]] {
            let r = get(name, extra);
            assert_eq!(r.status, 200, "{name} {extra:?}: {r:?}");
            assert_eq!(r.header("x-backend").as_deref(), Some("httpd"), "{name}");
            // What httpd received, through edge and the cake: the client's host and path, and
            // the forwarding headers the cake set for its peer, the edge.
            assert!(
                r.body.contains("GET /w/index.php?title=X"),
                "{name}: {}",
                r.body
            );
            assert!(
                r.body.contains(&format!("host: {name}.wiki.example")),
                "{name}: {}",
                r.body
            );
            assert!(r.body.contains("x-forwarded-proto: https"), "{}", r.body);
            assert!(
                r.body.contains("x-forwarded-for: 127.0.0.1, 127.0.0.1"),
                "{}",
                r.body
            );
        }
    }
    // A request body crosses both TLS hops.
    let r = curl(
        &edge,
        &pki.ca_pem,
        "plain.wiki.example",
        "/echo",
        &["--data-binary", "a body through two TLS hops"],
    );
    assert_eq!(r.body, "a body through two TLS hops");

    for name in ["wrongname", "wrongca", "flagged-wrongca", "nottls"] {
        let r = get(name, &[]);
        assert_eq!(r.status, 502, "{name}: {r:?}");
        assert!(r.body.contains("upstream 127.0.0.1:"), "{}", r.body);
    }
    let log = std::fs::read_to_string(&edge.log).unwrap();
    assert!(log.contains("TLS to 127.0.0.1:"), "{log}");
    assert!(log.contains("as other.example"), "{log}");
    assert!(log.contains("certificate not valid for name"), "{log}");
    // The stranger has the same subject as the cake's certificate, so webpki finds it as the
    // issuer and then the signature does not match.
    assert!(
        log.contains("invalid peer certificate: BadSignature"),
        "{log}"
    );

    wait_for("the health checks", Duration::from_secs(10), || {
        let m = edge.metrics();
        let ok = ["plain", "flagged", "chained"]
            .iter()
            .all(|b| healthy(&m, b) == Some(1));
        let down = ["wrongname-checked", "rotating"]
            .iter()
            .all(|b| healthy(&m, b) == Some(0));
        (ok && down).then_some(())
    });
    assert_eq!(get("rotating", &[]).status, 503, "taken out by its check");

    // The CA file now holds the cake's certificate: re-read, the check passes, traffic flows.
    let tmp_ca = dir.join("rotating.tmp");
    std::fs::copy(&plain_c, &tmp_ca).unwrap();
    std::fs::rename(&tmp_ca, &rotating).unwrap();
    wait_for("rotating to be healthy", Duration::from_secs(10), || {
        (healthy(&edge.metrics(), "rotating") == Some(1)).then_some(())
    });
    let r = get("rotating", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let log = std::fs::read_to_string(&edge.log).unwrap();
    assert!(log.contains("backend CA certificates reloaded"), "{log}");
}

/// Runs edge on a config expected to be refused; returns its stderr.
fn refused(dir: &Path, backend_tls: &str) -> String {
    let pki = Pki::new(dir);
    let (c, k) = pki.leaf("front", "front", &["wiki.example"]);
    let config = format!(
        r#"
[listen]
address = "127.0.0.1:{}"
[[tls.certificates]]
names = ["wiki.example"]
cert = "{}"
key = "{}"
[edge.backends.cake]
addresses = ["127.0.0.1:1"]
tls = {backend_tls}
[[edge.routes]]
hosts = ["*"]
backend = "cake"
"#,
        free_port(),
        c.display(),
        k.display()
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, config).unwrap();
    refused_config(&path)
}

#[test]
fn unusable_ca_files_are_refused_naming_the_backend_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.pem");
    let e = refused(
        tmp.path(),
        &format!(
            "{{ ca = \"{}\", server_name = \"wiki.example\" }}",
            missing.display()
        ),
    );
    assert!(
        e.contains(&format!(
            "edge.backends.cake.tls.ca: {}:",
            missing.display()
        )),
        "{e}"
    );

    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = refused(
        tmp.path(),
        &format!(
            "{{ ca = \"{}\", server_name = \"wiki.example\" }}",
            empty.display()
        ),
    );
    assert!(
        e.contains(&format!(
            "edge.backends.cake.tls.ca: {}: no CERTIFICATE in PEM file",
            empty.display()
        )),
        "{e}"
    );

    let e = refused(
        tmp.path(),
        r#"{ ca = "x.pem", server_name = "not a name" }"#,
    );
    assert!(
        e.contains("edge.backends.cake.tls.server_name: expected a DNS name"),
        "{e}"
    );
}
