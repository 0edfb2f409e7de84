//! The SBOM and provenance of an image, made from the example farm's real packages.lock
//! (hundreds of Debian packages with their .deb hashes) and checked by standard readers:
//! SPDX's own validator from PyPI (`pyspdxtools`, installed by scripts/install-packages) for
//! the SBOM, and the in-toto / SLSA v1 field rules for the provenance. Fast: no rootfs is
//! built; `images.rs` checks the same documents of a real build.

use std::path::PathBuf;

use wikikube_image::attest::{self, Facts, MediaWiki};

fn farm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

use wikikube_test_support::python_tool;

fn facts() -> Facts {
    let lock = wikikube_image::lock::Lock::load(&farm()).unwrap();
    Facts {
        site: "farm".into(),
        image: "app".into(),
        manifest: format!("sha256:{}", "5c".repeat(32)),
        epoch: 1_716_163_200,
        suite: "bookworm".into(),
        rootfs: ["base-php", "mediawiki-code"]
            .iter()
            .map(|name| (name.to_string(), lock.rootfs[*name].clone()))
            .collect(),
        mediawiki: vec![MediaWiki {
            version: "1.39".into(),
            source: "/usr/share/mediawiki (mediawiki=1:1.39.10-0+deb12u1)".into(),
            extensions: vec!["Cite".into(), "ParserFunctions".into()],
            skins: vec!["Vector".into()],
            patches: vec![format!("sha256:{}", "0b".repeat(32))],
        }],
        binaries: vec![("mcrouter".into(), format!("sha256:{}", "7e".repeat(32)))],
        inputs: vec![
            ("build.toml".into(), format!("sha256:{}", "11".repeat(32))),
            (
                "packages.lock".into(),
                format!("sha256:{}", "22".repeat(32)),
            ),
        ],
        layers: vec![
            (
                "base-php rootfs".into(),
                format!("sha256:{}", "33".repeat(32)),
            ),
            ("code 1.39".into(), format!("sha256:{}", "44".repeat(32))),
        ],
    }
}

/// Runs SPDX's validator on `document`; `Err` with its output when it finds a fault.
pub fn spdx_validate(document: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sbom.spdx.json");
    std::fs::write(&file, document).unwrap();
    let output = std::process::Command::new(python_tool("pyspdxtools"))
        .arg("--infile")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // pyspdxtools says nothing and exits 0 for a valid document; it lists the faults of an
    // invalid one and exits 1.
    if output.status.success() && !text.contains("invalid") {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn the_sbom_of_a_real_lock_is_valid_spdx_2_3() {
    let sbom = attest::sbom(&facts());
    spdx_validate(&sbom).unwrap_or_else(|e| panic!("pyspdxtools refused the SBOM:\n{e}"));
    let json: serde_json::Value = serde_json::from_slice(&sbom).unwrap();
    assert_eq!(json["spdxVersion"], "SPDX-2.3");
    let packages = json["packages"].as_array().unwrap();
    let lock = wikikube_image::lock::Lock::load(&farm()).unwrap();
    let debs =
        lock.rootfs["base-php"].packages.len() + lock.rootfs["mediawiki-code"].packages.len();
    // The image, every .deb of both rootfs, MediaWiki, 2 extensions, 1 skin, 1 patch, 1 program.
    assert_eq!(packages.len(), 1 + debs + 1 + 3 + 1 + 1);
    let libc = packages
        .iter()
        .find(|p| p["name"] == "libc6")
        .expect("libc6 is in base-php");
    let locked = lock.rootfs["base-php"]
        .packages
        .iter()
        .find(|p| p.name == "libc6")
        .unwrap();
    assert_eq!(libc["versionInfo"], locked.version.as_str());
    assert_eq!(
        format!(
            "sha256:{}",
            libc["checksums"][0]["checksumValue"].as_str().unwrap()
        ),
        locked.sha256.clone().unwrap()
    );
    assert!(libc["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap()
        .starts_with("pkg:deb/debian/libc6@"));
}

#[test]
fn the_validator_refuses_a_broken_sbom() {
    // Without this, a validator that accepts anything would pass the test above.
    let mut json: serde_json::Value = serde_json::from_slice(&attest::sbom(&facts())).unwrap();
    json["packages"][1]["SPDXID"] = "not an SPDX id".into();
    let broken = serde_json::to_vec(&json).unwrap();
    assert!(
        spdx_validate(&broken).is_err(),
        "pyspdxtools accepted a broken SBOM"
    );
}

#[test]
fn the_provenance_is_an_in_toto_statement_with_slsa_v1() {
    let facts = facts();
    let statement: serde_json::Value = serde_json::from_slice(&attest::provenance(&facts)).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], "5c".repeat(32));
    let definition = &statement["predicate"]["buildDefinition"];
    assert_eq!(definition["buildType"], attest::BUILD_TYPE);
    // Every resolved dependency is a SLSA ResourceDescriptor: a uri, a digest or a name.
    let dependencies = definition["resolvedDependencies"].as_array().unwrap();
    for dependency in dependencies {
        assert!(
            dependency.get("uri").is_some()
                || dependency.get("digest").is_some()
                || dependency.get("name").is_some(),
            "{dependency}"
        );
        if let Some(digest) = dependency.get("digest") {
            let hex = digest["sha256"].as_str().unwrap();
            assert_eq!(hex.len(), 64, "{dependency}");
        }
    }
    // The lock's hash is among the inputs, and each .deb with its hash.
    assert!(dependencies
        .iter()
        .any(|d| d["name"] == "packages.lock" && d["digest"]["sha256"] == "22".repeat(32)));
    let debs = dependencies
        .iter()
        .filter(|d| d["uri"].as_str().is_some_and(|u| u.starts_with("pkg:deb/")))
        .count();
    assert_eq!(
        debs,
        facts
            .rootfs
            .iter()
            .map(|(_, l)| l.packages.len())
            .sum::<usize>()
    );
    assert!(statement["predicate"]["runDetails"]["builder"]["id"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
}

#[test]
fn the_same_facts_give_the_same_bytes() {
    assert_eq!(attest::sbom(&facts()), attest::sbom(&facts()));
    assert_eq!(attest::provenance(&facts()), attest::provenance(&facts()));
    let mut other = facts();
    other.manifest = format!("sha256:{}", "5d".repeat(32));
    assert_ne!(attest::sbom(&facts()), attest::sbom(&other));
}
