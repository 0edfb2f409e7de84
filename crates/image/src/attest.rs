//! What each image is made of, stated in two standard documents that travel with it as OCI
//! 1.1 referrers (artifact manifests whose `subject` is the image):
//!
//! - an **SBOM**, SPDX 2.3 JSON ([`MEDIA_SBOM`]): the Debian packages of the image's rootfs
//!   with their exact versions and the SHA-256 of each .deb (from `packages.lock`), MediaWiki
//!   and each extension and skin by version, the cake's own programs by hash, and each
//!   security patch **by hash only** (patches may be under embargo: their names and contents
//!   say what they fix);
//! - a **provenance** statement, in-toto Statement v1 with a SLSA Provenance v1 predicate
//!   ([`MEDIA_PROVENANCE`]): the build's inputs (`build.toml`, `packages.lock`, every .deb,
//!   the code's source, the patches by hash), the builder, and the layers it produced.
//!
//! Both are written only from what the build knows exactly, with the build's
//! SOURCE_DATE_EPOCH as their only time and no host name or path in them, so building twice
//! gives the same bytes and the same digests. Signing is not done here.

use serde_json::{json, Value};

use crate::lock::RootfsLock;

/// The media type of the SBOM blob (and the artifact type of its manifest).
pub const MEDIA_SBOM: &str = "application/spdx+json";

/// The media type of the provenance blob (and the artifact type of its manifest).
pub const MEDIA_PROVENANCE: &str = "application/vnd.in-toto+json";

/// The SLSA build type of wikikube builds.
pub const BUILD_TYPE: &str = "https://wikikube.invalid/build/image/v1";

/// What a build knows about one image.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The site's name.
    pub site: String,
    /// The image's name (`app`).
    pub image: String,
    /// Its manifest digest (the subject).
    pub manifest: String,
    /// SOURCE_DATE_EPOCH.
    pub epoch: u64,
    /// The Debian suite.
    pub suite: String,
    /// The rootfs locks the image's content comes from: `(rootfs name, its lock)`.
    pub rootfs: Vec<(String, RootfsLock)>,
    /// MediaWiki versions in the image.
    pub mediawiki: Vec<MediaWiki>,
    /// The project's own programs: `(name, sha256 of the executable)`.
    pub binaries: Vec<(String, String)>,
    /// Digests of the files the build read: `(name, sha256)` (`build.toml`, `packages.lock`).
    pub inputs: Vec<(String, String)>,
    /// Layers, bottom first: `(name, diff_id)`.
    pub layers: Vec<(String, String)>,
}

/// One MediaWiki version of an image.
#[derive(Clone, Debug, Default)]
pub struct MediaWiki {
    /// The version (`1.39`).
    pub version: String,
    /// Where its code came from: a Debian package (`mediawiki=1:1.39.10-1`) or the site
    /// directory (`site:mediawiki-1.43`), with the key of that source.
    pub source: String,
    /// Extensions, by name.
    pub extensions: Vec<String>,
    /// Skins, by name.
    pub skins: Vec<String>,
    /// SHA-256 of each security patch applied.
    pub patches: Vec<String>,
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// An SPDX identifier from free text: letters, digits, `.` and `-` only.
fn spdx_id(parts: &[&str]) -> String {
    let text: String = parts
        .join("-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{text}")
}

/// Percent-encodes a purl component (`+`, `:`, `~` in Debian versions).
fn purl_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The purl of a Debian package.
pub fn deb_purl(name: &str, version: &str, suite: &str) -> String {
    format!(
        "pkg:deb/debian/{}@{}?distro=debian-{}",
        purl_encode(name),
        purl_encode(version),
        purl_encode(suite)
    )
}

/// The SPDX 2.3 JSON document of an image.
pub fn sbom(facts: &Facts) -> Vec<u8> {
    let image_id = spdx_id(&["image", &facts.image]);
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": facts.image,
        "versionInfo": facts.manifest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex(&facts.manifest)}],
        "comment": format!("OCI image `{}` of site `{}`", facts.image, facts.site),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    // What the image contains, in document order; patches relate to MediaWiki instead.
    let mut contained: Vec<String> = Vec::new();
    for (rootfs, lock) in &facts.rootfs {
        for package in &lock.packages {
            let id = spdx_id(&["deb", rootfs, &package.name]);
            let mut entry = json!({
                "SPDXID": id,
                "name": package.name,
                "versionInfo": package.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "primaryPackagePurpose": "OPERATING-SYSTEM",
                "supplier": "Organization: Debian",
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": deb_purl(&package.name, &package.version, &facts.suite),
                }],
                "comment": format!("from rootfs `{rootfs}` of packages.lock"),
            });
            if let Some(sha) = &package.sha256 {
                entry["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": hex(sha)}]);
            }
            packages.push(entry);
            contained.push(id.clone());
        }
    }
    for mw in &facts.mediawiki {
        let core = spdx_id(&["mediawiki", &mw.version]);
        packages.push(json!({
            "SPDXID": core,
            "name": "mediawiki",
            "versionInfo": mw.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "APPLICATION",
            "sourceInfo": mw.source,
        }));
        contained.push(core.clone());
        for (kind, names) in [("extension", &mw.extensions), ("skin", &mw.skins)] {
            for name in names {
                let id = spdx_id(&["mediawiki", &mw.version, kind, name]);
                packages.push(json!({
                    "SPDXID": id,
                    "name": format!("mediawiki-{kind}-{name}"),
                    "versionInfo": mw.version,
                    "downloadLocation": "NOASSERTION",
                    "filesAnalyzed": false,
                    "primaryPackagePurpose": "LIBRARY",
                    "sourceInfo": format!("the {kind} {name} of MediaWiki {} ({})", mw.version, mw.source),
                }));
                contained.push(id.clone());
            }
        }
        for patch in &mw.patches {
            let id = spdx_id(&["patch", &mw.version, &hex(patch)[..16]]);
            packages.push(json!({
                "SPDXID": id,
                "name": format!("security-patch-{}", &hex(patch)[..16]),
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "primaryPackagePurpose": "SOURCE",
                "checksums": [{"algorithm": "SHA256", "checksumValue": hex(patch)}],
                "comment": "a security patch, named by its hash only (it may be under embargo)",
            }));
            relationships.push(json!({
                "spdxElementId": id,
                "relationshipType": "PATCH_APPLIED",
                "relatedSpdxElement": core,
            }));
        }
    }
    for (name, sha) in &facts.binaries {
        let id = spdx_id(&["program", name]);
        packages.push(json!({
            "SPDXID": id,
            "name": name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "APPLICATION",
            "supplier": "Organization: wikikube",
            "checksums": [{"algorithm": "SHA256", "checksumValue": hex(sha)}],
        }));
        contained.push(id.clone());
    }
    relationships.extend(contained.iter().map(|id| {
        json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        })
    }));
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", facts.site, facts.image),
        // Unique per image content, and the same every time that content is built.
        "documentNamespace": format!(
            "https://wikikube.invalid/spdx/{}/{}/{}",
            purl_encode(&facts.site), purl_encode(&facts.image), hex(&facts.manifest)
        ),
        "creationInfo": {
            "created": crate::oci::rfc3339(facts.epoch),
            "creators": [format!("Tool: wikikube-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    pretty(&document)
}

/// The in-toto statement with the SLSA v1 provenance of an image.
pub fn provenance(facts: &Facts) -> Vec<u8> {
    let mut dependencies: Vec<Value> = facts
        .inputs
        .iter()
        .map(|(name, sha)| json!({"name": name, "digest": {"sha256": hex(sha)}}))
        .collect();
    for (rootfs, lock) in &facts.rootfs {
        for package in &lock.packages {
            let mut entry = json!({
                "uri": deb_purl(&package.name, &package.version, &facts.suite),
                "annotations": {"rootfs": rootfs},
            });
            if let Some(sha) = &package.sha256 {
                entry["digest"] = json!({"sha256": hex(sha)});
            }
            dependencies.push(entry);
        }
    }
    for mw in &facts.mediawiki {
        dependencies.push(json!({
            "name": format!("mediawiki-{}", mw.version),
            "annotations": {"source": mw.source},
        }));
        for patch in &mw.patches {
            dependencies.push(json!({
                "name": "security-patch",
                "digest": {"sha256": hex(patch)},
                "annotations": {"mediawiki": mw.version},
            }));
        }
    }
    for (name, sha) in &facts.binaries {
        dependencies.push(json!({"name": name, "digest": {"sha256": hex(sha)}}));
    }
    let byproducts: Vec<Value> = facts
        .layers
        .iter()
        .map(|(name, diff_id)| {
            json!({"name": format!("layer: {name}"), "digest": {"sha256": hex(diff_id)},
                   "mediaType": "application/vnd.oci.image.layer.v1.tar"})
        })
        .collect();
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": facts.image, "digest": {"sha256": hex(&facts.manifest)}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"site": facts.site, "image": facts.image},
                "internalParameters": {
                    "layerFormat": crate::LAYER_FORMAT,
                    "sourceDateEpoch": facts.epoch,
                    "suite": facts.suite,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": format!("https://wikikube.invalid/builder/wikikube@{}", env!("CARGO_PKG_VERSION")),
                },
                "byproducts": byproducts,
            },
        },
    });
    pretty(&statement)
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("JSON serializes");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions_are_encoded_in_purls() {
        assert_eq!(
            deb_purl("libc6", "2.36-9+deb12u10", "bookworm"),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?distro=debian-bookworm"
        );
        assert_eq!(
            spdx_id(&["deb", "base-php", "g++"]),
            "SPDXRef-deb-base-php-g--"
        );
    }

    #[test]
    fn patches_appear_by_hash_only() {
        let facts = Facts {
            site: "farm".into(),
            image: "app".into(),
            manifest: format!("sha256:{}", "a".repeat(64)),
            mediawiki: vec![MediaWiki {
                version: "1.39".into(),
                source: "site:code".into(),
                patches: vec![format!("sha256:{}", "b".repeat(64))],
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = String::from_utf8(sbom(&facts)).unwrap();
        assert!(text.contains(&"b".repeat(64)));
        assert!(!text.contains(".patch"), "{text}");
        assert_eq!(sbom(&facts), sbom(&facts));
    }
}
