//! MediaWiki's side of the farm: the files of the app image's site configuration layer.
//!
//! They hold no environment-specific or private value, so the same app image runs in every
//! environment: the datacenter, the memcached address, the data directory and the secrets
//! arrive at run time as environment variables and mounted files, which the Deployment sets.
//!
//! - `multiversion/entry.php`: picks the wiki from the request's Host (or `--wiki` for maintenance
//!   scripts) and returns the path of that wiki's MediaWiki version's entry point;
//! - `docroot/w/*.php`: stubs that httpd sends PHP requests to; each requires the right version's
//!   script at global scope, as MediaWiki expects;
//! - `multiversion/mwscript.php`: runs a maintenance script for one wiki;
//! - `config/wikis.json`: the wikis, their domains, versions and settings;
//! - `config/LocalSettings.php`: the farm's settings, shared by every wiki.

use std::collections::BTreeMap;

use serde::Serialize;

use wikikube_model::{ResolvedSite, SettingValue};

use super::paths::{code_dir, FARM_DIR, SECRETS_DIR};
use super::Files;

/// Where the entry point stubs live in the app image; httpd forwards `/w/*.php` there.
pub const ENTRY_DIR: &str = "/srv/mediawiki/docroot/w";

/// The entry points a request may name; others get a 404 from httpd's FastCGI proxy.
const ENTRY_POINTS: &[&str] = &["api.php", "index.php", "load.php", "rest.php"];

/// The environment variables the app container reads at run time.
pub mod variables {
    /// The environment's name.
    pub const ENVIRONMENT: &str = "WIKIKUBE_ENVIRONMENT";
    /// The datacenter the pod runs in.
    pub const DATACENTER: &str = "WIKIKUBE_DATACENTER";
    /// `host:port` of the memcached router in the pod.
    pub const MEMCACHED: &str = "WIKIKUBE_MEMCACHED";
    /// The directory holding one file per private value.
    pub const SECRETS_DIR: &str = "WIKIKUBE_SECRETS_DIR";
    /// Where the SQLite databases live (local environments).
    pub const DATA_DIR: &str = "WIKIKUBE_DATA_DIR";
    /// The database servers, as JSON: `{"type", "server", "sections", "user", "tls"}`.
    pub const DATABASE: &str = "WIKIKUBE_DATABASE";
}

/// The value of [`variables::DATABASE`]: where the release's wikis find their databases. It
/// travels as an environment variable rather than in the app image, so one image serves every
/// environment; the password is the private value `database_password`, a mounted file.
pub fn database_variable(database: &wikikube_model::DatabaseValues) -> String {
    let sections: BTreeMap<&str, String> = database
        .sections
        .iter()
        .map(|(name, server)| (name.as_str(), format!("{}:{}", server.host, server.port)))
        .collect();
    serde_json::json!({
        "type": database.engine,
        "server": database.server_of(None),
        "sections": sections,
        "user": database.user,
        "tls": database.tls,
    })
    .to_string()
}

#[derive(Serialize)]
struct Farm<'a> {
    /// Domain -> database name, lowercase.
    domains: BTreeMap<String, &'a str>,
    wikis: BTreeMap<&'a str, FarmWiki<'a>>,
    extensions: &'a [String],
    skins: &'a [String],
}

#[derive(Serialize)]
struct FarmWiki<'a> {
    version: &'a str,
    section: Option<&'a str>,
    code: String,
    language: &'a str,
    domains: &'a [String],
    settings: &'a BTreeMap<String, SettingValue>,
}

/// The site configuration layer as the image builder takes it: path inside the image (no
/// leading `/`) -> bytes.
pub fn image_layer(site: &ResolvedSite) -> BTreeMap<String, Vec<u8>> {
    config_files(site)
        .into_iter()
        .map(|(path, text)| (path.trim_start_matches('/').to_string(), text.into_bytes()))
        .collect()
}

/// Every file of the site configuration layer, by path inside the app image.
pub fn config_files(site: &ResolvedSite) -> Files {
    let spec = &site.spec;
    let farm = Farm {
        domains: spec
            .wikis
            .iter()
            .flat_map(|(dbname, wiki)| {
                wiki.domains
                    .iter()
                    .map(move |domain| (domain.to_ascii_lowercase(), dbname.as_str()))
            })
            .collect(),
        wikis: spec
            .wikis
            .iter()
            .map(|(dbname, wiki)| {
                let farm_wiki = FarmWiki {
                    version: &wiki.version,
                    section: wiki.section.as_deref(),
                    code: code_dir(&wiki.version),
                    language: &wiki.language,
                    domains: &wiki.domains,
                    settings: &wiki.settings,
                };
                (dbname.as_str(), farm_wiki)
            })
            .collect(),
        extensions: &spec.extensions,
        skins: &spec.skins,
    };
    let mut wikis_json = serde_json::to_string_pretty(&farm).expect("the farm serializes");
    wikis_json.push('\n');

    let mut files = Files::new();
    files.insert(format!("{FARM_DIR}/config/wikis.json"), wikis_json);
    files.insert(
        format!("{FARM_DIR}/config/LocalSettings.php"),
        local_settings(),
    );
    files.insert(format!("{FARM_DIR}/multiversion/entry.php"), entry_php());
    files.insert(
        format!("{FARM_DIR}/multiversion/mwscript.php"),
        mwscript_php(),
    );
    for script in ENTRY_POINTS {
        files.insert(
            format!("{ENTRY_DIR}/{script}"),
            format!(
                "<?php\n// Generated by wikikube: runs {script} of the requested wiki's version.\n\
                 require '{FARM_DIR}/multiversion/entry.php';\n\
                 require wikikubeEntryPoint('{script}');\n"
            ),
        );
    }
    files
}

fn entry_php() -> String {
    format!(
        r#"<?php
// The multiversion entry point: which wiki a request is for, and where its MediaWiki version's
// code is. Generated by wikikube from the site's [wikis]. Do not edit.

/** The requested wiki's entry from wikis.json, with its `dbname`. Ends the request with a 404
 *  when the Host names no wiki. */
function wikikubeWiki(): array {{
    static $wiki = null;
    if ($wiki !== null) {{
        return $wiki;
    }}
    $farm = json_decode(
        file_get_contents('{FARM_DIR}/config/wikis.json'), true, 512, JSON_THROW_ON_ERROR
    );
    if (PHP_SAPI === 'cli') {{
        $dbname = getenv('MW_WIKI') ?: '';
    }} else {{
        $host = strtolower(preg_replace('/:\d+$/', '', $_SERVER['HTTP_HOST'] ?? ''));
        $dbname = $farm['domains'][$host] ?? '';
    }}
    if (!isset($farm['wikis'][$dbname])) {{
        if (PHP_SAPI === 'cli') {{
            fwrite(STDERR, "No wiki `$dbname`; known wikis: " . implode(', ', array_keys($farm['wikis'])) . "\n");
            exit(1);
        }}
        http_response_code(404);
        header('Content-Type: text/plain; charset=utf-8');
        echo "No wiki is served at this domain.\n";
        exit;
    }}
    $wiki = $farm['wikis'][$dbname] + [
        'dbname' => $dbname,
        'extensions' => $farm['extensions'],
        'skins' => $farm['skins'],
    ];
    return $wiki;
}}

/** The file to require, at global scope, for one of MediaWiki's entry points. */
function wikikubeEntryPoint(string $script): string {{
    $wiki = wikikubeWiki();
    if (!defined('MW_CONFIG_FILE')) {{
        define('MW_CONFIG_FILE', '{FARM_DIR}/config/LocalSettings.php');
    }}
    putenv('MW_INSTALL_PATH=' . $wiki['code']);
    return $wiki['code'] . '/' . $script;
}}
"#
    )
}

fn mwscript_php() -> String {
    format!(
        r#"<?php
// Runs a maintenance script for one wiki of the farm:
//   php {FARM_DIR}/multiversion/mwscript.php WIKI maintenance/update.php [OPTIONS]
// Generated by wikikube. Do not edit.
if ($argc < 3) {{
    fwrite(STDERR, "usage: php mwscript.php WIKI SCRIPT [OPTIONS]\n");
    exit(2);
}}
putenv('MW_WIKI=' . $argv[1]);
$wikikubeScript = $argv[2];
array_splice($argv, 0, 2);
$_SERVER['argv'] = $argv;
$argc = count($argv);
$_SERVER['argc'] = $argc;
require '{FARM_DIR}/multiversion/entry.php';
require wikikubeEntryPoint($wikikubeScript);
"#
    )
}

fn local_settings() -> String {
    use variables::{DATABASE, DATA_DIR, MEMCACHED};
    let secrets_variable = variables::SECRETS_DIR;
    let broadcast = super::mcrouter::broadcast_prefix();
    format!(
        r#"<?php
// The farm's settings, shared by every wiki; per-wiki values come from wikis.json.
// Environment-specific and private values are read at run time. Generated by wikikube.
if (!defined('MEDIAWIKI')) {{
    exit;
}}
$wikikubeWiki = wikikubeWiki();

$wgDBname = $wikikubeWiki['dbname'];
$wgLanguageCode = $wikikubeWiki['language'];
$wgSitename = $wgDBname;
// $wgServer comes from the request (host, port and, behind the tls container,
// X-Forwarded-Proto), so links and redirects keep the address the reader used, such as a local
// farm's port. Canonical links name the wiki's first domain.
// The tls container forwards the Host header as the client sent it, port included.
$wgAssumeProxiesUseDefaultProtocolPorts = false;
$wgCanonicalServer = 'https://' . $wikikubeWiki['domains'][0];
$wgServer = PHP_SAPI === 'cli' ? $wgCanonicalServer : WebRequest::detectServer();
$wgScriptPath = '/w';
$wgArticlePath = '/wiki/$1';
$wgResourceBasePath = '/w';
$wgUsePathInfo = true;

// Private values: one file per key, mounted from the Secret; never in the image.
$wikikubeSecrets = getenv('{secrets_variable}') ?: '{SECRETS_DIR}';
$wikikubeSecret = static function (string $name) use ($wikikubeSecrets): ?string {{
    $value = @file_get_contents("$wikikubeSecrets/$name");
    return $value === false ? null : trim($value);
}};

// The database: the environment's servers arrive in {DATABASE} (JSON), the password as a
// private value. A wiki's section picks its server, as Wikimedia splits wikis over sections.
$wikikubeDatabase = json_decode(getenv('{DATABASE}') ?: '{{"type":"sqlite"}}', true);
if ($wikikubeDatabase['type'] === 'mysql') {{
    $wgDBtype = 'mysql';
    $wgDBserver = $wikikubeDatabase['sections'][$wikikubeWiki['section'] ?? ''] ?? $wikikubeDatabase['server'];
    $wgDBuser = $wikikubeDatabase['user'];
    $wgDBpassword = $wikikubeSecret('database_password') ?? '';
    $wgDBssl = (bool)$wikikubeDatabase['tls'];
    $wgDBTableOptions = 'ENGINE=InnoDB, DEFAULT CHARSET=binary';
}} else {{
    $wgDBtype = 'sqlite';
    $wgDBserver = '';
    $wgDBuser = '';
    $wgDBpassword = '';
    $wgSQLiteDataDir = getenv('{DATA_DIR}') ?: '/var/lib/mediawiki-data';
}}

// Memcached through the router in the pod, set up as Wikimedia's wmf-config does with
// mcrouter: one object cache pointed at the router is the main cache, the session cache and the
// store of the WAN cache. The router sends keys without a routing prefix to this datacenter's
// pool (failing over to the gutter), so reads stay local; the WAN cache writes its purges
// (tombstones and check keys) with the broadcast prefix, which the router delivers to this
// datacenter's pool before it answers and to every other datacenter's pool in the background.
$wgMemCachedServers = [getenv('{MEMCACHED}') ?: '127.0.0.1:11213'];
if (extension_loaded('memcached')) {{
    // php-memcached, Wikimedia's client. Its only server is the router in the pod, which is
    // never gone for good: never drop it from the list, and retry it at once. The read timeout
    // stays MediaWiki's 0.5 s, above the router's own to a memcached server, so the router,
    // which fails over to the gutter, answers first.
    $wgObjectCaches['mcrouter'] = [
        'class' => MemcachedPeclBagOStuff::class,
        'serializer' => 'php',
        'persistent' => false,
        'servers' => $wgMemCachedServers,
        'server_failure_limit' => 1000000000,
        'retry_timeout' => -1,
        'allow_tcp_nagle_delay' => false,
        'loggroup' => 'memcached',
    ];
}} else {{
    // The pure-PHP client, where an image has no php-memcached.
    $wgObjectCaches['mcrouter'] = [
        'class' => MemcachedPhpBagOStuff::class,
        'persistent' => false,
        'servers' => $wgMemCachedServers,
        'loggroup' => 'memcached',
    ];
}}
$wgMainCacheType = 'mcrouter';
$wgSessionCacheType = 'mcrouter';
// MediaWiki 1.39 builds the WAN cache from $wgWANObjectCaches[$wgMainWANCache].
$wgWANObjectCaches['wancache-main-mcrouter'] = [
    'class' => WANObjectCache::class,
    'cacheId' => 'mcrouter',
    'broadcastRoutingPrefix' => '{broadcast}',
];
$wgMainWANCache = 'wancache-main-mcrouter';

// The localisation cache is built into the image at build time (`wikikube build`, in each
// version's cache/l10n) and never rebuilt at run time.
$wgCacheDirectory = '/tmp/mediawiki-cache';
$wgLocalisationCacheConf['store'] = 'array';
$wgLocalisationCacheConf['storeDirectory'] = $wikikubeWiki['code'] . '/cache/l10n';
$wgLocalisationCacheConf['manualRecache'] = true;

$wgSecretKey = $wikikubeSecret('secret_key');
$wgUpgradeKey = $wikikubeSecret('upgrade_key');

$wgEnableUploads = false;
$wgRightsIcon = '';
$wgDiff3 = '';
$wgShowExceptionDetails = (bool)ini_get('display_errors');

foreach ($wikikubeWiki['skins'] as $skin) {{
    wfLoadSkin($skin);
}}
if ($wikikubeWiki['skins']) {{
    $wgDefaultSkin = strtolower($wikikubeWiki['skins'][0]);
}}
foreach ($wikikubeWiki['extensions'] as $extension) {{
    wfLoadExtension($extension);
}}

// Per-wiki settings last: they override everything above.
foreach ($wikikubeWiki['settings'] as $name => $value) {{
    $GLOBALS[$name] = $value;
}}
"#
    )
}
