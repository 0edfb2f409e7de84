//! The self-signed certificate of a local environment (`tls.certificate = "self-signed"`): made
//! once per state directory and kept, so browsers asked to trust it once keep trusting it.

use std::path::Path;

use crate::Error;

/// Writes `tls.crt` and `tls.key` into `dir` for `names` unless a certificate for exactly these
/// names is already there.
pub fn ensure(dir: &Path, names: &[String]) -> Result<(), Error> {
    let names_file = dir.join("names");
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_file).ok();
    if current.as_deref() == Some(wanted.as_str())
        && dir.join("tls.crt").is_file()
        && dir.join("tls.key").is_file()
    {
        return Ok(());
    }
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|error| {
        Error::Certificate(format!("cannot make a self-signed certificate: {error}"))
    })?;
    crate::state::write_file(&dir.join("tls.crt"), certified.cert.pem().as_bytes(), 0o444)?;
    crate::state::write_file(
        &dir.join("tls.key"),
        certified.signing_key.serialize_pem().as_bytes(),
        0o440,
    )?;
    crate::state::write_file(&names_file, wanted.as_bytes(), 0o444)
}
