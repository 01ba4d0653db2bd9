//! Secrets that never show: not in `Debug`, not in logs, not in the journal or reports.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

/// A password, token or key. `Debug`, `Display` and `Serialize` all print `[redacted]`; the value is
/// only reachable through [`Secret::expose`], at the point it is handed to a driver.
///
/// ```
/// let s = rb_core::Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret([redacted])");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// Read a secret from an environment variable (the way runbook configs name credentials).
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().map(Self::new)
    }

    /// The secret value, for handing to a driver. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// Hide the password (and any `token`, `password`, `secret`, `key` query parameter) of a URL-like string,
/// for error messages and logs: `postgres://rb:pw@host/db` → `postgres://rb:[redacted]@host/db`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let user = userinfo[..colon].to_string();
                out.replace_range(rest_start..rest_start + at, &format!("{user}:[redacted]"));
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if [
                        "token",
                        "password",
                        "secret",
                        "key",
                        "apikey",
                        "api_key",
                        "access_token",
                    ]
                    .contains(&k.to_ascii_lowercase().as_str()) =>
                {
                    format!("{k}=[redacted]")
                }
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("pw-123");
        assert!(!format!("{s:?} {s}").contains("pw-123"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://rb:pw@127.0.0.1:5432/db"),
            "postgres://rb:[redacted]@127.0.0.1:5432/db"
        );
        assert_eq!(
            redact_url("http://h/x?a=1&token=abc"),
            "http://h/x?a=1&token=[redacted]"
        );
        assert_eq!(redact_url("http://h:80/x"), "http://h:80/x");
        assert_eq!(redact_url("mysql://user@h/db"), "mysql://user@h/db");
    }
}
