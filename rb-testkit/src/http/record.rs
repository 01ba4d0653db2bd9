//! The record of requests a fake received.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method, upper case (`GET`, `PUT`, …).
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string, if any (`mode=cancel`).
    pub query: Option<String>,
    /// Request headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body as received.
    pub body: Vec<u8>,
    /// Wall-clock time of arrival.
    pub at: SystemTime,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `None` when it is empty or not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether this request's method is mutating (anything but GET, HEAD and OPTIONS).
    pub fn is_mutating(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }

    /// `METHOD /path?query` — for failure messages.
    pub fn line(&self) -> String {
        match &self.query {
            Some(q) => format!("{} {}?{}", self.method, self.path, q),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// A shared, append-only record of the requests a fake received. Cloning shares the record.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    inner: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl RequestLog {
    /// A new, empty record.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&self, req: RecordedRequest) {
        self.lock().push(req);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        // A poisoned lock only means a test thread panicked while holding it; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request so far, in arrival order.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    /// Requests whose method equals `method` (`"*"` for any) and whose path matches `pattern`
    /// (see [`path_matches`]).
    pub fn matching(&self, method: &str, pattern: &str) -> Vec<RecordedRequest> {
        self.lock()
            .iter()
            .filter(|r| {
                (method == "*" || r.method.eq_ignore_ascii_case(method))
                    && path_matches(pattern, &r.path)
            })
            .cloned()
            .collect()
    }

    /// Requests that could change the server's state (anything but GET, HEAD and OPTIONS).
    pub fn mutating(&self) -> Vec<RecordedRequest> {
        self.lock()
            .iter()
            .filter(|r| r.is_mutating())
            .cloned()
            .collect()
    }

    /// Number of requests so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no request arrived yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forget every request so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// One line per request, for failure messages.
    pub fn describe(&self) -> String {
        self.lock()
            .iter()
            .map(|r| r.line())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Glob match of a path against a pattern: `*` matches exactly one segment, `**` any number of
/// segments (including none); other segments match literally. `"/jobs/*/status"` matches
/// `"/jobs/abc/status"`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    glob(&pat, &segs)
}

fn glob(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|i| glob(rest, &segs[i..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => (*p == "*" || p == s) && glob(rest, srest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn globs() {
        assert!(path_matches("/jobs/*/status", "/jobs/abc/status"));
        assert!(!path_matches("/jobs/*/status", "/jobs/abc/def/status"));
        assert!(path_matches("/jobs/**", "/jobs/abc/def/status"));
        assert!(path_matches("/jobs/**/status", "/jobs/status"));
        assert!(!path_matches("/jobs/*", "/jobs"));
        assert!(path_matches("/", "/"));
    }
}
