//! Rules between values that types alone cannot state: every wiki's version is defined, no domain
//! is claimed twice, names are usable as Kubernetes and DNS names.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{nearest, one_of, Error, ErrorKind};
use crate::origin::{Layer, Origin};
use crate::resolve::ResolvedSite;
use crate::schema::{EnvironmentKind, ReleaseName};
use crate::tree::Node;

/// Checks the rules; the first broken one is returned, pointing at the value that breaks it.
pub fn validate(site: &ResolvedSite) -> Result<(), Error> {
    let at = |path: &str| -> &Node { site.tree.get_path(path.split('.')).unwrap_or(&site.tree) };
    let fail = |kind, path: &str, message: String| {
        Error::new(kind, at(path).origin.clone(), path.to_string(), message)
    };

    if !is_dns_label(&site.spec.site.namespace) {
        return Err(fail(
            ErrorKind::InvalidValue,
            "site.namespace",
            format!(
                "`{}` is not a valid namespace: use at most 63 lowercase letters, digits and \
                 dashes, starting and ending with a letter or digit",
                site.spec.site.namespace
            ),
        ));
    }

    // A key that no file sets is reported at the top of site.toml, where it would be added,
    // rather than in the built-in defaults.
    let site_file = site
        .files
        .iter()
        .find(|file| file.layer == Layer::Site)
        .map(|file| Origin {
            layer: Arc::new(Layer::Site),
            file: Arc::from(file.path.display().to_string()),
            line: 1,
            column: 1,
        });
    let missing = |path: &str, message: String| {
        let node = at(path);
        let origin = match (&site_file, node.origin.layer.as_ref()) {
            (Some(site_file), Layer::Defaults) => site_file.clone(),
            _ => node.origin.clone(),
        };
        Error::new(ErrorKind::MissingKey, origin, path.to_string(), message)
    };
    if site.spec.wikis.is_empty() {
        return Err(missing(
            "wikis",
            "the farm has no wikis: add one, such as `[wikis.enwiki]` with `domains` and \
             `language`"
                .into(),
        ));
    }
    if site.deployments.is_empty() {
        return Err(missing(
            "deployments",
            "the farm has no deployments to serve its wikis: add one, such as \
             `[deployments.mw-web]`"
                .into(),
        ));
    }
    for name in site.secrets.names() {
        // Kubernetes' rule for Secret and ConfigMap keys: they become file names in the pod.
        let valid = !name.is_empty()
            && name.len() <= 253
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(fail(
                ErrorKind::InvalidValue,
                &format!("secrets.{name}"),
                format!(
                    "`{name}` cannot be a key of a Kubernetes Secret: use letters, digits, `-`, \
                     `_` and `.`"
                ),
            ));
        }
    }
    for (version, spec) in &site.spec.versions {
        check_version(site, version, spec)?;
        let Some(patches) = &spec.patches else {
            continue;
        };
        let path = std::path::Path::new(patches);
        let mut depth: i32 = 0;
        let mut escapes = path.is_absolute();
        for component in path.components() {
            match component {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            escapes |= depth < 0;
        }
        if escapes {
            // The version's name has dots (`1.39`): looked up by segments, not by a dotted path.
            let origin = site
                .tree
                .get_path(["versions", version.as_str(), "patches"])
                .map_or_else(|| at("versions").origin.clone(), |node| node.origin.clone());
            return Err(Error::new(
                ErrorKind::InvalidValue,
                origin,
                format!("versions.\"{version}\".patches"),
                format!(
                    "`{patches}` is outside the site directory: patches are part of the site, \
                     so the same site directory builds the same image anywhere; give a path \
                     inside it, such as `patches/{version}`"
                ),
            ));
        }
    }

    let mut domains: BTreeMap<String, &str> = BTreeMap::new();
    for (dbname, wiki) in &site.spec.wikis {
        let path = format!("wikis.{dbname}");
        // Looked up by segments: a wiki's name may itself hold a dot.
        let in_wiki = |rest: &[&str]| -> Origin {
            let mut segments = vec!["wikis", dbname.as_str()];
            segments.extend_from_slice(rest);
            (0..=segments.len())
                .rev()
                .find_map(|n| site.tree.get_path(segments[..n].iter().copied()))
                .map_or_else(|| site.tree.origin.clone(), |node| node.origin.clone())
        };
        let fail = |kind, key: &str, message: String| {
            let rest: Vec<&str> = key
                .strip_prefix(&path)
                .unwrap_or_default()
                .split('.')
                .filter(|part| !part.is_empty())
                .collect();
            Error::new(kind, in_wiki(&rest), key.to_string(), message)
        };
        if dbname.is_empty()
            || !dbname
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(fail(
                ErrorKind::InvalidValue,
                &path,
                format!(
                    "`{dbname}` is not a valid database name: use lowercase letters, digits \
                     and underscores"
                ),
            ));
        }
        if !site.spec.versions.contains_key(&wiki.version) {
            let defined: Vec<&str> = site.spec.versions.keys().map(String::as_str).collect();
            let mut error = fail(
                ErrorKind::UndefinedVersion,
                &format!("{path}.version"),
                format!(
                    "wiki `{dbname}` runs MediaWiki `{}`, which [versions] does not define; \
                     defined versions: {}",
                    wiki.version,
                    one_of(&defined)
                ),
            );
            error.help = Some(match nearest(&wiki.version, defined.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("add a [versions.\"{}\"] table", wiki.version),
            });
            return Err(error);
        }
        if let Some(name) = wiki.settings.keys().find(|name| !is_php_identifier(name)) {
            return Err(fail(
                ErrorKind::InvalidValue,
                &format!("{path}.settings.{name}"),
                format!(
                    "`{name}` is not a MediaWiki setting name: use letters, digits and \
                     underscores, such as `wgSitename`"
                ),
            ));
        }
        if !is_mediawiki_language(&wiki.language) {
            let mut error = fail(
                ErrorKind::InvalidValue,
                &format!("{path}.language"),
                format!(
                    "`{}` is not a language MediaWiki knows (its list: \
                     includes/languages/data/Names.php); use a code such as `en`, `de` or \
                     `zh-hans`",
                    wiki.language
                ),
            );
            if let Some(near) = nearest(&wiki.language, mediawiki_languages()) {
                error.help = Some(format!("did you mean `{near}`?"));
            }
            return Err(error);
        }
        if wiki.domains.is_empty() {
            return Err(fail(
                ErrorKind::InvalidValue,
                &format!("{path}.domains"),
                format!("wiki `{dbname}` needs at least one domain"),
            ));
        }
        for domain in &wiki.domains {
            let normal = domain.to_ascii_lowercase();
            if !is_dns_name(&normal) {
                return Err(fail(
                    ErrorKind::InvalidValue,
                    &format!("{path}.domains"),
                    format!("`{domain}` is not a valid domain name"),
                ));
            }
            if let Some(first) = domains.insert(normal, dbname) {
                let first_origin = site
                    .tree
                    .get_path(["wikis", first, "domains"])
                    .map_or_else(|| site.tree.origin.clone(), |node| node.origin.clone());
                return Err(fail(
                    ErrorKind::DuplicateDomain,
                    &format!("{path}.domains"),
                    format!(
                        "domain `{domain}` is used by two wikis: `{first}` ({first_origin}) and \
                         `{dbname}`; a domain must lead to one wiki"
                    ),
                ));
            }
        }
    }

    let datacenter = &site.environment.datacenter;
    for deployment in &site.deployments {
        let path = format!("deployments.{}", deployment.name);
        if !is_dns_label(&deployment.name) {
            return Err(fail(
                ErrorKind::InvalidValue,
                &path,
                format!(
                    "`{}` is not a valid deployment name: use lowercase letters, digits and \
                     dashes (it names Kubernetes objects)",
                    deployment.name
                ),
            ));
        }
        let has_main = deployment.release(ReleaseName::Main).is_some();
        if deployment.release(ReleaseName::Canary).is_some() && !has_main {
            return Err(fail(
                ErrorKind::Inconsistent,
                &format!("{path}.releases.canary"),
                "a canary is routed through its main release's Service, so the deployment \
                 needs a `main` release too"
                    .into(),
            ));
        }
        for release in &deployment.releases {
            if let Some(bad) = release
                .values
                .tls
                .trusted_proxies
                .iter()
                .find(|range| !is_ip_range(range))
            {
                return Err(fail(
                    ErrorKind::InvalidValue,
                    "tls.trusted_proxies",
                    format!("`{bad}` is not an IP address or CIDR range such as `10.64.0.0/12`"),
                ));
            }
            check_database(site, &release.values.database, &fail)?;
            check_email(site, &release.values.email, &fail)?;
            check_media(site, &release.values.media, &fail)?;
            check_redis(site, &release.values, &fail)?;
            check_backup(&release.values.backup, &fail)?;
            check_shutdown(&release.values, &fail)?;
            check_ranges(&release.values, &fail)?;
            let pools = &release.values.memcached.pools;
            if !pools.is_empty() && !pools.contains_key(datacenter) {
                // Reported at a pool the site wrote, as for Redis: `memcached.pools` itself
                // was made by the defaults.
                let written = pools.keys().next().map(String::as_str).unwrap_or("");
                return Err(fail(
                    ErrorKind::Inconsistent,
                    &format!("memcached.pools.{written}"),
                    format!(
                        "the environment runs in datacenter `{datacenter}`, but memcached.pools \
                         has no pool for it (pools: {}); add `[memcached.pools.{datacenter}]` \
                         with its servers",
                        one_of(&pools.keys().collect::<Vec<_>>())
                    ),
                ));
            }
        }
    }

    // Every pod of the site reads and writes the same uploads, so there is one media store;
    // and one set of backups for the site.
    let releases = || {
        site.deployments
            .iter()
            .flat_map(|deployment| deployment.releases.iter().map(move |r| (deployment, r)))
    };
    type Same = fn(&crate::schema::CakeValues, &crate::schema::CakeValues) -> bool;
    let site_wide: [(&str, &str, Same); 2] = [
        ("media", "one media store", |a, b| a.media == b.media),
        ("backup", "one set of backups", |a, b| a.backup == b.backup),
    ];
    for (key, what, same) in site_wide {
        if let Some((_, first)) = releases().next() {
            if let Some((deployment, release)) =
                releases().find(|(_, r)| !same(&r.values, &first.values))
            {
                return Err(fail(
                    ErrorKind::Inconsistent,
                    key,
                    format!(
                        "deployments.{}.releases.{} sets [{key}] differently from the other \
                         releases; the site has {what}, so set [{key}] for the whole site or \
                         environment",
                        deployment.name,
                        release.name.as_str()
                    ),
                ));
            }
        }
    }

    let deployments: Vec<&str> = site.deployments.iter().map(|d| d.name.as_str()).collect();
    let traffic = &site.spec.traffic;
    let named = traffic
        .main
        .iter()
        .map(|name| ("traffic.main".to_string(), name))
        .chain(
            traffic
                .routes
                .iter()
                .enumerate()
                .map(|(index, route)| (format!("traffic.routes[{index}]"), &route.deployment)),
        )
        .chain(
            traffic
                .debug
                .iter()
                .map(|name| ("traffic.debug".to_string(), name)),
        );
    for (path, name) in named {
        if !deployments.contains(&name.as_str()) {
            let mut error = fail(
                ErrorKind::Inconsistent,
                path.split('[').next().unwrap_or(&path),
                format!(
                    "`{name}` is not a deployment of this site; deployments: {}",
                    one_of(&deployments)
                ),
            );
            error.key = path;
            if let Some(near) = nearest(name, deployments.iter().copied()) {
                error.help = Some(format!("did you mean `{near}`?"));
            }
            return Err(error);
        }
    }
    let percents = std::iter::once(("traffic.next_percent", traffic.next_percent)).chain(
        traffic
            .next_host_percent
            .values()
            .map(|p| ("traffic.next_host_percent", *p)),
    );
    for (path, percent) in percents {
        if !(0.0..=100.0).contains(&percent) {
            return Err(fail(
                ErrorKind::InvalidValue,
                path,
                format!("a share is a percentage from 0 to 100, found {percent}"),
            ));
        }
    }

    if site.environment.kind == EnvironmentKind::Kubernetes && site.environment.clusters.is_empty()
    {
        return Err(fail(
            ErrorKind::MissingKey,
            "environment",
            "a kubernetes environment needs at least one entry in `clusters` \
             (name and kubeconfig context)"
                .into(),
        ));
    }
    Ok(())
}

/// Values the programs refuse or no cluster can schedule, and ports that clash in one pod.
fn check_ranges(
    values: &crate::CakeValues,
    fail: &impl Fn(ErrorKind, &str, String) -> Error,
) -> Result<(), Error> {
    // Bounds far beyond any real pod (Wikimedia's run 8 to 64 workers with a few GiB), low
    // enough that a stray digit is caught before it reaches a scheduler.
    const MEMORY: (u64, u64, &str) = (16, 65_536, " MiB");
    const CPU: (u64, u64, &str) = (1, 256_000, " millicores");
    let bounds: [(&str, u32, (u64, u64, &str)); 14] = [
        ("replicas", values.replicas, (0, 10_000, "")),
        (
            "php.workers",
            values.php.workers,
            (1, 1_024, " php-fpm workers"),
        ),
        (
            "php.request_timeout_seconds",
            values.php.request_timeout_seconds,
            (1, 86_400, " seconds"),
        ),
        ("php.opcache_mb", values.php.opcache_mb, (8, 65_536, " MiB")),
        ("php.apcu_mb", values.php.apcu_mb, (1, 65_536, " MiB")),
        ("php.memory_limit_mb", values.php.memory_limit_mb, MEMORY),
        // httpd's own limit on a request body is 1 GiB (Debian's apache2 default), above the
        // largest upload with its form.
        (
            "php.max_upload_mb",
            values.php.max_upload_mb,
            (1, 1_000, " MiB"),
        ),
        ("httpd.memory_mb", values.httpd.memory_mb, MEMORY),
        ("httpd.cpu_millicores", values.httpd.cpu_millicores, CPU),
        ("tls.memory_mb", values.tls.memory_mb, MEMORY),
        ("tls.cpu_millicores", values.tls.cpu_millicores, CPU),
        ("mcrouter.memory_mb", values.mcrouter.memory_mb, MEMORY),
        (
            "mcrouter.cpu_millicores",
            values.mcrouter.cpu_millicores,
            CPU,
        ),
        (
            "disruption.max_unavailable_percent",
            values.disruption.max_unavailable_percent,
            (0, 100, " %"),
        ),
    ];
    for (path, value, (low, high, unit)) in bounds {
        let value = u64::from(value);
        if !(low..=high).contains(&value) {
            return Err(fail(
                ErrorKind::InvalidValue,
                path,
                format!("{value}{unit} is out of range: {path} takes {low} to {high}{unit}"),
            ));
        }
    }
    if values
        .php
        .memory_limit_mb
        .saturating_mul(values.php.workers)
        > 1_048_576
    {
        return Err(fail(
            ErrorKind::InvalidValue,
            "php.workers",
            format!(
                "{} workers of php.memory_limit_mb = {} MiB ask for more than 1 TiB in one pod",
                values.php.workers, values.php.memory_limit_mb
            ),
        ));
    }
    // The pods run as a non-root user (the restricted Pod Security level), which cannot bind
    // ports below 1024; and the three listeners share the pod's network namespace.
    let ports = [
        ("tls.port", values.tls.port),
        ("httpd.port", values.httpd.port),
        ("mcrouter.port", values.mcrouter.port),
    ];
    for (index, (path, port)) in ports.iter().enumerate() {
        if *port < 1024 {
            return Err(fail(
                ErrorKind::InvalidValue,
                path,
                format!(
                    "port {port} is below 1024, which the pod's non-root containers cannot \
                     listen on; the Service maps its own port (service.port) to it"
                ),
            ));
        }
        if let Some((other, _)) = ports[..index].iter().find(|(_, used)| used == port) {
            return Err(fail(
                ErrorKind::Inconsistent,
                path,
                format!("port {port} is also {other}: the cake's containers share one network"),
            ));
        }
    }
    Ok(())
}

/// A stop sequence that would cut requests on every rollout is refused where it was set.
fn check_shutdown(
    values: &crate::CakeValues,
    fail: &impl Fn(ErrorKind, &str, String) -> Error,
) -> Result<(), Error> {
    let lifecycle = &values.lifecycle;
    // Every container's preStop is a `sleep` action, which Kubernetes accepts from 1.30 with
    // at least one second; a sleep of 0 only from 1.33 (PodLifecycleSleepActionAllowZero).
    // Refused rather than made to depend on a cluster version the site does not declare: one
    // second costs nothing, and 0 would stop tls from taking connections the moment the pod is
    // told to stop, while its removal from the endpoints is still spreading. The other sleeps
    // are never 0: they follow tls and the request timeout (below).
    if lifecycle.tls_pre_stop_seconds == 0 {
        return Err(fail(
            ErrorKind::InvalidValue,
            "lifecycle.tls_pre_stop_seconds",
            "a preStop sleep of 0 s needs Kubernetes 1.33 (PodLifecycleSleepActionAllowZero), \
             and wikikube supports clusters from 1.30; it would also refuse the requests that \
             still reach tls while the pod's removal from its Service spreads: at least 1 s \
             (7 by default)"
                .to_string(),
        ));
    }
    let timeout = values.php.request_timeout_seconds;
    let minimum = lifecycle.minimum_backend_pre_stop(timeout);
    if let Some(set) = lifecycle.pre_stop_seconds.filter(|set| *set < minimum) {
        return Err(fail(
            ErrorKind::InvalidValue,
            "lifecycle.pre_stop_seconds",
            format!(
                "httpd and php-fpm would stop {set} s after the pod is told to, but a request \
                 accepted up to lifecycle.tls_pre_stop_seconds = {} s may run for \
                 php.request_timeout_seconds = {timeout} s: at least {minimum} s, or leave it \
                 unset to derive it",
                lifecycle.tls_pre_stop_seconds
            ),
        ));
    }
    let sequence = lifecycle.shutdown(timeout);
    let needed = sequence.mcrouter_pre_stop_seconds + crate::LifecycleValues::STEP_SECONDS;
    if let Some(set) = lifecycle
        .termination_grace_seconds
        .filter(|set| *set < needed)
    {
        return Err(fail(
            ErrorKind::InvalidValue,
            "lifecycle.termination_grace_seconds",
            format!(
                "the pod would be killed {set} s after it is told to stop, before its \
                 containers' stop sequence ends ({needed} s with php.request_timeout_seconds = \
                 {timeout} s): requests in flight would be cut; at least {needed} s, or leave \
                 it unset to derive it"
            ),
        ));
    }
    Ok(())
}

/// MediaWiki's language codes (`languages.txt`, from the version Debian ships).
fn mediawiki_languages() -> impl Iterator<Item = &'static str> {
    include_str!("languages.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
}

/// Whether MediaWiki knows `code` as a language.
pub fn is_mediawiki_language(code: &str) -> bool {
    mediawiki_languages().any(|known| known == code)
}

/// The private value with the SMTP user's password.
pub const SMTP_PASSWORD: &str = "smtp_password";

/// A release's email settings: a port for a named server, the password of a named user among
/// the private values.
fn check_email(
    site: &ResolvedSite,
    email: &crate::schema::EmailValues,
    fail: &impl Fn(ErrorKind, &str, String) -> Error,
) -> Result<(), Error> {
    if email.smtp_host.trim().is_empty() {
        return Ok(());
    }
    if email.smtp_host.contains("://") || email.smtp_host.contains(char::is_whitespace) {
        return Err(fail(
            ErrorKind::InvalidValue,
            "email.smtp_host",
            format!(
                "`{}` is not a host name or address: write the name alone (`smtp.example.org`) \
                 and set implicit_tls = true for a server that speaks TLS from the start",
                email.smtp_host
            ),
        ));
    }
    if email.smtp_port == 0 {
        return Err(fail(
            ErrorKind::InvalidValue,
            "email.smtp_port",
            "the SMTP port must be 1 to 65535 (587 for submission, 465 with implicit_tls)".into(),
        ));
    }
    if !email.smtp_user.is_empty() && !site.secrets.expose().contains_key(SMTP_PASSWORD) {
        return Err(fail(
            ErrorKind::MissingKey,
            "email.smtp_user",
            format!(
                "the SMTP user `{}` needs a password: add `{SMTP_PASSWORD}` to the [secrets] of \
                 private/{}.toml (config management writes it in production)",
                email.smtp_user, site.environment_name
            ),
        ));
    }
    Ok(())
}

/// A release's backup settings: a schedule Kubernetes' CronJob controller accepts, at least one
/// backup kept, a volume of at least a GiB.
fn check_backup(
    backup: &crate::schema::BackupValues,
    fail: &impl Fn(ErrorKind, &str, String) -> Error,
) -> Result<(), Error> {
    if let Err(problem) = check_cron(&backup.schedule) {
        return Err(fail(
            ErrorKind::InvalidValue,
            "backup.schedule",
            format!(
                "`{}` is not a cron schedule: {problem}; write five fields, minute hour \
                 day-of-month month day-of-week (`\"17 3 * * *\"`, UTC), a macro such as \
                 `\"@daily\"`, or \"\" for no scheduled backups",
                backup.schedule
            ),
        ));
    }
    if backup.keep == 0 {
        return Err(fail(
            ErrorKind::InvalidValue,
            "backup.keep",
            "keep at least 1 backup: 0 would delete each backup as soon as it is taken".into(),
        ));
    }
    if backup.size_gib == 0 {
        return Err(fail(
            ErrorKind::InvalidValue,
            "backup.size_gib",
            "the backups' volume needs at least 1 GiB".into(),
        ));
    }
    Ok(())
}

/// Whether `schedule` is one the CronJob controller parses: empty (none), a macro, or five
/// fields of numbers in range, `*`, steps, ranges, lists, and month and weekday names.
/// Written here because no small, kept crate parses exactly Kubernetes' (robfig/cron's)
/// dialect: the `cron` crates take six or seven fields with seconds.
pub fn check_cron(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if schedule.is_empty() {
        return Ok(());
    }
    if let Some(macro_name) = schedule.strip_prefix('@') {
        const MACROS: &[&str] = &[
            "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
        ];
        return if MACROS.contains(&macro_name) {
            Ok(())
        } else {
            Err(format!(
                "`@{macro_name}` is not a macro (they are @{})",
                MACROS.join(", @")
            ))
        };
    }
    if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
        return Err("the time zone is not part of the schedule: backups run in UTC".into());
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("it has {} fields, not 5", fields.len()));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str]); 5] = [
        ("minute", 0, 59, &[]),
        ("hour", 0, 23, &[]),
        ("day of month", 1, 31, &[]),
        ("month", 1, 12, MONTHS),
        ("day of week", 0, 6, DAYS),
    ];
    for (field, (what, low, high, names)) in fields.iter().zip(specs) {
        let value = |text: &str| -> Result<u32, String> {
            let by_name = names
                .iter()
                .position(|name| name.eq_ignore_ascii_case(text))
                .map(|index| index as u32 + low);
            let number = by_name
                .or_else(|| text.parse().ok())
                .ok_or_else(|| format!("the {what} field has `{text}`, which is not a number"))?;
            // Sunday may also be written 7.
            let high = if what == "day of week" { 7 } else { high };
            if number < low || number > high {
                return Err(format!("the {what} must be {low} to {high}, not {number}"));
            }
            Ok(number)
        };
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            if let Some(step) = step {
                if step.parse::<u32>().map_or(true, |step| step == 0) {
                    return Err(format!(
                        "the {what} field's step `{step}` is not a number above 0"
                    ));
                }
            }
            if range == "*" || range == "?" {
                continue;
            }
            match range.split_once('-') {
                Some((from, to)) => {
                    if value(from)? > value(to)? {
                        return Err(format!("the {what} range `{range}` runs backwards"));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
}

/// The private value with the Swift user's key.
pub const SWIFT_KEY: &str = "swift_key";

/// A release's media settings: for Swift, an auth URL, an account and a user that Swift's
/// v1 auth (and tempauth's configuration, where a local farm runs Swift) can carry, and the
/// user's key among the private values.
fn check_media(
    site: &ResolvedSite,
    media: &crate::schema::MediaValues,
    fail: &impl Fn(ErrorKind, &str, String) -> Error,
) -> Result<(), Error> {
    if media.storage != crate::schema::MediaStorage::Swift {
        return Ok(());
    }
    let swift = &media.swift;
    if swift.auth_url.trim().is_empty() {
        // Reported where Swift was chosen: the auth URL belongs beside it.
        return Err(fail(
            ErrorKind::MissingKey,
            "media.storage",
            format!(
                "storage = \"swift\" needs the Swift cluster's auth URL for environment `{}`: \
                 set media.swift.auth_url (`https://swift.example.org/auth`; a local \
                 environment uses \"http://host.containers.internal:PORT/auth\", where \
                 `wikikube up` runs Swift)",
                site.environment_name
            ),
        ));
    }
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|scheme| swift.auth_url.starts_with(scheme));
    if !scheme_ok || swift.auth_url.contains(char::is_whitespace) {
        return Err(fail(
            ErrorKind::InvalidValue,
            "media.swift.auth_url",
            format!(
                "`{}` is not an http:// or https:// URL; write the auth URL without its \
                 version (MediaWiki adds /v1.0): `https://swift.example.org/auth`",
                swift.auth_url
            ),
        ));
    }
    // `account:user` is how Swift's v1 auth names a user, and tempauth reads both from the
    // name of a configuration key (`user_ACCOUNT_USER`): no colon, no underscore, no space.
    for (key, value) in [("account", &swift.account), ("user", &swift.user)] {
        let path = format!("media.swift.{key}");
        if value.is_empty() {
            return Err(fail(
                ErrorKind::MissingKey,
                "media.storage",
                format!("storage = \"swift\" needs the Swift {key}: set [media.swift] {key}"),
            ));
        }
        let plain = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !plain {
            return Err(fail(
                ErrorKind::InvalidValue,
                &path,
                format!(
                    "`{value}` is not a Swift {key} name wikikube can pass on: use letters, \
                     digits, `-` and `.` (Swift names the user `account:user`)"
                ),
            ));
        }
    }
    let Some(key) = site.secrets.expose().get(SWIFT_KEY) else {
        return Err(fail(
            ErrorKind::MissingKey,
            "media.swift.user",
            format!(
                "the Swift user `{}:{}` needs a key: add `{SWIFT_KEY}` to the [secrets] of \
                 private/{}.toml (config management writes it in production)",
                swift.account, swift.user, site.environment_name
            ),
        ));
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(fail(
            ErrorKind::InvalidValue,
            "media.swift.user",
            format!(
                "the private value `{SWIFT_KEY}` of private/{}.toml is empty or has white space, \
                 which Swift's v1 auth header and tempauth cannot carry",
                site.environment_name
            ),
        ));
    }
    Ok(())
}

/// The private value with the password of the Redis servers (`requirepass`), which only the
/// Redis proxy reads; none: the servers ask for none.
pub const REDIS_PASSWORD: &str = "redis_password";

/// Whether `text` is `host:port` with a DNS name or an IP address (IPv6 in brackets) and a
/// port from 1: what the Redis proxy connects to, and the string that places the server on
/// its ring.
pub fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host),
    };
    host_ok && port.parse::<u16>().is_ok_and(|port| port > 0)
}

/// A release's Redis settings: with any pool, one for the environment's datacenter, servers
/// written as `host:port` once each, loopback ports for the proxy's listeners that clash with no
/// other port of the pod, and a usable password when the private values have one.
fn check_redis(
    site: &ResolvedSite,
    values: &crate::CakeValues,
    fail: &impl Fn(ErrorKind, &str, String) -> Error,
) -> Result<(), Error> {
    let redis = &values.redis;
    if redis.pools.is_empty() {
        return Ok(());
    }
    // Every datacenter's pool is checked, not only this environment's: a typo in codfw's
    // servers is caught by the first render, whichever datacenter it is for.
    for (name, pool) in &redis.pools {
        let path = format!("redis.pools.{name}");
        if pool.servers.is_empty() {
            return Err(fail(
                ErrorKind::MissingKey,
                &path,
                format!(
                    "the Redis pool of datacenter `{name}` has no servers: give `servers = \
                     [\"HOST:PORT\", ...]`, the Redis servers that keep its sessions"
                ),
            ));
        }
        for (key, list) in [
            ("servers", &pool.servers),
            ("lock_servers", &pool.lock_servers),
        ] {
            let path = format!("{path}.{key}");
            for (index, server) in list.iter().enumerate() {
                if !is_host_port(server) {
                    return Err(fail(
                        ErrorKind::InvalidValue,
                        &path,
                        format!(
                            "`{server}` is not a Redis server address: expected `HOST:PORT`, \
                             such as `rdb1001.eqiad.example.org:6379` or `10.64.0.1:6379` \
                             (IPv6 in brackets)"
                        ),
                    ));
                }
                if list[..index].contains(server) {
                    return Err(fail(
                        ErrorKind::InvalidValue,
                        &path,
                        format!(
                            "`{server}` is listed twice: each server is one place on the \
                             proxy's ring (or one vote of the lock quorum)"
                        ),
                    ));
                }
            }
        }
    }
    let datacenter = &site.environment.datacenter;
    let Some(pool) = redis.pool(datacenter) else {
        // Reported at a pool the site wrote: `redis.pools` itself was made by the defaults.
        let written = redis.pools.keys().next().map(String::as_str).unwrap_or("");
        return Err(fail(
            ErrorKind::Inconsistent,
            &format!("redis.pools.{written}"),
            format!(
                "the environment runs in datacenter `{datacenter}`, but redis.pools has no pool \
                 for it (pools: {}); add `[redis.pools.{datacenter}]` with its servers",
                one_of(&redis.pools.keys().collect::<Vec<_>>())
            ),
        ));
    };
    let bounds = [
        (
            "redis.timeout_ms",
            u64::from(redis.timeout_ms),
            // Under phpredis's 1 s read timeout, or MediaWiki gives up before the proxy answers.
            (1, 999, " ms"),
        ),
        (
            "redis.failures_until_down",
            u64::from(redis.failures_until_down),
            (1, 1_000, ""),
        ),
        (
            "redis_proxy.memory_mb",
            u64::from(values.redis_proxy.memory_mb),
            (16, 65_536, " MiB"),
        ),
        (
            "redis_proxy.cpu_millicores",
            u64::from(values.redis_proxy.cpu_millicores),
            (1, 256_000, " millicores"),
        ),
    ];
    for (path, value, (low, high, unit)) in bounds {
        if !(low..=high).contains(&value) {
            return Err(fail(
                ErrorKind::InvalidValue,
                path,
                format!("{value}{unit} is out of range: {path} takes {low} to {high}{unit}"),
            ));
        }
    }
    // The proxy listens on `port` for sessions and on the next port for each lock server; all
    // of them share the pod's network with the other containers.
    let first = values.redis_proxy.port;
    let count = 1 + pool.lock_servers.len();
    if first < 1024 {
        return Err(fail(
            ErrorKind::InvalidValue,
            "redis_proxy.port",
            format!(
                "port {first} is below 1024, which the pod's non-root containers cannot listen on"
            ),
        ));
    }
    let Some(last) = u16::try_from(count - 1)
        .ok()
        .and_then(|extra| first.checked_add(extra))
    else {
        return Err(fail(
            ErrorKind::InvalidValue,
            "redis_proxy.port",
            format!("port {first} leaves no room for the {count} ports of the proxy's pools"),
        ));
    };
    let others = [
        ("tls.port", values.tls.port),
        ("httpd.port", values.httpd.port),
        ("mcrouter.port", values.mcrouter.port),
        // render's `tls::METRICS_PORT` and `cake::MCROUTER_METRICS_PORT`: fixed ports that
        // render cannot move, so a clash must be refused here, where the site can.
        ("the tls container's metrics", 9361),
        ("the mcrouter container's metrics", 9362),
        ("the Redis proxy's admin port", REDIS_PROXY_ADMIN_PORT),
    ];
    if let Some((other, port)) = others
        .iter()
        .find(|(_, port)| (first..=last).contains(port))
    {
        return Err(fail(
            ErrorKind::Inconsistent,
            "redis_proxy.port",
            format!(
                "the Redis proxy listens on ports {first} to {last} (sessions, then one per lock \
                 server), and port {port} is also {other}: the cake's containers share one \
                 network"
            ),
        ));
    }
    if let Some(password) = site.secrets.expose().get(REDIS_PASSWORD) {
        if password.is_empty() || password.contains(char::is_whitespace) {
            return Err(fail(
                ErrorKind::InvalidValue,
                &format!("redis.pools.{datacenter}"),
                format!(
                    "the private value `{REDIS_PASSWORD}` of private/{}.toml is empty or has \
                     white space; Redis's AUTH takes one word (leave it out if the servers ask \
                     for no password)",
                    site.environment_name
                ),
            ));
        }
    }
    Ok(())
}

/// The port of the Redis proxy's /healthz and /metrics in the pod.
pub const REDIS_PROXY_ADMIN_PORT: u16 = 9363;

/// The private value with the database user's password.
pub const DATABASE_PASSWORD: &str = "database_password";

/// A release's database settings: a server for MariaDB/MySQL, SQLite only on one machine, every
/// wiki's section defined, the password among the private values.
fn check_database(
    site: &ResolvedSite,
    database: &crate::schema::DatabaseValues,
    fail: &impl Fn(ErrorKind, &str, String) -> Error,
) -> Result<(), Error> {
    use crate::schema::DatabaseEngine;
    match database.engine {
        DatabaseEngine::Sqlite if site.environment.kind == EnvironmentKind::Kubernetes => {
            return Err(fail(
                ErrorKind::Inconsistent,
                "database.type",
                "SQLite keeps the wikis in files on one machine's volume; a Kubernetes                  environment needs a MariaDB/MySQL server: set type = \"mysql\" and `host`"
                    .into(),
            ));
        }
        DatabaseEngine::Sqlite => return Ok(()),
        DatabaseEngine::Mysql => {}
    }
    if database.host.trim().is_empty() {
        return Err(fail(
            ErrorKind::MissingKey,
            "database.host",
            format!(
                "the wikis' database server is not set for environment `{}`: set [database] \
                 host (a local environment uses \"host.containers.internal\", where `wikikube \
                 up` runs MariaDB), or type = \"sqlite\" for a tiny farm on one machine",
                site.environment_name
            ),
        ));
    }
    for (dbname, wiki) in &site.spec.wikis {
        let Some(section) = &wiki.section else {
            continue;
        };
        if !database.sections.contains_key(section) {
            let defined: Vec<&str> = database.sections.keys().map(String::as_str).collect();
            let mut error = fail(
                ErrorKind::Inconsistent,
                &format!("wikis.{dbname}.section"),
                format!(
                    "wiki `{dbname}` is in database section `{section}`, which \
                     [database.sections] does not define; sections: {}",
                    one_of(&defined)
                ),
            );
            if let Some(near) = nearest(section, defined.iter().copied()) {
                error.help = Some(format!("did you mean `{near}`?"));
            }
            return Err(error);
        }
    }
    if !site.secrets.expose().contains_key(DATABASE_PASSWORD) {
        return Err(fail(
            ErrorKind::MissingKey,
            "database.user",
            format!(
                "the database user `{}` needs a password: add `{DATABASE_PASSWORD}` to the \
                 [secrets] of private/{}.toml (config management writes it in production)",
                database.user, site.environment_name
            ),
        ));
    }
    Ok(())
}

/// An RFC 1123 label: what Kubernetes accepts as a namespace or Service name.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A DNS name made of RFC 1123 labels, at most 253 characters.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_php_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `ADDRESS` or `ADDRESS/PREFIX`, IPv4 or IPv6, as the `edge` program reads `trusted_proxies`.
fn is_ip_range(text: &str) -> bool {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let Ok(address) = address.parse::<std::net::IpAddr>() else {
        return false;
    };
    let longest = if address.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|prefix| prefix.parse::<u8>().is_ok_and(|prefix| prefix <= longest))
}

/// A version's name and source: the name becomes a directory (`/srv/mediawiki/php-NAME`) and
/// what MediaWiki reports; the source is a code directory or a tarball with its digest.
fn check_version(
    site: &ResolvedSite,
    version: &str,
    spec: &crate::schema::VersionSpec,
) -> Result<(), Error> {
    let origin = |key: Option<&str>| {
        let mut path = vec!["versions", version];
        path.extend(key);
        (0..=path.len())
            .rev()
            .find_map(|n| site.tree.get_path(path[..n].iter().copied()))
            .map_or_else(|| site.tree.origin.clone(), |node| node.origin.clone())
    };
    let fail = |key: Option<&str>, message: String| {
        let name = match key {
            Some(key) => format!("versions.\"{version}\".{key}"),
            None => format!("versions.\"{version}\""),
        };
        Err(Error::new(
            ErrorKind::InvalidValue,
            origin(key),
            name,
            message,
        ))
    };
    let valid_name = version.starts_with(|c: char| c.is_ascii_digit())
        && version.len() <= 64
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid_name {
        return fail(
            None,
            format!(
                "`{version}` cannot name a MediaWiki version: start with a digit and use \
                 letters, digits, `.`, `-` and `_`, like Wikimedia's branches (`1.39.17-wmf.1`)"
            ),
        );
    }
    match (&spec.tarball, spec.code.is_empty()) {
        (None, true) => fail(
            None,
            "a version needs its source: `code` (a directory, such as Debian's \
             `/usr/share/mediawiki`) or `tarball` with its `sha256`"
                .into(),
        ),
        (Some(_), false) => fail(
            Some("tarball"),
            "give `code` or `tarball`, not both: the version's source must be one thing".into(),
        ),
        (Some(tarball), true) => {
            if std::path::Path::new(tarball).is_absolute() || tarball.split('/').any(|p| p == "..")
            {
                return fail(
                    Some("tarball"),
                    format!(
                        "`{tarball}` is outside the site directory: the same site directory \
                         must build the same image anywhere; copy the tarball into it"
                    ),
                );
            }
            let valid = spec.sha256.as_deref().is_some_and(|digest| {
                let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
                digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit())
            });
            if !valid {
                return fail(
                    Some(if spec.sha256.is_some() {
                        "sha256"
                    } else {
                        "tarball"
                    }),
                    "a tarball needs `sha256 = \"<64 hex digits>\"` (`sha256sum FILE`), so \
                     the build reads exactly the file that was reviewed"
                        .into(),
                );
            }
            Ok(())
        }
        (None, false) => match &spec.sha256 {
            Some(_) => fail(
                Some("sha256"),
                "`sha256` checks a `tarball`; a `code` directory has no digest to check".into(),
            ),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::check_cron;

    #[test]
    fn cron_schedules_the_cronjob_controller_accepts_pass() {
        for schedule in [
            "",
            "17 3 * * *",
            "*/15 * * * *",
            "0 1-5/2 1,15 jan-jun mon-fri",
            "0 0 * * 7",
            "@daily",
            "@hourly",
        ] {
            assert_eq!(check_cron(schedule), Ok(()), "{schedule}");
        }
    }

    #[test]
    fn cron_schedules_it_refuses_say_why() {
        for (schedule, says) in [
            ("* * * *", "4 fields"),
            ("60 * * * *", "minute must be 0 to 59"),
            ("0 0 0 * *", "day of month must be 1 to 31"),
            ("0 0 * smarch *", "not a number"),
            ("*/0 * * * *", "step `0`"),
            ("0 5-1 * * *", "runs backwards"),
            ("@fortnightly", "not a macro"),
            ("CRON_TZ=Europe/Berlin 0 3 * * *", "UTC"),
        ] {
            let problem = check_cron(schedule).expect_err(schedule);
            assert!(problem.contains(says), "{schedule}: {problem}");
        }
    }
}
