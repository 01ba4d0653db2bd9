//! Plumbing shared by the REST probe families of this crate (Prometheus, the generic HTTP probe,
//! Kafka Connect, Trino, MinIO, Loki): one request under the probe's deadline, URL encoding, bounded
//! text.

use rb_core::{ProbeContext, ProbeError};

use crate::common::ProbeSite;
use crate::transport::{HttpClient, HttpRequest, HttpResponse};

/// Send `request` under the context's deadline; a transport failure becomes a [`ProbeError`] of the
/// matching kind at `site` (refused → unreachable, no answer → timeout, cut-off body → bad response).
pub(crate) async fn send<C: HttpClient + ?Sized>(
    site: &ProbeSite<'_>,
    ctx: &ProbeContext,
    client: &C,
    request: HttpRequest,
) -> Result<HttpResponse, ProbeError> {
    site.within(ctx, async {
        client.send(request).await.map_err(|e| e.at(site))
    })
    .await
}

/// Percent-encode `s` for a URL query value or a path segment: everything but RFC 3986's unreserved
/// characters (`A–Z a–z 0–9 - . _ ~`) is escaped, so `+`, `&`, `=`, `/`, `{` and spaces are safe.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            _ => {
                out.push('%');
                out.push(hex(b >> 4));
                out.push(hex(b & 0x0f));
            }
        }
    }
    out
}

fn hex(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// `path?k1=v1&k2=v2` with every key and value encoded.
#[allow(dead_code)] // not every family uses it
pub(crate) fn with_query(path: &str, params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// At most `max` characters of `s`, with `…` when cut (a character boundary is never split).
#[allow(dead_code)] // not every family uses it
pub(crate) fn truncate(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        None => (s.to_string(), false),
        Some((i, _)) => {
            let mut t = s[..i].to_string();
            t.push('…');
            (t, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode("up{job=\"a b\"}"), "up%7Bjob%3D%22a%20b%22%7D");
        assert_eq!(encode("a+b&c/d"), "a%2Bb%26c%2Fd");
        assert_eq!(encode("ñ"), "%C3%B1");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate("héllo", 2), ("hé…".to_string(), true));
        assert_eq!(truncate("hé", 2), ("hé".to_string(), false));
        assert_eq!(truncate("", 0), (String::new(), false));
    }

    #[test]
    fn query_strings() {
        assert_eq!(
            with_query("/q", &[("query", "a b".into()), ("limit", "3".into())]),
            "/q?query=a%20b&limit=3"
        );
        assert_eq!(with_query("/q", &[]), "/q");
    }
}
