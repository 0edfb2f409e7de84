//! Registries: pushing images with their SBOM and provenance ([`push`]), and the credentials
//! and certificates to do so ([`auth`], [`client`]).
//!
//! Every request goes to `https://` unless the registry is on loopback without a CA given for
//! it, or its name starts with `http://` (see [`client::Location::parse`]). A registry with a
//! certificate of its own CA is trusted through `--registry-ca FILE` or, as podman and docker
//! do, a `certs.d/HOST:PORT/*.crt` directory.

pub mod auth;
pub mod client;
pub mod push;

pub use client::ClientOptions;
pub use push::{push_layout, PushReport, PushedImage, Pusher, Referrers};
