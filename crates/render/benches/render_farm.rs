//! Renders a generated farm the size of a large production: 1,000 wikis, 2 datacenters,
//! 5 deployments with 3 releases each, from TOML text to YAML, the way `wikikube render` does
//! (reading files aside). Run with `cargo bench -p wikikube-render --bench render_farm`.

use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use wikikube_model::{Layer, ResolvedSite};

const WIKIS: usize = 1000;
const DEPLOYMENTS: [&str; 5] = [
    "mw-web",
    "mw-api-ext",
    "mw-api-int",
    "mw-jobrunner",
    "mw-debug",
];
const DATACENTERS: [&str; 2] = ["eqiad", "codfw"];

fn site_text() -> String {
    let mut text = String::from(
        "extensions = [\"Cite\", \"ParserFunctions\"]\nskins = [\"Vector\"]\n\
         [site]\nname = \"bigfarm\"\nnamespace = \"mediawiki\"\n\
         [versions.\"1.39\"]\ncode = \"/usr/share/mediawiki\"\n\
         [versions.\"1.40\"]\ncode = \"/srv/mediawiki-1.40\"\n",
    );
    for wiki in 0..WIKIS {
        let version = if wiki % 10 == 0 { "1.40" } else { "1.39" };
        writeln!(
            text,
            "[wikis.wiki{wiki}]\ndomains = [\"wiki{wiki}.example.org\", \"m.wiki{wiki}.example.org\"]\n\
             language = \"en\"\nversion = \"{version}\"\nsettings = {{ wgSitename = \"Wiki {wiki}\" }}"
        )
        .unwrap();
    }
    for (index, deployment) in DEPLOYMENTS.iter().enumerate() {
        writeln!(
            text,
            "[deployments.{deployment}]\nreplicas = {}\n\
             [deployments.{deployment}.releases.main]\n\
             [deployments.{deployment}.releases.canary]\nreplicas = 2\n\
             [deployments.{deployment}.releases.next]\nreplicas = 4",
            50 * (index + 1)
        )
        .unwrap();
    }
    text
}

fn environment_text(datacenter: &str) -> String {
    format!(
        "[environment]\nkind = \"kubernetes\"\ndatacenter = \"{datacenter}\"\n\
         clusters = [{{ name = \"{datacenter}\", context = \"{datacenter}\" }}]\n\
         [tls]\ncertificate = \"secret:wiki-tls\"\n\
         [memcached.pools]\neqiad = {{ servers = [\"10.64.0.1:11211\", \"10.64.0.2:11211\"] }}\n\
         codfw = {{ servers = [\"10.192.0.1:11211\", \"10.192.0.2:11211\"] }}\n\
         [database]\nhost = \"db1001.{datacenter}.wmnet\"\n"
    )
}

fn resolve(site: &str, datacenter: &str) -> ResolvedSite {
    let environment = environment_text(datacenter);
    let private = "[secrets]\nsecret_key = \"bench\"\ndatabase_password = \"bench\"\n";
    let layers = [
        (Layer::Defaults, wikikube_model::load::DEFAULTS),
        (Layer::Site, site),
        (Layer::Datacenter(datacenter.into()), environment.as_str()),
        (Layer::Private(datacenter.into()), private),
    ];
    let trees = layers
        .iter()
        .map(|(layer, text)| {
            let tree = wikikube_model::tree::parse_file(text, "bench.toml", layer.clone()).unwrap();
            (layer.clone(), tree)
        })
        .collect();
    wikikube_model::resolve::resolve(Path::new("."), datacenter, Vec::new(), trees).unwrap()
}

fn render_farm(criterion: &mut Criterion) {
    let site = site_text();
    let mut group = criterion.benchmark_group("farm of 1000 wikis x 5 deployments x 3 releases");
    group.sample_size(10);
    group.bench_function("load, render and serialize both datacenters", |bencher| {
        bencher.iter(|| {
            for datacenter in DATACENTERS {
                let resolved = resolve(black_box(&site), datacenter);
                let rendered =
                    wikikube_render::render(&resolved, &wikikube_render::RenderOptions::default())
                        .unwrap();
                black_box(rendered.to_yaml());
            }
        })
    });
    let resolved = resolve(&site, "eqiad");
    group.bench_function("render one datacenter (objects and lint only)", |bencher| {
        bencher.iter(|| {
            wikikube_render::render(
                black_box(&resolved),
                &wikikube_render::RenderOptions::default(),
            )
        })
    });
    group.finish();
    let rendered =
        wikikube_render::render(&resolved, &wikikube_render::RenderOptions::default()).unwrap();
    println!(
        "one datacenter: {} objects, {} bytes of YAML",
        rendered.objects().len(),
        rendered.to_yaml().len()
    );
}

criterion_group!(benches, render_farm);
criterion_main!(benches);
