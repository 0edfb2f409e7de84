//! The rendered config files run in the real programs: Debian's apache2 and php-fpm 8.2 start
//! with them, and a request goes through httpd to php-fpm over the unix socket, exactly as the
//! readiness probe and the wikis' requests do in the pod. The generated PHP files pass `php -l`.
//!
//! The only change made to the rendered files is moving absolute paths (the socket directory)
//! into a scratch directory and the port to a free one, so the test needs no root-owned paths.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wikikube_render::{render, Object, RenderOptions};

fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is missing: install Debian's apache2, php8.2-fpm, php8.2-cli and php8.2-cgi \
         (.ci/run does)"
    );
}

/// The files of the ConfigMap whose base name is `name`.
fn config_map(objects: &[Object], name: &str) -> std::collections::BTreeMap<String, String> {
    common::config_map(objects, name)
        .data
        .clone()
        .unwrap_or_default()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: php-fpm's master then stops its workers, which would otherwise
        // keep serving the socket as orphans.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use wikikube_test_support::free_port;

/// One HTTP/1.0 request; returns the status code and body.
fn get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())?;
    Some((status, body))
}

fn wait_for(port: u16, what: &str, logs: &Path) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(answer) = get(port, "127.0.0.1", "/fpm-ping") {
            if answer.0 == 200 {
                return answer;
            }
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(logs).unwrap_or_default();
            panic!("{what} did not answer on port {port}; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn httpd_and_php_fpm_run_the_rendered_config_and_talk_over_the_socket() {
    require("apache2");
    require("php-fpm8.2");
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    // httpd drops to www-data when started as root; its workers must reach the socket.
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let port = free_port();
    let relocate = |text: &str| {
        text.replace("/run/shared", shared.to_str().unwrap())
            .replace("Listen 8080", &format!("Listen 127.0.0.1:{port}"))
    };

    let objects: Vec<_> = render(&common::load("eqiad"), &RenderOptions::default())
        .unwrap()
        .objects()
        .into_iter()
        .cloned()
        .collect();
    let sites = config_map(&objects, "farm-httpd-sites");
    let httpd = config_map(&objects, "mw-web-main-httpd");
    let php = config_map(&objects, "mw-web-main-php");

    let fpm_conf = root.join("php-fpm.conf");
    std::fs::write(&fpm_conf, relocate(&php["php-fpm.conf"])).unwrap();
    let ini_dir = root.join("php");
    std::fs::create_dir_all(&ini_dir).unwrap();
    std::fs::write(ini_dir.join("wikikube.ini"), &php["php.ini"]).unwrap();
    let fpm_log = root.join("php-fpm.log");
    let fpm = Running(
        Command::new("php-fpm8.2")
            // -R: the test may run as root, which php-fpm refuses without it.
            .args(["--nodaemonize", "-R", "--fpm-config"])
            .arg(&fpm_conf)
            .env("PHP_INI_SCAN_DIR", format!(":{}", ini_dir.display()))
            .stdout(Stdio::from(std::fs::File::create(&fpm_log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(root.join("php-fpm.err")).unwrap(),
            ))
            .spawn()
            .expect("php-fpm starts"),
    );

    // The rendered httpd.conf is the whole configuration, as in the container; only its
    // mount points move into the scratch directory.
    let sites_dir = root.join("httpd-sites");
    std::fs::create_dir_all(&sites_dir).unwrap();
    for (name, text) in &sites {
        std::fs::write(sites_dir.join(name), relocate(text)).unwrap();
    }
    let main = relocate(&httpd["httpd.conf"])
        .replace(" /tmp", &format!(" {}", root.display()))
        .replace(
            wikikube_render::config::httpd::SITES_DIR,
            sites_dir.to_str().unwrap(),
        );
    let main_conf = root.join("httpd.conf");
    std::fs::write(&main_conf, main).unwrap();
    let check = Command::new("apache2")
        .args(["-t", "-f"])
        .arg(&main_conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "apache2 rejects the rendered config:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let httpd_log = root.join("httpd.log");
    let _httpd = Running(
        Command::new("apache2")
            .args(["-DFOREGROUND", "-f"])
            .arg(&main_conf)
            .stdout(Stdio::from(std::fs::File::create(&httpd_log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(root.join("httpd.err")).unwrap(),
            ))
            .spawn()
            .expect("apache2 starts"),
    );

    // The readiness probe's path: php-fpm's ping, answered through httpd.
    let (status, body) = wait_for(port, "httpd with php-fpm", &root.join("httpd.err"));
    assert_eq!((status, body.trim()), (200, "pong"));

    // A wiki's short URL reaches php-fpm with the multiversion entry point as the script; that
    // file lives in the app image, so php-fpm itself answers that it does not have it here.
    let (status, body) = get(port, "en.farm.test", "/wiki/Main_Page").unwrap();
    assert_eq!((status, body.trim()), (404, "File not found."), "{body}");
    let (status, _) = get(port, "www.farm.test", "/w/api.php").unwrap();
    assert_eq!(status, 404);
    // The root of a wiki redirects to its main page.
    let (status, _) = get(port, "de.farm.test", "/").unwrap();
    assert_eq!(status, 301);
    // A host that names no wiki never reaches php-fpm.
    let (status, body) = get(port, "unknown.example", "/wiki/Main_Page").unwrap();
    assert_eq!(status, 404);
    assert!(!body.contains("File not found."), "{body}");

    // When php-fpm stops, readiness fails.
    drop(fpm);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(port, "127.0.0.1", "/fpm-ping");
        if answer.is_some_and(|(status, _)| status == 503) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness still passes without php-fpm"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn php_fpm_accepts_every_release_pool() {
    require("php-fpm8.2");
    let objects: Vec<_> = render(&common::load("eqiad"), &RenderOptions::default())
        .unwrap()
        .objects()
        .into_iter()
        .cloned()
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for object in &objects {
        let base = wikikube_render::naming::unversioned(object.name());
        if !base.ends_with("-php") {
            continue;
        }
        checked += 1;
        let php = config_map(&objects, base);
        let conf = scratch.path().join("php-fpm.conf");
        std::fs::write(&conf, &php["php-fpm.conf"]).unwrap();
        let output = Command::new("php-fpm8.2")
            .args(["-t", "-R", "--fpm-config"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "php-fpm rejects {}:\n{}",
            object.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every release of eqiad: mw-web, mw-api-ext (main and canary each) and mw-debug.
    assert_eq!(checked, 5, "the pools checked");
}

#[test]
fn the_generated_php_files_are_valid_php() {
    require("php");
    let site = common::load("local");
    let files = wikikube_render::config::mediawiki::config_files(&site);
    let scratch = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (path, text) in &files {
        if !path.ends_with(".php") {
            continue;
        }
        let file = scratch.path().join(path.replace('/', "_"));
        std::fs::write(&file, text).unwrap();
        let output = Command::new("php").arg("-l").arg(&file).output().unwrap();
        assert!(
            output.status.success(),
            "{path} is not valid PHP:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        checked += 1;
    }
    let versions = wikikube_render::config::mediawiki::wikiversions(&site.spec);
    for (path, text) in &versions {
        let file = scratch.path().join(path);
        std::fs::write(&file, text).unwrap();
        let output = Command::new("php").arg("-l").arg(&file).output().unwrap();
        assert!(output.status.success(), "{path} is not valid PHP");
        checked += 1;
    }
    assert_eq!(
        checked, 11,
        "six entry points, entry.php, mwscript.php, LocalSettings.php, purgeReplacedCaches.php \
         and wikiversions.php"
    );
}

#[test]
fn the_multiversion_entry_point_picks_the_wiki_from_the_host() {
    require("php");
    require("php-cgi8.2");
    let site = common::load("local");
    let scratch = tempfile::tempdir().unwrap();
    let farm = scratch.path().join("farm");
    let relocate = |text: &str| text.replace("/srv/mediawiki", farm.to_str().unwrap());
    for (path, text) in wikikube_render::config::mediawiki::config_files(&site) {
        let target = Path::new(&relocate(&path)).to_path_buf();
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, relocate(&text)).unwrap();
    }
    for (name, text) in wikikube_render::config::mediawiki::wikiversions(&site.spec) {
        let target = farm.join("wikiversions").join(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
    // The versions' code, as far as the entry point looks at it.
    for version in site.spec.versions.keys() {
        let includes = farm.join(format!("php-{version}/includes"));
        std::fs::create_dir_all(&includes).unwrap();
        std::fs::write(includes.join("Defines.php"), "<?php\n").unwrap();
    }
    let entry = farm.join("multiversion/entry.php");
    // A web request: php-cgi takes the Host header from HTTP_HOST, as php-fpm does.
    let probe = scratch.path().join("probe.php");
    std::fs::write(
        &probe,
        format!(
            "<?php require '{}'; $wiki = wikikubeWiki(); \
             echo $wiki['dbname'], ' ', wikikubeEntryPoint('index.php');",
            entry.display()
        ),
    )
    .unwrap();
    let request = |host: &str, variables: &[(&str, &str)]| -> String {
        let output = Command::new("php-cgi8.2")
            .arg("-q")
            .arg(&probe)
            .env("HTTP_HOST", host)
            .envs(variables.iter().copied())
            .output()
            .expect("php-cgi8.2 runs");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    // Each wiki runs its group's version, read from the wikiversions file.
    let code = |version: &str| format!("{}/php-{version}/index.php", farm.display());
    assert_eq!(
        request("WWW.farm.test:443", &[]),
        format!("enwiki {}", code("1.39.17-wmf.1"))
    );
    assert_eq!(
        request("de.farm.test", &[]),
        format!("dewiki {}", code("1.39.17-wmf.2"))
    );
    let text = request("nowhere.example", &[]);
    assert!(text.contains("No wiki is served at this domain."), "{text}");

    // The version header counts only where the release allows it (a debug release).
    let header = ("HTTP_X_WIKIKUBE_FORCE_VERSION", "1.39.17-wmf.2");
    assert_eq!(
        request("en.farm.test", &[header]),
        format!("enwiki {}", code("1.39.17-wmf.1"))
    );
    let allowed = ("WIKIKUBE_FORCE_VERSION", "1");
    assert_eq!(
        request("en.farm.test", &[header, allowed]),
        format!("enwiki {}", code("1.39.17-wmf.2"))
    );
    for bad in ["1.40.0-wmf.1", "../../etc"] {
        let text = request(
            "en.farm.test",
            &[("HTTP_X_WIKIKUBE_FORCE_VERSION", bad), allowed],
        );
        assert!(
            text.contains(&format!("This image carries no MediaWiki `{bad}`")),
            "{text}"
        );
    }
    // A maintenance script on another version (a promotion's update.php).
    let script = Command::new("php")
        .arg("-r")
        .arg(format!(
            "putenv('MW_WIKI=enwiki'); putenv('FORCE_MW_VERSION=1.39.17-wmf.2'); require '{}'; \
             echo wikikubeWiki()['version'];",
            entry.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&script.stdout), "1.39.17-wmf.2");

    // A maintenance script names its wiki.
    let unknown = Command::new("php")
        .arg("-r")
        .arg(format!(
            "putenv('MW_WIKI=nowiki'); require '{}'; wikikubeWiki();",
            entry.display()
        ))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("known wikis: commonswiki, dewiki, enwiki"));
}
