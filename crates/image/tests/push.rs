//! Pushes to the real registry Debian ships (`docker-registry`, distribution 2.8, which has no
//! OCI referrers API) on loopback: images with their SBOM and provenance as referrers, blobs
//! mounted across repositories, a corrupt cache entry refused before anything names it, and a
//! soak of many pushes with the registry killed in the middle of one, after which nothing the
//! registry references is missing or wrong and the next push resumes.
//!
//! The images here are small layouts made in the test (a shared base layer and a top layer
//! that changes every round), so the push paths run in seconds; `images.rs` pushes a real
//! build of the example farm.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use wikikube_test_support::copy_dir;

use oci_spec::image::Descriptor;
use sha2::Digest as _;
use wikikube_image::attest::{self, Facts};
use wikikube_image::cache::{Cache, LayerRecord};
use wikikube_image::oci::{self, RunConfig};
use wikikube_image::registry::{ClientOptions, Pusher, Referrers};

const EPOCH: u64 = 1_716_163_200;

use wikikube_test_support::registry::Registry;

/// `len` bytes that depend only on `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn layer(cache: &Cache, content: &[u8]) -> LayerRecord {
    let digest = cache.put_blob(content).unwrap();
    LayerRecord {
        digest: digest.clone(),
        // The registry never opens a layer; the blob stands for its own tar here.
        diff_id: digest,
        size: content.len() as u64,
        tar_size: content.len() as u64,
        entries: 1,
        compression: Default::default(),
    }
}

/// Writes a layout of `base` (one layer) and `app` (that layer and `top`), each with its SBOM
/// and provenance; returns the images' manifests.
fn layout(cache: &Cache, out: &Path, top: &[u8]) -> BTreeMap<String, Descriptor> {
    let base = layer(cache, &bytes(1, 6 << 20));
    let top = layer(cache, top);
    let mut images = BTreeMap::new();
    let mut referrers = BTreeMap::new();
    for (name, layers) in [
        ("base-test", vec![("rootfs", base.clone())]),
        ("app", vec![("rootfs", base), ("top", top)]),
    ] {
        let records: Vec<(String, LayerRecord)> = layers
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect();
        let built = oci::assemble(cache, &records, &RunConfig::default(), EPOCH).unwrap();
        let facts = Facts {
            site: "push-test".into(),
            image: name.into(),
            manifest: built.manifest.digest().to_string(),
            epoch: EPOCH,
            suite: "bookworm".into(),
            layers: records
                .iter()
                .map(|(n, r)| (n.clone(), r.diff_id.clone()))
                .collect(),
            ..Default::default()
        };
        let sbom = oci::artifact(
            cache,
            &built.manifest,
            attest::MEDIA_SBOM,
            &attest::sbom(&facts),
            EPOCH,
        )
        .unwrap();
        let provenance = oci::artifact(
            cache,
            &built.manifest,
            attest::MEDIA_PROVENANCE,
            &attest::provenance(&facts),
            EPOCH,
        )
        .unwrap();
        images.insert(name.to_string(), built.manifest);
        referrers.insert(name.to_string(), vec![sbom, provenance]);
    }
    oci::write_layout(cache, out, &images, &referrers).unwrap();
    images
}

const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

fn get(url: &str) -> Option<Vec<u8>> {
    match ureq::get(url).set("Accept", ACCEPT).call() {
        Ok(response) => {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
            Some(body)
        }
        Err(ureq::Error::Status(404, _)) => None,
        Err(e) => panic!("{url}: {e}"),
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Walks everything the registry names (every tag of every repository, the manifests they
/// name, the blobs those name) and fails on anything missing or not hashing to its digest.
/// Returns the number of tags.
fn check_registry(registry: &Registry) -> usize {
    let catalog = json(&get(&registry.url("_catalog")).unwrap());
    let mut tags_seen = 0;
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        // A repository with blobs and no tag yet is answered 404 by distribution 2.8.
        let Some(tags) = get(&registry.url(&format!("{repo}/tags/list"))) else {
            continue;
        };
        for tag in json(&tags)["tags"].as_array().into_iter().flatten() {
            tags_seen += 1;
            let tag = tag.as_str().unwrap();
            let bytes = get(&registry.url(&format!("{repo}/manifests/{tag}")))
                .unwrap_or_else(|| panic!("{repo}:{tag} is listed and missing"));
            check_manifest(registry, repo, &bytes, &format!("{repo}:{tag}"));
        }
    }
    tags_seen
}

fn check_manifest(registry: &Registry, repo: &str, bytes: &[u8], what: &str) {
    let manifest = json(bytes);
    let mut named: Vec<&serde_json::Value> = Vec::new();
    if let Some(manifests) = manifest["manifests"].as_array() {
        // An index (the referrers tag schema): every manifest it lists is there and whole.
        for entry in manifests {
            let digest = entry["digest"].as_str().unwrap();
            let inner = get(&registry.url(&format!("{repo}/manifests/{digest}")))
                .unwrap_or_else(|| panic!("{what} lists {digest}, which is missing"));
            assert_eq!(sha256(&inner), digest, "{what}: {digest}");
            check_manifest(registry, repo, &inner, &format!("{what} -> {digest}"));
        }
        return;
    }
    named.push(&manifest["config"]);
    named.extend(manifest["layers"].as_array().unwrap());
    for blob in named {
        let digest = blob["digest"].as_str().unwrap();
        let body = get(&registry.url(&format!("{repo}/blobs/{digest}")))
            .unwrap_or_else(|| panic!("{what} names the blob {digest}, which is missing"));
        assert_eq!(sha256(&body), digest, "{what}: blob {digest} is corrupt");
        assert_eq!(body.len() as u64, blob["size"].as_u64().unwrap(), "{what}");
    }
}

#[test]
fn images_reach_the_registry_with_their_sbom_and_provenance_as_referrers() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let out = dir.path().join("layout");
    let images = layout(&cache, &out, &bytes(2, 1 << 20));

    let mut pusher = Pusher::new(&cache, &registry.address, &ClientOptions::default()).unwrap();
    let first = pusher.push_layout(&out, "latest").unwrap();
    // Shared blobs cross the wire once: base-test uploads them, app mounts them (the base
    // layer, and the empty `{}` config of the artifact manifests).
    assert_eq!(first.mounted, 2, "{first:#?}");
    let base_size = (6 << 20) as u64;
    assert!(
        first.bytes > (1 << 20) + base_size && first.bytes < 2 * base_size,
        "{first:#?}"
    );
    let app = &first.images["app"];
    assert_eq!(app.digest, images["app"].digest().to_string());
    assert_eq!(app.referrers, Some(Referrers::TagSchema));
    assert_eq!(
        app.reference,
        format!("{}/wikikube/app@{}", registry.address, app.digest)
    );

    // The fallback tag lists the SBOM and the provenance, whose subject is the image, and
    // the SBOM served is the one in the layout.
    let hex = app.digest.trim_start_matches("sha256:");
    let index = json(&get(&registry.url(&format!("wikikube/app/manifests/sha256-{hex}"))).unwrap());
    let mut types: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, [attest::MEDIA_SBOM, attest::MEDIA_PROVENANCE]);
    for entry in index["manifests"].as_array().unwrap() {
        let digest = entry["digest"].as_str().unwrap();
        let manifest =
            json(&get(&registry.url(&format!("wikikube/app/manifests/{digest}"))).unwrap());
        assert_eq!(manifest["subject"]["digest"], app.digest.as_str());
        let blob = manifest["layers"][0]["digest"].as_str().unwrap();
        let served = get(&registry.url(&format!("wikikube/app/blobs/{blob}"))).unwrap();
        let local = std::fs::read(out.join("blobs/sha256").join(&blob[7..])).unwrap();
        assert_eq!(served, local);
    }
    // The image under its tag is the built one, byte for byte.
    let manifest = get(&registry.url("wikikube/app/manifests/latest")).unwrap();
    assert_eq!(sha256(&manifest), app.digest);
    assert_eq!(
        check_registry(&registry),
        4,
        "two image tags, two referrer tags"
    );

    // Again: nothing to send.
    let second = pusher.push_layout(&out, "latest").unwrap();
    assert_eq!((second.uploaded, second.mounted, second.bytes), (0, 0, 0));
    assert_eq!(
        second.skipped,
        first.uploaded + first.mounted + first.skipped
    );
}

#[test]
fn a_corrupt_cached_blob_is_refused_before_any_manifest_names_it() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let out = dir.path().join("layout");
    let top = bytes(3, 1 << 20);
    let images = layout(&cache, &out, &top);
    // One bit flips in the cached top layer, its size unchanged.
    let path = cache.blob_path(&sha256(&top));
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[1000] ^= 1;
    std::fs::write(&path, &damaged).unwrap();

    let error = wikikube_image::registry::push_layout(&cache, &out, &registry.address, "latest")
        .unwrap_err();
    assert!(
        matches!(error, wikikube_image::Error::CorruptBlob { .. }),
        "{error}"
    );
    let digest = images["app"].digest().to_string();
    assert_eq!(get(&registry.url("wikikube/app/manifests/latest")), None);
    assert_eq!(
        get(&registry.url(&format!("wikikube/app/manifests/{digest}"))),
        None
    );
    assert_eq!(
        get(&registry.url(&format!("wikikube/app/blobs/{}", sha256(&top)))),
        None,
        "the registry kept the damaged bytes"
    );
    check_registry(&registry);
}

#[test]
fn a_blob_the_registry_holds_wrongly_stops_the_push_before_the_manifest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let out = dir.path().join("layout");
    let top = bytes(4, 1 << 20);
    layout(&cache, &out, &top);
    let mut pusher = Pusher::new(&cache, &registry.address, &ClientOptions::default()).unwrap();
    pusher.push_layout(&out, "first").unwrap();
    // The registry's copy of the top layer loses its tail on disk, as a bad disk or an
    // interrupted copy between storage backends would leave it.
    let hex = &sha256(&top)[7..];
    let stored = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    std::fs::write(&stored, &top[..top.len() / 2]).unwrap();

    let mut pusher = Pusher::new(&cache, &registry.address, &ClientOptions::default()).unwrap();
    let error = pusher.push_layout(&out, "second").unwrap_err();
    assert!(
        matches!(error, wikikube_image::Error::BlobCheck { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(hex), "{error}");
    assert_eq!(get(&registry.url("wikikube/app/manifests/second")), None);
}

#[test]
fn many_pushes_with_the_registry_killed_once_never_reference_anything_corrupt() {
    const ROUNDS: u64 = 12;
    const KILLED: u64 = 5;
    const TOP: usize = 4 << 20;
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let killed = AtomicBool::new(false);
    let armed = AtomicBool::new(false);
    let top_digest = Mutex::new(String::new());
    // Kills the registry once, halfway through the upload of the round's new top layer.
    let on_event = |event: &wikikube_image::registry::push::Event| {
        let wikikube_image::registry::push::Event::Uploading { digest, sent, size } = event;
        if armed.load(Ordering::SeqCst)
            && *digest == *top_digest.lock().unwrap()
            && *sent > size / 2
            && !killed.swap(true, Ordering::SeqCst)
        {
            registry.kill();
        }
    };
    let mut pushed = BTreeMap::new();
    for round in 0..ROUNDS {
        let out = dir.path().join(format!("layout-{round}"));
        let top = bytes(100 + round, TOP);
        *top_digest.lock().unwrap() = sha256(&top);
        let images = layout(&cache, &out, &top);
        let tag = format!("r{round}");
        armed.store(round == KILLED, Ordering::SeqCst);
        let mut pusher = Pusher::new(&cache, &registry.address, &ClientOptions::default())
            .unwrap()
            .on_event(&on_event);
        let result = pusher.push_layout(&out, &tag);
        if round != KILLED {
            let report = result.unwrap();
            // After the first round: the new top layer, the app's config, its SBOM and
            // provenance; the base and everything of its image are there already.
            if round > 0 {
                assert_eq!(report.uploaded, 4, "round {round}: {report:#?}");
            }
            pushed.insert(tag, images["app"].digest().to_string());
            continue;
        }
        assert!(result.is_err(), "the push went on with the registry killed");
        assert!(killed.load(Ordering::SeqCst));
        registry.run();
        // What the registry names after the kill is whole: every earlier round, this round's
        // base (pushed before the app), and no tag of this round's app.
        assert_eq!(check_registry(&registry), 3 * round as usize + 2);
        assert_eq!(
            get(&registry.url(&format!("wikikube/app/manifests/{tag}"))),
            None
        );
        // The push again: what the killed one completed (the app's config, uploaded before
        // the top layer) is not sent again.
        let mut pusher = Pusher::new(&cache, &registry.address, &ClientOptions::default()).unwrap();
        let resumed = pusher.push_layout(&out, &tag).unwrap();
        assert_eq!(resumed.uploaded, 3, "{resumed:#?}");
        pushed.insert(tag, images["app"].digest().to_string());
    }
    // Per round a tag in each repository and the app's referrers tag; one referrers tag of
    // the base, which never changes.
    assert_eq!(check_registry(&registry), 3 * ROUNDS as usize + 1);
    for (tag, digest) in &pushed {
        let manifest = get(&registry.url(&format!("wikikube/app/manifests/{tag}"))).unwrap();
        assert_eq!(&sha256(&manifest), digest, "{tag}");
    }
}

#[test]
fn a_push_under_its_content_tag_is_recorded_and_the_site_then_runs_it_by_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let out = dir.path().join("layout");
    layout(&cache, &out, &bytes(3, 1 << 20));
    let tag = wikikube_image::registry::content_tag(&out).unwrap();
    assert!(tag.starts_with("build-") && tag.len() == 22, "{tag}");
    assert_eq!(wikikube_image::registry::content_tag(&out).unwrap(), tag);
    let pushed =
        wikikube_image::registry::push_layout(&cache, &out, &registry.address, &tag).unwrap();
    let app = &pushed.images["app"];
    let served = get(&registry.url(&format!("wikikube/app/manifests/{tag}"))).unwrap();
    assert_eq!(sha256(&served), app.digest);

    // The example farm's production images, in this registry.
    let site = dir.path().join("site");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm"),
        &site,
    );
    let production = site.join("environments/production.toml");
    let text = std::fs::read_to_string(&production).unwrap();
    assert!(text.contains("registry.farm.test/wikikube/app:2026-11-25"));
    std::fs::write(
        &production,
        text.replace("registry.farm.test", &registry.address),
    )
    .unwrap();
    let load =
        || wikikube_model::load(&site, "eqiad", &wikikube_model::LoadOptions::default()).unwrap();
    let before = load();
    let images = |site: &wikikube_model::ResolvedSite| {
        site.deployments
            .iter()
            .flat_map(|d| d.releases.iter())
            .map(|r| r.values.images.clone())
            .collect::<Vec<_>>()
    };
    assert!(images(&before)
        .iter()
        .all(|i| i.app.ends_with("/wikikube/app:2026-11-25")));

    let record = wikikube_image::registry::record_pushed(&site, &pushed).unwrap();
    assert_eq!(record.0[&app.repository].digest, app.digest);
    let after = load();
    for values in images(&after) {
        // What was pushed runs by digest; what was not keeps the environment's reference.
        assert_eq!(values.app, app.reference);
        assert!(values.webserver.ends_with("/wikikube/webserver:2026-11-25"));
    }

    // A deploy asks the registry for every pinned image first: the pushed one is there; a
    // digest it never received is named in the error.
    let options = wikikube_image::registry::ClientOptions::default();
    assert_eq!(
        wikikube_image::registry::check_pinned(&after, &options).unwrap(),
        1
    );
    let missing = format!("sha256:{}", "0".repeat(64));
    wikikube_image::registry::record_pushed(
        &site,
        &wikikube_image::registry::PushReport {
            images: [(
                "mcrouter".to_string(),
                wikikube_image::registry::PushedImage {
                    reference: String::new(),
                    repository: format!("{}/wikikube/mcrouter", registry.address),
                    tag: tag.clone(),
                    digest: missing.clone(),
                    artifacts: Vec::new(),
                    referrers: None,
                },
            )]
            .into(),
            ..Default::default()
        },
    )
    .unwrap();
    let error = wikikube_image::registry::check_pinned(&load(), &options).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&format!("wikikube/mcrouter@{missing}")) && text.contains("--push"),
        "{text}"
    );
}

/// An auth.json as podman and docker write it, with `user:password` for `registry`.
fn auth_file(dir: &Path, registry: &str, user: &str, password: &str) -> std::path::PathBuf {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join(format!("auth-{user}.json"));
    std::fs::write(
        &path,
        serde_json::json!({"auths": {registry: {"auth": encoded}}}).to_string(),
    )
    .unwrap();
    path
}

#[test]
fn a_registry_with_authentication_takes_the_credentials_of_auth_json_and_names_itself_when_it_refuses(
) {
    let registry = Registry::start_with_users(&[("deployer", "s3cret-Pa55")]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let out = dir.path().join("layout");
    layout(&cache, &out, &bytes(4, 1 << 20));
    let with = |auth_files: Vec<std::path::PathBuf>| ClientOptions {
        auth_files,
        ..ClientOptions::default()
    };

    // No credentials: the registry is named, and how to log in to it.
    let none = dir.path().join("empty.json");
    std::fs::write(&none, "{\"auths\": {}}").unwrap();
    let error = Pusher::new(&cache, &registry.address, &with(vec![none]))
        .and_then(|mut pusher| pusher.push_layout(&out, "latest"))
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&registry.address) && text.contains("podman login"),
        "{text}"
    );

    // A wrong password: refused, and the password is not printed.
    let wrong = auth_file(dir.path(), &registry.address, "intruder", "not-the-Pa55");
    let error = Pusher::new(&cache, &registry.address, &with(vec![wrong]))
        .and_then(|mut pusher| pusher.push_layout(&out, "latest"))
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains(&registry.address), "{text}");
    assert!(
        !text.contains("not-the-Pa55"),
        "the password was printed: {text}"
    );
    // Asked with the right credentials, the registry has nothing yet.
    let authorized_status = || {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("deployer:s3cret-Pa55");
        match ureq::get(&registry.url("wikikube/app/manifests/latest"))
            .set("Authorization", &format!("Basic {basic}"))
            .set("Accept", ACCEPT)
            .call()
        {
            Ok(response) => response.status(),
            Err(ureq::Error::Status(status, _)) => status,
            Err(error) => panic!("{error}"),
        }
    };
    assert_eq!(authorized_status(), 404);

    // The right credentials: the push goes through.
    let right = auth_file(dir.path(), &registry.address, "deployer", "s3cret-Pa55");
    let mut pusher = Pusher::new(&cache, &registry.address, &with(vec![right])).unwrap();
    let report = pusher.push_layout(&out, "latest").unwrap();
    assert!(report.uploaded > 0, "{report:#?}");
    assert_eq!(authorized_status(), 200);
    assert!(!format!("{report:?}").contains("s3cret"));
}
