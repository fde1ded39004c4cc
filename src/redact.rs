//! Secrets never leave the process: how passwords are kept out of logs, reports and error texts.
//!
//! Three kinds of value are secret: passwords in Redis URLs (`redis://:pw@host`), the password
//! settings ([`Secret`]), and librdkafka properties that carry credentials
//! ([`is_secret_property`]). Wherever such a value could be formatted, it is shown as [`MASK`]. Text
//! that others produce — a redis-rs or librdkafka error, a parser's message — is passed through
//! [`scrub`] with the configured secrets, because it may echo a value we handed over. A leaf: the
//! config, the Redis side and the commands all use it.

use std::borrow::Cow;
use std::fmt;

/// What is shown in place of a secret.
pub const MASK: &str = "***";

/// A value that must not be shown: `Debug` and `Display` print [`MASK`]. [`Secret::expose`] is the
/// one way to the text, for the places that hand it to Redis.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    #[cfg(test)]
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, to authenticate with; never to format.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

/// The scheme assumed for a `host:port` address: the Redis client reads credentials from
/// `user:pw@host:port` as if it were a `redis://` URL, so redaction must too.
const IMPLIED_SCHEME: &str = "redis://";

/// `address` with the password of a URL (`redis://user:pw@host`, also `user:pw@host:port`)
/// replaced by [`MASK`]; addresses without a password come back unchanged. A value the URL parser
/// cannot read but that has a user part keeps only its scheme and host, so nothing it might hold is
/// shown.
pub fn redact_url(address: &str) -> Cow<'_, str> {
    if !address.contains('@') {
        return Cow::Borrowed(address);
    }
    let implied = !address.contains("://");
    let full = if implied {
        Cow::Owned(format!("{IMPLIED_SCHEME}{address}"))
    } else {
        Cow::Borrowed(address)
    };
    let Ok(mut url) = url::Url::parse(&full) else {
        return Cow::Owned(mask_user_part(address));
    };
    if url.password().is_none() {
        return Cow::Borrowed(address);
    }
    if url.set_password(Some(MASK)).is_err() {
        return Cow::Owned(mask_user_part(address));
    }
    let text = url.to_string();
    Cow::Owned(match text.strip_prefix(IMPLIED_SCHEME) {
        Some(rest) if implied => rest.to_string(),
        _ => text,
    })
}

/// `scheme://***@host…` for a value whose user part cannot be parsed: everything between the
/// scheme and the last `@` goes.
fn mask_user_part(address: &str) -> String {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), address),
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}{MASK}@{host}"),
        None => address.to_string(),
    }
}

/// The password a URL carries, as written and percent-decoded (the client sends the decoded
/// form; either may turn up in a message). Empty when there is none.
pub fn url_passwords(address: &str) -> Vec<String> {
    if !address.contains('@') {
        return Vec::new();
    }
    let full = if address.contains("://") {
        Cow::Borrowed(address)
    } else {
        Cow::Owned(format!("{IMPLIED_SCHEME}{address}"))
    };
    let Some(written) = url::Url::parse(&full)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    else {
        return Vec::new();
    };
    let decoded = percent_encoding::percent_decode_str(&written)
        .decode_utf8_lossy()
        .into_owned();
    let mut passwords = vec![written];
    if !passwords.contains(&decoded) {
        passwords.push(decoded);
    }
    passwords
}

/// Whether a librdkafka property holds a credential: every `sasl.*` (passwords, OAuth client
/// secrets, `sasl.oauthbearer.config`, which may embed one), the private key and its passphrases
/// (`ssl.key.*`, `ssl_key`), and anything named like a password or a secret.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("sasl.")
        || name.starts_with("ssl.key.")
        || name == "ssl_key"
        || ["password", "secret", "passphrase"]
            .iter()
            .any(|word| name.contains(word))
}

/// `text` with every occurrence of each of `secrets` replaced by [`MASK`] (longest first, so a
/// secret that contains another is masked whole). Empty secrets are ignored.
pub fn scrub<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_string();
    for secret in secrets {
        if text.contains(secret) {
            text = text.replace(secret, MASK);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_prints_as_the_mask() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), MASK);
        assert_eq!(format!("{secret:?}"), MASK);
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
        let parsed: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(parsed, secret);
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(redact_url("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(
            redact_url("rediss://user:pw@h:6380/2"),
            "rediss://user:***@h:6380/2"
        );
        assert_eq!(redact_url(":pw@h:6379"), ":***@h:6379");
        assert_eq!(redact_url("user:p%40ss@h:1"), "user:***@h:1");
        assert_eq!(redact_url("redis://:p@ss@h:1"), "redis://:***@h:1");
    }

    #[test]
    fn addresses_without_a_password_are_unchanged() {
        for address in [
            "127.0.0.1:6379",
            "redis://h:6379",
            "redis://user@h:6379/1",
            "rediss://[::1]:6380",
            "localhost:6379",
        ] {
            assert!(matches!(redact_url(address), Cow::Borrowed(a) if a == address));
        }
    }

    #[test]
    fn unparseable_user_parts_are_hidden() {
        assert_eq!(
            redact_url("redis://:pw@h:notaport"),
            "redis://***@h:notaport"
        );
        assert_eq!(redact_url("pw@h:99999"), "***@h:99999");
    }

    #[test]
    fn url_passwords_as_written_and_decoded() {
        assert_eq!(url_passwords("redis://:pw@h:1"), vec!["pw"]);
        assert_eq!(url_passwords("u:p%40ss@h:1"), vec!["p%40ss", "p@ss"]);
        assert!(url_passwords("redis://u@h:1").is_empty());
        assert!(url_passwords("h:1").is_empty());
    }

    #[test]
    fn secret_properties() {
        for name in [
            "sasl.password",
            "sasl.username",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "ssl_key",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "security.protocol",
            "ssl.ca.location",
            "fetch.wait.max.ms",
            "client.id",
        ] {
            assert!(!is_secret_property(name), "{name}");
        }
    }

    #[test]
    fn scrub_masks_every_occurrence_longest_first() {
        assert_eq!(
            scrub("auth pw and pwlong failed (pw)", &["pw", "pwlong"]),
            "auth *** and *** failed (***)"
        );
        assert_eq!(scrub("nothing here", &["", "x1"]), "nothing here");
    }
}
