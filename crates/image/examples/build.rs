//! Builds a site's images: `cargo run --release -p wikikube-image --example build -- SITE_DIR
//! [--env ENV] [--cache DIR] [--out DIR] [--update-lock] [--json] [--set-config PATH=TEXT]`.
//! The benchmark script uses it; users run `wikikube build`.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut site = PathBuf::from("examples/farm");
    let mut env = "local".to_string();
    let mut options = image::Options {
        cache_dir: image::Cache::default_dir(),
        progress: true,
        ..Default::default()
    };
    let mut json = false;
    let mut config = BTreeMap::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env" => env = args.next().expect("--env ENV"),
            "--cache" => options.cache_dir = args.next().expect("--cache DIR").into(),
            "--out" => options.out_dir = Some(args.next().expect("--out DIR").into()),
            "--update-lock" => options.lock_mode = image::LockMode::Update,
            "--locked" => options.lock_mode = image::LockMode::Locked,
            "--json" => json = true,
            "--set-config" => {
                let value = args.next().expect("--set-config PATH=TEXT");
                let (path, text) = value.split_once('=').expect("PATH=TEXT");
                config.insert(path.to_string(), text.as_bytes().to_vec());
            }
            other => site = other.into(),
        }
    }
    if config.is_empty() {
        config.insert(
            "srv/mediawiki/wikiversions.json".to_string(),
            br#"{"enwiki":"php-1.39"}"#.to_vec(),
        );
    }
    options.config_files = config;
    options.progress = !json;
    let site = match model::load(&site, &env, &model::LoadOptions::default()) {
        Ok(site) => site,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    match image::build(&site, &options) {
        Ok(report) if json => println!("{}", image::progress::json(&report)),
        Ok(report) => {
            print!("{}", image::progress::table(&report));
            println!(
                "layers written: {:.1} MB in {:.2} s; layout {}",
                report.bytes_compressed as f64 / 1e6,
                report.seconds_compressing,
                report.out_dir.display()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
