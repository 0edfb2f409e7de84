//! The local farm end to end, against the real thing: images built by `image`, pods run by
//! podman, Debian's MediaWiki serving three wikis from Debian's MariaDB, memcached behind the
//! cake's router, a real API client (mwclient) editing a page, and maintenance scripts.
//!
//! One test walks through the whole life cycle because every step needs the running farm, and
//! starting it is the expensive part. It uses its own site name, image names, ports and state
//! directory, so a developer's running farm, and the other farm tests running beside it, are
//! left alone.

mod common;

use common::{
    api, append, build_images_as, cache_dir, images_table, link, load, png_width, renamed_site,
    replace, Farm, Ports,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use wikikube_test_support::copy_dir;

use wikikube_local::UpOptions;

const SITE: &str = "wikitest";
const HTTP: u16 = 28080;
const HTTPS: u16 = 28443;
const DEBUG_HTTP: u16 = 28081;
const DEBUG_HTTPS: u16 = 28444;
const MEMCACHED: u16 = 21211;
const EDGE: u16 = 28445;
const MARIADB: u16 = 23306;
/// Python's standard-library SMTP server, which prints every message it receives.
const SMTP: u16 = 28025;

/// The example farm under its own name and ports, its mail to [`SmtpSink`].
fn test_site(dir: &Path) -> PathBuf {
    let ports = Ports {
        http: HTTP,
        https: HTTPS,
        debug_http: DEBUG_HTTP,
        debug_https: DEBUG_HTTPS,
        edge: EDGE,
        mariadb: MARIADB,
        memcached: Some(MEMCACHED),
    };
    let site = renamed_site(dir, SITE, &ports);
    append(
        &site.join("environments/local.toml"),
        &format!(
            "\n[email]\nsmtp_host = \"host.containers.internal\"\nsmtp_port = {SMTP}\n{}",
            images_table(SITE)
        ),
    );
    site
}

/// An SMTP server on the host for the farm's mail: Python's `smtpd` (standard library up to
/// Python 3.11, Debian bookworm's), printing each message it receives into a file.
struct SmtpSink {
    child: std::process::Child,
    received: PathBuf,
}

impl SmtpSink {
    fn start(dir: &Path) -> SmtpSink {
        // A sink left running by an interrupted run would take the mail, and this one would
        // exit at once: say so here rather than as "no mail arrived" minutes later.
        if let Err(error) = std::net::TcpListener::bind(("0.0.0.0", SMTP)) {
            panic!(
                "port {SMTP}, the test's SMTP sink, is taken ({error}): an interrupted run may \
                 have left one running (pkill -f 'smtpd -n -c DebuggingServer')"
            );
        }
        let received = dir.join("smtp.log");
        let log = std::fs::File::create(&received).unwrap();
        let child = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-u",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
            ])
            .arg(format!("0.0.0.0:{SMTP}"))
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        SmtpSink { child, received }
    }

    /// Waits until a received message contains `needle`, and returns everything received.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.received).unwrap_or_default();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(port: u16, host: &str, path: &str) -> (u16, String) {
    wikikube_local::http_get(port, host, path).unwrap_or_else(|| panic!("no answer on port {port}"))
}

/// A plain-HTTP GET that keeps the body's bytes (uploads are binary): status, body, content type.
fn get_bytes(port: u16, host: &str, path: &str) -> (String, Vec<u8>, String) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .args(["-s", "-o"])
        .arg(body.path())
        .args([
            "-w",
            "%{http_code} %{content_type}",
            "-H",
            &format!("Host: {host}"),
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let written = String::from_utf8_lossy(&output.stdout).to_string();
    let (status, kind) = written.split_once(' ').unwrap_or((&written, ""));
    (
        status.to_string(),
        std::fs::read(body.path()).unwrap(),
        kind.to_string(),
    )
}

fn curl_https(port: u16, host: &str, path: &str) -> (String, String) {
    curl_https_with(port, host, path, &[])
}

/// An HTTPS request with extra headers; returns the status and the response (headers included
/// when headers were sent).
fn curl_https_with(port: u16, host: &str, path: &str, headers: &[&str]) -> (String, String) {
    let mut command = Command::new("curl");
    for header in headers {
        command.args(["-i", "-H", header]);
    }
    let output = command
        .args([
            "-sk",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
            "--resolve",
        ])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_string(), body.to_string())
}

/// Where a request for `path` with this Host header, over HTTP or HTTPS to `port`, is redirected.
fn redirect(scheme: &str, port: u16, host: &str, path: &str) -> String {
    let output = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("{scheme}://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The MediaWiki version that served a page over plain HTTP, from its `generator` meta tag.
fn served_version(port: u16, host: &str, path: &str, headers: &[&str]) -> String {
    let mut command = Command::new("curl");
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command
        .args(["-s", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("http://{host}:{port}{path}"))
        .output()
        .expect("curl runs");
    let body = String::from_utf8_lossy(&output.stdout);
    let marker = "<meta name=\"generator\" content=\"MediaWiki ";
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("{host}{path}: no generator tag in {body}"))
        + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

/// Moves a group of wikis as `wikikube train promote` and `rollback` do on a local farm:
/// update.php with the version the wikis move to, the farm converged, then the file written.
fn roll_group(
    site: &wikikube_model::ResolvedSite,
    planned: &wikikube_train::Move,
    options: &UpOptions,
) -> wikikube_model::ResolvedSite {
    wikikube_train::check_carried(site, &cache_dir(), &planned.to).expect("the image carries it");
    let mut moved = site.clone();
    planned.apply(&mut moved);
    for wiki in &planned.wikis {
        let output = wikikube_local::script::update_on_version(site, wiki, &planned.to)
            .unwrap()
            .expect("the farm runs");
        assert!(output.status.success(), "update.php for {wiki}: {output:?}");
    }
    let rendered =
        wikikube_render::render(&moved, &wikikube_render::RenderOptions::default()).unwrap();
    let report = wikikube_local::up(&moved, &rendered, options).unwrap();
    assert!(report.installed.is_empty(), "{:?}", report.installed);
    planned.write().unwrap();
    moved
}

fn memcached_items() -> u64 {
    use std::io::{Read, Write};
    let gateway = wikikube_local::podman::gateway().unwrap();
    let mut stream = std::net::TcpStream::connect((gateway.as_str(), MEMCACHED)).unwrap();
    stream.write_all(b"stats\r\nquit\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("STAT total_items "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// Kills a container's main process and waits until the test page is served again.
fn kill_and_wait(container: &str, text: &str) {
    // The exec session may die with the container it killed: its own outcome says nothing.
    let _ = wikikube_local::podman::output(&["exec", container, "kill", "1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if wikikube_local::http_get(HTTP, "en.farm.test", "/wiki/Wikikube_test")
            .is_some_and(|(status, body)| status == 200 && body.contains(text))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the wiki did not come back after {container}'s main process died"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_local_farm_serves_the_wikis_keeps_edits_and_recovers() {
    let scratch = tempfile::tempdir().unwrap();
    let site_dir = test_site(scratch.path());
    let (site, rendered) = load(&site_dir);
    build_images_as(&site, &[]);
    let (farm, options) = Farm::new(&site, scratch.path(), Duration::from_secs(240));
    let state = farm.state.clone();

    let smtp = SmtpSink::start(scratch.path());
    let report = wikikube_local::up(&site, &rendered, &options).expect("the farm starts");
    assert_eq!(report.installed, ["commonswiki", "dewiki", "enwiki"]);
    assert_eq!(report.wikis.len(), 3);
    // Every URL `up` prints serves a page, following MediaWiki's redirect to the main page in
    // the wiki's language.
    for wiki in &report.wikis {
        for url in [Some(&wiki.url), wiki.http_url.as_ref()]
            .into_iter()
            .flatten()
        {
            let authority = url.split('/').nth(2).unwrap();
            let (host, port) = authority.split_once(':').unwrap();
            let output = Command::new("curl")
                .args(["-skL", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
                .arg(format!("{host}:{port}:127.0.0.1"))
                .arg(url)
                .output()
                .expect("curl runs");
            let status = String::from_utf8_lossy(&output.stdout).into_owned();
            assert_eq!(status, "200", "{url} printed by up does not serve a page");
        }
    }

    // Every wiki's main page, at its own domain, through httpd and through the tls container.
    for (dbname, domain, sitename) in [
        ("enwiki", "en.farm.test", "Farm English"),
        ("dewiki", "de.farm.test", "Farm Deutsch"),
        ("commonswiki", "media.farm.test", "Farm Commons"),
    ] {
        // Each wiki's main page is in its own language: /wiki/ redirects there.
        let (status, _) = get(HTTP, domain, "/wiki/");
        assert_eq!(status, 301, "{dbname}");
        let main_page = if dbname == "dewiki" {
            "/wiki/Hauptseite"
        } else {
            "/wiki/Main_Page"
        };
        let (status, body) = get(HTTP, domain, main_page);
        assert_eq!(status, 200, "{dbname}: {body}");
        assert!(body.contains(sitename), "{dbname} does not show its name");
        assert!(
            body.contains("MediaWiki"),
            "{dbname} is not MediaWiki's page"
        );
        let (status, body) = curl_https(HTTPS, domain, main_page);
        assert!(status.starts_with("200"), "{dbname} over HTTPS: {status}");
        assert!(body.contains(sitename));
    }
    // Static files and the resource loader.
    let (status, _) = get(
        HTTP,
        "en.farm.test",
        "/w/resources/assets/poweredby_mediawiki_88x31.png",
    );
    assert_eq!(status, 200);
    // Static files are cached by the hash MediaWiki puts in their links, and validated by
    // their content: the image gives every file one time, so size and time would say that two
    // versions of a file are the same.
    let icon = "/w/skins/Vector/resources/common/images/bullet-icon.svg";
    let header = |head: &str, name: &str| {
        head.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default()
    };
    let (status, head) = curl_https_with(
        HTTPS,
        "en.farm.test",
        &format!("{icon}?d4515"),
        &["Accept: */*"],
    );
    assert!(status.starts_with("200"), "{status} {head}");
    assert_eq!(
        header(&head, "cache-control"),
        "public, max-age=2592000",
        "{head}"
    );
    let (status, head) = curl_https_with(HTTPS, "en.farm.test", icon, &["Accept: */*"]);
    assert!(status.starts_with("200"), "{status} {head}");
    assert_eq!(
        header(&head, "cache-control"),
        "public, max-age=300",
        "{head}"
    );
    assert_eq!(header(&head, "last-modified"), "", "{head}");
    let etag = header(&head, "etag");
    assert!(etag.len() > 20, "not a digest: {head}");
    let (status, _) = curl_https_with(
        HTTPS,
        "en.farm.test",
        icon,
        &[&format!("If-None-Match: {etag}")],
    );
    assert!(status.starts_with("304"), "{status}");
    let (status, _) = curl_https_with(
        HTTPS,
        "en.farm.test",
        icon,
        &["If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT"],
    );
    assert!(
        status.starts_with("200"),
        "a date is no validator here: {status}"
    );
    let (status, body) = get(
        HTTP,
        "en.farm.test",
        "/w/load.php?modules=startup&only=scripts&raw=1",
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("mw.loader") || body.contains("mediaWikiLoadStart"),
        "{}",
        &body[..body.len().min(300)]
    );
    // The REST API, whose routes follow the entry point's name (the skins' search calls it),
    // and the search description every page links to.
    let (status, body) = get(HTTP, "en.farm.test", "/w/rest.php/v1/page/Main_Page");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""key":"Main_Page""#), "{body}");
    let (status, body) = get(HTTP, "en.farm.test", "/w/rest.php/v1/search/title?q=Main");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""title":"Main Page""#), "{body}");
    let (status, body) = get(HTTP, "en.farm.test", "/w/opensearch_desc.php");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<OpenSearchDescription"), "{body}");
    // The debug deployment serves the same wikis.
    let (status, _) = get(DEBUG_HTTP, "de.farm.test", "/wiki/Hauptseite");
    assert_eq!(status, 200);
    // Redirects keep the address the reader used: a Host without a port (a browser on the
    // protocol's own port, as in production) gets none, not the port httpd listens on inside
    // the pod; a Host with one keeps it.
    for (scheme, port) in [("http", HTTP), ("https", HTTPS)] {
        assert_eq!(
            redirect(scheme, port, "de.farm.test", "/wiki/"),
            format!("301 {scheme}://de.farm.test/wiki/Hauptseite")
        );
        assert_eq!(
            redirect(scheme, port, "de.farm.test:8081", "/wiki/"),
            format!("301 {scheme}://de.farm.test:8081/wiki/Hauptseite")
        );
        // httpd's own redirect, from the site's root, too.
        assert_eq!(
            redirect(scheme, port, "de.farm.test", "/"),
            format!("301 {scheme}://de.farm.test/wiki/")
        );
        assert_eq!(
            redirect(scheme, port, "de.farm.test:8081", "/"),
            format!("301 {scheme}://de.farm.test:8081/wiki/")
        );
    }

    // The edge in front of the farm: every wiki by its Host, and the debug deployment only
    // with the X-Wikimedia-Debug header, uncacheable; an unknown debug backend gets a 400.
    assert_eq!(report.edge.as_deref(), Some("https://localhost:28445/"));
    let (status, body) = curl_https(EDGE, "en.farm.test", "/wiki/Main_Page");
    assert!(status.starts_with("200"), "through the edge: {status}");
    assert!(body.contains("Farm English"));
    assert_eq!(
        redirect("https", EDGE, "en.farm.test", "/wiki/"),
        "301 https://en.farm.test/wiki/Main_Page"
    );
    assert_eq!(
        redirect("https", EDGE, "en.farm.test", "/"),
        "301 https://en.farm.test/wiki/"
    );
    let debug = "X-Wikimedia-Debug: backend=mw-debug";
    let (status, body) = curl_https_with(EDGE, "de.farm.test", "/wiki/Hauptseite", &[debug]);
    assert!(
        status.starts_with("200"),
        "debug through the edge: {status}"
    );
    assert!(
        body.to_ascii_lowercase().contains("cache-control: private"),
        "{body}"
    );
    // As in a cluster, the edge went through the cakes' tls containers, checking their
    // certificate.
    // The tls containers' configs are edge.toml files too (pod mode): the one in edge mode.
    let edge_config = std::fs::read_dir(state.config())
        .unwrap()
        .map(|entry| entry.unwrap().path().join("edge.toml"))
        .filter(|path| path.is_file())
        .filter_map(|path| {
            toml::from_str::<edge::config::Config>(&std::fs::read_to_string(path).unwrap())
                .unwrap()
                .edge
        })
        .next()
        .expect("the edge's config in the state directory");
    for (name, backend) in &edge_config.backends {
        assert!(backend.tls.is_some(), "{name} is reached without TLS");
    }
    let unknown = "X-Wikimedia-Debug: backend=mwdebug9999";
    let (status, body) = curl_https_with(EDGE, "de.farm.test", "/wiki/Hauptseite", &[unknown]);
    assert!(status.starts_with("400"), "unknown debug backend: {status}");
    assert!(body.contains("mw-debug"), "{body}");

    // An edit through the action API, with a real client, reads back on that wiki only.
    let password = site.secrets.expose()[wikikube_local::install::ADMIN_PASSWORD].clone();
    let text = "Written by the wikikube end-to-end test.";
    let read = api(&[
        &HTTP.to_string(),
        "en.farm.test",
        "Admin",
        &password,
        "edit",
        "Wikikube test",
        text,
    ]);
    assert_eq!(read, text);
    let (_, page) = get(HTTP, "en.farm.test", "/wiki/Wikikube_test");
    assert!(page.contains(text));
    let (status, _) = get(HTTP, "de.farm.test", "/wiki/Wikikube_test");
    assert_eq!(status, 404, "the page exists on dewiki too");

    // Media: a real client uploads a PNG to commonswiki; httpd serves the original, and a
    // thumbnail a page asks for, from the media volume, where both are files.
    let png = scratch.path().join("upload.png");
    let uploaded = api(&[
        &HTTP.to_string(),
        "media.farm.test",
        "Admin",
        &password,
        "upload",
        "Wikikube test.png",
        png.to_str().unwrap(),
    ]);
    assert_eq!(uploaded, "Success");
    let original = std::fs::read(&png).unwrap();
    let (status, file_page) = get(HTTP, "media.farm.test", "/wiki/File:Wikikube_test.png");
    assert_eq!(status, 200, "{file_page}");
    let original_url = link(
        &file_page,
        "href",
        "/images/commonswiki/",
        "/Wikikube_test.png",
    );
    api(&[
        &HTTP.to_string(),
        "media.farm.test",
        "Admin",
        &password,
        "edit",
        "Thumbnail test",
        "[[File:Wikikube test.png|50px]]",
    ]);
    let (_, thumbnail_page) = get(HTTP, "media.farm.test", "/wiki/Thumbnail_test");
    let thumbnail_url = link(
        &thumbnail_page,
        "src",
        "/images/commonswiki/thumb/",
        "/50px-Wikikube_test.png",
    );
    let media_files = |url: &str| {
        let (status, bytes, kind) = get_bytes(HTTP, "media.farm.test", url);
        assert_eq!(
            (status.as_str(), kind.as_str()),
            ("200", "image/png"),
            "{url}"
        );
        bytes
    };
    assert_eq!(media_files(&original_url), original);
    let thumbnail = media_files(&thumbnail_url);
    assert_eq!(png_width(&thumbnail), 50);
    let volume = wikikube_local::podman::run(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &wikikube_render::naming::media(&site),
    ])
    .unwrap();
    let public = Path::new(volume.trim()).join("public");
    let on_volume = |url: &str| std::fs::read(public.join(url.trim_start_matches("/images/")));
    assert_eq!(on_volume(&original_url).unwrap(), original);
    assert_eq!(on_volume(&thumbnail_url).unwrap(), thumbnail);
    // A width no page asked for is made on its first request (thumb_handler.php), then served
    // from the volume.
    let other_width = thumbnail_url.replace("/50px-", "/37px-");
    assert!(
        on_volume(&other_width).is_err(),
        "{other_width} exists already"
    );
    let scaled = media_files(&other_width);
    assert_eq!(png_width(&scaled), 37);
    assert_eq!(on_volume(&other_width).unwrap(), scaled);
    assert_eq!(media_files(&other_width), scaled);
    // Files are served, directories are not listed.
    let (status, listing, _) = get_bytes(HTTP, "media.farm.test", "/images/commonswiki/");
    assert!(
        matches!(status.as_str(), "403" | "404"),
        "{status}: {}",
        String::from_utf8_lossy(&listing)
    );

    // Email through the environment's SMTP server: a password reset for Admin, whose address
    // a maintenance script sets, reaches the server from the wiki's sender.
    let output = wikikube_local::script::output(
        &site,
        &wikikube_local::script::ScriptRequest {
            wiki: "enwiki".into(),
            script: "resetUserEmail.php".into(),
            arguments: vec![
                "Admin".into(),
                "admin@farm.test".into(),
                "--no-reset-password".into(),
            ],
        },
    )
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let reset = api(&[
        &HTTP.to_string(),
        "en.farm.test",
        "Admin",
        &password,
        "resetpassword",
        "Admin",
    ]);
    assert_eq!(reset, "success");
    let mail = smtp.wait_for("admin@farm.test");
    assert!(mail.contains("admin@farm.test"), "no mail arrived: {mail}");
    assert!(mail.contains("wiki@en.farm.test"), "{mail}");
    assert!(mail.contains("Farm English"), "{mail}");

    // Two versions from the same pods: each wiki's pages say which served them. The debug
    // release serves the version a request asks for; the others ignore the header.
    let (wmf1, wmf2) = ("1.39.17-wmf.1", "1.39.17-wmf.2");
    let force = format!("X-Wikikube-Force-Version: {wmf2}");
    for (host, path, version) in [
        ("en.farm.test", "/wiki/Wikikube_test", wmf1),
        ("media.farm.test", "/wiki/Main_Page", wmf1),
        ("de.farm.test", "/wiki/Hauptseite", wmf2),
    ] {
        assert_eq!(served_version(HTTP, host, path, &[]), version, "{host}");
    }
    assert_eq!(
        served_version(HTTP, "en.farm.test", "/wiki/Main_Page", &[&force]),
        wmf1
    );
    assert_eq!(
        served_version(DEBUG_HTTP, "en.farm.test", "/wiki/Main_Page", &[&force]),
        wmf2
    );

    // The train: group1 (enwiki, commonswiki) moves to wmf.2 and nothing else changes; the
    // edit is still there; a rollback moves it back.
    let promoted = wikikube_train::promote(&site, "group1", wmf2).unwrap();
    assert_eq!(promoted.wikis, ["commonswiki", "enwiki"]);
    let moved = roll_group(&site, &promoted, &options);
    for (host, path, version) in [
        ("en.farm.test", "/wiki/Wikikube_test", wmf2),
        ("media.farm.test", "/wiki/Main_Page", wmf2),
        ("de.farm.test", "/wiki/Hauptseite", wmf2),
    ] {
        assert_eq!(served_version(HTTP, host, path, &[]), version, "{host}");
    }
    assert!(get(HTTP, "en.farm.test", "/wiki/Wikikube_test")
        .1
        .contains(text));
    let reloaded = load(&site_dir).0;
    assert_eq!(reloaded.spec.wikis["enwiki"].version, wmf2);
    let rolled = wikikube_train::rollback(&moved, "group1").unwrap();
    roll_group(&moved, &rolled, &options);
    assert_eq!(
        served_version(HTTP, "en.farm.test", "/wiki/Wikikube_test", &[]),
        wmf1
    );
    assert_eq!(
        served_version(HTTP, "de.farm.test", "/wiki/Hauptseite", &[]),
        wmf2
    );
    assert!(get(HTTP, "en.farm.test", "/wiki/Wikikube_test")
        .1
        .contains(text));
    assert_eq!(
        load(&site_dir).0.spec,
        site.spec,
        "the rollback left the file changed"
    );

    // A maintenance script, through the farm's multiversion entry point, reads the same
    // database: the edit is counted.
    let stats = script(&site, "enwiki", "showSiteStats.php");
    assert!(stats.status.success(), "{stats:?}");
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    let figure = |name: &str| -> u64 {
        stats
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(':').next())
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no figure for {name} in:\n{stats}"))
    };
    assert!(figure("Total edits") >= 2, "{stats}");
    assert!(figure("Number of users") >= 1, "{stats}");
    let error = wikikube_local::script::output(
        &site,
        &wikikube_local::script::ScriptRequest {
            wiki: "frwiki".into(),
            script: "showSiteStats.php".into(),
            arguments: Vec::new(),
        },
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("commonswiki, dewiki, enwiki"),
        "{error}"
    );

    // MediaWiki's cache goes through mcrouter to memcached.
    assert!(memcached_items() > 0, "memcached received no keys");

    // A second `up` with nothing changed touches nothing.
    let again = wikikube_local::up(&site, &rendered, &options).unwrap();
    assert!(again.started.is_empty(), "restarted {:?}", again.started);
    assert!(again.installed.is_empty());

    // Killing php-fpm, then httpd: each container restarts and the wiki serves the page again.
    let app = format!("{SITE}-mw-web-main-app");
    let httpd = format!("{SITE}-mw-web-main-httpd");
    for container in [&app, &httpd] {
        kill_and_wait(container, text);
    }

    // Both were restarted by podman, not merely never killed.
    let status = wikikube_local::status(&site, &rendered, &state).unwrap();
    let web = status
        .pods
        .iter()
        .find(|pod| pod.name == format!("{SITE}-mw-web-main"))
        .unwrap();
    for container in [&app, &httpd] {
        let found = web
            .containers
            .iter()
            .find(|c| &c.name == container)
            .unwrap();
        assert!(
            found.restarts >= 1,
            "{container} was not restarted: {found:?}"
        );
    }

    // Without podman: one clear message, nothing touched.
    let path = std::env::var_os("PATH").unwrap();
    std::env::set_var("PATH", scratch.path());
    let error = wikikube_local::up(&site, &rendered, &options).unwrap_err();
    std::env::set_var("PATH", path);
    assert!(
        matches!(error, wikikube_local::Error::PodmanMissing),
        "{error}"
    );
    assert!(error.to_string().contains("install Debian's podman"));

    // A port taken by something else: a clear error, and the running farm is untouched.
    let changed_dir = scratch.path().join("changed");
    copy_dir(&site_dir, &changed_dir);
    replace(
        &changed_dir.join("environments/local.toml"),
        &[(&format!("https_port = {DEBUG_HTTPS}"), "https_port = 28555")],
    );
    let blocker = std::net::TcpListener::bind(("0.0.0.0", 28555)).unwrap();
    let (changed, changed_rendered) = load(&changed_dir);
    let error = wikikube_local::up(&changed, &changed_rendered, &options).unwrap_err();
    assert!(
        matches!(error, wikikube_local::Error::PortInUse { port: 28555, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("local.https_port"));
    drop(blocker);
    let (status, _) = get(HTTP, "en.farm.test", "/wiki/Wikikube_test");
    assert_eq!(status, 200);

    // Down keeps the data; up brings the same page back without installing again.
    let stopped = wikikube_local::down(&site, &state, false).unwrap();
    assert_eq!(stopped.len(), 6, "{stopped:?}");
    assert!(wikikube_local::http_get(HTTP, "en.farm.test", "/wiki/Main_Page").is_none());
    let back = wikikube_local::up(&site, &rendered, &options).unwrap();
    assert!(
        back.installed.is_empty(),
        "installed again: {:?}",
        back.installed
    );
    let read = api(&[
        &HTTP.to_string(),
        "en.farm.test",
        "Admin",
        &password,
        "read",
        "Wikikube test",
    ]);
    assert_eq!(read, text);

    // The upload and its thumbnail outlive the pods.
    assert_eq!(media_files(&original_url), original);
    assert_eq!(media_files(&thumbnail_url), thumbnail);

    // Backup, loss, restore: the page's text, the revision count and the file's bytes come back;
    // a damaged backup and a wiki with newer edits are refused and change nothing.
    let backup_dir = scratch.path().join("backup");
    let manifest = wikikube_local::backup::backup(&site, &backup_dir, &[]).unwrap();
    assert_eq!(
        manifest.wikis.keys().collect::<Vec<_>>(),
        ["commonswiki", "dewiki", "enwiki"]
    );
    assert!(
        manifest.wikis["commonswiki"]
            .files
            .iter()
            .any(|file| file.path.starts_with("commonswiki/media/public/")
                && file.path.ends_with("/Wikikube_test.png")),
        "{manifest:?}"
    );
    let revisions = manifest.wikis["enwiki"].revisions;
    assert!(revisions >= 2, "{manifest:?}");
    cluster_backup_steps_agree(&site, &manifest, scratch.path());
    let app = format!("{SITE}-mw-web-main-app");
    let database_password = site.secrets.expose()[wikikube_model::DATABASE_PASSWORD].clone();
    let drop_database = |wiki: &str| {
        let php = format!(
            "$link = new mysqli('host.containers.internal', 'wikiuser', '{database_password}', \
             '', {MARIADB}); exit($link->query('DROP DATABASE {wiki}') ? 0 : 1);"
        );
        wikikube_local::podman::run(&["exec", &app, "php", "-r", &php]).unwrap();
    };
    drop_database("enwiki");
    drop_database("commonswiki");
    std::fs::remove_dir_all(public.join("commonswiki")).unwrap();
    let (status, _, _) = get_bytes(HTTP, "media.farm.test", &original_url);
    assert_eq!(status, "404");

    let damaged = scratch.path().join("damaged");
    copy_dir(&backup_dir, &damaged);
    let dump = damaged.join("commonswiki/database.sql");
    let mut bytes = std::fs::read(&dump).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&dump, bytes).unwrap();
    let error = wikikube_local::backup::restore(&site, &damaged, &[], false).unwrap_err();
    assert!(
        matches!(
            &error,
            wikikube_local::Error::BackupFormat(wikikube_backup::BackupError::Damaged { .. })
        ),
        "{error}"
    );

    let restored = wikikube_local::backup::restore(&site, &backup_dir, &[], false).unwrap();
    assert_eq!(restored.len(), 3, "{restored:?}");
    let read_page = || {
        api(&[
            &HTTP.to_string(),
            "en.farm.test",
            "Admin",
            &password,
            "read",
            "Wikikube test",
        ])
    };
    assert_eq!(read_page(), text);
    let enwiki = restored.iter().find(|wiki| wiki.wiki == "enwiki").unwrap();
    assert_eq!(enwiki.revisions, revisions);
    assert_eq!(media_files(&original_url), original);
    assert_eq!(media_files(&thumbnail_url), thumbnail);

    // A newer edit is not lost by accident; with --force the backup's text is back.
    api(&[
        &HTTP.to_string(),
        "en.farm.test",
        "Admin",
        &password,
        "edit",
        "Wikikube test",
        "An edit after the backup.",
    ]);
    let enwiki_only = ["enwiki".to_string()];
    let error =
        wikikube_local::backup::restore(&site, &backup_dir, &enwiki_only, false).unwrap_err();
    assert!(
        matches!(&error, wikikube_local::Error::NewerData { wiki, .. } if wiki == "enwiki"),
        "{error}"
    );
    assert_eq!(read_page(), "An edit after the backup.");
    wikikube_local::backup::restore(&site, &backup_dir, &enwiki_only, true).unwrap();
    assert_eq!(read_page(), text);
    cluster_restore_steps_agree(&site, &backup_dir, scratch.path(), &password, text);

    // Import: commonswiki's dump (gzip-compressed) and images directory load into dewiki, which
    // has only its installation's page: pages, history, the file and its thumbnail are there.
    let commons_dump = scratch.path().join("commonswiki.sql.gz");
    {
        use std::io::Write;
        let sql = std::fs::read(backup_dir.join("commonswiki/database.sql")).unwrap();
        let mut gzip = flate2::write::GzEncoder::new(
            std::fs::File::create(&commons_dump).unwrap(),
            flate2::Compression::default(),
        );
        gzip.write_all(&sql).unwrap();
        gzip.finish().unwrap();
    }
    let images = backup_dir.join("commonswiki/media/public");
    let imported =
        wikikube_local::import::import(&site, "dewiki", &commons_dump, Some(&images), false)
            .unwrap();
    assert_eq!(
        imported.revisions, manifest.wikis["commonswiki"].revisions,
        "{imported:?}"
    );
    assert!(imported.media_files >= 2, "{imported:?}");
    let (status, german) = get(HTTP, "de.farm.test", "/wiki/Thumbnail_test");
    assert_eq!(status, 200, "{german}");
    let german_thumbnail = link(
        &german,
        "src",
        "/images/dewiki/thumb/",
        "/50px-Wikikube_test.png",
    );
    let (status, bytes, _) = get_bytes(HTTP, "de.farm.test", &german_thumbnail);
    assert_eq!((status.as_str(), png_width(&bytes)), ("200", 50));
    let german_original = original_url.replace("/commonswiki/", "/dewiki/");
    let (status, bytes, _) = get_bytes(HTTP, "de.farm.test", &german_original);
    assert_eq!((status.as_str(), bytes), ("200", original.clone()));
    let (status, _) = get(HTTP, "de.farm.test", "/wiki/Datei:Wikikube_test.png");
    assert_eq!(status, 200);
    // A wiki with pages is not overwritten by accident, and a dump that does not load is
    // refused with MariaDB's message, the wiki untouched.
    let error =
        wikikube_local::import::import(&site, "enwiki", &commons_dump, None, false).unwrap_err();
    assert!(error.to_string().contains("--force"), "{error}");
    let broken = scratch.path().join("broken.sql");
    std::fs::write(&broken, "CREATE TABLE page (page_id INT;\n").unwrap();
    let error = wikikube_local::import::import(&site, "enwiki", &broken, None, true).unwrap_err();
    assert!(error.to_string().contains("ERROR"), "{error}");
    assert_eq!(read_page(), text);
    // An XML dump (dumpBackup.php of enwiki, gzip-compressed) adds its pages to commonswiki
    // through importDump.php, beside commonswiki's own.
    let exported = wikikube_local::script::output(
        &site,
        &wikikube_local::script::ScriptRequest {
            wiki: "enwiki".into(),
            script: "dumpBackup.php".into(),
            arguments: vec!["--full".into(), "--quiet".into()],
        },
    )
    .unwrap();
    assert!(exported.status.success(), "{exported:?}");
    let xml = scratch.path().join("enwiki-pages.xml.gz");
    {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(
            std::fs::File::create(&xml).unwrap(),
            flate2::Compression::default(),
        );
        gzip.write_all(&exported.stdout).unwrap();
        gzip.finish().unwrap();
    }
    let before = manifest.wikis["commonswiki"].revisions;
    let imported = wikikube_local::import::import_xml(&site, "commonswiki", &xml).unwrap();
    assert!(imported.revisions > before, "{imported:?}");
    let commons_copy = api(&[
        &HTTP.to_string(),
        "media.farm.test",
        "Admin",
        &password,
        "read",
        "Wikikube test",
    ]);
    assert_eq!(commons_copy, text);
    // A dump of an older MediaWiki (1.35, from Debian bullseye: tests/fixtures) and its images
    // directory: update.php upgrades the schema to the wiki's 1.39, and the page, its history
    // and its image are there.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let old_images = fixtures.join("mediawiki-1.35-images");
    let imported = wikikube_local::import::import(
        &site,
        "dewiki",
        &fixtures.join("mediawiki-1.35.sql.gz"),
        Some(&old_images),
        true,
    )
    .unwrap();
    assert_eq!(
        (imported.revisions, imported.media_files),
        (4, 1),
        "{imported:?}"
    );
    let old_page = api(&[
        &HTTP.to_string(),
        "de.farm.test",
        "Admin",
        &password,
        "read",
        "Old page",
    ]);
    assert_eq!(
        old_page,
        "A page of MediaWiki 1.35, edited again. [[File:Old image.png|40px]]"
    );
    let (status, old_html) = get(HTTP, "de.farm.test", "/wiki/Old_page");
    assert_eq!(status, 200, "{old_html}");
    let old_thumbnail = link(
        &old_html,
        "src",
        "/images/dewiki/thumb/",
        "/40px-Old_image.png",
    );
    let (status, bytes, _) = get_bytes(HTTP, "de.farm.test", &old_thumbnail);
    assert_eq!((status.as_str(), png_width(&bytes)), ("200", 40));
    let (status, bytes, _) = get_bytes(HTTP, "de.farm.test", "/images/dewiki/a/ae/Old_image.png");
    assert_eq!(
        (status.as_str(), bytes),
        (
            "200",
            std::fs::read(old_images.join("a/ae/Old_image.png")).unwrap()
        )
    );

    let status = wikikube_local::status(&site, &rendered, &state).unwrap();
    assert!(
        status.pods.iter().all(|pod| pod.state == "Running"),
        "{status:?}"
    );

    // A wiki whose pages are in SQLite from a farm that ran before MariaDB: `up` says what to
    // do and installs nothing over it; the file is untouched.
    let sqlite = format!("{}/enwiki.sqlite", wikikube_render::machine::DATA_DIR);
    wikikube_local::podman::run(&["exec", &app, "sh", "-c", &format!("echo pages > {sqlite}")])
        .unwrap();
    let drop_enwiki = format!(
        "$link = new mysqli('host.containers.internal', 'wikiuser', '{database_password}', '', \
         {MARIADB}); exit($link->query('DROP DATABASE enwiki') ? 0 : 1);"
    );
    wikikube_local::podman::run(&["exec", &app, "php", "-r", &drop_enwiki]).unwrap();
    let error = wikikube_local::up(&site, &rendered, &options).unwrap_err();
    assert!(
        matches!(&error, wikikube_local::Error::DataInSqlite { wikis, .. } if wikis == &["enwiki"]),
        "{error}"
    );
    assert!(
        error.to_string().contains("wikikube down --purge"),
        "{error}"
    );
    let kept = wikikube_local::podman::run(&["exec", &app, "cat", &sqlite]).unwrap();
    assert_eq!(kept.trim(), "pages");
    drop(farm);
}

/// A cluster's backup Job runs two steps (`wikikube_render::backup`): the dump in the MariaDB
/// image, the manifest in PHP. Here they run for real against this farm's MariaDB (the dump in
/// the local MariaDB container, the same image and mariadb-dump; the manifest in Debian's PHP
/// 8.2, the app image's), and what they write must say what the local backup said.
fn cluster_backup_steps_agree(
    site: &wikikube_model::ResolvedSite,
    local: &wikikube_backup::Manifest,
    scratch: &Path,
) {
    let container = format!("{}-mariadb", wikikube_render::naming::mariadb(site));
    let user = site.database().unwrap().user.clone();
    let passfile = format!(
        "{}/{}",
        wikikube_render::config::paths::SECRETS_DIR,
        wikikube_model::DATABASE_PASSWORD
    );
    let mut dump = vec![
        "exec",
        "--env",
        "BACKUPS=/tmp/cluster-backups",
        "--env",
        "MEDIA=/nonexistent",
        "--env",
        "WIKIKUBE_BACKUP=night1",
        &container,
        "sh",
        "-c",
        wikikube_render::backup::DUMP_SHELL,
        "dump",
        &user,
        &passfile,
        "plain",
    ];
    dump.extend(["enwiki@127.0.0.1:3306", "commonswiki@127.0.0.1:3306"]);
    wikikube_local::podman::run(&dump).unwrap();
    let root = scratch.join("cluster-backups");
    std::fs::create_dir_all(&root).unwrap();
    wikikube_local::podman::run(&[
        "cp",
        &format!("{container}:/tmp/cluster-backups/.night1.partial"),
        root.join(".night1.partial").to_str().unwrap(),
    ])
    .unwrap();
    wikikube_local::podman::run(&["exec", &container, "rm", "-rf", "/tmp/cluster-backups"])
        .unwrap();
    let output = Command::new("php")
        .args(["-r", wikikube_render::backup::MANIFEST_PHP, "--"])
        .arg(&root)
        .args(["night1", SITE, "local", "7"])
        .args(["enwiki=1.39.17-wmf.1", "commonswiki=1.39.17-wmf.1"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = root.join("night1");
    let manifest = wikikube_backup::Manifest::read(&dir).unwrap();
    for wiki in ["enwiki", "commonswiki"] {
        manifest.verify(&dir, wiki).unwrap();
        let (ours, theirs) = (&manifest.wikis[wiki], &local.wikis[wiki]);
        assert_eq!(
            (ours.revisions, &ours.latest_edit),
            (theirs.revisions, &theirs.latest_edit),
            "{wiki}"
        );
        let sql = std::fs::read_to_string(dir.join(wiki).join("database.sql")).unwrap();
        assert!(sql.contains("CREATE TABLE `page`"), "{wiki}");
        assert!(sql.contains("INSERT INTO `revision`"), "{wiki}");
    }
}

/// A cluster's restore steps against the same MariaDB: the `check` step (PHP, here on the
/// host) plans the local backup, which has the same layout as a cluster's; the load step
/// (`RESTORE_SHELL`, in the MariaDB container) refuses a wiki with a newer edit and changes
/// nothing, restores it with `force`, and leaves a wiki as it was when its dump does not load.
fn cluster_restore_steps_agree(
    site: &wikikube_model::ResolvedSite,
    backup_dir: &Path,
    scratch: &Path,
    password: &str,
    text: &str,
) {
    let container = format!("{}-mariadb", wikikube_render::naming::mariadb(site));
    let read_page =
        |host: &str, title: &str| api(&[&HTTP.to_string(), host, "Admin", password, "read", title]);
    let newer = "An edit the cluster restore must not lose by accident.";
    api(&[
        &HTTP.to_string(),
        "en.farm.test",
        "Admin",
        password,
        "edit",
        "Wikikube test",
        newer,
    ]);

    let plan = scratch.join("restore-plan");
    let output = Command::new("php")
        .args(["-r", wikikube_render::backup::RESTORE_CHECK_PHP, "--"])
        .arg(backup_dir.parent().unwrap())
        .arg(backup_dir.file_name().unwrap())
        .arg(&plan)
        .arg("enwiki")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bad = scratch.join("bad-backup/dewiki");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("database.sql"), "THIS IS NOT SQL;\n").unwrap();
    std::fs::write(scratch.join("bad-plan"), "dewiki\tNULL\n").unwrap();
    wikikube_local::podman::run(&["exec", &container, "mkdir", "-p", "/tmp/cluster-restore"])
        .unwrap();
    for (from, to) in [
        (backup_dir.to_path_buf(), "backup"),
        (plan.clone(), "plan"),
        (scratch.join("bad-backup"), "bad-backup"),
        (scratch.join("bad-plan"), "bad-plan"),
    ] {
        wikikube_local::podman::run(&[
            "cp",
            from.to_str().unwrap(),
            &format!("{container}:/tmp/cluster-restore/{to}"),
        ])
        .unwrap();
    }
    let user = site.database().unwrap().user.clone();
    let passfile = format!(
        "{}/{}",
        wikikube_render::config::paths::SECRETS_DIR,
        wikikube_model::DATABASE_PASSWORD
    );
    let load = |backup: &str, plan: &str, force: &str| {
        Command::new("podman")
            .args(["exec", "--env", "BACKUPS=/tmp/cluster-restore"])
            .arg("--env")
            .arg(format!("WIKIKUBE_BACKUP={backup}"))
            .arg("--env")
            .arg(format!("PLAN=/tmp/cluster-restore/{plan}"))
            .args([
                &container,
                "sh",
                "-c",
                wikikube_render::backup::RESTORE_SHELL,
            ])
            .args(["restore", &user, &passfile, "plain", force])
            .args(["enwiki@127.0.0.1:3306", "dewiki@127.0.0.1:3306"])
            .args(["commonswiki@127.0.0.1:3306"])
            .output()
            .unwrap()
    };

    let refused = load("backup", "plan", "check");
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("enwiki has an edit of") && stderr.contains("--force replaces it"),
        "{stderr}"
    );
    assert_eq!(read_page("en.farm.test", "Wikikube test"), newer);
    // A cluster's import loads with `import`: a wiki with pages of its own is refused.
    let refused = load("backup", "plan", "import");
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("enwiki already has") && stderr.contains("nothing was imported"),
        "{stderr}"
    );
    assert_eq!(read_page("en.farm.test", "Wikikube test"), newer);

    let forced = load("backup", "plan", "force");
    let stdout = String::from_utf8_lossy(&forced.stdout);
    assert!(
        forced.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(stdout.contains("restored enwiki: "), "{stdout}");
    assert_eq!(read_page("en.farm.test", "Wikikube test"), text);

    let main_page = read_page("de.farm.test", "Main Page");
    let unloadable = load("bad-backup", "bad-plan", "force");
    assert_eq!(unloadable.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&unloadable.stderr);
    assert!(
        stderr.contains("the dump of dewiki does not load"),
        "{stderr}"
    );
    assert_eq!(read_page("de.farm.test", "Main Page"), main_page);
    wikikube_local::podman::run(&["exec", &container, "rm", "-rf", "/tmp/cluster-restore"])
        .unwrap();
}

fn script(site: &wikikube_model::ResolvedSite, wiki: &str, script: &str) -> std::process::Output {
    wikikube_local::script::output(
        site,
        &wikikube_local::script::ScriptRequest {
            wiki: wiki.into(),
            script: script.into(),
            arguments: Vec::new(),
        },
    )
    .unwrap()
}
