//! Webhook signatures (docs/reference.md "Deliveries"): `Tripwire-Signature: t=<unix>,v1=<hex>`
//! where `<hex>` is HMAC-SHA256 of `"{t}.{body}"` keyed with the
//! workspace's signing secret. A receiver recomputes it over the raw body
//! and compares in constant time; `t` lets it refuse stale replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Tripwire-Signature";

/// The header value for `body` sent at `unix_seconds`.
pub fn signature(secret: &str, unix_seconds: i64, body: &str) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hmac_hex(secret, unix_seconds, body)
    )
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
            signature("whsec", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
    }
}
