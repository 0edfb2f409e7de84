//! Loading real site directories: the example farm, layering and provenance, and every kind of
//! mistake a user can make in the files.

use std::fs;
use std::path::{Path, PathBuf};
use wikikube_test_support::copy_dir;

use wikikube_model::{explain, load, ErrorKind, LoadOptions, ReleaseName};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// A throwaway copy of the example farm that a test may break.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&example(), dir.path());
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, file: &str, text: &str) {
        let path = self.path().join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn append(&self, file: &str, text: &str) {
        let path = self.path().join(file);
        let mut old = fs::read_to_string(&path).unwrap();
        old.push_str(text);
        fs::write(path, old).unwrap();
    }

    fn replace(&self, file: &str, from: &str, to: &str) {
        let path = self.path().join(file);
        let old = fs::read_to_string(&path).unwrap();
        assert!(old.contains(from), "{file} does not contain {from:?}");
        fs::write(path, old.replacen(from, to, 1)).unwrap();
    }

    fn error(&self, environment: &str) -> wikikube_model::Error {
        load(self.path(), environment, &LoadOptions::default()).unwrap_err()
    }
}

fn line_of(path: &Path, needle: &str) -> u32 {
    let text = fs::read_to_string(path).unwrap();
    let index = text.find(needle).expect("needle present");
    text[..index].matches('\n').count() as u32 + 1
}

#[test]
fn the_example_loads_in_every_environment() {
    for environment in ["local", "eqiad", "codfw"] {
        let site = load(&example(), environment, &LoadOptions::default()).unwrap();
        assert_eq!(site.spec.wikis.len(), 3, "{environment}");
        let names: Vec<&str> = site.deployments.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["mw-api-ext", "mw-debug", "mw-web"], "{environment}");
    }
    assert_eq!(
        wikikube_model::selectable_environments(&example()),
        ["codfw", "eqiad", "local"]
    );
}

#[test]
fn layers_apply_lowest_first_and_scopes_beat_files() {
    let site = load(&example(), "eqiad", &LoadOptions::default()).unwrap();
    let web = site.deployment("mw-web").unwrap();
    let main = &web.release(ReleaseName::Main).unwrap().values;
    let canary = &web.release(ReleaseName::Canary).unwrap().values;
    // site.toml says 4, the eqiad datacenter file says 12 for the deployment, 2 for the canary.
    assert_eq!(main.replicas, 12);
    assert_eq!(canary.replicas, 2);
    // Built-in default, untouched by any file.
    assert_eq!(main.php.workers, 8);
    assert_eq!(main.php.request_timeout_seconds, 201);
    // The production environment file sets the certificate for both datacenters.
    assert_eq!(
        main.tls.certificate,
        wikikube_model::CertificateSource::Secret("mediawiki-tls".into())
    );
    // A deployment-scoped value in site.toml beats global values in every file.
    let api = site.deployment("mw-api-ext").unwrap();
    assert_eq!(
        api.release(ReleaseName::Main).unwrap().values.php.workers,
        12
    );
    assert_eq!(api.release(ReleaseName::Canary).unwrap().values.replicas, 1);

    let local = load(&example(), "local", &LoadOptions::default()).unwrap();
    let web = local.deployment("mw-web").unwrap();
    assert_eq!(
        web.release(ReleaseName::Main).unwrap().values.php.workers,
        2
    );
    assert!(!web.release(ReleaseName::Canary).unwrap().values.enabled);
    assert_eq!(local.environment.datacenter, "local");
}

#[test]
fn explain_names_the_file_and_line_and_what_was_overridden() {
    let site = load(&example(), "eqiad", &LoadOptions::default()).unwrap();
    let answer = explain(&site, "replicas", Some("mw-web"), Some(ReleaseName::Canary)).unwrap();
    assert_eq!(answer.value, "2");
    let eqiad = example().join("environments/production/eqiad.toml");
    assert_eq!(answer.set_by.layer, "datacenter eqiad");
    let canary_line = line_of(&eqiad, "replicas = 2");
    assert!(
        answer
            .set_by
            .location
            .ends_with(&format!("eqiad.toml:{canary_line}:1")),
        "{:?}",
        answer.set_by
    );
    let overridden: Vec<(&str, &str)> = answer
        .overridden
        .iter()
        .map(|p| (p.value.as_str(), p.layer.as_str()))
        .collect();
    assert_eq!(
        overridden,
        [
            ("1", "site"),
            ("12", "datacenter eqiad"),
            ("4", "site"),
            ("1", "built-in defaults")
        ]
    );

    let global = explain(&site, "php.workers", None, None).unwrap();
    assert_eq!(global.value, "8");
    assert_eq!(global.set_by.layer, "built-in defaults");
    assert!(global.overridden.is_empty());

    let secret = explain(&site, "secrets.secret_key", None, None).unwrap();
    assert_eq!(secret.value, "<redacted>");
    assert_eq!(secret.set_by.layer, "private values for eqiad");
    let whole = explain(&site, "secrets", None, None).unwrap();
    assert_eq!(whole.value, "<redacted>");

    let unknown = explain(&site, "php.worker", None, None).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "no value `php.worker` in this environment; did you mean `php.workers`?"
    );
}

#[test]
fn explain_says_a_pinned_image_came_from_the_push_record_over_the_tag() {
    let scratch = Scratch::new();
    let digest = format!("sha256:{}", "c".repeat(64));
    scratch.write(
        "pushed-images.toml",
        &format!(
            "# written by a push\n[\"registry.farm.test/wikikube/webserver\"]\ndigest = \"sha256:{}\"\ntag = \"build-0\"\n\n\
             [\"registry.farm.test/wikikube/app\"]\ndigest = \"{digest}\"\ntag = \"build-1\"\n",
            "d".repeat(64)
        ),
    );
    let site = load(scratch.path(), "eqiad", &LoadOptions::default()).unwrap();
    let answer = explain(&site, "images.app", Some("mw-web"), None).unwrap();
    assert_eq!(
        answer.value,
        format!("\"registry.farm.test/wikikube/app@{digest}\"")
    );
    assert_eq!(answer.set_by.location, "pushed-images.toml:6:1");
    assert_eq!(
        answer.overridden.len(),
        2,
        "the tag, then the default: {:?}",
        answer.overridden
    );
    assert_eq!(
        answer.overridden[0].value,
        "\"registry.farm.test/wikikube/app:2026-11-25\""
    );
    assert!(
        answer.overridden[0]
            .location
            .ends_with("production.toml:13:1"),
        "{:?}",
        answer.overridden[0]
    );
    // A repository the record does not name keeps what the environment wrote.
    let tls = explain(&site, "images.tls", Some("mw-web"), None).unwrap();
    assert!(
        tls.set_by.location.ends_with("production.toml:15:1"),
        "{tls:?}"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let site = load(&example(), "local", &LoadOptions::default()).unwrap();
    let debug = format!("{:?}", site.secrets);
    assert!(debug.contains("secret_key"));
    assert!(!debug.contains("example-local-secret-key"), "{debug}");
    assert!(
        !debug.contains(&site.secrets.expose()["database_password"]),
        "{debug}"
    );
    assert_eq!(site.secrets.names().count(), 4);
}

#[test]
fn a_misspelt_key_names_file_line_column_and_the_nearest_key() {
    let scratch = Scratch::new();
    scratch.replace("site.toml", "replicas = 4", "replcas = 4");
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::UnknownKey);
    assert_eq!(error.key, "deployments.mw-web.replcas");
    let line = line_of(&scratch.path().join("site.toml"), "replcas");
    assert_eq!((error.origin.line, error.origin.column), (line, 1));
    assert!(error.origin.file.ends_with("site.toml"));
    assert_eq!(error.help.as_deref(), Some("did you mean `replicas`?"));
    assert!(error.message.contains("`releases`"), "{}", error.message);
    let shown = error.to_string();
    assert!(
        shown.contains(&format!(
            "site.toml:{line}:1: `deployments.mw-web.replcas`: unknown key"
        )),
        "{shown}"
    );
}

#[test]
fn unknown_top_level_key_lists_every_allowed_key() {
    let scratch = Scratch::new();
    scratch.append("site.toml", "\n[wiki.frwiki]\nlanguage = \"fr\"\n");
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::UnknownKey);
    assert_eq!(error.key, "wiki");
    assert_eq!(error.help.as_deref(), Some("did you mean `wikis`?"));
    assert!(error.message.contains("`php`") && error.message.contains("`deployments`"));
}

#[test]
fn unknown_key_inside_a_release_is_named_in_its_scope() {
    let scratch = Scratch::new();
    scratch.append(
        "environments/production/eqiad.toml",
        "\n[deployments.mw-web.releases.canary.php]\nworkres = 2\n",
    );
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::UnknownKey);
    assert_eq!(error.key, "deployments.mw-web.releases.canary.php.workres");
    assert!(error.origin.file.ends_with("eqiad.toml"));
    assert_eq!(error.help.as_deref(), Some("did you mean `workers`?"));
}

#[test]
fn a_missing_site_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = load(dir.path(), "local", &LoadOptions::default()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::MissingFile);
    assert!(error.origin.file.ends_with("site.toml"));
    assert!(error.to_string().contains("this file is missing"));
}

#[test]
fn a_missing_private_file_says_who_writes_it() {
    let scratch = Scratch::new();
    fs::remove_file(scratch.path().join("private/eqiad.toml")).unwrap();
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::MissingFile);
    assert!(error.origin.file.ends_with("private/eqiad.toml"));
    assert!(error.help.unwrap().contains("config management"));
}

#[test]
fn an_empty_file_is_named() {
    let scratch = Scratch::new();
    scratch.write("environments/local.toml", "\n  \n");
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::EmptyFile);
    assert!(error.origin.file.ends_with("environments/local.toml"));
    assert!(error.message.contains("empty"));
}

#[test]
fn invalid_toml_has_a_position() {
    let scratch = Scratch::new();
    scratch.append("site.toml", "\n[php\nworkers = 3\n");
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::Syntax);
    let lines = fs::read_to_string(scratch.path().join("site.toml"))
        .unwrap()
        .lines()
        .count() as u32;
    assert_eq!(error.origin.line, lines - 1);
}

#[test]
fn a_stop_sequence_that_would_cut_requests_is_refused_where_it_is_set() {
    let scratch = Scratch::new();
    scratch.append(
        "environments/production.toml",
        "\n[lifecycle]\npre_stop_seconds = 8\n",
    );
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::InvalidValue);
    assert_eq!(error.key, "lifecycle.pre_stop_seconds");
    assert!(
        error.origin.file.ends_with("production.toml"),
        "{}",
        error.origin
    );
    let line = line_of(
        &scratch.path().join("environments/production.toml"),
        "pre_stop_seconds = 8",
    );
    assert_eq!(error.origin.line, line);
    assert!(
        error.message.contains("201") && error.message.contains("at least 210"),
        "{}",
        error.message
    );

    let scratch = Scratch::new();
    scratch.append(
        "environments/production.toml",
        "\n[lifecycle]\ntermination_grace_seconds = 30\n",
    );
    let error = scratch.error("eqiad");
    assert_eq!(error.key, "lifecycle.termination_grace_seconds");
    assert!(error.message.contains("at least 214"), "{}", error.message);

    // Long enough values are taken as they are.
    let scratch = Scratch::new();
    scratch.append(
        "environments/production.toml",
        "\n[lifecycle]\npre_stop_seconds = 300\ntermination_grace_seconds = 400\n",
    );
    let site = load(scratch.path(), "eqiad", &LoadOptions::default()).unwrap();
    let values = &site.deployments[0].releases[0].values;
    let sequence = values
        .lifecycle
        .shutdown(values.php.request_timeout_seconds);
    assert_eq!(
        (sequence.backend_pre_stop_seconds, sequence.grace_seconds),
        (300, 400)
    );
}

#[test]
fn an_undefined_version_is_named_with_the_versions_that_exist() {
    let scratch = Scratch::new();
    scratch.replace(
        "site.toml",
        "wikis = [\"dewiki\"]\nversion = \"1.39.17-wmf.2\"",
        "wikis = [\"dewiki\"]\nversion = \"1.39.17-wmf.22\"",
    );
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::UndefinedVersion);
    assert_eq!(error.key, "groups[0].version");
    assert!(
        error.message.contains("`1.39.17-wmf.1`"),
        "{}",
        error.message
    );
    assert_eq!(error.help.as_deref(), Some("did you mean `1.39.17-wmf.2`?"));
    let line = line_of(
        &scratch.path().join("site.toml"),
        "version = \"1.39.17-wmf.22\"",
    );
    assert_eq!(error.origin.line, line);
}

#[test]
fn every_wiki_runs_its_group_version() {
    let scratch = Scratch::new();
    let site = load(scratch.path(), "local", &LoadOptions::default()).unwrap();
    let versions: Vec<(&str, &str, Option<&str>)> = site
        .spec
        .wikis
        .iter()
        .map(|(name, wiki)| (name.as_str(), wiki.version.as_str(), wiki.group.as_deref()))
        .collect();
    assert_eq!(
        versions,
        [
            ("commonswiki", "1.39.17-wmf.1", Some("group1")),
            ("dewiki", "1.39.17-wmf.2", Some("group0")),
            ("enwiki", "1.39.17-wmf.1", Some("group1")),
        ]
    );
    // A wiki that a group lists by name goes there even when an earlier group's rule matches.
    scratch.replace(
        "site.toml",
        "wikis = [\"dewiki\"]",
        "match = [\"en*\"]\nwikis = [\"dewiki\"]",
    );
    scratch.replace(
        "site.toml",
        "match = [\"*\"]",
        "match = [\"*\"]\nwikis = [\"enwiki\"]",
    );
    let site = load(scratch.path(), "local", &LoadOptions::default()).unwrap();
    assert_eq!(site.spec.wikis["enwiki"].group.as_deref(), Some("group1"));
}

#[test]
fn a_domain_used_by_two_wikis_names_both() {
    let scratch = Scratch::new();
    scratch.replace(
        "site.toml",
        "domains = [\"de.farm.test\"]",
        "domains = [\"de.farm.test\", \"EN.farm.test\"]",
    );
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::DuplicateDomain);
    assert!(
        error.message.contains("`enwiki`") && error.message.contains("`dewiki`"),
        "{}",
        error.message
    );
}

#[test]
fn a_negative_replica_count_is_refused() {
    let scratch = Scratch::new();
    scratch.replace(
        "environments/production/codfw.toml",
        "replicas = 8",
        "replicas = -3",
    );
    let error = scratch.error("codfw");
    assert_eq!(error.kind, ErrorKind::InvalidValue);
    assert_eq!(error.key, "deployments.mw-web.replicas");
    assert_eq!(
        error.message,
        "expected a whole number from 0 to 4294967295, found -3"
    );
    assert!(error.origin.file.ends_with("codfw.toml"));
}

#[test]
fn an_unknown_environment_suggests_the_nearest() {
    let error = load(&example(), "eqaid", &LoadOptions::default()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::UnknownEnvironment);
    assert_eq!(error.help.as_deref(), Some("did you mean `eqiad`?"));
    let error = load(&example(), "production", &LoadOptions::default()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::UnknownEnvironment);
    assert!(
        error.message.contains("`codfw` or `eqiad`"),
        "{}",
        error.message
    );
}

#[test]
fn secrets_outside_the_private_file_are_refused() {
    let scratch = Scratch::new();
    scratch.append("site.toml", "\n[secrets]\nsecret_key = \"oops\"\n");
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::MisplacedKey);
    assert!(error.message.contains("private values file"));

    let scratch = Scratch::new();
    scratch.append("private/local.toml", "\n[php]\nworkers = 3\n");
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::MisplacedKey);
    assert_eq!(error.key, "php");
}

#[test]
fn an_unknown_release_suggests_the_nearest() {
    let scratch = Scratch::new();
    scratch.append("site.toml", "\n[deployments.mw-web.releases.canery]\n");
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::InvalidValue);
    assert_eq!(error.key, "deployments.mw-web.releases.canery");
    assert_eq!(error.help.as_deref(), Some("did you mean `canary`?"));
}

#[test]
fn a_bad_certificate_source_says_what_is_allowed() {
    let scratch = Scratch::new();
    scratch.replace(
        "environments/production.toml",
        "\"secret:mediawiki-tls\"",
        "\"file:/etc/x\"",
    );
    let error = scratch.error("eqiad");
    assert_eq!(error.key, "tls.certificate");
    assert!(
        error.message.contains("\"self-signed\" or \"secret:NAME\""),
        "{}",
        error.message
    );
}

#[test]
fn the_private_directory_can_live_elsewhere() {
    let scratch = Scratch::new();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(
        elsewhere.path().join("local.toml"),
        "[secrets]\nsecret_key = \"from-config-management\"\ndatabase_password = \"x\"\n",
    )
    .unwrap();
    let options = LoadOptions {
        private_dir: Some(elsewhere.path().to_path_buf()),
    };
    let site = load(scratch.path(), "local", &options).unwrap();
    assert_eq!(
        site.secrets.expose()["secret_key"],
        "from-config-management"
    );
}

#[test]
fn traffic_names_only_deployments_that_exist() {
    let scratch = Scratch::new();
    scratch.replace(
        "site.toml",
        "debug = [\"mw-debug\"]",
        "debug = [\"mw-debgu\"]",
    );
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::Inconsistent);
    assert_eq!(error.key, "traffic.debug");
    assert_eq!(error.help.as_deref(), Some("did you mean `mw-debug`?"));

    let scratch = Scratch::new();
    scratch.replace("site.toml", "next_percent = 0.0", "next_percent = 150.0");
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::InvalidValue);
    assert_eq!(error.key, "traffic.next_percent");
}

#[test]
fn trusted_proxies_are_addresses_or_ranges() {
    let scratch = Scratch::new();
    scratch.replace(
        "environments/production.toml",
        "trusted_proxies = [\"10.64.0.0/12\"]",
        "trusted_proxies = [\"10.64.0.0/12\", \"10.64.0.0/33\"]",
    );
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::InvalidValue);
    assert_eq!(error.key, "tls.trusted_proxies");
    assert!(error.to_string().contains("production.toml"), "{error}");
    assert!(error.to_string().contains("`10.64.0.0/33`"), "{error}");
}

/// One way a new user breaks a site, and where the refusal must point.
struct Broken {
    what: &'static str,
    /// (file, text appended to it) or, with `from`, a replacement in it.
    file: &'static str,
    from: Option<&'static str>,
    text: &'static str,
    environment: &'static str,
    kind: ErrorKind,
    /// The file the error must name (a suffix of its path).
    at_file: &'static str,
    /// A line of that file the error must point at (a needle in it), when it has one.
    at_line: Option<&'static str>,
    /// Words the message must contain.
    says: &'static [&'static str],
}

/// A corpus of broken sites, by class: each is refused, by kind, at the file (and line) where
/// the mistake is, with a message that says what was expected.
/// The example with Redis pools in production, lock servers in eqiad only.
fn with_redis(scratch: &Scratch) {
    scratch.append(
        "environments/production.toml",
        "\n[redis.pools]\n\
         eqiad = { servers = [\"rdb1001.eqiad.farm.test:6379\", \"rdb1002.eqiad.farm.test:6379\"], \
         lock_servers = [\"rdb1003.eqiad.farm.test:6379\"] }\n\
         codfw = { servers = [\"rdb2001.codfw.farm.test:6379\"] }\n",
    );
}

#[test]
fn redis_pools_load_per_datacenter_with_the_password_private() {
    let scratch = Scratch::new();
    with_redis(&scratch);
    scratch.replace(
        "private/eqiad.toml",
        "[secrets]\n",
        "[secrets]\nredis_password = \"example-redis-password\"\n",
    );
    for (environment, servers, locks) in [("eqiad", 2, 1), ("codfw", 1, 0)] {
        let site = load(scratch.path(), environment, &LoadOptions::default()).unwrap();
        let values = &site.deployments[0].releases[0].values;
        let pool = values.redis.pool(&site.environment.datacenter).unwrap();
        assert_eq!(pool.servers.len(), servers, "{environment}");
        assert_eq!(pool.lock_servers.len(), locks, "{environment}");
        assert_eq!(values.redis_proxy.port, 6379);
        assert_eq!(values.redis.timeout_ms, 500);
    }
    // The example's local environment has no pool: no proxy, sessions in memcached.
    let local = load(scratch.path(), "local", &LoadOptions::default()).unwrap();
    assert!(local.deployments[0].releases[0]
        .values
        .redis
        .pools
        .is_empty());
    let site = load(scratch.path(), "eqiad", &LoadOptions::default()).unwrap();
    let answer = explain(&site, "redis.pools.eqiad.servers", None, None).unwrap();
    assert!(
        answer.set_by.location.contains("production.toml"),
        "{:?}",
        answer.set_by
    );
}

#[test]
fn a_redis_password_that_auth_cannot_carry_is_refused_without_being_shown() {
    let scratch = Scratch::new();
    with_redis(&scratch);
    scratch.replace(
        "private/eqiad.toml",
        "[secrets]\n",
        "[secrets]\nredis_password = \"two words\"\n",
    );
    let error = scratch.error("eqiad");
    assert_eq!(error.kind, ErrorKind::InvalidValue, "{error}");
    let text = error.to_string();
    for word in ["redis_password", "private/eqiad.toml", "white space"] {
        assert!(text.contains(word), "{text:?} lacks {word:?}");
    }
    assert!(!text.contains("two words"), "{text}");
    assert!(!format!("{error:?}").contains("two words"), "{error:?}");
}

#[test]
fn every_broken_site_is_refused_where_it_is_wrong() {
    let corpus = [
        Broken {
            what: "a wrong type in a layer that a later layer overrides",
            file: "site.toml",
            from: None,
            text: "\n[php]\nworkers = \"eight\"\n",
            environment: "local",
            kind: ErrorKind::WrongType,
            at_file: "site.toml",
            at_line: Some("workers = \"eight\""),
            says: &["php.workers", "an integer", "a string"],
        },
        Broken {
            what: "an SMTP user without a password among the private values",
            file: "environments/production.toml",
            from: None,
            text: "\n[email]\nsmtp_host = \"smtp.farm.test\"\nsmtp_user = \"wiki\"\n",
            environment: "eqiad",
            kind: ErrorKind::MissingKey,
            at_file: "production.toml",
            at_line: Some("smtp_user = \"wiki\""),
            says: &["smtp_password", "private/eqiad.toml"],
        },
        Broken {
            what: "an SMTP host written as a URL",
            file: "environments/production.toml",
            from: None,
            text: "\n[email]\nsmtp_host = \"ssl://smtp.farm.test\"\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("smtp_host = \"ssl://smtp.farm.test\""),
            says: &["email.smtp_host", "implicit_tls"],
        },
        Broken {
            what: "a media store other than a volume",
            file: "site.toml",
            from: None,
            text: "\n[media]\nstorage = \"floppy\"\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("storage = \"floppy\""),
            says: &["media.storage", "volume"],
        },
        Broken {
            what: "one release with a media store of its own",
            file: "environments/production/eqiad.toml",
            from: None,
            text: "\n[deployments.mw-web.releases.canary.media]\nsize_gib = 5\n",
            environment: "eqiad",
            kind: ErrorKind::Inconsistent,
            at_file: "",
            at_line: None,
            says: &["mw-web", "canary", "one media store"],
        },
        Broken {
            what: "Swift media without the user's key among the private values",
            file: "environments/production.toml",
            from: None,
            text: "\n[media]\nstorage = \"swift\"\n[media.swift]\n\
                   auth_url = \"https://swift.farm.test/auth\"\naccount = \"wikis\"\n\
                   user = \"mediawiki\"\n",
            environment: "eqiad",
            kind: ErrorKind::MissingKey,
            at_file: "production.toml",
            at_line: Some("user = \"mediawiki\""),
            says: &["swift_key", "private/eqiad.toml", "wikis:mediawiki"],
        },
        Broken {
            what: "Swift media without an auth URL",
            file: "site.toml",
            from: None,
            text: "\n[media]\nstorage = \"swift\"\n",
            environment: "eqiad",
            kind: ErrorKind::MissingKey,
            at_file: "site.toml",
            at_line: None,
            says: &["media.swift.auth_url", "eqiad"],
        },
        Broken {
            what: "a Swift auth URL without a scheme",
            file: "environments/production.toml",
            from: None,
            text: "\n[media]\nstorage = \"swift\"\n[media.swift]\n\
                   auth_url = \"swift.farm.test/auth\"\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("auth_url = \"swift.farm.test/auth\""),
            says: &["media.swift.auth_url", "https://"],
        },
        Broken {
            what: "a Swift user written as account:user",
            file: "environments/production.toml",
            from: None,
            text: "\n[media]\nstorage = \"swift\"\n[media.swift]\n\
                   auth_url = \"https://swift.farm.test/auth\"\naccount = \"wikis\"\n\
                   user = \"wikis:mediawiki\"\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("user = \"wikis:mediawiki\""),
            says: &["media.swift.user", "account:user"],
        },
        Broken {
            what: "a backup schedule with six fields (seconds), which the CronJob refuses",
            file: "environments/production.toml",
            // production.toml schedules backups already: its schedule is replaced.
            from: Some("schedule = \"17 3 * * *\""),
            text: "schedule = \"0 17 3 * * *\"",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("schedule = \"0 17 3 * * *\""),
            says: &["backup.schedule", "6 fields, not 5", "@daily"],
        },
        Broken {
            what: "a backup schedule at hour 24",
            file: "environments/production.toml",
            // production.toml schedules backups already: its schedule is replaced.
            from: Some("schedule = \"17 3 * * *\""),
            text: "schedule = \"30 24 * * mon-fri\"",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("schedule = \"30 24 * * mon-fri\""),
            says: &["backup.schedule", "hour must be 0 to 23, not 24"],
        },
        Broken {
            what: "no backup kept",
            file: "site.toml",
            from: None,
            text: "\n[backup]\nkeep = 0\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("keep = 0"),
            says: &["backup.keep", "at least 1"],
        },
        Broken {
            what: "one release with backups of its own",
            file: "environments/production/eqiad.toml",
            from: None,
            text: "\n[deployments.mw-api-ext.releases.main.backup]\nkeep = 3\n",
            environment: "eqiad",
            kind: ErrorKind::Inconsistent,
            at_file: "",
            at_line: None,
            says: &["mw-api-ext", "one set of backups"],
        },
        Broken {
            what: "a misspelt deployment in an environment file",
            file: "environments/production/eqiad.toml",
            from: None,
            text: "\n[deployments.mw-wbe]\nreplicas = 3\n",
            environment: "eqiad",
            kind: ErrorKind::Inconsistent,
            at_file: "eqiad.toml",
            at_line: Some("[deployments.mw-wbe]"),
            says: &["mw-wbe", "mw-web"],
        },
        Broken {
            what: "zero php-fpm workers",
            file: "environments/local.toml",
            from: Some("workers = 2"),
            text: "workers = 0",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "local.toml",
            at_line: Some("workers = 0"),
            says: &["php.workers", "1 to 1024"],
        },
        Broken {
            what: "a billion workers",
            file: "environments/local.toml",
            from: Some("workers = 2"),
            text: "workers = 1000000000",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "local.toml",
            at_line: Some("workers = 1000000000"),
            says: &["out of range"],
        },
        Broken {
            what: "memory in exabytes",
            file: "site.toml",
            from: None,
            text: "\n[httpd]\nmemory_mb = 4000000000\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("memory_mb = 4000000000"),
            says: &["httpd.memory_mb", "MiB"],
        },
        Broken {
            what: "two containers on one port",
            file: "site.toml",
            from: None,
            text: "\n[mcrouter]\nport = 8080\n",
            environment: "eqiad",
            kind: ErrorKind::Inconsistent,
            at_file: "site.toml",
            at_line: Some("port = 8080"),
            says: &["8080", "httpd.port"],
        },
        Broken {
            what: "a privileged port in a non-root pod",
            file: "site.toml",
            from: None,
            text: "\n[tls]\nport = 443\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("port = 443"),
            says: &["1024"],
        },
        Broken {
            what: "a Secret key Kubernetes refuses",
            file: "private/eqiad.toml",
            from: None,
            text: "\"smtp password\" = \"x\"\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "private/eqiad.toml",
            at_line: Some("\"smtp password\""),
            says: &["Secret"],
        },
        Broken {
            what: "a language MediaWiki does not know",
            file: "site.toml",
            from: Some("language = \"de\""),
            text: "language = \"deu\"",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("language = \"deu\""),
            says: &["wikis.dewiki.language", "not a language MediaWiki knows"],
        },
        Broken {
            what: "a wiki name that is no database name",
            file: "site.toml",
            from: None,
            text: "\n[wikis.\"en.wiki\"]\ndomains = [\"x.farm.test\"]\nlanguage = \"en\"\n",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("[wikis.\"en.wiki\"]"),
            says: &["not a valid database name"],
        },
        Broken {
            what: "a wiki without its required language",
            file: "site.toml",
            from: None,
            text: "\n[wikis.frwiki]\ndomains = [\"fr.farm.test\"]\n",
            environment: "local",
            kind: ErrorKind::MissingKey,
            at_file: "site.toml",
            at_line: Some("[wikis.frwiki]"),
            says: &["language"],
        },
        Broken {
            what: "a patch directory outside the site",
            file: "site.toml",
            from: Some("patches = \"patches/1.39.17-wmf.1\""),
            text: "patches = \"../../elsewhere\"",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("../../elsewhere"),
            says: &["outside the site directory"],
        },
        Broken {
            what: "a wiki in two groups",
            file: "site.toml",
            from: Some("match = [\"*\"]"),
            text: "match = [\"*\"]\nwikis = [\"enwiki\", \"dewiki\"]",
            environment: "local",
            kind: ErrorKind::Inconsistent,
            at_file: "site.toml",
            at_line: Some("wikis = [\"enwiki\", \"dewiki\"]"),
            says: &["groups[1].wikis", "`dewiki` is listed by two groups"],
        },
        Broken {
            what: "a group listing a wiki that does not exist",
            file: "site.toml",
            from: Some("wikis = [\"dewiki\"]"),
            text: "wikis = [\"dewik\"]",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("wikis = [\"dewik\"]"),
            says: &["groups[0].wikis", "[wikis] does not define"],
        },
        Broken {
            what: "a grouped wiki that states its own version",
            file: "site.toml",
            from: Some("language = \"de\""),
            text: "language = \"de\"\nversion = \"1.39.17-wmf.1\"",
            environment: "local",
            kind: ErrorKind::Inconsistent,
            at_file: "site.toml",
            at_line: Some("version = \"1.39.17-wmf.1\"\n"),
            says: &["wikis.dewiki.version", "group `group0`"],
        },
        Broken {
            what: "a wiki in no group without a version",
            file: "site.toml",
            from: Some("match = [\"*\"]"),
            text: "match = [\"en*\"]",
            environment: "local",
            kind: ErrorKind::MissingKey,
            at_file: "site.toml",
            at_line: Some("[wikis.commonswiki]"),
            says: &["wikis.commonswiki.version", "in no group"],
        },
        Broken {
            what: "a tls preStop sleep of 0 s, which needs Kubernetes 1.33",
            file: "environments/production.toml",
            from: None,
            text: "\n[lifecycle]\ntls_pre_stop_seconds = 0\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("tls_pre_stop_seconds = 0"),
            says: &[
                "lifecycle.tls_pre_stop_seconds",
                "Kubernetes 1.33",
                "from 1.30",
            ],
        },
        Broken {
            what: "a backend preStop sleep of 0 s",
            file: "environments/production.toml",
            from: None,
            text: "\n[lifecycle]\npre_stop_seconds = 0\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("pre_stop_seconds = 0"),
            says: &["lifecycle.pre_stop_seconds", "at least 210"],
        },
        Broken {
            what: "memcached pools without one for the environment's datacenter",
            file: "environments/production.toml",
            from: Some(
                "eqiad = { servers = [\"mc1001.eqiad.farm.test:11211\", \
                 \"mc1002.eqiad.farm.test:11211\", \"mc1003.eqiad.farm.test:11211\"] }",
            ),
            text: "# no pool in eqiad yet",
            environment: "eqiad",
            kind: ErrorKind::Inconsistent,
            at_file: "production.toml",
            at_line: Some("codfw = { servers"),
            says: &["memcached.pools", "`eqiad`", "[memcached.pools.eqiad]"],
        },
        Broken {
            what: "Redis pools without one for the environment's datacenter",
            file: "environments/production.toml",
            from: None,
            text: "\n[redis.pools.codfw]\nservers = [\"rdb2001.codfw.farm.test:6379\"]\n",
            environment: "eqiad",
            kind: ErrorKind::Inconsistent,
            at_file: "production.toml",
            at_line: Some("[redis.pools.codfw]"),
            says: &["redis.pools", "`eqiad`", "codfw"],
        },
        Broken {
            what: "a Redis server without its port",
            file: "environments/production.toml",
            from: None,
            text: "\n[redis.pools.eqiad]\nservers = [\"rdb1001.eqiad.farm.test\"]\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("servers = [\"rdb1001.eqiad.farm.test\"]"),
            says: &[
                "redis.pools.eqiad.servers",
                "HOST:PORT",
                "rdb1001.eqiad.farm.test",
            ],
        },
        Broken {
            what: "a Redis lock server listed twice",
            file: "environments/production.toml",
            from: None,
            text: "\n[redis.pools.eqiad]\nservers = [\"rdb1001.eqiad.farm.test:6379\"]\n\
                   lock_servers = [\"10.64.0.9:6379\", \"10.64.0.9:6379\"]\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("lock_servers = "),
            says: &["redis.pools.eqiad.lock_servers", "twice"],
        },
        Broken {
            what: "a Redis pool with no servers",
            file: "environments/production.toml",
            from: None,
            text: "\n[redis.pools.eqiad]\nservers = []\n",
            environment: "eqiad",
            kind: ErrorKind::MissingKey,
            at_file: "production.toml",
            at_line: Some("[redis.pools.eqiad]"),
            says: &["redis.pools.eqiad", "no servers"],
        },
        Broken {
            what: "Redis proxy ports that run into mcrouter's",
            file: "environments/production.toml",
            from: None,
            text: "\n[redis.pools.eqiad]\nservers = [\"rdb1001.eqiad.farm.test:6379\"]\n\
                   lock_servers = [\"rdb1002.eqiad.farm.test:6379\"]\n\
                   [redis_proxy]\nport = 11212\n",
            environment: "eqiad",
            kind: ErrorKind::Inconsistent,
            at_file: "production.toml",
            at_line: Some("port = 11212"),
            says: &["redis_proxy.port", "11213", "mcrouter.port"],
        },
        Broken {
            what: "a Redis timeout beyond phpredis's own",
            file: "environments/production.toml",
            from: None,
            text: "\n[redis]\ntimeout_ms = 1000\n\
                   [redis.pools.eqiad]\nservers = [\"rdb1001.eqiad.farm.test:6379\"]\n",
            environment: "eqiad",
            kind: ErrorKind::InvalidValue,
            at_file: "production.toml",
            at_line: Some("timeout_ms = 1000"),
            says: &["redis.timeout_ms", "1 to 999"],
        },
        Broken {
            what: "a tarball without its digest",
            file: "site.toml",
            from: Some("code = \"/usr/share/mediawiki\"\npatches = \"patches/1.39.17-wmf.2\""),
            text: "tarball = \"mediawiki-1.39.17.tar.gz\"\npatches = \"patches/1.39.17-wmf.2\"",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("tarball = "),
            says: &["versions.\"1.39.17-wmf.2\".tarball", "sha256"],
        },
        Broken {
            what: "a version with two sources",
            file: "site.toml",
            from: Some("code = \"/usr/share/mediawiki\"\npatches = \"patches/1.39.17-wmf.2\""),
            text: "code = \"/usr/share/mediawiki\"\ntarball = \"mw.tar.gz\"\nsha256 = \"00\"",
            environment: "local",
            kind: ErrorKind::InvalidValue,
            at_file: "site.toml",
            at_line: Some("tarball = "),
            says: &["not both"],
        },
    ];
    for case in &corpus {
        let scratch = Scratch::new();
        match case.from {
            Some(from) => scratch.replace(case.file, from, case.text),
            None => scratch.append(case.file, case.text),
        }
        let error = load(scratch.path(), case.environment, &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{}: accepted", case.what));
        assert_eq!(error.kind, case.kind, "{}: {error}", case.what);
        assert!(
            error.origin.file.ends_with(case.at_file),
            "{}: points at {} instead of {}",
            case.what,
            error.origin,
            case.at_file
        );
        if let Some(needle) = case.at_line {
            let line = line_of(&scratch.path().join(case.file), needle);
            assert_eq!(error.origin.line, line, "{}: {error}", case.what);
        }
        let text = error.to_string();
        for word in case.says {
            assert!(
                text.contains(word),
                "{}: {text:?} lacks {word:?}",
                case.what
            );
        }
    }
}

#[test]
fn a_farm_without_wikis_or_deployments_is_refused_at_site_toml() {
    let scratch = Scratch::new();
    scratch.write(
        "site.toml",
        "[site]\nname = \"farm\"\nnamespace = \"mediawiki\"\n[versions.\"1.39\"]\ncode = \"/usr/share/mediawiki\"\n\
         [deployments.mw-web]\n",
    );
    let local_without_deployments = fs::read_to_string(example().join("environments/local.toml"))
        .unwrap()
        .split("\n[deployments.")
        .next()
        .unwrap()
        .to_string();
    scratch.write("environments/local.toml", &local_without_deployments);
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::MissingKey);
    assert!(error.origin.file.ends_with("site.toml"), "{}", error.origin);
    assert!(error.message.contains("no wikis"), "{error}");

    let text = fs::read_to_string(example().join("site.toml")).unwrap();
    let without_deployments: String = text.split("\n[deployments.").next().unwrap().to_string();
    scratch.write("site.toml", &without_deployments);
    let text = scratch.error("local").to_string();
    assert!(text.contains("no deployments"), "{text}");
}

#[test]
fn file_system_mistakes_are_named_as_what_they_are() {
    // A file that is not UTF-8: its position, not "missing".
    let scratch = Scratch::new();
    let path = scratch.path().join("environments/local.toml");
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\n# caf\xe9\n");
    fs::write(&path, bytes).unwrap();
    let error = scratch.error("local");
    assert_eq!(error.kind, ErrorKind::Syntax);
    assert!(error.message.contains("UTF-8"), "{error}");
    let lines = fs::read_to_string(example().join("environments/local.toml"))
        .unwrap()
        .lines()
        .count() as u32;
    assert_eq!(error.origin.line, lines + 2, "{}", error.origin);

    // A directory where the environment file should be.
    let scratch = Scratch::new();
    fs::remove_file(scratch.path().join("environments/local.toml")).unwrap();
    fs::create_dir(scratch.path().join("environments/local.toml")).unwrap();
    let error = scratch.error("local");
    assert!(error.message.contains("directory, not a file"), "{error}");

    // An environment name that reaches into other directories.
    let scratch = Scratch::new();
    let error = scratch.error("../private/local");
    assert_eq!(error.kind, ErrorKind::UnknownEnvironment);
    assert!(error.message.contains("not an environment name"), "{error}");

    // An environment that is also a datacenter of another.
    let scratch = Scratch::new();
    fs::copy(
        scratch.path().join("environments/production/eqiad.toml"),
        scratch.path().join("environments/eqiad.toml"),
    )
    .unwrap();
    let error = scratch.error("eqiad");
    assert!(error.message.contains("ambiguous"), "{error}");
}
