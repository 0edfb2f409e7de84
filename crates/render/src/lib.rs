//! Rendering: a resolved site becomes Kubernetes objects and the config files of the cake.
//!
//! [`render`] takes a [`wikikube_model::ResolvedSite`] (one environment) and returns every object for it
//! in apply order (Namespace, ServiceAccount, ConfigMaps, Secret, Services, Deployments,
//! PodDisruptionBudgets) as typed `k8s-openapi` values, after the built-in [`lint`] has checked
//! them. [`Rendered::to_yaml`] and [`Rendered::to_json`] serialize them deterministically: the
//! same site gives byte-identical output.
//!
//! Objects are built as typed values, never by templating YAML; only the config files of the
//! cake's programs (apache, php-fpm) use templates, in [`config`], with typed inputs.
//!
//! In a Kubernetes environment [`Rendered::maintenance`] is the template of the Jobs that run
//! maintenance scripts ([`maintenance`]): not an object to apply, but what `deploy` makes one
//! Job per run from.
//!
//! This crate does no I/O except [`Rendered::write_dir`]; it does not talk to clusters (that is
//! `deploy`), run containers (`local`) or build images (`image`, which takes
//! [`config::mediawiki::config_files`] for the app image's configuration layer).

pub mod backup;
pub mod cake;
pub mod config;
pub mod edge;
pub mod kubernetes_version;
pub mod labels;
pub mod lint;
pub mod machine;
pub mod maintenance;
pub mod naming;
pub mod objects;
pub mod pod;
pub mod sizing;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, Service,
    ServiceAccount, ServicePort, ServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};

use wikikube_model::{CakeValues, EnvironmentKind, ReleaseName, ResolvedSite};

use crate::config::Files;
pub use crate::lint::{Finding, Rule};
pub use crate::objects::{Object, ObjectKind};

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
    /// The site asks for something its environment cannot have (named in the message).
    #[error("{0}")]
    Invalid(String),
    /// Writing the output failed.
    #[error("cannot write {path}")]
    Write {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Every object of one environment, grouped by what it belongs to.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Objects every release uses: the Namespace, the ServiceAccount, the farm's virtual hosts
    /// and the private values.
    pub shared: Vec<Object>,
    /// One entry per enabled release, in the site's order.
    pub releases: Vec<RenderedRelease>,
    /// The programs beside the releases: the edge in front of them, and in a local
    /// environment what only one machine needs (a memcached per pool server and the gutter,
    /// MariaDB).
    pub components: Vec<RenderedComponent>,
    /// Findings of rules the user allowed.
    pub allowed: Vec<Finding>,
    /// In a Kubernetes environment, the template of maintenance script Jobs.
    pub maintenance: Option<maintenance::Maintenance>,
    /// In a Kubernetes environment with MariaDB/MySQL databases, the backup Jobs' template (the
    /// claim and any CronJob are among the shared objects).
    pub backups: Option<backup::Backups>,
}

/// The objects of one release.
#[derive(Clone, Debug)]
pub struct RenderedRelease {
    /// The deployment (`mw-web`).
    pub deployment: String,
    /// The release.
    pub release: ReleaseName,
    /// Whether it serves only requests that ask for it (the debug release, or a deployment
    /// named as a debug backend in `[traffic] debug`).
    pub debug: bool,
    /// Its ConfigMaps, Deployment, Service (when it owns one) and PodDisruptionBudget.
    pub objects: Vec<Object>,
}

/// What a component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// The edge (TLS terminator and router) in front of the releases.
    Edge,
    /// A memcached server of a local environment (a pool's, or the gutter's).
    Memcached,
    /// The MariaDB server of a local environment.
    Mariadb,
    /// The Swift cluster (one node) of a local environment whose media are in Swift.
    Swift,
    /// A Redis server of a local environment whose sessions are in Redis.
    Redis,
}

/// The objects of a component.
#[derive(Clone, Debug)]
pub struct RenderedComponent {
    /// What it is.
    pub kind: ComponentKind,
    /// Its ConfigMap, Deployment, Service and PodDisruptionBudget, as it has them.
    pub objects: Vec<Object>,
}

impl RenderedRelease {
    /// The release's Deployment.
    pub fn deployment_object(&self) -> Option<&Deployment> {
        self.objects.iter().find_map(|object| match object {
            Object::Deployment(deployment) => Some(deployment),
            _ => None,
        })
    }
}

impl RenderedComponent {
    /// The component's Deployment.
    pub fn deployment_object(&self) -> Option<&Deployment> {
        self.objects.iter().find_map(|object| match object {
            Object::Deployment(deployment) => Some(deployment),
            _ => None,
        })
    }
}

impl Rendered {
    /// Every object, in apply order (then by name): what a cluster is given.
    pub fn objects(&self) -> Vec<&Object> {
        let mut objects: Vec<&Object> = self
            .shared
            .iter()
            .chain(self.releases.iter().flat_map(|r| &r.objects))
            .chain(self.components.iter().flat_map(|c| &c.objects))
            .collect();
        objects.sort_by(|a, b| (a.apply_rank(), a.name()).cmp(&(b.apply_rank(), b.name())));
        objects
    }

    /// The component of `kind`, if the environment has it.
    pub fn component(&self, kind: ComponentKind) -> Option<&RenderedComponent> {
        self.components.iter().find(|c| c.kind == kind)
    }
}

/// Renders every object of `site`'s environment and lints them.
pub fn render(site: &ResolvedSite, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let mut rendered = build(site)?;
    let mut findings = lint::lint(&rendered.objects());
    if let Some(template) = &rendered.maintenance {
        findings.extend(lint::lint_job(&lint::sample_job(template)));
    }
    if let Some(backups) = &rendered.backups {
        let settings = maintenance::JobSettings::default();
        findings.extend(lint::lint_job(&backups.job(&[], &settings, "lint")));
        let restore = backups.restore_job("lint", &[], false, &settings, "lint");
        findings.extend(lint::lint_job(&restore));
        if let Some(wiki) = backups.wikis().next() {
            let url = "https://dumps.example.org/lint.sql.gz";
            let import = backups.import_job(wiki, url, Some(url), false, &settings, "lint");
            findings.extend(lint::lint_job(&import));
        }
    }
    let (allowed, refused): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|finding| options.allow.contains(&finding.rule));
    if !refused.is_empty() {
        return Err(RenderError::Lint(refused));
    }
    rendered.allowed = allowed;
    Ok(rendered)
}

/// Builds the objects without linting them.
pub fn build(site: &ResolvedSite) -> Result<Rendered, RenderError> {
    let spec = &site.spec;
    let name = &spec.site.name;
    let namespace = &spec.site.namespace;
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels::common(name)),
        ..ObjectMeta::default()
    };
    let mut shared = vec![
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

    let media = site.media();
    let sites = versioned_config_map(
        meta(naming::httpd_sites(site)),
        config::httpd::sites(spec, media),
    );
    let sites_name = sites.name().to_string();
    shared.push(sites);
    let wikiversions = versioned_config_map(
        meta(naming::wikiversions(site)),
        config::mediawiki::wikiversions(spec),
    );
    let wikiversions_name = wikiversions.name().to_string();
    shared.push(wikiversions);

    let secret_data: BTreeMap<String, ByteString> = site
        .secrets
        .expose()
        .iter()
        .map(|(key, value)| (key.clone(), ByteString(value.as_bytes().to_vec())))
        .collect();
    let secrets_hash = content_hash(
        secret_data
            .iter()
            .map(|(key, value)| (key.as_str(), value.0.as_slice())),
    );
    let mut secret_meta = meta(naming::versioned(
        &naming::private_secret(site),
        &secrets_hash,
    ));
    secret_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(labels::VERSION_OF.into(), naming::private_secret(site));
    let secrets_name = secret_meta.name.clone().unwrap_or_default();
    shared.push(Object::Secret(Secret {
        metadata: secret_meta,
        type_: Some("Opaque".into()),
        data: Some(secret_data),
        immutable: Some(true),
        ..Secret::default()
    }));

    // One claim for the site's media on a volume; on one machine podman makes the named volume
    // itself when a pod first mounts it. Media in Swift need no claim.
    let volume_media = media.filter(|media| media.storage == wikikube_model::MediaStorage::Volume);
    if let (Some(media), EnvironmentKind::Kubernetes) = (volume_media, site.environment.kind) {
        shared.push(Object::PersistentVolumeClaim(media_claim(
            media,
            meta(naming::media(site)),
        )));
    }

    let domains: Vec<String> = spec
        .wikis
        .values()
        .flat_map(|wiki| wiki.domains.iter().cloned())
        .collect();
    let shared_inputs = SharedInputs {
        sites: &sites_name,
        wikiversions: &wikiversions_name,
        secrets: &secrets_name,
        domains: &domains,
    };
    let mut releases = Vec::new();
    for deployment in &site.deployments {
        for release in &deployment.releases {
            if !release.values.enabled {
                continue;
            }
            let mut objects = release_objects(
                site,
                &deployment.name,
                release.name,
                &release.values,
                &shared_inputs,
                &meta,
            );
            objects.sort_by(|a, b| (a.apply_rank(), a.name()).cmp(&(b.apply_rank(), b.name())));
            releases.push(RenderedRelease {
                deployment: deployment.name.clone(),
                release: release.name,
                debug: release.name == ReleaseName::Debug
                    || spec.traffic.debug.contains(&deployment.name),
                objects,
            });
        }
    }
    let maintenance = match site.environment.kind {
        EnvironmentKind::Kubernetes => maintenance_template(site, &releases),
        // One machine runs scripts in the running app container (`local`), not in Jobs.
        EnvironmentKind::Local => None,
    };
    // One machine backs up with `wikikube backup --to DIR`, not with Jobs and a claim.
    let backups = maintenance
        .as_ref()
        .and_then(|template| backup::Backups::new(site, template));
    if let Some(backups) = &backups {
        shared.push(Object::PersistentVolumeClaim(backups.claim(site)));
        if !backups.values().schedule.trim().is_empty() {
            shared.push(Object::CronJob(
                backups.cron_job(backups.values().schedule.trim()),
            ));
        }
    }
    let mut components = Vec::new();
    let edge = edge::objects(site, &meta);
    if !edge.is_empty() {
        components.push(RenderedComponent {
            kind: ComponentKind::Edge,
            objects: edge,
        });
    }
    if site.environment.kind == EnvironmentKind::Local {
        for server in machine::local_memcached(site)? {
            components.push(RenderedComponent {
                kind: ComponentKind::Memcached,
                objects: machine::memcached(site, &server, &meta)?,
            });
        }
        // The Redis servers the releases' Redis pool names on this machine.
        for server in machine::local_redis(site) {
            components.push(RenderedComponent {
                kind: ComponentKind::Redis,
                objects: machine::redis(site, &server, &secrets_name, &meta)?,
            });
        }
        // The database server the releases name, when it is this machine.
        if let Some(database) = site.database().filter(|database| {
            database.engine == wikikube_model::DatabaseEngine::Mysql
                && database.host == machine::HOST
        }) {
            components.push(RenderedComponent {
                kind: ComponentKind::Mariadb,
                objects: machine::mariadb(site, database, &secrets_name, &meta)?,
            });
        }
        // The Swift cluster the media are in, when it is this machine.
        if let Some((media, port)) =
            media.and_then(|media| Some((media, machine::local_swift_port(media)?)))
        {
            components.push(RenderedComponent {
                kind: ComponentKind::Swift,
                objects: machine::swift(site, media, port, &secrets_name, &meta)?,
            });
        }
    }
    Ok(Rendered {
        shared,
        releases,
        components,
        allowed: Vec::new(),
        maintenance,
        backups,
    })
}

/// The maintenance Job template, cut from the first main release: its pods mount that release's
/// versioned ConfigMaps and the private values' Secret, which a deploy creates before any Job runs.
fn maintenance_template(
    site: &ResolvedSite,
    releases: &[RenderedRelease],
) -> Option<maintenance::Maintenance> {
    let deployment = maintenance::script_deployment(site)?;
    let release = releases
        .iter()
        .find(|r| r.deployment == deployment.name && r.release == ReleaseName::Main)?;
    maintenance::Maintenance::new(site, &deployment.name, release.deployment_object()?)
}

/// What every release of a site mounts or names from the shared objects.
struct SharedInputs<'a> {
    /// The virtual hosts' ConfigMap.
    sites: &'a str,
    /// The name of the shared wikiversions ConfigMap.
    wikiversions: &'a str,
    /// The private values' Secret.
    secrets: &'a str,
    /// Every wiki domain, for the certificate.
    domains: &'a [String],
}

fn release_objects(
    site: &ResolvedSite,
    deployment: &str,
    release: ReleaseName,
    values: &CakeValues,
    shared: &SharedInputs<'_>,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Vec<Object> {
    let datacenter = &site.environment.datacenter;
    let configs: [(&str, Files); 4] = [
        (
            "httpd",
            config::httpd::server(&values.httpd, &values.php, &values.media),
        ),
        ("php", config::php::files(&values.php)),
        ("tls", config::tls::files(values, shared.domains)),
        (
            "mcrouter",
            config::mcrouter::files(
                &machine::memcached_values(site, &values.memcached),
                datacenter,
            ),
        ),
    ];
    let mut names = BTreeMap::new();
    let mut objects = Vec::new();
    for (part, files) in configs {
        let object = versioned_config_map(
            meta(naming::release_config(deployment, release, part)),
            files,
        );
        names.insert(part, object.name().to_string());
        objects.push(object);
    }
    if let Some(files) = config::redis_proxy::files(
        values,
        datacenter,
        site.secrets
            .expose()
            .contains_key(wikikube_model::REDIS_PASSWORD),
    ) {
        let object = versioned_config_map(
            meta(naming::release_config(deployment, release, "redis-proxy")),
            files,
        );
        names.insert("redis-proxy", object.name().to_string());
        objects.push(object);
    }
    let redis_proxy = names.remove("redis-proxy");
    let mut name_of = |part: &str| names.remove(part).unwrap_or_default();
    let mounts = cake::Mounts {
        httpd_sites: shared.sites.to_string(),
        wikiversions: shared.wikiversions.to_string(),
        httpd: name_of("httpd"),
        php: name_of("php"),
        tls: name_of("tls"),
        mcrouter: name_of("mcrouter"),
        redis_proxy,
        secrets: shared.secrets.to_string(),
    };
    objects.push(Object::Deployment(cake::deployment(
        site, deployment, release, values, &mounts,
    )));

    if release.has_own_service() {
        objects.push(Object::Service(Service {
            metadata: meta(naming::service(deployment, release)),
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
        metadata: meta(naming::release(deployment, release)),
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

/// A versioned ConfigMap ([`naming::versioned`]): `metadata`'s name is the base name, to which
/// the content's hash is added; immutable, and labelled with its base name.
fn versioned_config_map(mut metadata: ObjectMeta, files: Files) -> Object {
    let base = metadata.name.take().unwrap_or_default();
    metadata.name = Some(naming::versioned(&base, &checksum(&files)));
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(labels::VERSION_OF.into(), base);
    Object::ConfigMap(ConfigMap {
        metadata,
        data: Some(files),
        immutable: Some(true),
        ..ConfigMap::default()
    })
}

/// sha256 of a ConfigMap's files, names and contents both: the version in its name.
pub fn checksum(files: &Files) -> String {
    content_hash(
        files
            .iter()
            .map(|(name, contents)| (name.as_str(), contents.as_bytes())),
    )
}

/// sha256 of named contents, each name and content length-prefixed so that no two different
/// sets of entries hash alike; hex.
pub fn content_hash<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut hasher = Sha256::new();
    for (name, contents) in entries {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(contents);
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
        for object in self.objects() {
            out.push_str("---\n");
            out.push_str(&object_yaml(object));
        }
        out
    }

    /// Every object in a `v1` `List`, as pretty JSON, Secret values redacted.
    pub fn to_json(&self) -> String {
        let items: Vec<serde_json::Value> = self
            .objects()
            .into_iter()
            .map(|object| serde_json::to_value(for_display(object)).expect("objects serialize"))
            .collect();
        let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
        let mut text = serde_json::to_string_pretty(&list).expect("objects serialize");
        text.push('\n');
        text
    }

    /// Writes one YAML file per object into `dir`, named by apply order, kind and name
    /// (`003-configmap-mw-web-main-php.yaml`); a versioned object's file is named by its base
    /// name, so that a new version shows as a change of that file, not as another file. The directory is replaced whole and only once
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
        for (index, object) in self.objects().into_iter().enumerate() {
            let file = partial.join(format!(
                "{index:03}-{}-{}.yaml",
                object.kind().as_str().to_ascii_lowercase(),
                naming::unversioned(object.name())
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

/// One object as a YAML document (without the `---`), Secret values redacted.
pub fn object_yaml(object: &Object) -> String {
    serde_yaml_ng::to_string(&for_display(object)).expect("objects serialize")
}

/// The claim holding every wiki's uploads. ReadWriteMany: every pod of every release writes
/// uploads and thumbnails, on whichever node it runs.
fn media_claim(media: &wikikube_model::MediaValues, metadata: ObjectMeta) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".into()]),
            storage_class_name: (!media.storage_class.is_empty())
                .then(|| media.storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(format!("{}Gi", media.size_gib)),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}
