//! Helpers shared by the render tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

pub fn load(environment: &str) -> model::ResolvedSite {
    model::load(&example(), environment, &model::LoadOptions::default())
        .unwrap_or_else(|error| panic!("the example loads for {environment}: {error}"))
}

/// Loads a site given as TOML texts, one per layer, without files.
pub fn load_texts(site: &str, environment: &str, private: &str) -> model::ResolvedSite {
    let layers = [
        (model::Layer::Defaults, model::load::DEFAULTS),
        (model::Layer::Site, site),
        (model::Layer::Environment("test".into()), environment),
        (model::Layer::Private("test".into()), private),
    ];
    let trees = layers
        .iter()
        .map(|(layer, text)| {
            let tree = model::tree::parse_file(text, &format!("{layer}.toml"), layer.clone())
                .unwrap_or_else(|error| panic!("{error}"));
            (layer.clone(), tree)
        })
        .collect();
    model::resolve::resolve(Path::new("."), "test", Vec::new(), trees)
        .unwrap_or_else(|error| panic!("{error}"))
}
