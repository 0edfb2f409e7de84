//! Images at Wikimedia's scale: generates a MediaWiki-like tree (core, 180 extensions, 4 skins,
//! l10n for 435 languages, ~185,000 files) from a seed, then measures the app image's MediaWiki
//! layers ([`wikikube_image::stack`]) through a cold build, a no-op rebuild and one change of
//! each kind, with a push of each result. `bench/image-scale.sh` runs it; see
//! docs/benchmarks.md ("Images at scale").
//!
//! Usage: `image_scale WORK_DIR [--registry HOST:PORT] [--scale F] [--seed N]`. WORK_DIR gets
//! the tree and the cache; it is not removed (the script does). Without `--registry`, the bytes
//! a push would upload are the new layer blobs that no earlier build of the run made.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use wikikube_image::cache::Cache;
use wikikube_image::fingerprint::Fingerprints;
use wikikube_image::oci::{self, RunConfig};
use wikikube_image::registry::{ClientOptions, PushReport, Pusher};
use wikikube_image::stack::{self, VersionTree};

const EPOCH: u64 = 1_716_163_200;
const FIRST: &str = "1.45.0-wmf.1";
const SECOND: &str = "1.45.0-wmf.2";

/// SplitMix64: small, fast, and the same sequence on every machine for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Around `mean`, from half to one and a half times it.
    fn around(&mut self, mean: u64) -> u64 {
        mean / 2 + self.below(mean.max(1))
    }
}

/// Words of PHP, JavaScript and messages: text that compresses about as code does.
const WORDS: &[&str] = &[
    "public",
    "function",
    "return",
    "$this",
    "->",
    "array",
    "(",
    ")",
    "{",
    "}",
    ";",
    "if",
    "else",
    "foreach",
    "as",
    "=>",
    "null",
    "true",
    "false",
    "private",
    "protected",
    "static",
    "class",
    "extends",
    "implements",
    "new",
    "string",
    "int",
    "bool",
    "self",
    "parent",
    "::",
    "$title",
    "$user",
    "$page",
    "$revision",
    "$context",
    "$services",
    "$config",
    "$request",
    "$output",
    "$parser",
    "$options",
    "$result",
    "$value",
    "$key",
    "$name",
    "$text",
    "$wiki",
    "getTitle",
    "getUser",
    "getText",
    "getOutput",
    "getConfig",
    "getRequest",
    "wfMessage",
    "MediaWikiServices::getInstance()",
    "->get(",
    "isRegistered",
    "getId",
    "Html::element",
    "'div'",
    "'span'",
    "'class'",
    "=",
    "==",
    "===",
    "!==",
    "&&",
    "||",
    "//",
    "/**",
    "*/",
    "*",
    "@param",
    "@return",
    "@since",
    "1.45",
    "message",
    "page",
    "revision",
    "content",
    "user",
    "the",
    "of",
    "to",
    "and",
    "a",
    "in",
    "is",
    "for",
    "that",
    "this",
    "with",
    "on",
    "be",
    "by",
    "const",
    "let",
    "var",
    "mw.",
    "$(",
    "document",
    "window",
    "this.",
    "=",
    "0",
    "1",
    "2",
    "throw",
    "new",
    "InvalidArgumentException",
    "LogicException",
    "try",
    "catch",
    "finally",
    "namespace",
    "MediaWiki\\",
    "use",
    "Wikimedia\\",
    "Rdbms\\",
    "IDatabase",
    "select",
    "'page_id'",
    "'page_title'",
    "'rev_id'",
    "__METHOD__",
    "LIMIT",
    "ORDER BY",
    "WHERE",
];

fn text(rng: &mut Rng, bytes: u64, out: &mut Vec<u8>) {
    out.clear();
    // Code repeats itself (boilerplate, similar calls): about a third of the lines copy one of
    // the last few, which brings gzip's ratio near what it gets on MediaWiki's PHP (~3.5x).
    let mut starts: Vec<usize> = Vec::new();
    while (out.len() as u64) < bytes {
        let begin = out.len();
        if starts.len() > 8 && rng.below(3) == 0 {
            let from = starts[starts.len() - 1 - rng.below(8) as usize];
            let line: Vec<u8> = out[from..]
                .iter()
                .take_while(|b| **b != b'\n')
                .copied()
                .collect();
            out.extend_from_slice(&line);
        } else {
            for _ in 0..rng.below(4) {
                out.push(b'\t');
            }
            for _ in 0..3 + rng.below(9) {
                // The minimum of two draws: common words are common, as in real code.
                let n = WORDS.len() as u64;
                out.extend_from_slice(WORDS[rng.below(n).min(rng.below(n)) as usize].as_bytes());
                out.push(b' ');
            }
        }
        out.push(b'\n');
        starts.push(begin);
    }
    out.truncate(bytes as usize);
}

/// What the generator made.
#[derive(Default)]
struct Made {
    files: u64,
    bytes: u64,
}

fn write(path: &Path, bytes: &[u8], made: &mut Made) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    made.files += 1;
    made.bytes += bytes.len() as u64;
}

/// `count` code files of about `mean` bytes under `dir`, 60 to a directory.
fn code_files(rng: &mut Rng, dir: &Path, count: u64, mean: u64, ext: &str, made: &mut Made) {
    let mut buf = Vec::new();
    for i in 0..count {
        let size = rng.around(mean);
        text(rng, size, &mut buf);
        write(
            &dir.join(format!("d{:03}/File{i:05}.{ext}", i / 60)),
            &buf,
            made,
        );
    }
}

fn languages() -> Vec<String> {
    let real = [
        "en", "de", "fr", "ja", "es", "ru", "it", "zh", "pt", "pl", "nl", "sv", "ar", "uk", "fa",
        "ca", "he", "id", "ko", "vi", "cs", "fi", "hu", "no", "tr", "ro", "sr", "eo", "el", "da",
    ];
    let mut all: Vec<String> = real.iter().map(|s| s.to_string()).collect();
    let mut i = 0;
    while all.len() < 435 {
        all.push(format!("x{i:03}"));
        i += 1;
    }
    all
}

fn extension_names() -> Vec<String> {
    (0..180).map(|i| format!("Extension{i:03}")).collect()
}

fn skin_names() -> Vec<String> {
    ["Vector", "MinervaNeue", "MonoBook", "Timeless"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Generates version `FIRST`'s tree under `dir`; `scale` multiplies every file count.
fn generate(dir: &Path, seed: u64, scale: f64) -> Made {
    let mut rng = Rng(seed);
    let mut made = Made::default();
    let n = |count: u64| ((count as f64 * scale).round() as u64).max(1);
    let languages = languages();
    let mut buf = Vec::new();
    // Core: ~22,000 files, ~380 MB (MediaWiki 1.45 with vendor/ holds ~20,000).
    for (sub, count, mean, ext) in [
        ("includes", 12_000, 18_000, "php"),
        ("resources", 4_000, 12_000, "js"),
        ("vendor", 5_000, 16_000, "php"),
        ("maintenance", 600, 8_000, "php"),
    ] {
        code_files(&mut rng, &dir.join(sub), n(count), mean, ext, &mut made);
    }
    write(
        &dir.join("includes/Defines.php"),
        b"<?php\ndefine( 'MW_VERSION', '1.45.0-wmf.1' );\n",
        &mut made,
    );
    for language in &languages {
        let size = rng.around(60_000);
        text(&mut rng, size, &mut buf);
        write(
            &dir.join(format!("languages/i18n/{language}.json")),
            &buf,
            &mut made,
        );
        let size = rng.around(30_000);
        text(&mut rng, size, &mut buf);
        write(
            &dir.join(format!("languages/messages/Messages{language}.php")),
            &buf,
            &mut made,
        );
    }
    // Extensions: file counts fall off like a power law (a few as big as Wikibase, many
    // small), ~105,000 code files in all, and messages in 150 to 435 languages each.
    let names = extension_names();
    let weights: Vec<f64> = (0..names.len())
        .map(|i| 1.0 / ((i + 1) as f64).powf(0.8))
        .collect();
    let total: f64 = weights.iter().sum();
    for (i, name) in names.iter().enumerate() {
        let ext = dir.join("extensions").join(name);
        let files = n((105_000.0 * weights[i] / total).round() as u64 + 5);
        write(
            &ext.join("extension.json"),
            format!("{{\"name\": \"{name}\", \"manifest_version\": 2}}\n").as_bytes(),
            &mut made,
        );
        let php = files * 3 / 4;
        code_files(
            &mut rng,
            &ext.join("includes"),
            php,
            10_000,
            "php",
            &mut made,
        );
        code_files(
            &mut rng,
            &ext.join("resources"),
            files - php,
            9_000,
            "js",
            &mut made,
        );
        let count = 150 + rng.below(286) as usize;
        for language in languages.iter().take(n(count as u64) as usize) {
            let size = rng.around(4_000);
            text(&mut rng, size, &mut buf);
            write(&ext.join(format!("i18n/{language}.json")), &buf, &mut made);
        }
    }
    for name in skin_names() {
        let skin = dir.join("skins").join(&name);
        write(
            &skin.join("skin.json"),
            format!("{{\"name\": \"{name}\"}}\n").as_bytes(),
            &mut made,
        );
        code_files(
            &mut rng,
            &skin.join("resources"),
            n(500),
            8_000,
            "less",
            &mut made,
        );
        for language in &languages {
            let size = rng.around(2_000);
            text(&mut rng, size, &mut buf);
            write(&skin.join(format!("i18n/{language}.json")), &buf, &mut made);
        }
    }
    // The l10n cache: one file per language, as LCStoreStaticArray writes it; English and the
    // big languages are the largest.
    for (i, language) in languages.iter().enumerate() {
        let mean = if i < 30 { 6_000_000 } else { 2_200_000 };
        let size = (rng.around(mean) as f64 * scale.min(1.0)) as u64;
        text(&mut rng, size, &mut buf);
        write(
            &dir.join(format!("cache/l10n/{language}.l10n.php")),
            &buf,
            &mut made,
        );
    }
    made
}

/// Site configuration: ~2 MB in 20 files, as wmf-config.
fn config(seed: u64) -> BTreeMap<String, Vec<u8>> {
    let mut rng = Rng(seed ^ 0x00c0_ffee);
    let mut files = BTreeMap::new();
    let mut buf = Vec::new();
    for i in 0..20 {
        let size = rng.around(100_000);
        text(&mut rng, size, &mut buf);
        files.insert(
            format!("srv/mediawiki/wmf-config/Settings{i:02}.php"),
            buf.clone(),
        );
    }
    files
}

/// Rewrites `len` bytes in the middle of `path` in place (same size, same inode).
fn poke(path: &Path, marker: &str) -> u64 {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let at = bytes.len() / 2;
    let end = (at + marker.len()).min(bytes.len());
    bytes[at..end].copy_from_slice(&marker.as_bytes()[..end - at]);
    std::fs::write(path, &bytes).expect("write");
    bytes.len() as u64
}

/// A hard-linked copy of `from` at `to` (`cp -al`): a second version that costs no disk until
/// its files change.
fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            link_tree(&entry.path(), &target);
        } else {
            std::fs::hard_link(entry.path(), &target).expect("link");
        }
    }
}

struct Row {
    step: String,
    seconds: f64,
    hashed: u64,
    hashed_bytes: u64,
    layers_built: usize,
    layers: usize,
    deltas: usize,
    new_bytes: u64,
    push_seconds: f64,
    pushed: u64,
    changed: u64,
}

struct Bench {
    cache: Cache,
    registry: Option<String>,
    known: BTreeSet<String>,
    rows: Vec<Row>,
    /// The base the next incremental build names (from the last build).
    base: Option<String>,
}

impl Bench {
    fn run(&mut self, step: &str, trees: &[VersionTree], options: &stack::Options, changed: u64) {
        // A change is made by a person or a deploy tool seconds before a build, not within
        // the racy window (wikikube_image::fingerprint::RACY_WINDOW); a file changed within it
        // is read again by the next build too, which is right but not what is measured here.
        std::thread::sleep(std::time::Duration::from_secs(3));
        let start = Instant::now();
        // As a new process would: the store is read from the cache and written back.
        let mut fingerprints = Fingerprints::open(&self.cache);
        let mut options = options.clone();
        options.base = self.base.clone();
        let built = stack::build(&self.cache, &mut fingerprints, trees, &options).expect("build");
        self.base = built.base.clone();
        fingerprints.save().expect("save fingerprints");
        let run = RunConfig {
            cmd: vec!["php-fpm8.2".into()],
            expose: Vec::new(),
            workdir: Some("/srv/mediawiki".into()),
        };
        let image = oci::assemble(&self.cache, &built.layers, &run, EPOCH).expect("assemble");
        let seconds = start.elapsed().as_secs_f64();
        let stats = fingerprints.stats();
        let mut new_bytes = 0;
        let mut would_push = 0;
        let mut layers_built = 0;
        for report in &built.reports {
            if !report.reused {
                layers_built += 1;
            }
            if self.known.insert(report.digest.clone()) {
                new_bytes += report.size;
                would_push += report.size;
            }
        }
        let push_start = Instant::now();
        let pushed = match &self.registry {
            Some(registry) => {
                let mut pusher = Pusher::new(&self.cache, registry, &ClientOptions::default())
                    .expect("registry");
                let mut report = PushReport::default();
                pusher
                    .push_image("app", &image.manifest, &[], "scale", &mut report)
                    .expect("push");
                report.bytes
            }
            None => would_push,
        };
        let row = Row {
            step: step.to_string(),
            seconds,
            hashed: stats.hashed,
            hashed_bytes: stats.bytes_hashed,
            layers_built,
            layers: built.layers.len(),
            deltas: built.deltas,
            new_bytes,
            push_seconds: push_start.elapsed().as_secs_f64(),
            pushed,
            changed,
        };
        eprintln!(
            "{:<34} {:>8.2} s  {} layers built, {} new bytes, {} pushed",
            row.step, row.seconds, row.layers_built, row.new_bytes, row.pushed
        );
        self.rows.push(row);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    // `cargo test --all-targets` runs a harness-less bench without `--bench`: it builds images
    // for minutes, so it runs only under `cargo bench` (which passes `--bench`).
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("skipped: run with `cargo bench` (see the file's documentation)");
        return;
    }
    let mut args = std::env::args().skip(1);
    let mut work = None;
    let mut registry = None;
    let mut scale = 1.0;
    let mut seed = 18;
    let mut incremental = true;
    let mut noop_runs = 0;
    let mut add_version = true;
    let mut compression = wikikube_image::layer::tar::Compression::Gzip;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--registry" => registry = args.next(),
            "--scale" => scale = args.next().and_then(|s| s.parse().ok()).expect("--scale F"),
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--seed N"),
            // `cargo bench` passes this to every bench target.
            "--whole" => incremental = false,
            // Leaves out adding a version (which needs another ~0.8 GB of cache and registry).
            "--no-version" => add_version = false,
            // Layers as build.toml's `[layers] compression = "zstd"` writes them.
            "--zstd" => compression = wikikube_image::layer::tar::Compression::Zstd,
            // For profiling: the cold build (on a tree kept from an earlier run, if any), then
            // only N no-op builds.
            "--noop-runs" => {
                noop_runs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--noop-runs N")
            }
            "--bench" => {}
            other => work = Some(PathBuf::from(other)),
        }
    }
    let work =
        work.expect("usage: image_scale WORK_DIR [--registry HOST:PORT] [--scale F] [--seed N]");
    let tree = work.join(format!("srv/php-{FIRST}"));
    let start = Instant::now();
    let made = if noop_runs > 0 && tree.exists() {
        Made::default()
    } else {
        generate(&tree, seed, scale)
    };
    eprintln!(
        "generated {} files, {} MiB in {:.0} s (seed {seed}, scale {scale})",
        made.files,
        made.bytes >> 20,
        start.elapsed().as_secs_f64()
    );

    let cache = Cache::open(&work.join("cache"))
        .expect("cache")
        .with_compression(compression);
    let mut bench = Bench {
        cache,
        registry,
        known: BTreeSet::new(),
        rows: Vec::new(),
        base: None,
    };
    let version = |version: &str, dir: &Path| VersionTree {
        version: version.to_string(),
        dir: dir.to_path_buf(),
        extensions: extension_names(),
        skins: skin_names(),
        l10n_dir: Some(dir.join("cache/l10n")),
    };
    let mut trees = vec![version(FIRST, &tree)];
    let mut options = stack::Options {
        epoch: EPOCH,
        config_files: config(seed),
        incremental,
        base: None,
    };
    bench.run("cold build", &trees, &options, made.bytes);
    bench.run("no-op rebuild", &trees, &options, 0);
    if noop_runs > 0 {
        for _ in 1..noop_runs {
            bench.run("no-op rebuild", &trees, &options, 0);
        }
        return;
    }

    let file = "srv/mediawiki/wmf-config/Settings07.php";
    let config_file = options.config_files.get_mut(file).expect("a config file");
    let at = config_file.len() / 2;
    config_file[at..at + 9].copy_from_slice(b"wgChanged");
    let size = config_file.len() as u64;
    bench.run("one config file", &trees, &options, size);

    let size = poke(
        &tree.join("extensions/Extension042/includes/d000/File00007.php"),
        "// backport T123456",
    );
    bench.run("one file in one extension", &trees, &options, size);

    let mut size = 0;
    for language in ["de", "fr", "ja"] {
        size += poke(
            &tree.join(format!("extensions/Extension042/i18n/{language}.json")),
            "\"ext-042-msg\": \"changed\"",
        );
        size += poke(
            &tree.join(format!("cache/l10n/{language}.l10n.php")),
            "'ext-042-msg' => 'changed'",
        );
    }
    bench.run("one message in 3 languages", &trees, &options, size);

    let size = poke(
        &tree.join("includes/d001/File00070.php"),
        "// core backport",
    );
    bench.run("one file in core", &trees, &options, size);

    if !add_version {
        print_table(&bench.rows);
        return;
    }
    let second = work.join(format!("srv/php-{SECOND}"));
    link_tree(&tree, &second);
    let defines = second.join("includes/Defines.php");
    std::fs::remove_file(&defines).expect("unlink");
    std::fs::write(
        &defines,
        b"<?php\ndefine( 'MW_VERSION', '1.45.0-wmf.2' );\n",
    )
    .expect("write");
    trees.push(version(SECOND, &second));
    bench.run(
        "add a version (hard-linked copy)",
        &trees,
        &options,
        made.bytes,
    );
    bench.run("no-op rebuild, two versions", &trees, &options, 0);

    print_table(&bench.rows);
}

fn print_table(rows: &[Row]) {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| step | build s | files read | MiB read | layers (deltas) | built | new layers MiB | push s | pushed MiB | changed MiB |"
    )
    .ok();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|").ok();
    for row in rows {
        writeln!(
            out,
            "| {} | {:.2} | {} | {} | {} ({}) | {} | {} | {:.2} | {} | {} |",
            row.step,
            row.seconds,
            row.hashed,
            mib(row.hashed_bytes),
            row.layers,
            row.deltas,
            row.layers_built,
            mib(row.new_bytes),
            row.push_seconds,
            mib(row.pushed),
            mib(row.changed),
        )
        .ok();
    }
}
