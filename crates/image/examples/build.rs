//! Builds a site's images: `cargo run --release -p wikikube-image --example build -- SITE_DIR
//! [--env ENV] [--cache DIR] [--out DIR] [--update-lock] [--json] [--set-config PATH=TEXT]`.
//! The benchmark script uses it; users run `wikikube build`.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut site = PathBuf::from("examples/farm");
    let mut env = "local".to_string();
    let mut options = wikikube_image::Options {
        cache_dir: wikikube_image::Cache::default_dir(),
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
            "--update-lock" => options.lock_mode = wikikube_image::LockMode::Update,
            "--locked" => options.lock_mode = wikikube_image::LockMode::Locked,
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
    let site = match wikikube_model::load(&site, &env, &wikikube_model::LoadOptions::default()) {
        Ok(site) => site,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    match wikikube_image::build(&site, &options) {
        Ok(report) if json => println!("{}", wikikube_image::progress::json(&report)),
        Ok(report) => {
            print!("{}", wikikube_image::progress::table(&report));
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
