//! Debian root filesystems: built with mmdebstrap from locked package versions
//! ([`debian`]), read as layer entries without unpacking ([`tarball`]), and unpacked into a
//! tree when code must be read from them or php must run in them.

pub mod debian;
pub mod tarball;
