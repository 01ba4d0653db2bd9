//! Project Nessie (started by `peers/scripts/nessie.sh`): the v2 REST API — references, commits
//! with PUT operations of NAMESPACE / ICEBERG_TABLE contents, merges (real, dry-run, conflicting),
//! history — and the management interface (`/q/health`). The ground truth is the server's own
//! answers on references and history.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::kafka::{exchange, Answer};
use crate::PeerEnv;

/// The Nessie server of the tier.
#[derive(Debug, Clone)]
pub struct Nessie {
    /// `http://127.0.0.1:19120/api/v2`
    pub url: String,
    /// `http://127.0.0.1:19000`
    pub mgmt_url: String,
    /// Send `Nessie-Client-Spec: 2` (as Nessie's own Java client does): error answers then carry
    /// `errorDetails` (e.g. the conflict list of a refused merge).
    pub client_spec_2: bool,
    http: reqwest::Client,
}

/// A branch at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchRef {
    /// Branch name.
    pub name: String,
    /// Commit hash.
    pub hash: String,
}

impl BranchRef {
    /// `name@hash`, as the v2 API's path parameter.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.hash)
    }
}

/// A merge conflict brought about by [`Nessie::make_conflict`].
#[derive(Debug, Clone)]
pub struct ConflictScenario {
    /// The branch that was forked from `main` and got a commit.
    pub branch: BranchRef,
    /// `main` after its own conflicting commit.
    pub main: BranchRef,
    /// The content key both sides created (`[namespace, table]`).
    pub key: Vec<String>,
    /// The answer to the real (non-dry-run) merge of `branch` into `main`.
    pub merge: Answer,
    /// The answer to the same merge as a dry run.
    pub dry_run: Answer,
    /// The answer to the same merge with `isReturnConflictAsResult: true`.
    pub as_result: Answer,
}

/// The request field Nessie 0.99 honours for a dry-run merge (`dryRun` is ignored).
pub const DRY_RUN_FIELD: &str = "isDryRun";
/// The request field Nessie 0.99 honours to get conflicts as a 200 merge response.
pub const CONFLICT_AS_RESULT_FIELD: &str = "isReturnConflictAsResult";

/// A PUT operation of a namespace.
pub fn put_namespace(elements: &[&str]) -> Value {
    json!({
        "type": "PUT",
        "key": {"elements": elements},
        "content": {"type": "NAMESPACE", "elements": elements},
    })
}

/// A PUT operation of a new Iceberg table (no content id: Nessie assigns one).
pub fn put_iceberg_table(key: &[&str], metadata_location: &str, snapshot_id: i64) -> Value {
    json!({
        "type": "PUT",
        "key": {"elements": key},
        "content": {
            "type": "ICEBERG_TABLE",
            "metadataLocation": metadata_location,
            "snapshotId": snapshot_id,
            "schemaId": 0,
            "specId": 0,
            "sortOrderId": 0,
        },
    })
}

impl Nessie {
    /// The handle from the env file written by `nessie.sh`.
    pub fn from_env(env: &PeerEnv) -> Result<Self> {
        Self::new(env.get("NESSIE_URL")?, env.get("NESSIE_MGMT_URL")?)
    }

    /// A handle on any Nessie v2 endpoint (`…/api/v2`) and management port (e.g. a fake).
    pub fn new(url: &str, mgmt_url: &str) -> Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            mgmt_url: mgmt_url.trim_end_matches('/').to_string(),
            client_spec_2: false,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?,
        })
    }

    /// Any API request: `path` (with query) relative to `…/api/v2`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if self.client_spec_2 {
            req = req.header("Nessie-Client-Spec", "2");
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        exchange(req).await
    }

    /// `GET path` on the API.
    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `GET path` on the management interface (e.g. `/q/health`).
    pub async fn mgmt_get(&self, path: &str) -> Result<Answer> {
        exchange(self.http.get(format!("{}{}", self.mgmt_url, path))).await
    }

    /// The current head of branch `name` (`GET /trees/<name>`).
    pub async fn branch(&self, name: &str) -> Result<BranchRef> {
        let a = self.get(&format!("/trees/{name}")).await?;
        if a.status != 200 {
            bail!("GET /trees/{name}: {} {}", a.status, a.body);
        }
        reference_of(&a.body["reference"])
    }

    /// Create branch `name` at `from` (`POST /trees?name=…&type=BRANCH`).
    pub async fn create_branch(&self, name: &str, from: &BranchRef) -> Result<BranchRef> {
        let body = json!({"type": "BRANCH", "name": from.name, "hash": from.hash});
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("/trees?name={name}&type=BRANCH"),
                Some(&body),
            )
            .await?;
        if a.status != 200 {
            bail!("creating branch {name}: {} {}", a.status, a.body);
        }
        reference_of(&a.body["reference"])
    }

    /// Delete a branch at its hash (`DELETE /trees/<name>@<hash>`); the raw answer.
    pub async fn delete_branch(&self, b: &BranchRef) -> Result<Answer> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/trees/{}", b.spec()),
            None,
        )
        .await
    }

    /// Commit `operations` onto `branch` at its hash; the raw answer.
    pub async fn commit_raw(
        &self,
        branch: &BranchRef,
        message: &str,
        operations: &[Value],
    ) -> Result<Answer> {
        let body = json!({"commitMeta": {"message": message}, "operations": operations});
        self.call(
            reqwest::Method::POST,
            &format!("/trees/{}/history/commit", branch.spec()),
            Some(&body),
        )
        .await
    }

    /// Commit and return the branch at its new head (any answer but 200 is an error).
    pub async fn commit(
        &self,
        branch: &BranchRef,
        message: &str,
        operations: &[Value],
    ) -> Result<BranchRef> {
        let a = self.commit_raw(branch, message, operations).await?;
        if a.status != 200 {
            bail!("commit to {}: {} {}", branch.spec(), a.status, a.body);
        }
        reference_of(&a.body["targetBranch"])
    }

    /// Merge the head `from` into `into` (`POST /trees/<into>@<hash>/history/merge`); raw answer.
    /// A conflict answers 409 `REFERENCE_CONFLICT`. `dry_run` is sent as `isDryRun`: Nessie 0.99
    /// reads the flag under that name and silently ignores `dryRun` (the merge is then applied).
    pub async fn merge(&self, into: &BranchRef, from: &BranchRef, dry_run: bool) -> Result<Answer> {
        self.merge_with(into, from, &[(DRY_RUN_FIELD, dry_run)])
            .await
    }

    /// Merge with extra boolean fields in the request body (e.g. `("isReturnConflictAsResult",
    /// true)`, or `("dryRun", true)` to see what the server makes of that spelling).
    pub async fn merge_with(
        &self,
        into: &BranchRef,
        from: &BranchRef,
        flags: &[(&str, bool)],
    ) -> Result<Answer> {
        let mut body = json!({
            "fromRefName": from.name,
            "fromHash": from.hash,
            "message": format!("merge {} into {}", from.name, into.name),
        });
        for (k, v) in flags {
            body[*k] = Value::Bool(*v);
        }
        self.call(
            reqwest::Method::POST,
            &format!("/trees/{}/history/merge", into.spec()),
            Some(&body),
        )
        .await
    }

    /// Ground truth: the commit messages of a reference's history, newest first.
    pub async fn history_messages(&self, reference: &str) -> Result<Vec<String>> {
        let a = self.get(&format!("/trees/{reference}/history")).await?;
        if a.status != 200 {
            bail!("history of {reference}: {} {}", a.status, a.body);
        }
        a.body["logEntries"]
            .as_array()
            .ok_or_else(|| anyhow!("history of {reference} has no logEntries: {}", a.body))?
            .iter()
            .map(|e| {
                e["commitMeta"]["message"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| anyhow!("log entry without commitMeta.message: {e}"))
            })
            .collect()
    }

    /// Ground truth: every reference name (`GET /trees`).
    pub async fn reference_names(&self) -> Result<Vec<String>> {
        let a = self.get("/trees").await?;
        if a.status != 200 {
            bail!("GET /trees: {} {}", a.status, a.body);
        }
        Ok(a.body["references"]
            .as_array()
            .ok_or_else(|| anyhow!("GET /trees has no references: {}", a.body))?
            .iter()
            .filter_map(|r| r["name"].as_str().map(String::from))
            .collect())
    }

    /// Bring about a merge conflict: namespace `ns` on `main`, branch `branch` forked from it,
    /// table `ns.t` created on the branch and — differently — on `main`, then the merge of the
    /// branch into `main` tried for real and as a dry run.
    pub async fn make_conflict(&self, ns: &str, branch: &str) -> Result<ConflictScenario> {
        let main = self.branch("main").await?;
        let main = self
            .commit(
                &main,
                &format!("create namespace {ns}"),
                &[put_namespace(&[ns])],
            )
            .await?;
        let forked = self.create_branch(branch, &main).await?;
        let key = [ns, "t"];
        let branch_head = self
            .commit(
                &forked,
                &format!("create {ns}.t on {branch}"),
                &[put_iceberg_table(
                    &key,
                    &format!("s3://rb-peers/{ns}/t/{branch}.metadata.json"),
                    1,
                )],
            )
            .await?;
        let main = self
            .commit(
                &main,
                &format!("create {ns}.t on main"),
                &[put_iceberg_table(
                    &key,
                    &format!("s3://rb-peers/{ns}/t/main.metadata.json"),
                    2,
                )],
            )
            .await?;
        let dry_run = self.merge(&main, &branch_head, true).await?;
        let merge = self.merge(&main, &branch_head, false).await?;
        let as_result = self
            .merge_with(&main, &branch_head, &[(CONFLICT_AS_RESULT_FIELD, true)])
            .await?;
        Ok(ConflictScenario {
            as_result,
            branch: branch_head,
            main,
            key: key.iter().map(|s| s.to_string()).collect(),
            merge,
            dry_run,
        })
    }
}

fn reference_of(v: &Value) -> Result<BranchRef> {
    Ok(BranchRef {
        name: v["name"]
            .as_str()
            .ok_or_else(|| anyhow!("reference without name: {v}"))?
            .to_string(),
        hash: v["hash"]
            .as_str()
            .ok_or_else(|| anyhow!("reference without hash: {v}"))?
            .to_string(),
    })
}
