//! Rendering: a resolved site becomes Kubernetes objects and the config files of the cake.
//!
//! [`render`] takes a [`model::ResolvedSite`] (one environment) and returns every object for it
//! in apply order (Namespace, ServiceAccount, ConfigMaps, Secret, Services, Deployments,
//! PodDisruptionBudgets) as typed `k8s-openapi` values, after the built-in [`lint`] has checked
//! them. [`Rendered::to_yaml`] and [`Rendered::to_json`] serialize them deterministically: the
//! same site gives byte-identical output.
//!
//! Objects are built as typed values, never by templating YAML; only the config files of the
//! cake's programs (apache, php-fpm) use templates, in [`config`], with typed inputs.
//!
//! This crate does no I/O except [`Rendered::write_dir`]; it does not talk to clusters (that is
//! `deploy`), run containers (`local`) or build images (`image`, which takes
//! [`config::mediawiki::config_files`] for the app image's configuration layer).

pub mod cake;
pub mod config;
pub mod edge;
pub mod labels;
pub mod lint;
pub mod objects;
pub mod pod;
pub mod sizing;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Secret, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};

use model::{CakeValues, EnvironmentKind, ReleaseName, ResolvedSite};

use crate::config::Files;
pub use crate::lint::{Finding, Rule};
pub use crate::objects::Object;

/// The ServiceAccount the cake's pods run as.
pub const SERVICE_ACCOUNT: &str = "mediawiki";

/// What a Secret's values are replaced with in text output.
pub const REDACTED: &str = "<redacted>";

/// Choices that change what a render accepts.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Lint rules broken on purpose: their findings are reported but do not fail the render.
    pub allow: BTreeSet<Rule>,
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Objects break lint rules that were not allowed.
    #[error("{} rendered object(s) break the lint rules:\n{}\nfix the site, or pass --allow RULE to accept a rule on purpose", .0.len(), .0.iter().map(|f| format!("  - {f}")).collect::<Vec<_>>().join("\n"))]
    Lint(Vec<Finding>),
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Every object of one environment, in apply order.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The objects, sorted by apply order and then name.
    pub objects: Vec<Object>,
    /// Findings of rules the user allowed.
    pub allowed: Vec<Finding>,
}

/// Renders every object of `site`'s environment and lints them.
pub fn render(site: &ResolvedSite, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let objects = build_objects(site);
    let (allowed, refused): (Vec<Finding>, Vec<Finding>) = lint::lint(&objects)
        .into_iter()
        .partition(|finding| options.allow.contains(&finding.rule));
    if !refused.is_empty() {
        return Err(RenderError::Lint(refused));
    }
    Ok(Rendered { objects, allowed })
}

/// Builds the objects without linting them.
pub fn build_objects(site: &ResolvedSite) -> Vec<Object> {
    let spec = &site.spec;
    let name = &spec.site.name;
    let namespace = &spec.site.namespace;
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels::common(name)),
        ..ObjectMeta::default()
    };
    let mut objects = vec![
        Object::Namespace(Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some({
                    let mut labels = labels::common(name);
                    labels.insert(
                        "pod-security.kubernetes.io/enforce".into(),
                        "restricted".into(),
                    );
                    labels
                }),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }),
        Object::ServiceAccount(ServiceAccount {
            metadata: meta(SERVICE_ACCOUNT.into()),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }),
    ];

    let sites_name = format!("{name}-httpd-sites");
    let sites = config::httpd::sites(spec);
    let sites_checksum = checksum(&sites);
    objects.push(config_map(meta(sites_name.clone()), sites));

    let secrets_name = format!("{name}-private");
    objects.push(Object::Secret(Secret {
        metadata: meta(secrets_name.clone()),
        type_: Some("Opaque".into()),
        data: Some(
            site.secrets
                .expose()
                .iter()
                .map(|(key, value)| (key.clone(), ByteString(value.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }));

    let domains: Vec<String> = spec
        .wikis
        .values()
        .flat_map(|wiki| wiki.domains.iter().cloned())
        .collect();
    for deployment in &site.deployments {
        for release in &deployment.releases {
            if !release.values.enabled {
                continue;
            }
            objects.extend(release_objects(
                site,
                &deployment.name,
                release.name,
                &release.values,
                (&sites_name, &sites_checksum),
                &secrets_name,
                &domains,
                &meta,
            ));
        }
    }
    // On one machine `wikikube up` runs its own edge, on the host's ports.
    if site.environment.kind == EnvironmentKind::Kubernetes {
        objects.extend(edge::objects(site, &meta));
    }
    objects.sort_by(|a, b| (a.apply_rank(), a.name()).cmp(&(b.apply_rank(), b.name())));
    objects
}

#[allow(clippy::too_many_arguments)] // Each argument is a distinct shared input of a release.
fn release_objects(
    site: &ResolvedSite,
    deployment: &str,
    release: ReleaseName,
    values: &CakeValues,
    (sites_name, sites_checksum): (&str, &str),
    secrets_name: &str,
    domains: &[String],
    meta: &impl Fn(String) -> ObjectMeta,
) -> Vec<Object> {
    let base = format!("{deployment}-{release}");
    let datacenter = &site.environment.datacenter;
    let configs: [(&str, Files); 4] = [
        ("httpd", config::httpd::server(&values.httpd, &values.php)),
        ("php", config::php::files(&values.php)),
        ("tls", config::tls::files(values, domains)),
        (
            "mcrouter",
            config::mcrouter::files(&values.memcached, datacenter),
        ),
    ];
    let mut checksums = BTreeMap::from([("httpd-sites".to_string(), sites_checksum.to_string())]);
    let mut objects = Vec::new();
    for (suffix, files) in configs {
        let config_name = format!("{base}-{suffix}");
        checksums.insert(suffix.to_string(), checksum(&files));
        objects.push(config_map(meta(config_name), files));
    }
    let mounts = cake::Mounts {
        httpd_sites: sites_name.to_string(),
        httpd: format!("{base}-httpd"),
        php: format!("{base}-php"),
        tls: format!("{base}-tls"),
        mcrouter: format!("{base}-mcrouter"),
        secrets: secrets_name.to_string(),
        checksums,
    };
    objects.push(Object::Deployment(cake::deployment(
        site, deployment, release, values, &mounts,
    )));

    if release.has_own_service() {
        objects.push(Object::Service(Service {
            metadata: meta(labels::service_name(deployment, release)),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(labels::service_selector(deployment, release)),
                ports: Some(vec![ServicePort {
                    name: Some("https".into()),
                    port: i32::from(values.service.port),
                    target_port: Some(IntOrString::String("https".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }));
    }

    objects.push(Object::PodDisruptionBudget(PodDisruptionBudget {
        metadata: meta(base),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::String(format!(
                "{}%",
                values.disruption.max_unavailable_percent
            ))),
            selector: Some(LabelSelector {
                match_labels: Some(labels::release_selector(deployment, release)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }));
    objects
}

fn config_map(metadata: ObjectMeta, files: Files) -> Object {
    Object::ConfigMap(ConfigMap {
        metadata,
        data: Some(files),
        ..ConfigMap::default()
    })
}

/// sha256 of a ConfigMap's files, names and contents both, so that any change rolls the pods.
fn checksum(files: &Files) -> String {
    let mut hasher = Sha256::new();
    for (name, contents) in files {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(contents.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An object as it may be shown: Secrets keep their keys but lose their values.
fn for_display(object: &Object) -> std::borrow::Cow<'_, Object> {
    match object {
        Object::Secret(secret) => {
            let mut shown = secret.clone();
            let keys = secret
                .data
                .iter()
                .flatten()
                .map(|(key, _)| (key.clone(), REDACTED.to_string()));
            shown.string_data = Some(keys.collect());
            shown.data = None;
            std::borrow::Cow::Owned(Object::Secret(shown))
        }
        other => std::borrow::Cow::Borrowed(other),
    }
}

impl Rendered {
    /// Every object as a YAML document, in apply order. Secret values are redacted: output is
    /// for reading and diffing; `deploy` and `up` use the objects themselves.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for object in &self.objects {
            out.push_str("---\n");
            out.push_str(&object_yaml(object));
        }
        out
    }

    /// Every object in a `v1` `List`, as pretty JSON, Secret values redacted.
    pub fn to_json(&self) -> String {
        let items: Vec<serde_json::Value> = self
            .objects
            .iter()
            .map(|object| serde_json::to_value(for_display(object)).expect("objects serialize"))
            .collect();
        let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
        let mut text = serde_json::to_string_pretty(&list).expect("objects serialize");
        text.push('\n');
        text
    }

    /// Writes one YAML file per object into `dir`, named by apply order, kind and name
    /// (`003-configmap-mw-web-main-php.yaml`). The directory is replaced whole and only once
    /// every file is written, so a failure leaves the previous output untouched.
    pub fn write_dir(&self, dir: &Path) -> Result<(), RenderError> {
        let fail = |path: &Path| {
            let path = path.display().to_string();
            move |source| RenderError::Write { path, source }
        };
        let partial = dir.with_extension(format!("partial-{}", std::process::id()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(fail(&partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(fail(&partial))?;
        for (index, object) in self.objects.iter().enumerate() {
            let file = partial.join(format!(
                "{index:03}-{}-{}.yaml",
                object.kind().to_ascii_lowercase(),
                object.name()
            ));
            std::fs::write(&file, object_yaml(object)).map_err(fail(&file))?;
        }
        let previous = dir.with_extension(format!("previous-{}", std::process::id()));
        if dir.exists() {
            std::fs::rename(dir, &previous).map_err(fail(dir))?;
        }
        std::fs::rename(&partial, dir).map_err(fail(dir))?;
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(fail(&previous))?;
        }
        Ok(())
    }
}

fn object_yaml(object: &Object) -> String {
    serde_yaml_ng::to_string(&for_display(object)).expect("objects serialize")
}
