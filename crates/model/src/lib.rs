//! The site model: x
pub mod de;
pub mod error;
pub mod origin;
pub mod tree;
