//! Routing: one fallback handler that dispatches like Flink's REST router, so unknown routes and
//! wrong methods fail the way the real server fails.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::model::{spec_vertices, Cluster, Jar, JobStatus, OpKind};
use super::render::{self as r, JVM_METRICS, TM_EXTRA_METRICS};

pub(crate) type Shared = Arc<Mutex<Cluster>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Cluster> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A few frames after an exception line, as Flink's REST handler errors carry a full stack trace.
const HANDLER_FRAMES: &str = "\n\tat org.apache.flink.runtime.rest.handler.AbstractHandler.respondAsLeader(AbstractHandler.java:196)\n\tat org.apache.flink.runtime.rest.handler.LeaderRetrievalHandler.lambda$channelRead0$0(LeaderRetrievalHandler.java:87)\n\tat org.apache.flink.runtime.rest.handler.router.RouterHandler.routed(RouterHandler.java:115)\n";

fn respond(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

fn ok(body: Value) -> Response {
    respond(StatusCode::OK, body)
}

fn errors(status: StatusCode, msg: String) -> Response {
    respond(status, json!({ "errors": [msg] }))
}

fn rest_error(status: StatusCode, msg: &str) -> Response {
    errors(
        status,
        format!(
            "org.apache.flink.runtime.rest.handler.RestHandlerException: {msg}{HANDLER_FRAMES}"
        ),
    )
}

fn no_route(method: &Method, path: &str, query: Option<&str>) -> Response {
    if method == Method::GET {
        errors(
            StatusCode::NOT_FOUND,
            format!("Unable to load requested file {path}."),
        )
    } else {
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        errors(StatusCode::NOT_FOUND, format!("Not found: {path}{q}"))
    }
}

fn bad_path_param(name: &str, value: &str) -> Response {
    rest_error(
        StatusCode::BAD_REQUEST,
        &format!("Bad request, could not parse parameters: Cannot resolve path parameter ({name}) from value \"{value}\"."),
    )
}

fn bad_query_param(name: &str, value: &str) -> Response {
    rest_error(
        StatusCode::BAD_REQUEST,
        &format!("Bad request, could not parse parameters: Cannot resolve query parameter ({name}) from value \"{value}\"."),
    )
}

fn bad_body(kind: &str) -> Response {
    rest_error(
        StatusCode::BAD_REQUEST,
        &format!("Request did not match expected format {kind}."),
    )
}

fn job_not_found(id: &str) -> Response {
    errors(
        StatusCode::NOT_FOUND,
        format!("org.apache.flink.runtime.rest.NotFoundException: Job {id} not found\n\tat org.apache.flink.runtime.rest.handler.job.AbstractExecutionGraphHandler.lambda$handleRequest$1(AbstractExecutionGraphHandler.java:99)\n\tat java.base/java.util.concurrent.CompletableFuture.uniExceptionally(CompletableFuture.java:990)\n"),
    )
}

fn job_gone_500(id: &str) -> Response {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"errors": [
            "Internal server error.",
            format!("<Exception on server side:\norg.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job ({id})\n\tat org.apache.flink.runtime.dispatcher.Dispatcher.getJobMasterGateway(Dispatcher.java:2432)\n\tat org.apache.flink.runtime.dispatcher.Dispatcher.performOperationOnJobMasterGateway(Dispatcher.java:2447)\n\nEnd of exception on server side>")
        ]}),
    )
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Decoded query pairs (`+` and `%XX` decoded).
fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn list_param(pairs: &[(String, String)], name: &str) -> Option<Vec<String>> {
    let vals: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if pairs.iter().any(|(k, _)| k == name) {
        Some(vals)
    } else {
        None
    }
}

/// `GET …/metrics[?get=a,b]` over one component: names only, or the requested values (strings).
fn metric_values(all: &[(String, String)], pairs: &[(String, String)]) -> Value {
    match list_param(pairs, "get") {
        None => Value::Array(all.iter().map(|(k, _)| json!({ "id": k })).collect()),
        Some(want) => Value::Array(
            want.iter()
                .filter_map(|w| all.iter().find(|(k, _)| k == w))
                .map(|(k, v)| json!({"id": k, "value": v}))
                .collect(),
        ),
    }
}

const AGGS: [&str; 5] = ["min", "max", "avg", "sum", "skew"];

/// `GET …/metrics?get=…&agg=…` over many components: numbers.
fn metric_aggregates(components: &[Vec<(String, String)>], pairs: &[(String, String)]) -> Response {
    let aggs = match list_param(pairs, "agg") {
        None => AGGS.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        Some(a) => {
            if let Some(bad) = a.iter().find(|x| !AGGS.contains(&x.as_str())) {
                return bad_query_param("agg", bad);
            }
            a
        }
    };
    let Some(want) = list_param(pairs, "get") else {
        let mut names: Vec<&String> = components.iter().flatten().map(|(k, _)| k).collect();
        names.sort();
        names.dedup();
        return ok(Value::Array(
            names.into_iter().map(|n| json!({ "id": n })).collect(),
        ));
    };
    let mut out = Vec::new();
    for w in &want {
        let vals: Vec<f64> = components
            .iter()
            .filter_map(|c| c.iter().find(|(k, _)| k == w))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .collect();
        if vals.is_empty() {
            continue;
        }
        let n = vals.len() as f64;
        let sum: f64 = vals.iter().sum();
        let avg = sum / n;
        let mut o = serde_json::Map::new();
        o.insert("id".into(), json!(w));
        for a in &aggs {
            let v = match a.as_str() {
                "min" => vals.iter().copied().fold(f64::INFINITY, f64::min),
                "max" => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "avg" => avg,
                "sum" => sum,
                _ => {
                    let m2 = vals.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / n;
                    let m3 = vals.iter().map(|x| (x - avg).powi(3)).sum::<f64>() / n;
                    if m2 == 0.0 {
                        0.0
                    } else {
                        m3 / m2.powf(1.5)
                    }
                }
            };
            o.insert(a.clone(), json!(v));
        }
        out.push(Value::Object(o));
    }
    ok(Value::Array(out))
}

fn jvm_component(extra: &[(&str, f64)], tm: bool) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = extra
        .iter()
        .map(|(k, x)| (k.to_string(), format!("{x}")))
        .collect();
    let names = JVM_METRICS.iter().chain(if tm {
        TM_EXTRA_METRICS.iter()
    } else {
        [].iter()
    });
    for n in names {
        let x = r::jvm_metric(n);
        let s = if *n == "Status.JVM.CPU.Load" {
            "0.0".to_string()
        } else {
            format!("{}", x as i64)
        };
        v.push((n.to_string(), s));
    }
    v
}

/// The whole REST API.
pub(crate) async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let seg: Vec<&str> = segs.iter().map(String::as_str).collect();

    // multipart upload needs the request itself
    if method == Method::POST && seg == ["jars", "upload"] {
        return upload(state, req).await;
    }
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return rest_error(
                StatusCode::BAD_REQUEST,
                "Bad request, could not read the request body.",
            )
        }
    };
    let pairs = query_pairs(query.as_deref());
    let now = Instant::now();
    let mut c = lock(&state);
    c.advance(now);
    let now_ms = c.clock.ms(now);

    match (method.clone(), seg.as_slice()) {
        (Method::GET, ["config"]) => ok(r::config(&c)),
        (Method::GET, ["overview"]) => ok(r::overview(&c)),
        (Method::GET, ["jobs"]) => ok(r::jobs(&c)),
        (Method::GET, ["jobs", "overview"]) => ok(r::jobs_overview(&c, now_ms)),
        (Method::GET, ["jobs", "metrics"]) => {
            let filter = list_param(&pairs, "jobs");
            let comps: Vec<Vec<(String, String)>> = c
                .metrics
                .iter()
                .filter(|(id, _)| filter.as_ref().is_none_or(|f| f.contains(id)))
                .map(|(_, m)| m.job.clone())
                .collect();
            metric_aggregates(&comps, &pairs)
        }
        (Method::GET, ["taskmanagers"]) => ok(r::taskmanagers(&c)),
        (Method::GET, ["taskmanagers", "metrics"]) => {
            let comps: Vec<Vec<(String, String)>> = c.tms.iter().map(|_| jvm_component(&[], true)).collect();
            metric_aggregates(&comps, &pairs)
        }
        (Method::GET, ["taskmanagers", tm]) => match c.tms.iter().find(|t| t.id == *tm) {
            Some(t) => ok(r::taskmanager_detail(&c, t)),
            None => errors(
                StatusCode::NOT_FOUND,
                format!("org.apache.flink.runtime.rest.NotFoundException: Could not find TaskManager {tm}.\n\tat org.apache.flink.runtime.rest.handler.taskmanager.TaskManagerDetailsHandler.lambda$handleRequest$0(TaskManagerDetailsHandler.java:105)\n"),
            ),
        },
        (Method::GET, ["taskmanagers", tm, "metrics"]) => {
            if c.tms.iter().any(|t| t.id == *tm) {
                ok(metric_values(&jvm_component(&[], true), &pairs))
            } else {
                ok(json!([]))
            }
        }
        (Method::GET, ["jobmanager", "config"]) => ok(r::jobmanager_config(&c)),
        (Method::GET, ["jobmanager", "environment"]) => ok(r::jobmanager_environment()),
        (Method::GET, ["jobmanager", "metrics"]) => {
            let running = c.jobs.iter().filter(|j| j.status == JobStatus::Running).count() as f64;
            let extra = [
                ("numRunningJobs", running),
                ("numRegisteredTaskManagers", c.tms.len() as f64),
                ("taskSlotsAvailable", f64::from(c.slots_free())),
                ("taskSlotsTotal", f64::from(c.slots_total())),
            ];
            ok(metric_values(&jvm_component(&extra, false), &pairs))
        }
        (Method::GET, ["applications", "overview"]) => {
            let list: Vec<Value> = c.jobs.iter().rev().map(|j| r::application(j, now_ms)).collect();
            ok(json!({ "applications": list }))
        }
        (Method::GET, ["applications", id]) | (Method::GET, ["applications", id, "exceptions"]) => {
            if !is_hex32(id) {
                return bad_path_param("applicationid", id);
            }
            let id = id.to_ascii_lowercase();
            match c.job(&id) {
                None => errors(
                    StatusCode::NOT_FOUND,
                    format!("org.apache.flink.runtime.rest.NotFoundException: Application {id} not found\n\tat org.apache.flink.runtime.rest.handler.application.ApplicationDetailsHandler.lambda$handleRequest$0(ApplicationDetailsHandler.java:77)\n"),
                ),
                Some(j) if seg.len() == 2 => ok(r::application_detail(j, now_ms)),
                Some(_) => ok(json!({"exceptionHistory": {"entries": []}})),
            }
        }
        (Method::GET, ["jars"]) => ok(r::jars(&c)),
        (Method::GET, ["jars", jar, "plan"]) | (Method::POST, ["jars", jar, "plan"]) => {
            if !c.jars.iter().any(|j| j.id == *jar) {
                return jar_missing(&c, jar);
            }
            let name = param(&pairs, "programArg")
                .or_else(|| param(&pairs, "programArgs"))
                .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| c.program.name.clone());
            let vertices = spec_vertices(&c.program, now_ms);
            ok(json!({ "plan": r::plan_parts(&super::model::random_id(), &name, &vertices) }))
        }
        (Method::DELETE, ["jars", jar]) => {
            let before = c.jars.len();
            c.jars.retain(|j| j.id != *jar);
            if c.jars.len() == before {
                jar_missing(&c, jar)
            } else {
                ok(json!({}))
            }
        }
        (Method::POST, ["jars", jar, "run"]) => run_jar(&mut c, jar, &body, now),
        (_, ["jobs", id, rest @ ..]) => {
            let id = *id;
            let known = job_route(&method, rest);
            if !known {
                return no_route(&method, &path, query.as_deref());
            }
            if !is_hex32(id) {
                return bad_path_param("jobid", id);
            }
            let id = id.to_ascii_lowercase();
            job_request(&mut c, &method, &id, rest, &pairs, &body, now, now_ms)
        }
        _ => no_route(&method, &path, query.as_deref()),
    }
}

/// Whether Flink has a handler for this method and path under `/jobs/<id>`.
fn job_route(method: &Method, rest: &[&str]) -> bool {
    let get = *method == Method::GET;
    match rest {
        [] => get || *method == Method::PATCH,
        ["status"]
        | ["checkpoints"]
        | ["checkpoints", "config"]
        | ["checkpoints", "details", _]
        | ["exceptions"]
        | ["config"]
        | ["plan"]
        | ["metrics"]
        | ["execution-result"]
        | ["jobmanager", "config"]
        | ["rescales", "config"]
        | ["rescales", "overview"]
        | ["rescales", "history"]
        | ["rescales", "summary"]
        | ["rescales", "details", _]
        | ["accumulators"]
        | ["vertices", _]
        | ["vertices", _, "metrics"]
        | ["vertices", _, "subtasks", "metrics"]
        | ["vertices", _, "backpressure"]
        | ["vertices", _, "watermarks"]
        | ["vertices", _, "taskmanagers"]
        | ["vertices", _, "subtasktimes"]
        | ["rescaling", _]
        | ["savepoints", _] => get,
        ["resource-requirements"] => get || *method == Method::PUT,
        ["rescaling"] => *method == Method::PATCH,
        ["savepoints"] | ["stop"] => *method == Method::POST,
        _ => false,
    }
}

fn rescaling_disabled() -> Response {
    errors(
        StatusCode::SERVICE_UNAVAILABLE,
        "org.apache.flink.runtime.rest.handler.RestHandlerException: Rescaling is temporarily disabled. See FLINK-12312.\n\tat org.apache.flink.runtime.rest.handler.job.rescaling.RescalingHandlers.featureDisabledException(RescalingHandlers.java:50)\n\tat org.apache.flink.runtime.rest.handler.job.rescaling.RescalingHandlers$RescalingTriggerHandler.handleRequest(RescalingHandlers.java:72)\n".to_string(),
    )
}

/// Parse a JSON object body strictly (unknown fields rejected, like Flink's strict mapper); an empty
/// body counts as `{}`.
fn strict_body(
    body: &Bytes,
    allowed: &[&str],
    kind: &str,
) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if m.keys().all(|k| allowed.contains(&k.as_str())) => Ok(m),
        _ => Err(Box::new(bad_body(kind))),
    }
}

fn opt_bool(
    m: &serde_json::Map<String, Value>,
    k: &str,
    kind: &str,
) -> Result<Option<bool>, Box<Response>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Box::new(bad_body(kind))),
    }
}

fn opt_str(
    m: &serde_json::Map<String, Value>,
    k: &str,
    kind: &str,
) -> Result<Option<String>, Box<Response>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Box::new(bad_body(kind))),
    }
}

fn format_type(
    m: &serde_json::Map<String, Value>,
    kind: &str,
) -> Result<&'static str, Box<Response>> {
    match opt_str(m, "formatType", kind)?.as_deref() {
        None | Some("CANONICAL") => Ok("CANONICAL"),
        Some("NATIVE") => Ok("NATIVE"),
        Some(_) => Err(Box::new(bad_body(kind))),
    }
}

fn trigger_id(
    m: &serde_json::Map<String, Value>,
    kind: &str,
) -> Result<Option<String>, Box<Response>> {
    match opt_str(m, "triggerId", kind)? {
        None => Ok(None),
        Some(t) if is_hex32(&t) => Ok(Some(t.to_ascii_lowercase())),
        Some(_) => Err(Box::new(bad_body(kind))),
    }
}

#[allow(clippy::too_many_arguments)]
fn job_request(
    c: &mut Cluster,
    method: &Method,
    id: &str,
    rest: &[&str],
    pairs: &[(String, String)],
    body: &Bytes,
    now: Instant,
    now_ms: i64,
) -> Response {
    // handlers that do not need the job to exist
    match (method.clone(), rest) {
        (Method::PATCH, ["rescaling"]) | (Method::GET, ["rescaling", _]) => {
            return rescaling_disabled()
        }
        (Method::GET, ["metrics"]) => {
            let vals = c.metrics.get(id).map(|m| m.job.clone()).unwrap_or_default();
            return ok(metric_values(&vals, pairs));
        }
        (Method::GET, ["savepoints", trig]) => {
            if !is_hex32(trig) {
                return bad_path_param("triggerid", trig);
            }
            let trig = trig.to_ascii_lowercase();
            return match c.ops.iter().find(|o| o.job == id && o.trigger == trig) {
                Some(op) => ok(r::savepoint_status(op)),
                None => rest_error(
                    StatusCode::NOT_FOUND,
                    &format!("There is no savepoint operation with triggerId={trig} for job {id}."),
                ),
            };
        }
        (Method::POST, ["savepoints"]) => {
            const KIND: &str = "SavepointTriggerRequestBody";
            let m = match strict_body(
                body,
                &["cancel-job", "target-directory", "formatType", "triggerId"],
                KIND,
            ) {
                Ok(m) => m,
                Err(e) => return *e,
            };
            let parsed = (|| {
                let cancel = opt_bool(&m, "cancel-job", KIND)?.unwrap_or(false);
                let dir = opt_str(&m, "target-directory", KIND)?;
                let fmt = format_type(&m, KIND)?;
                let trig = trigger_id(&m, KIND)?;
                Ok::<_, Box<Response>>((cancel, dir, fmt, trig))
            })();
            let (cancel, dir, fmt, trig) = match parsed {
                Ok(p) => p,
                Err(e) => return *e,
            };
            let t = c.trigger_op(
                id,
                trig,
                OpKind::Savepoint { cancel_job: cancel },
                dir,
                fmt,
                now,
            );
            return respond(StatusCode::ACCEPTED, json!({ "request-id": t }));
        }
        (Method::POST, ["stop"]) => {
            const KIND: &str = "StopWithSavepointRequestBody";
            let m = match strict_body(
                body,
                &["drain", "targetDirectory", "formatType", "triggerId"],
                KIND,
            ) {
                Ok(m) => m,
                Err(e) => return *e,
            };
            let parsed = (|| {
                let _drain = opt_bool(&m, "drain", KIND)?.unwrap_or(false);
                let dir = opt_str(&m, "targetDirectory", KIND)?;
                let fmt = format_type(&m, KIND)?;
                let trig = trigger_id(&m, KIND)?;
                Ok::<_, Box<Response>>((dir, fmt, trig))
            })();
            let (dir, fmt, trig) = match parsed {
                Ok(p) => p,
                Err(e) => return *e,
            };
            let t = c.trigger_op(id, trig, OpKind::Stop, dir, fmt, now);
            return respond(StatusCode::ACCEPTED, json!({ "request-id": t }));
        }
        _ => {}
    }
    let Ok(i) = c.job_idx(id) else {
        return match (method.clone(), rest) {
            // these ask the dispatcher, which does not know the job (an unhandled
            // FlinkJobNotFoundException: 500 with the server-side trace)
            (_, ["resource-requirements"]) | (Method::GET, ["status"]) => job_gone_500(id),
            (Method::PATCH, []) => rest_error(StatusCode::NOT_FOUND, "Job could not be found."),
            // the metric-store views do not need the job
            (Method::GET, ["vertices", vid, tail @ ..])
                if is_hex32(vid) && !matches!(tail, [] | ["taskmanagers"] | ["subtasktimes"]) =>
            {
                unknown_vertex(tail, vid)
            }
            (_, ["execution-result"]) => rest_error(
                StatusCode::NOT_FOUND,
                &format!("Could not find Flink job ({id})"),
            ),
            _ => job_not_found(id),
        };
    };
    match (method.clone(), rest) {
        (Method::GET, ["status"]) => return ok(r::job_status(&c.jobs[i])),
        (Method::GET, ["execution-result"]) => return ok(r::execution_result(&c.jobs[i])),
        (Method::GET, ["resource-requirements"]) => {
            if c.jobs[i].status.is_terminal() {
                return job_gone_500(id);
            }
            return ok(r::resource_requirements(&c.jobs[i]));
        }
        (Method::PUT, ["resource-requirements"]) => return put_requirements(c, i, body, now),
        (Method::PATCH, []) => {
            match param(pairs, "mode") {
                None | Some("cancel") => {}
                Some("stop") => {
                    return rest_error(
                        StatusCode::PERMANENT_REDIRECT,
                        "The termination mode \"stop\" has been removed. For an ungraceful shutdown, please use \"cancel\" instead. For a graceful shutdown, please use \"jobs/:jobId/stop\" instead.",
                    )
                }
                Some(other) => return bad_query_param("mode", other),
            }
            let st = c.jobs[i].status;
            if st.is_terminal() {
                return rest_error(
                    StatusCode::CONFLICT,
                    &format!("Job cancellation failed because the job has already reached another terminal state ({}).", st.name()),
                );
            }
            if st != JobStatus::Cancelling {
                c.cancel(i, now);
            }
            return respond(StatusCode::ACCEPTED, json!({}));
        }
        _ => {}
    }
    // everything else reads the cached execution graph
    let retained = c.cfg.checkpoints_retained;
    let Some(j) = c.cached_job(id, now) else {
        return job_not_found(id);
    };
    match rest {
        [] => ok(r::job_detail(&j, now, now_ms)),
        ["checkpoints"] => ok(r::checkpoints(&j, retained)),
        ["checkpoints", "config"] => ok(r::checkpoints_config(c)),
        ["checkpoints", "details", cid] => {
            let Ok(n) = cid.parse::<u64>() else {
                return bad_path_param("checkpointid", cid);
            };
            match j.checkpoints.records.iter().find(|x| x.id == n) {
                Some(rec) => ok(r::checkpoint_record(&j, rec, retained, true)),
                None => errors(
                    StatusCode::NOT_FOUND,
                    format!("org.apache.flink.runtime.rest.NotFoundException: Could not find checkpointing statistics for checkpoint {n}.\n\tat org.apache.flink.runtime.rest.handler.job.checkpoints.CheckpointStatisticDetailsHandler.handleCheckpointStatsRequest(CheckpointStatisticDetailsHandler.java:87)\n"),
                ),
            }
        }
        ["exceptions"] => {
            let max = match param(pairs, "maxExceptions") {
                None => None,
                Some(v) => match v.parse::<usize>() {
                    Ok(n) => Some(n),
                    Err(_) => return bad_query_param("maxExceptions", v),
                },
            };
            ok(r::exceptions(&j, max))
        }
        ["config"] => ok(r::job_config(&j)),
        ["plan"] => ok(json!({ "plan": r::plan(&j) })),
        ["accumulators"] => ok(json!({"job-accumulators": [], "user-task-accumulators": [], "serialized-user-task-accumulators": {}})),
        ["jobmanager", "config"] => r_jobmanager_job_config(c),
        ["rescales", "config"] => ok(r::rescales_config(c)),
        ["rescales", "overview"] => ok(r::rescales_overview(&j)),
        ["rescales", "history"] => ok(r::rescales_history(&j)),
        ["rescales", "summary"] => ok(r::rescales_summary(&j)),
        ["rescales", "details", uuid] => match j.rescales.iter().find(|x| x.uuid == *uuid) {
            Some(rec) => ok(r::rescale(rec, true)),
            None => errors(
                StatusCode::NOT_FOUND,
                format!("org.apache.flink.runtime.rest.NotFoundException: Could not find the rescale with uuid {uuid}.\n"),
            ),
        },
        ["vertices", vid, tail @ ..] => {
            if !is_hex32(vid) {
                return bad_path_param("vertexid", vid);
            }
            let vid = vid.to_ascii_lowercase();
            let Some(v) = j.vertices.iter().find(|v| v.id == vid) else {
                return unknown_vertex(tail, &vid);
            };
            let subtask_metrics: Vec<Vec<(String, String)>> =
                c.metrics.get(id).and_then(|m| m.vertices.get(&vid)).cloned().unwrap_or_default();
            match tail {
                [] => ok(r::vertex_detail(c, &j, v, now, now_ms)),
                ["metrics"] => {
                    let flat: Vec<(String, String)> = subtask_metrics.iter().flatten().cloned().collect();
                    ok(metric_values(&flat, pairs))
                }
                ["subtasks", "metrics"] => {
                    let filter: Option<Vec<String>> = list_param(pairs, "subtasks");
                    let comps: Vec<Vec<(String, String)>> = subtask_metrics
                        .iter()
                        .enumerate()
                        .filter(|(s, _)| filter.as_ref().is_none_or(|f| f.contains(&s.to_string())))
                        .map(|(s, m)| {
                            let prefix = format!("{s}.");
                            m.iter()
                                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                                .collect()
                        })
                        .collect();
                    metric_aggregates(&comps, pairs)
                }
                ["backpressure"] => ok(r::backpressure(&j, v, now_ms, !subtask_metrics.is_empty())),
                ["watermarks"] => {
                    if subtask_metrics.is_empty() {
                        ok(json!([]))
                    } else {
                        ok(r::watermarks(v))
                    }
                }
                ["taskmanagers"] => ok(r::vertex_taskmanagers(c, &j, v, now, now_ms)),
                ["subtasktimes"] => ok(r::subtask_times(c, &j, v, now_ms)),
                _ => no_route(method, "", None),
            }
        }
        _ => no_route(method, "", None),
    }
}

/// A vertex the job does not have (or a job that does not exist): the metric-store views are
/// empty, the execution-graph views answer 404.
fn unknown_vertex(tail: &[&str], vid: &str) -> Response {
    match tail {
        ["metrics"] | ["subtasks", "metrics"] | ["watermarks"] => ok(json!([])),
        ["backpressure"] => ok(json!({"status": "deprecated"})),
        _ => rest_error(
            StatusCode::NOT_FOUND,
            &format!("No vertex with ID '{vid}' exists."),
        ),
    }
}

fn r_jobmanager_job_config(c: &Cluster) -> Response {
    ok(r::jobmanager_config(c))
}

fn put_requirements(c: &mut Cluster, i: usize, body: &Bytes, now: Instant) -> Response {
    const KIND: &str = "JobResourceRequirementsBody";
    let id = c.jobs[i].id.clone();
    if c.jobs[i].status.is_terminal() {
        return job_gone_500(&id);
    }
    let m = if body.iter().all(|b| b.is_ascii_whitespace()) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => return bad_body(KIND),
        }
    };
    if m.is_empty() {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "Request body does not specify resource requirements.",
        );
    }
    // the same checks, in the same words, as Flink's JobResourceRequirements validation
    let mut errors = Vec::new();
    let mut req = Vec::new();
    for (vid, spec) in &m {
        let lo = spec
            .pointer("/parallelism/lowerBound")
            .and_then(Value::as_i64);
        let hi = spec
            .pointer("/parallelism/upperBound")
            .and_then(Value::as_i64);
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return bad_body(KIND);
        };
        if !is_hex32(vid) {
            return bad_body(KIND);
        }
        let Some(v) = c.jobs[i].vertices.iter().find(|v| v.id == *vid) else {
            errors.push(format!("Job vertex [{vid}] was not found in the JobGraph."));
            continue;
        };
        let max = i64::from(v.max_parallelism);
        let lo = if lo == -1 { 1 } else { lo };
        let hi = if hi == -1 { max } else { hi };
        if lo < 1 || hi < 1 {
            errors.push(format!(
                "Both, the requested lower bound [{lo}] and upper bound [{hi}] for job vertex [{vid}] must be greater than zero."
            ));
            continue;
        }
        if lo > hi {
            errors.push(format!(
                "The requested lower bound [{lo}] for job vertex [{vid}] is higher than the upper bound [{hi}]."
            ));
        }
        if max < hi {
            errors.push(format!(
                "The newly requested parallelism {hi} for the job vertex {vid} exceeds its maximum parallelism {max}."
            ));
        }
        req.push((vid.clone(), lo as u32, hi as u32));
    }
    for v in &c.jobs[i].vertices {
        if !m.contains_key(&v.id) {
            errors.push(format!(
                "The request is incomplete, missing job vertex [{}] resource requirements.",
                v.id
            ));
        }
    }
    if !errors.is_empty() {
        return rest_error(StatusCode::BAD_REQUEST, &errors.join("\n"));
    }
    c.set_requirements(i, &req, now);
    ok(json!({}))
}

fn jar_missing(c: &Cluster, jar: &str) -> Response {
    rest_error(
        StatusCode::BAD_REQUEST,
        &format!(
            "Jar file {}/flink-web-upload/{jar} does not exist",
            c.web_tmp
        ),
    )
}

fn run_jar(c: &mut Cluster, jar: &str, body: &Bytes, now: Instant) -> Response {
    const KIND: &str = "JarRunRequestBody";
    if !c.jars.iter().any(|j| j.id == jar) {
        return jar_missing(c, jar);
    }
    let allowed = [
        "entryClass",
        "programArgs",
        "programArgsList",
        "parallelism",
        "jobId",
        "allowNonRestoredState",
        "savepointPath",
        "claimMode",
        "restoreMode",
        "flinkConfiguration",
    ];
    let m = match strict_body(body, &allowed, KIND) {
        Ok(m) => m,
        Err(e) => return *e,
    };
    let args: Vec<String> = match m.get("programArgsList") {
        None | Some(Value::Null) => match m.get("programArgs") {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return bad_body(KIND),
        },
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for x in a {
                match x.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => return bad_body(KIND),
                }
            }
            out
        }
        Some(_) => return bad_body(KIND),
    };
    let parallelism = match m.get("parallelism") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(p) if p >= 1 => Some(p as u32),
            Some(_) => None,
            None => return bad_body(KIND),
        },
    };
    let allow_non_restored = match opt_bool(&m, "allowNonRestoredState", KIND) {
        Ok(b) => b.unwrap_or(false),
        Err(e) => return *e,
    };
    let savepoint = match opt_str(&m, "savepointPath", KIND) {
        Ok(s) => s,
        Err(e) => return *e,
    };
    let mut spec = c.program.clone();
    if let Some(p) = parallelism {
        for v in &mut spec.vertices {
            v.parallelism = p.min(v.max_parallelism);
        }
    }
    if let Some(Value::Object(conf)) = m.get("flinkConfiguration") {
        if conf.get("restart-strategy.type").and_then(Value::as_str) == Some("none") {
            spec.restart_attempts = Some(0);
        }
    }
    let name = args.first().cloned().unwrap_or_else(|| spec.name.clone());
    let restore = match savepoint {
        None => None,
        Some(path) => match c.find_snapshot(&path) {
            None => {
                return server_side_500(&format!(
                    "org.apache.flink.client.program.ProgramInvocationException: The main method caused an error: java.io.FileNotFoundException: Cannot find checkpoint or savepoint file/directory '{path}' on file system 'file'."
                ))
            }
            Some(info) => {
                let new_ids: Vec<String> = spec_vertices(&spec, 0).into_iter().map(|v| v.id).collect();
                if let Some(missing) = info.vertex_ids.iter().find(|v| !new_ids.contains(v)) {
                    if !allow_non_restored {
                        return server_side_500(&format!(
                            "java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint {path}. Cannot map checkpoint/savepoint state for operator {missing} to the new program, because the operator is not available in the new program. If you want to allow to skip this, you can set the --allowNonRestoredState option on the CLI."
                        ));
                    }
                }
                Some((super::model::flink_path(&path), info))
            }
        },
    };
    let jid = c.submit(&spec, &name, now, restore);
    ok(json!({"jobid": jid, "applicationId": jid}))
}

fn server_side_500(msg: &str) -> Response {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"errors": [
            "Internal server error.",
            format!("<Exception on server side:\n{msg}\n\tat org.apache.flink.runtime.webmonitor.handlers.JarRunHandler.handleRequest(JarRunHandler.java:113)\n\nEnd of exception on server side>")
        ]}),
    )
}

async fn upload(state: Shared, req: Request) -> Response {
    let mut mp = match Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(_) => return rest_error(StatusCode::BAD_REQUEST, "Only Jar files are allowed."),
    };
    let mut file: Option<(String, usize)> = None;
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let fname = field.file_name().map(str::to_string);
                let is_jar_field = field.name() == Some("jarfile");
                match field.bytes().await {
                    Ok(bytes) if is_jar_field => {
                        file = fname.map(|n| (n, bytes.len()));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return rest_error(StatusCode::BAD_REQUEST, "Only Jar files are allowed.")
                    }
                }
            }
            Ok(None) => break,
            Err(_) => return rest_error(StatusCode::BAD_REQUEST, "Only Jar files are allowed."),
        }
    }
    let Some((name, size)) = file else {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "Exactly 1 file must be sent, received 0.",
        );
    };
    let base = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_string();
    if !base.ends_with(".jar") || size == 0 {
        return rest_error(StatusCode::BAD_REQUEST, "Only Jar files are allowed.");
    }
    let now = Instant::now();
    let mut c = lock(&state);
    c.advance(now);
    let id = format!("{}_{base}", uuid::Uuid::new_v4());
    let filename = format!("{}/flink-web-upload/{id}", c.web_tmp);
    let uploaded_ms = c.clock.ms(now);
    c.jars.push(Jar {
        id,
        name: base,
        uploaded_ms,
    });
    ok(json!({"filename": filename, "status": "success"}))
}
