//! Webhook signatures (docs/reference.md "Deliveries"): `Tripwire-Signature: t=<unix>,v1=<hex>`
//! where `<hex>` is HMAC-SHA256 of `"{t}.{body}"` keyed with the
//! workspace's signing secret. A receiver recomputes it over the raw body
//! and compares in constant time; `t` lets it refuse stale replays. While
//! a signing secret is rotated (a list of several), the header carries one
//! `v1=` per secret, in the configured order, and a receiver accepts any.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Tripwire-Signature";

/// The header value for `body` sent at `unix_seconds`, signed with each of
/// `secrets`.
pub fn signature<S: AsRef<str>>(secrets: &[S], unix_seconds: i64, body: &str) -> String {
    let mut header = format!("t={unix_seconds}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hmac_hex(secret.as_ref(), unix_seconds, body));
    }
    header
}

/// Hex HMAC-SHA256 of `"{t}.{body}"`.
pub fn hmac_hex(secret: &str, unix_seconds: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // Reference value: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"whsec", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(&["whsec"], 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
    }

    #[test]
    fn a_rotated_secret_signs_once_per_entry() {
        let body = r#"{"a":1}"#;
        let both = signature(&["new", "whsec"], 1_700_000_000, body);
        let expected = format!(
            "t=1700000000,v1={},v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032",
            hmac_hex("new", 1_700_000_000, body)
        );
        assert_eq!(both, expected);
    }
}
