//! Media in Swift, end to end on the local farm: a site that says `[media] storage = "swift"`
//! runs Debian's Swift servers in an image the image builder made, MediaWiki's SwiftFileBackend
//! stores an upload a real API client (mwclient) sends, httpd serves the original and a
//! thumbnail from Swift's public containers, both survive `down`/`up`, and Swift's own API lists
//! the objects. `down --purge` deletes Swift's data.
//!
//! Its own site name (`wikiswift`), host ports, image names and state directory, so it runs
//! beside farm.rs and a developer's farm without touching either.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    api, append, build_images_as, images_table, link, load, png_width, renamed_site, Farm, Ports,
};

const SITE: &str = "wikiswift";
const HTTP: u16 = 27080;
const HTTPS: u16 = 27443;
const DEBUG_HTTP: u16 = 27081;
const DEBUG_HTTPS: u16 = 27444;
const EDGE: u16 = 27445;
const MEMCACHED: u16 = 27211;
const MARIADB: u16 = 27306;
const SWIFT: u16 = 27380;
/// The Swift account and user MediaWiki stores the media as.
const ACCOUNT: &str = "wikis";
const USER: &str = "mediawiki";
const KEY: &str = "example-swift-key";

/// The example farm under its own name, ports and image names, with its media in a Swift
/// cluster `wikikube up` runs.
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
    let local = site.join("environments/local.toml");
    append(
        &local,
        &format!(
            "\n[media]\nstorage = \"swift\"\n\n[media.swift]\n\
             auth_url = \"http://host.containers.internal:{SWIFT}/auth\"\n\
             account = \"{ACCOUNT}\"\nuser = \"{USER}\"\n{}",
            images_table(SITE)
        ),
    );
    append(
        &site.join("private/local.toml"),
        &format!("swift_key = \"{KEY}\"\n"),
    );
    site
}

/// Whether `needle` occurs in `bytes`.
fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|window| window == needle)
}

/// A plain-HTTP request with curl that keeps the body's bytes: status, body, content type.
fn curl(url: &str, headers: &[String]) -> (String, Vec<u8>, String) {
    curl_method("GET", url, headers)
}

/// [`curl`] with another method.
fn curl_method(method: &str, url: &str, headers: &[String]) -> (String, Vec<u8>, String) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("curl");
    command
        .args(["-s", "-X", method, "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code} %{content_type}"]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.arg(url).output().expect("curl runs");
    let written = String::from_utf8_lossy(&output.stdout).to_string();
    let (status, kind) = written.split_once(' ').unwrap_or((&written, ""));
    (
        status.to_string(),
        std::fs::read(body.path()).unwrap(),
        kind.to_string(),
    )
}

/// A page or file of a wiki through httpd, by its Host.
fn get(host: &str, path: &str) -> (String, Vec<u8>, String) {
    curl(
        &format!("http://127.0.0.1:{HTTP}{path}"),
        &[format!("Host: {host}")],
    )
}

/// Swift's proxy as the host reaches it: on podman's gateway address, where `up` publishes it.
fn swift_url() -> String {
    let gateway = wikikube_local::podman::gateway().unwrap();
    format!("http://{gateway}:{SWIFT}")
}

/// A token for the wikis' Swift user, from tempauth (Swift's v1 auth), and the account's
/// storage URL as the host reaches it.
fn swift_token() -> (String, String) {
    let output = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null"])
        .args(["-H", &format!("X-Auth-User: {ACCOUNT}:{USER}")])
        .args(["-H", &format!("X-Auth-Key: {KEY}")])
        .arg(format!("{}/auth/v1.0", swift_url()))
        .output()
        .expect("curl runs");
    let headers = String::from_utf8_lossy(&output.stdout).to_string();
    let token = headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-auth-token")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("tempauth gave no token:\n{headers}"));
    (token, format!("{}/v1/AUTH_{ACCOUNT}", swift_url()))
}

/// The object names of a container, listed through Swift's API with a token.
fn swift_list(container: &str) -> Vec<String> {
    let (token, storage) = swift_token();
    let (status, body, _) = curl(
        &format!("{storage}/{container}?format=json"),
        &[format!("X-Auth-Token: {token}")],
    );
    assert_eq!(
        status,
        "200",
        "{container}: {}",
        String::from_utf8_lossy(&body)
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    listed
        .iter()
        .map(|object| object["name"].as_str().unwrap().to_string())
        .collect()
}

fn volume_exists(name: &str) -> bool {
    wikikube_local::podman::exists(&["volume", "exists", name]).unwrap()
}

#[test]
fn uploads_live_in_swift_and_survive_down_and_up() {
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let site_dir = test_site(scratch.path());
    let (site, rendered) = load(&site_dir);
    let swift = rendered
        .component(wikikube_render::ComponentKind::Swift)
        .expect("the local farm runs Swift");
    assert_eq!(
        swift.deployment_object().unwrap().metadata.name.as_deref(),
        Some("wikiswift-swift")
    );
    build_images_as(&site, &["base-swift"]);
    let built = started.elapsed();
    let (farm, options) = Farm::new(&site, scratch.path(), Duration::from_secs(300));
    let state = farm.state.clone();
    let report = wikikube_local::up(&site, &rendered, &options).expect("the farm starts");
    assert!(report.started.contains(&"wikiswift-swift".to_string()));
    let first_up = started.elapsed();

    // A real client uploads a PNG to commonswiki; a page shows a thumbnail of it.
    let password = site.secrets.expose()[wikikube_local::install::ADMIN_PASSWORD].clone();
    let png = scratch.path().join("upload.png");
    let uploaded = api(&[
        &HTTP.to_string(),
        "media.farm.test",
        "Admin",
        &password,
        "upload",
        "Swift test.png",
        png.to_str().unwrap(),
    ]);
    assert_eq!(uploaded, "Success");
    let original = std::fs::read(&png).unwrap();
    api(&[
        &HTTP.to_string(),
        "media.farm.test",
        "Admin",
        &password,
        "edit",
        "Swift thumbnail",
        "[[File:Swift test.png|50px]]",
    ]);

    // The file page, the original and the thumbnail, served by httpd from Swift.
    let check_served = || {
        let (status, page, _) = get("media.farm.test", "/wiki/File:Swift_test.png");
        let page = String::from_utf8_lossy(&page).into_owned();
        assert_eq!(status, "200", "{page}");
        let original_url = link(&page, "href", "/images/commonswiki/", "/Swift_test.png");
        let (_, page, _) = get("media.farm.test", "/wiki/Swift_thumbnail");
        let page = String::from_utf8_lossy(&page).into_owned();
        let thumbnail_url = link(
            &page,
            "src",
            "/images/commonswiki/thumb/",
            "/50px-Swift_test.png",
        );
        let fetch = |url: &str| {
            let (status, bytes, kind) = get("media.farm.test", url);
            assert_eq!(
                (status.as_str(), kind.as_str()),
                ("200", "image/png"),
                "{url}: {}",
                String::from_utf8_lossy(&bytes)
            );
            bytes
        };
        assert_eq!(fetch(&original_url), original);
        let thumbnail = fetch(&thumbnail_url);
        assert_eq!(png_width(&thumbnail), 50);
        (original_url, thumbnail_url, thumbnail)
    };
    let (original_url, thumbnail_url, thumbnail) = check_served();

    // The objects are in Swift, in the containers SwiftFileBackend names per wiki and zone, and
    // Swift's API gives back the same bytes.
    let object = |url: &str, prefix: &str| url.strip_prefix(prefix).unwrap().to_string();
    let original_object = object(&original_url, "/images/commonswiki/");
    let thumbnail_object = object(&thumbnail_url, "/images/commonswiki/thumb/");
    assert!(
        swift_list("commonswiki-local-public").contains(&original_object),
        "{original_object} is not listed"
    );
    assert!(
        swift_list("commonswiki-local-thumb").contains(&thumbnail_object),
        "{thumbnail_object} is not listed"
    );
    let (token, storage) = swift_token();
    let (status, bytes, _) = curl(
        &format!("{storage}/commonswiki-local-public/{original_object}"),
        &[format!("X-Auth-Token: {token}")],
    );
    assert_eq!((status.as_str(), bytes), ("200", original.clone()));
    // Nothing went to a media volume, and Swift's public containers are not listed to
    // readers, nor does httpd pass a write.
    assert!(!volume_exists(&wikikube_render::naming::media(&site)));
    let (status, _, _) = curl(&format!("{storage}/commonswiki-local-public"), &[]);
    assert!(matches!(status.as_str(), "401" | "403"), "{status}");
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args(["-H", "Host: media.farm.test", "--data", "x"])
        .arg(format!("http://127.0.0.1:{HTTP}/images/commonswiki/x.png"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "403");

    // Down and up: Swift's data is on its volume, and the same files are served.
    let stopped = wikikube_local::down(&site, &state, false).unwrap();
    assert!(
        stopped.contains(&"wikiswift-swift".to_string()),
        "{stopped:?}"
    );
    assert!(volume_exists(&wikikube_render::naming::swift_data(&site)));
    let up_again = Instant::now();
    let report = wikikube_local::up(&site, &rendered, &options).expect("the farm starts again");
    assert!(report.installed.is_empty(), "{:?}", report.installed);
    let second_up = up_again.elapsed();
    let (again_original, again_thumbnail, again_bytes) = check_served();
    assert_eq!(
        (&again_original, &again_thumbnail),
        (&original_url, &thumbnail_url)
    );
    assert_eq!(again_bytes, thumbnail);

    // A width no page asked for: Swift answers 404, httpd hands the miss to MediaWiki's
    // thumb_handler.php, which scales the original (ImageMagick, which marks the thumbnail with
    // its source; GD would not) and stores the thumbnail in Swift, where the next read finds it.
    let other_width = thumbnail_url.replace("/50px-", "/37px-");
    let (status, other, kind) = get("media.farm.test", &other_width);
    assert_eq!(
        (status.as_str(), kind.as_str()),
        ("200", "image/png"),
        "{other_width}: {}",
        String::from_utf8_lossy(&other)
    );
    assert_eq!(png_width(&other), 37);
    assert!(
        contains(&other, b"File source: "),
        "the thumbnail was not made by ImageMagick"
    );
    let other_object = object(&other_width, "/images/commonswiki/thumb/");
    assert!(
        swift_list("commonswiki-local-thumb").contains(&other_object),
        "{other_object} was not stored in Swift"
    );
    let (status, _, _) = get("media.farm.test", &other_width.replace("/37px-", "/0px-"));
    assert_ne!(status, "200", "a thumbnail of no width was served");

    // Backup, loss, restore: the backup carries the objects in the backup's layout (the same
    // as a volume's), the original is deleted from Swift and the page edited, and the restore
    // brings back the page and the very bytes, in Swift and served.
    let backup_dir = scratch.path().join("backup");
    let manifest = wikikube_local::backup::backup(&site, &backup_dir, &["commonswiki".into()])
        .expect("the backup is taken");
    let files: Vec<&str> = manifest.wikis["commonswiki"]
        .files
        .iter()
        .map(|file| file.path.as_str())
        .collect();
    for expected in [
        format!("commonswiki/media/public/{original_object}"),
        format!("commonswiki/media/public/thumb/{thumbnail_object}"),
        format!("commonswiki/media/public/thumb/{other_object}"),
    ] {
        assert!(
            files.contains(&expected.as_str()),
            "{expected} not in {files:?}"
        );
    }
    assert_eq!(
        std::fs::read(backup_dir.join(format!("commonswiki/media/public/{original_object}")))
            .unwrap(),
        original
    );
    let (token, storage) = swift_token();
    let (status, _, _) = curl_method(
        "DELETE",
        &format!("{storage}/commonswiki-local-public/{original_object}"),
        &[format!("X-Auth-Token: {token}")],
    );
    assert_eq!(status, "204");
    api(&[
        &HTTP.to_string(),
        "media.farm.test",
        "Admin",
        &password,
        "edit",
        "Swift thumbnail",
        "Lost after the backup",
    ]);
    let refused = wikikube_local::backup::restore(&site, &backup_dir, &[], false).unwrap_err();
    assert!(
        matches!(refused, wikikube_local::Error::NewerData { .. }),
        "{refused}"
    );
    let restored =
        wikikube_local::backup::restore(&site, &backup_dir, &[], true).expect("the restore runs");
    assert_eq!(
        restored[0].media_files,
        files.iter().filter(|f| f.contains("/media/")).count()
    );
    assert!(swift_list("commonswiki-local-public").contains(&original_object));
    let (_, page, _) = get("media.farm.test", "/wiki/Swift_thumbnail?action=raw");
    assert_eq!(
        String::from_utf8_lossy(&page).trim(),
        "[[File:Swift test.png|50px]]"
    );
    let (restored_original, restored_thumbnail, restored_bytes) = check_served();
    assert_eq!(
        (restored_original, restored_thumbnail),
        (original_url, thumbnail_url.clone())
    );
    assert_eq!(restored_bytes, thumbnail);

    // `down --purge` deletes Swift's data with the rest.
    drop(farm);
    assert!(!volume_exists(&wikikube_render::naming::swift_data(&site)));
    eprintln!(
        "swift e2e: images built in {:.0} s, first up at {:.0} s, second up {:.0} s, all {:.0} s",
        built.as_secs_f64(),
        first_up.as_secs_f64(),
        second_up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
