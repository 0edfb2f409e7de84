//! sha256 digests: of blobs (what OCI names things by) and of a layer's inputs (what the cache
//! is keyed by).

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether the file at `path` hashes to `digest` (`sha256:<hex>`); false when unreadable.
pub fn file_matches(path: &std::path::Path, digest: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = Sha256::new();
    if io::copy(&mut file, &mut hasher).is_err() {
        return false;
    }
    format!("sha256:{}", hex::encode(hasher.finalize())) == digest
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the `sha256:<hex>` digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The inputs of a layer, hashed into its cache key and recorded in the build report.
///
/// Each input is a name and a value; both are length-prefixed in the hash so that no two
/// different input lists hash alike.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Inputs {
    /// `(name, value)` in the order given; a value is text or a digest of content.
    pub items: Vec<(String, String)>,
}

impl Inputs {
    /// Starts the inputs of a layer of `kind`; the builder's format version is always an input,
    /// so that changing how layers are written invalidates old cache entries.
    pub fn new(kind: &str) -> Self {
        let mut inputs = Inputs::default();
        inputs.add("format", crate::LAYER_FORMAT);
        inputs.add("kind", kind);
        inputs
    }

    /// Adds one input.
    pub fn add(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.items.push((name.to_string(), value.into()));
        self
    }

    /// Adds a digest of `bytes` as an input.
    pub fn add_content(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        self.add(name, sha256(bytes))
    }

    /// The cache key: hex sha256 of every input.
    pub fn key(&self) -> String {
        self.key_with(std::iter::empty())
    }

    /// The key these inputs would have with `more` added, without copying them in (a layer's
    /// content is one input per file, 185,000 of them at Wikimedia's size).
    pub fn key_with<'a>(&self, more: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let mut hasher = self.hasher();
        for (name, value) in more {
            hasher.add(name, value);
        }
        hasher.finish()
    }

    /// A hasher that has taken these inputs and takes more, one at a time: what
    /// [`Inputs::key_with`] does for values made one after the other in one buffer.
    pub fn hasher(&self) -> KeyHasher {
        let mut hasher = KeyHasher(Sha256::new());
        for (name, value) in &self.items {
            hasher.add(name, value);
        }
        hasher
    }
}

/// The key of inputs taken one at a time (see [`Inputs::hasher`]).
pub struct KeyHasher(Sha256);

impl KeyHasher {
    /// Takes one more input.
    pub fn add(&mut self, name: &str, value: &str) {
        for part in [name, value] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part.as_bytes());
        }
    }

    /// The key: hex sha256 of every input taken.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}
