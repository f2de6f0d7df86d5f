//! The CA certificates `https://` webhooks trust: the platform's store, or,
//! as curl and Python do, only the PEM bundle in `SSL_CERT_FILE` (and the
//! folders in `SSL_CERT_DIR`) when set. Loaded once per process; a bundle
//! that cannot be read or holds no certificate is reported by name, rather
//! than leaving every https delivery to fail with "unknown issuer".

/// The trusted roots, or why there are none.
pub fn trusted_roots() -> Result<Vec<reqwest::Certificate>, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let roots: Vec<reqwest::Certificate> = loaded
        .certs
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok())
        .collect();
    if !roots.is_empty() {
        return Ok(roots);
    }
    let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let mut problem = format!("no trusted CA certificate found in {}", source());
    if !errors.is_empty() {
        problem.push_str(&format!(" ({})", errors.join("; ")));
    }
    Err(problem)
}

/// Where the roots come from, for messages.
fn source() -> String {
    let named: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .filter_map(|var| {
            Some(format!(
                "{var}={}",
                std::env::var_os(var)?.to_string_lossy()
            ))
        })
        .collect();
    match named.is_empty() {
        true => "the platform's certificate store (install its CA bundle, or set SSL_CERT_FILE)"
            .to_string(),
        false => named.join(" and "),
    }
}
