//! The HTTP side of the fake Nessie: `/api/v2/...` on the API port, `/q/health...` on the
//! management port.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};

use super::repo::{
    iso, key_from_json, key_json, key_str, object, parse_key, parse_merge, parse_ops,
    validate_client_meta, Key, Meta, NessieFakeError, RefKind, RefSpec, Repo, NO_ANCESTOR_HASH,
};
use crate::http::server::json_response;

pub(crate) type Shared = Arc<Mutex<Repo>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Repo> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Routes of the REST API port.
pub(crate) fn api_router(state: Shared) -> Router {
    Router::new()
        .route("/api/v2/config", get(config))
        .route("/api/v2/trees", any(trees_root))
        .route("/api/v2/trees/{*rest}", any(trees))
        .fallback(not_found)
        .with_state(state)
}

/// Routes of the management port.
pub(crate) fn management_router(state: Shared) -> Router {
    Router::new()
        .route("/q/health", get(health_all))
        .route("/q/health/live", get(health_live))
        .route("/q/health/ready", get(health_ready))
        .route("/q/health/started", get(health_started))
        .fallback(not_found_plain)
        .with_state(state)
}

async fn not_found_plain() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({ "message": "Resource not found" }),
    )
}

async fn not_found(headers: HeaderMap, uri: Uri) -> Response {
    error(
        &headers,
        NessieFakeError::new(
            404,
            "NOT_FOUND",
            format!("HTTP 404 Not Found: {}", uri.path()),
        ),
    )
}

fn health_response(state: &Shared, group: Option<&str>) -> Response {
    let (up, body) = lock(state).health(group);
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body)
}

async fn health_all(State(s): State<Shared>) -> Response {
    health_response(&s, None)
}
async fn health_live(State(s): State<Shared>) -> Response {
    health_response(&s, Some("live"))
}
async fn health_ready(State(s): State<Shared>) -> Response {
    health_response(&s, Some("ready"))
}
async fn health_started(State(s): State<Shared>) -> Response {
    health_response(&s, Some("started"))
}

/// Whether the client announced `Nessie-Client-Spec: 2` or higher.
fn client_spec_2(headers: &HeaderMap) -> bool {
    headers
        .get("nessie-client-spec")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|v| v >= 2)
}

fn error(headers: &HeaderMap, e: NessieFakeError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, e.to_json(client_spec_2(headers)))
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, v)
}

/// Query parameters in order (repeated keys kept).
fn query(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn fetch_all(q: &[(String, String)]) -> bool {
    param(q, "fetch").is_some_and(|f| f.eq_ignore_ascii_case("ALL"))
}

fn reject_filter(q: &[(String, String)]) -> Result<(), NessieFakeError> {
    match param(q, "filter") {
        Some(f) if !f.trim().is_empty() => Err(NessieFakeError::bad_request(format!(
            "CEL filter expressions are not evaluated by the fake Nessie server (filter: {f})"
        ))),
        _ => Ok(()),
    }
}

fn max_records(q: &[(String, String)]) -> Result<Option<usize>, NessieFakeError> {
    match param(q, "max-records") {
        None => Ok(None),
        Some(v) => v.parse::<usize>().map(|n| Some(n.max(1))).map_err(|_| {
            NessieFakeError::bad_request(format!("max-records must be an integer, but was '{v}'"))
        }),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, NessieFakeError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| NessieFakeError::bad_request(format!("Unable to parse JSON body: {e}")))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn config(State(s): State<Shared>) -> Response {
    let repo = lock(&s);
    ok(json!({
        "defaultBranch": repo.default_branch,
        "minSupportedApiVersion": 1,
        "maxSupportedApiVersion": 2,
        "actualApiVersion": 2,
        "specVersion": "2.2.0",
        "noAncestorHash": NO_ANCESTOR_HASH,
        "repositoryCreationTimestamp": iso(repo.created_ms),
        "oldestPossibleCommitTimestamp": iso(repo.created_ms),
    }))
}

async fn trees_root(
    State(s): State<Shared>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let q = query(&uri);
    let result = match method {
        Method::GET => list_refs(&s, &q),
        Method::POST => create_ref(&s, &q, &body),
        _ => Err(NessieFakeError::new(
            405,
            "BAD_REQUEST",
            "HTTP 405 Method Not Allowed",
        )),
    };
    result.unwrap_or_else(|e| error(&headers, e))
}

fn list_refs(s: &Shared, q: &[(String, String)]) -> Result<Response, NessieFakeError> {
    reject_filter(q)?;
    let repo = lock(s);
    let all = fetch_all(q);
    let token = param(q, "page-token");
    let max = max_records(q)?;
    let mut refs: Vec<(&String, &(RefKind, String))> = repo
        .refs
        .iter()
        .filter(|(name, _)| token.is_none_or(|t| name.as_str() >= t))
        .collect();
    let mut next = None;
    if let Some(max) = max {
        if refs.len() > max {
            next = refs.get(max).map(|(n, _)| (*n).clone());
            refs.truncate(max);
        }
    }
    let list: Vec<Value> = refs
        .iter()
        .map(|(name, (kind, hash))| repo.reference_json(name, *kind, hash, all))
        .collect();
    Ok(ok(
        json!({ "hasMore": next.is_some(), "token": next, "references": list }),
    ))
}

fn create_ref(
    s: &Shared,
    q: &[(String, String)],
    body: &Bytes,
) -> Result<Response, NessieFakeError> {
    let Some(name) = param(q, "name") else {
        return Err(NessieFakeError::bad_request(
            "createReference.name: must not be null",
        ));
    };
    let kind = match param(q, "type") {
        None => RefKind::Branch,
        Some(t) => RefKind::parse(t)
            .ok_or_else(|| NessieFakeError::bad_request(format!("Invalid reference type '{t}'")))?,
    };
    let source = parse_body(body)?;
    let src_name = source.get("name").and_then(Value::as_str).filter(|_| {
        source
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| !t.eq_ignore_ascii_case("DETACHED"))
    });
    let hash = source.get("hash").and_then(Value::as_str);
    let mut repo = lock(s);
    let created = repo.create_ref(name, kind, src_name, hash)?;
    Ok(ok(
        json!({ "reference": repo.reference_json(name, kind, &created, false) }),
    ))
}

/// Split `rest` (after `/api/v2/trees/`, still percent-encoded) into the ref and the sub-path.
fn split_ref(rest: &str) -> (String, String) {
    const TAILS: [&str; 6] = [
        "history",
        "contents",
        "entries",
        "diff",
        "recent-changes",
        "contents/",
    ];
    let (first, tail) = match rest.split_once('/') {
        Some((f, t)) => (f, t),
        None => (rest, ""),
    };
    let tail_known = tail.is_empty()
        || TAILS
            .iter()
            .any(|t| tail == *t || tail.starts_with(&format!("{t}/")));
    let at = rest
        .find('@')
        .or_else(|| rest.to_ascii_lowercase().find("%40"));
    if !tail_known {
        if let Some(at) = at {
            // `my/branch@hash/...`: the name may contain slashes when terminated by '@'.
            let after = &rest[at..];
            let end = after.find('/').map_or(rest.len(), |i| at + i);
            return (
                decode(&rest[..end]),
                rest.get(end + 1..).unwrap_or("").to_string(),
            );
        }
    }
    (decode(first), tail.to_string())
}

async fn trees(
    State(s): State<Shared>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let rest = uri
        .path()
        .strip_prefix("/api/v2/trees/")
        .unwrap_or("")
        .to_string();
    let (reference, tail) = split_ref(&rest);
    let q = query(&uri);
    let result = route_tree(&s, &method, &reference, &tail, &q, &body);
    result.unwrap_or_else(|e| error(&headers, e))
}

fn route_tree(
    s: &Shared,
    method: &Method,
    reference: &str,
    tail: &str,
    q: &[(String, String)],
    body: &Bytes,
) -> Result<Response, NessieFakeError> {
    let spec = RefSpec::parse(reference).map_err(|mut e| {
        // The real server names the JAX-RS method whose `ref` parameter failed validation.
        let op = match (method.as_str(), tail) {
            ("GET", "") => "getReferenceByName",
            ("PUT", "") => "assignReference",
            ("DELETE", "") => "deleteReference",
            ("GET", "history") => "getCommitLog",
            ("POST", "history/commit") => "commitMultipleOperations",
            ("POST", "history/merge") => "mergeRefIntoBranch",
            ("POST", "history/transplant") => "transplantCommitsIntoBranch",
            ("GET", "entries") => "getEntries",
            ("GET", "contents") => "getSeveralContents",
            _ => "getContent",
        };
        e.message = format!("{op}.params.ref: {}", e.message);
        e
    })?;
    let wanted = match param(q, "type") {
        None => None,
        Some(t) => Some(RefKind::parse(t).ok_or_else(|| {
            NessieFakeError::bad_request(format!("Invalid reference type '{t}'"))
        })?),
    };
    match (method.as_str(), tail) {
        ("GET", "") => {
            if spec.hash.is_some() || !spec.rel.is_empty() {
                return Err(NessieFakeError::bad_request(
                    "Hashes are not allowed when fetching a reference by name",
                ));
            }
            let repo = lock(s);
            let (name, kind, hash) = repo.named(spec.name.as_deref().unwrap_or("-"))?;
            Ok(ok(
                json!({ "reference": repo.reference_json(&name, kind, &hash, fetch_all(q)) }),
            ))
        }
        ("PUT", "") => {
            let target = parse_body(body)?;
            let Some(hash) = target.get("hash").and_then(Value::as_str) else {
                return Err(NessieFakeError::bad_request(
                    "Target hash must be provided.",
                ));
            };
            let mut repo = lock(s);
            if let Some(n) = target.get("name").and_then(Value::as_str) {
                if target
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| !t.eq_ignore_ascii_case("DETACHED"))
                {
                    repo.hash_on_ref(n, hash)?;
                }
            }
            let r = repo.assign(&spec, wanted, hash)?;
            Ok(ok(json!({ "reference": r.reference_json() })))
        }
        ("DELETE", "") => {
            let r = lock(s).delete(&spec, wanted)?;
            Ok(ok(json!({ "reference": r.reference_json() })))
        }
        ("GET", "history") => history(s, &spec, q),
        ("POST", "history/commit") => {
            let body = parse_body(body)?;
            validate_client_meta(body.get("commitMeta"))?;
            let meta = Meta::from_request(body.get("commitMeta"));
            let ops = parse_ops(&body)?;
            let (head, added) = lock(s).commit_ops(&spec, meta, ops)?;
            let added: Vec<Value> = added
                .iter()
                .map(|(k, id)| json!({ "key": key_json(k), "contentId": id }))
                .collect();
            Ok(ok(
                json!({ "targetBranch": head.reference_json(), "addedContents": added }),
            ))
        }
        ("POST", "history/merge") => {
            let body = parse_body(body)?;
            validate_client_meta(body.get("commitMeta"))?;
            let outcome = lock(s).merge(&spec, parse_merge(&body))?;
            Ok(ok(outcome.to_json()))
        }
        ("GET", "contents") | ("POST", "contents") => {
            // GET names the keys as `key=a.b` parameters, POST (what the Java client sends) as
            // `{"requestedKeys": [ContentKey]}`.
            let keys: Vec<Key> = if method == Method::POST {
                let body = parse_body(body)?;
                body.get("requestedKeys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(key_from_json).collect::<Result<_, _>>())
                    .transpose()?
                    .unwrap_or_default()
            } else {
                q.iter()
                    .filter(|(k, _)| k == "key")
                    .map(|(_, v)| parse_key(v))
                    .collect::<Result<_, _>>()?
            };
            let repo = lock(s);
            let r = repo.resolve(&spec)?;
            let contents = &repo.commit(&r.hash)?.contents;
            let entries: Vec<Value> = keys
                .iter()
                .filter_map(|key| {
                    contents
                        .get(key)
                        .map(|c| json!({ "key": key_json(key), "content": c }))
                })
                .collect();
            Ok(ok(
                json!({ "contents": entries, "effectiveReference": r.reference_json() }),
            ))
        }
        ("GET", t) if t.starts_with("contents/") => {
            let raw = decode(t.trim_start_matches("contents/"));
            let key = parse_key(&raw)?;
            let repo = lock(s);
            let r = repo.resolve(&spec)?;
            match repo.commit(&r.hash)?.contents.get(&key) {
                Some(c) => Ok(ok(
                    json!({ "content": c, "effectiveReference": r.reference_json() }),
                )),
                None => Err(NessieFakeError::new(
                    404,
                    "CONTENT_NOT_FOUND",
                    format!(
                        "Could not find content for key '{}' in reference '{}'.",
                        key_str(&key),
                        reference
                    ),
                )),
            }
        }
        ("GET", "entries") => {
            reject_filter(q)?;
            let repo = lock(s);
            let r = repo.resolve(&spec)?;
            // Like the real server, every entry carries `content`: null unless `content=true`
            // asked for the content objects.
            let with_content = param(q, "content").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let entries: Vec<Value> = repo
                .commit(&r.hash)?
                .contents
                .iter()
                .map(|(k, c)| {
                    let content = if with_content { c.clone() } else { Value::Null };
                    let mut e = json!({
                        "type": c.get("type").cloned().unwrap_or(Value::Null),
                        "name": key_json(k),
                        "content": content,
                    });
                    if let Some(id) = c.get("id") {
                        e["contentId"] = id.clone();
                    }
                    e
                })
                .collect();
            Ok(ok(
                json!({ "hasMore": false, "token": null, "entries": entries, "effectiveReference": r.reference_json() }),
            ))
        }
        ("POST", "history/transplant") => {
            let body = parse_body(body)?;
            let hashes: Vec<String> = body
                .get("hashesToTransplant")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let outcome = lock(s).transplant(&spec, parse_merge(&body), &hashes)?;
            Ok(ok(outcome.to_json()))
        }
        (_, "recent-changes") => Err(NessieFakeError::bad_request(format!(
            "{method} /api/v2/trees/{{ref}}/{tail} is not implemented by the fake Nessie server"
        ))),
        (_, t) if t.starts_with("diff") => Err(NessieFakeError::bad_request(
            "GET /api/v2/trees/{from}/diff/{to} is not implemented by the fake Nessie server",
        )),
        _ => Err(NessieFakeError::new(
            404,
            "NOT_FOUND",
            format!("HTTP 404 Not Found: {method} .../trees/{reference}/{tail}"),
        )),
    }
}

fn history(
    s: &Shared,
    spec: &RefSpec,
    q: &[(String, String)],
) -> Result<Response, NessieFakeError> {
    reject_filter(q)?;
    let repo = lock(s);
    let r = repo.resolve(spec)?;
    let all = fetch_all(q);
    let limit = param(q, "limit-hash");
    let max = max_records(q)?;
    let start = param(q, "page-token")
        .unwrap_or(r.hash.as_str())
        .to_string();
    let mut entries = Vec::new();
    let mut next = None;
    for c in repo.log(&start) {
        if max.is_some_and(|m| entries.len() >= m) {
            next = Some(c.hash.clone());
            break;
        }
        // A v2 log entry always carries `parentCommitHash`; `operations` is null unless
        // `fetch=ALL` (as the real server sends it).
        let mut e = object(json!({ "commitMeta": c.meta_json() }));
        e.insert("parentCommitHash".into(), json!(c.parents.first()));
        e.insert(
            "operations".into(),
            if all {
                json!(c.operations)
            } else {
                Value::Null
            },
        );
        entries.push(Value::Object(e));
        if limit.is_some_and(|l| c.hash.starts_with(l)) {
            break;
        }
    }
    Ok(ok(
        json!({ "hasMore": next.is_some(), "token": next, "logEntries": entries }),
    ))
}

#[cfg(test)]
mod tests {
    use super::split_ref;

    #[test]
    fn splits_refs_with_slashes() {
        assert_eq!(split_ref("main"), ("main".into(), "".into()));
        assert_eq!(
            split_ref("main@abcdef12/history"),
            ("main@abcdef12".into(), "history".into())
        );
        assert_eq!(
            split_ref("main/contents/a.b@c"),
            ("main".into(), "contents/a.b@c".into())
        );
        assert_eq!(
            split_ref("my/branch@abcdef12/history/merge"),
            ("my/branch@abcdef12".into(), "history/merge".into())
        );
        assert_eq!(split_ref("my/branch@"), ("my/branch@".into(), "".into()));
        assert_eq!(
            split_ref("my%2Fbranch%40"),
            ("my/branch@".into(), "".into())
        );
    }
}
