//! The wikikube site model: the typed configuration of a MediaWiki farm, read from a site
//! directory as layers of TOML files, merged with the origin of every value kept.
//!
//! This is wikikube's `kube-core`: types and pure functions. It reads the site's files and nothing
//! else; it never renders Kubernetes objects (that is `render`), talks to a cluster, or prints.
//!
//! Start with [`load()`], which returns a [`ResolvedSite`] for one environment: the structure
//! ([`SiteSpec`]: wikis, versions, extensions), the environment, the cake values of every release
//! ([`CakeValues`]), the private values ([`Secrets`]), and the merged tree that [`explain()`] reads.
//! Every mistake in the files is an [`Error`] naming file, line, column and key.
//!
//! The layers, lowest first: built-in defaults < `site.toml` < environment < datacenter <
//! deployment scope < release scope < private values. See `docs/site-format.md`.

pub mod de;
pub mod error;
pub mod explain;
mod groups;
pub mod load;
pub mod origin;
pub mod pushed;
pub mod resolve;
pub mod schema;
pub mod tree;
pub mod validate;

pub use error::{Error, ErrorKind};
pub use explain::{explain, ExplainError, Explanation};
pub use load::{list_environments, selectable_environments, LoadOptions};
pub use origin::{Layer, Origin};
pub use resolve::{load, ResolvedDeployment, ResolvedRelease, ResolvedSite, Secrets};
pub use schema::*;
pub use validate::{
    is_host_port, DATABASE_PASSWORD, REDIS_PASSWORD, REDIS_PROXY_ADMIN_PORT, SMTP_PASSWORD,
    SWIFT_KEY,
};
