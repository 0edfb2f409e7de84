//! Debian root filesystems: built with mmdebstrap from locked package versions
//! ([`debian`], which also keeps the lock buildable as the archive moves), from a repository
//! of cached .debs ([`repository`]) fetched through a private apt session ([`apt`]); read as
//! layer entries without unpacking ([`tarball`]), and unpacked into a tree when code must be
//! read from them or php must run in them. [`outdated`] lists what the archive has newer.

pub mod apt;
pub mod debian;
pub mod outdated;
pub mod repository;
pub mod tarball;
