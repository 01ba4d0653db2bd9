//! Seed §4 **Kafka Connect connector fails**: `kafka_connect_connector_failed_task_count > 0`, or
//! `kafka_connect_worker_connector_count` drops suddenly.
//!
//! * **Detect** — rb-probes' [`ConnectStatus`] reads every connector's status in one request;
//!   failed tasks above 0 for the for-duration open **one incident per connector** (the finding's
//!   `connector` label; two connectors failing are two incidents, each restarting its own). A
//!   second playbook, [`COUNT_DROP`], watches the connector count: a drop by one or more within
//!   ten minutes (a connector deleted or lost) pages, it is not restarted blindly.
//! * **Diagnose** — the connector's status with each failed task's trace (bounded: first line and
//!   every `Caused by:`) and its class (configuration, authorization, transient…), and the
//!   worker's log lines from Loki (`{container="connect"}`: the seed's "read the stack trace in
//!   the connect container logs").
//! * **Mitigate** — when the trace is transient: rb-actions' restart with failed tasks
//!   (`POST /connectors/<n>/restart?includeTasks=true&onlyFailed=true`; the seed's bare
//!   `/restart` restarts only the connector object), under Strimzi-style backoff. When the trace
//!   says configuration or authorization (a restart would fail the same way): a human task "fix
//!   the connector's configuration", then the restart after the fix (approved by a human: the
//!   seed's "restart … after fixing the config").
//! * **Recover** — no failed task on that connector for the stability window.
//! * **Escalate** — Kafka SME (30 min SLA), then the Data Platform on-call.

use std::sync::Arc;

use rb_core::prelude::*;
use rb_core::symptom::metric;
use rb_probes::kafka_connect::{ConnectStatus, ConnectorsFact, TraceClass};
use rb_probes::loki::LokiLogs;

use crate::lakehouse::Systems;

/// The failed-connector playbook.
pub const PLAYBOOK: &str = "connect-failed";
/// The connector-count-drop playbook.
pub const COUNT_DROP: &str = "connect-count-drop";

/// The metric of failed tasks per connector (Kafka Connect's JMX exporter name).
pub const FAILED_TASKS: &str = "kafka_connect_connector_failed_task_count";

/// Both playbooks of the situation.
pub fn playbooks(s: &Systems) -> Vec<Playbook> {
    vec![playbook(s), count_drop(s)]
}

fn status_probe(s: &Systems) -> Arc<ConnectStatus<Arc<dyn rb_probes::transport::HttpClient>>> {
    Arc::new(ConnectStatus::new(
        s.connect_http.clone(),
        s.connect.clone(),
    ))
}

fn connect_logs(s: &Systems) -> Arc<dyn Probe> {
    Arc::new(
        LokiLogs::new(
            s.loki_http.clone(),
            s.loki.clone(),
            r#"{container="connect"}"#,
        )
        .window(s.timings.stage.max(std::time::Duration::from_secs(900)))
        .limit(50)
        .id("loki.connect_logs"),
    )
}

/// Whether a failed instance of the incident's connector failed on configuration or authorization
/// (from the diagnosis' [`ConnectorsFact`]).
pub fn needs_fix(ctx: &ActionContext) -> bool {
    let Some(name) = ctx.label("connector") else {
        return false;
    };
    ctx.fact::<ConnectorsFact>()
        .and_then(|f| f.connector(name).cloned())
        .is_some_and(|c| {
            std::iter::once(&c.instance)
                .chain(c.tasks.iter().map(|t| &t.instance))
                .filter(|i| i.state == "FAILED")
                .any(|i| i.trace_class.is_some_and(TraceClass::blocks_restart))
        })
}

/// Failed tasks > 0 for the for-duration, one incident per connector; restart with failed tasks.
pub fn playbook(s: &Systems) -> Playbook {
    let t = &s.timings;
    let connect =
        rb_actions::kafka_connect::KafkaConnect::new(s.connect_http.clone(), s.connect.clone())
            .verify_within(t.verify_within);
    Playbook::new(PLAYBOOK, "Kafka Connect connector fails")
        .service("kafka-connect")
        .detect(
            status_probe(s),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            metric(FAILED_TASKS).max().above(0.0).for_at_least(t.for_duration),
        )
        .incident_per(&["connector"])
        .diagnose(status_probe(s))
        .diagnose(connect_logs(s))
        .mitigate_as("restart-failed-tasks", Arc::new(connect.restart()))
        .when("the failed tasks' traces are transient (a restart may help)", |ctx| {
            !needs_fix(ctx)
        })
        .human_task(
            "fix-config",
            "Fix the connector's configuration (or its access): the trace says a restart would fail the same way",
        )
        .when("a trace says configuration or authorization", needs_fix)
        .mitigate_as("restart-after-fix", Arc::new(connect.restart_after_fix()))
        .when("a trace says configuration or authorization", needs_fix)
        .stable_for(t.stable_for)
        .review_item("Was the connector's configuration (or the source database) fixed before the restart? (seed §4)")
        .review_item("Did the failed-task alert fire before the connector count dropped on the dashboard?")
        .review_item("Lessons learned: add the trace's root cause to the runbook (seed §2)")
        .escalate_to("Kafka SME")
}

/// The worker's connector count drops by one or more within ten minutes: page, do not act.
pub fn count_drop(s: &Systems) -> Playbook {
    let t = &s.timings;
    Playbook::new(COUNT_DROP, "Kafka Connect connector count drops")
        .service("kafka-connect")
        .detect(
            status_probe(s),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            metric("kafka_connect_connectors")
                .drops_by(1.0)
                .within(t.stage.max(std::time::Duration::from_secs(600))),
        )
        .diagnose(status_probe(s))
        .diagnose(connect_logs(s))
        .human_task(
            "confirm-connectors",
            "Confirm in the Kafka Connect panel which connector is gone and recreate it from its saved config",
        )
        .stable_for(t.stable_for)
        .review_item("Who or what deleted the connector? (seed §4: the connector count dropped)")
        .escalate_to("Kafka SME")
}

/// **Real:** every task of `connector` fails with `trace` (a transient cause: the restart heals it,
/// as the fake's restart does).
#[derive(Debug, Clone)]
pub struct ConnectorFails {
    /// The connector.
    pub connector: String,
    /// The trace its tasks fail with.
    pub trace: String,
}

impl ConnectorFails {
    /// `orders-cdc` loses its connection to the source database (a retriable cause).
    pub fn orders_cdc() -> Self {
        Self {
            connector: rb_testkit::lakehouse::CDC_CONNECTOR.to_string(),
            trace: "org.apache.kafka.connect.errors.ConnectException: An exception occurred in the change event producer. This connector will be stopped.\n\tat io.debezium.pipeline.ErrorHandler.setProducerThrowable(ErrorHandler.java:50)\nCaused by: java.io.EOFException: Failed to read next byte from position 1523457\n\tat com.github.shyiko.mysql.binlog.event.deserialization.EventDeserializer.nextEvent(EventDeserializer.java:226)".to_string(),
        }
    }
}

#[async_trait::async_trait]
impl crate::lakehouse::situations::Scene for ConnectorFails {
    fn name(&self) -> String {
        format!("connector {} fails", self.connector)
    }

    fn expect(&self) -> Option<crate::lakehouse::situations::Expect> {
        Some(crate::lakehouse::situations::Expect {
            playbook: PLAYBOOK,
            key: vec![("connector", self.connector.clone())],
            applied: vec!["restart-failed-tasks"],
        })
    }

    async fn start(
        &self,
        lake: &rb_testkit::lakehouse::FakeLakehouse,
    ) -> Result<(), crate::lakehouse::situations::SceneError> {
        lake.connector_failed(&self.connector, &self.trace)
            .map_err(|e| crate::lakehouse::situations::SceneError::new(self.name(), e))
    }

    async fn react(
        &self,
        lake: &rb_testkit::lakehouse::FakeLakehouse,
        _engine: &Engine,
        _since_start: std::time::Duration,
    ) -> Result<bool, crate::lakehouse::situations::SceneError> {
        // The fake's restart endpoint restarts the FAILED tasks itself: over once all run again.
        let running = (0..)
            .map_while(|t| lake.connect().task_state(&self.connector, t))
            .all(|s| s == rb_testkit::http::kafka_connect::State::Running);
        Ok(running)
    }
}

/// **Decoy:** an operator pauses `connector` on purpose for `for_how_long`: no task FAILED, no
/// incident.
#[derive(Debug, Clone)]
pub struct ConnectorPaused {
    /// The connector.
    pub connector: String,
    /// How long it stays paused.
    pub for_how_long: std::time::Duration,
}

#[async_trait::async_trait]
impl crate::lakehouse::situations::Scene for ConnectorPaused {
    fn name(&self) -> String {
        format!("decoy: connector {} paused on purpose", self.connector)
    }

    fn expect(&self) -> Option<crate::lakehouse::situations::Expect> {
        None
    }

    async fn start(
        &self,
        lake: &rb_testkit::lakehouse::FakeLakehouse,
    ) -> Result<(), crate::lakehouse::situations::SceneError> {
        lake.pause_connector(&self.connector)
            .map_err(|e| crate::lakehouse::situations::SceneError::new(self.name(), e))
    }

    async fn react(
        &self,
        lake: &rb_testkit::lakehouse::FakeLakehouse,
        _engine: &Engine,
        since_start: std::time::Duration,
    ) -> Result<bool, crate::lakehouse::situations::SceneError> {
        if since_start < self.for_how_long {
            return Ok(false);
        }
        lake.resume_connector(&self.connector)
            .map_err(|e| crate::lakehouse::situations::SceneError::new(self.name(), e))?;
        Ok(true)
    }
}

/// **Real:** the sink connector fails on its configuration (an invalid setting): a restart would
/// fail the same way, so a (scripted) human fixes the configuration when asked, then the restart
/// after the fix runs.
#[derive(Debug, Clone)]
pub struct ConnectorMisconfigured {
    /// The connector.
    pub connector: String,
}

impl ConnectorMisconfigured {
    /// `payments-sink` with an invalid `topics.regex`.
    pub fn payments_sink() -> Self {
        Self {
            connector: rb_testkit::lakehouse::SINK_CONNECTOR.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl crate::lakehouse::situations::Scene for ConnectorMisconfigured {
    fn name(&self) -> String {
        format!("connector {} fails on its configuration", self.connector)
    }

    fn expect(&self) -> Option<crate::lakehouse::situations::Expect> {
        Some(crate::lakehouse::situations::Expect {
            playbook: PLAYBOOK,
            key: vec![("connector", self.connector.clone())],
            applied: vec!["restart-after-fix"],
        })
    }

    async fn start(
        &self,
        lake: &rb_testkit::lakehouse::FakeLakehouse,
    ) -> Result<(), crate::lakehouse::situations::SceneError> {
        lake.connector_failed(
            &self.connector,
            "org.apache.kafka.common.config.ConfigException: Invalid value [payments for configuration topics.regex: Unclosed character class near index 8\n\tat org.apache.kafka.connect.runtime.SinkConnectorConfig.validate(SinkConnectorConfig.java:115)",
        )
        .map_err(|e| crate::lakehouse::situations::SceneError::new(self.name(), e))
    }

    async fn react(
        &self,
        lake: &rb_testkit::lakehouse::FakeLakehouse,
        engine: &Engine,
        _since_start: std::time::Duration,
    ) -> Result<bool, crate::lakehouse::situations::SceneError> {
        // The scripted human fixes the configuration once asked (the task is assigned).
        for id in engine.open_incidents().await {
            let Ok(inc) = engine.incident(&id).await else {
                continue;
            };
            let asked = inc.timeline.iter().any(|e| {
                matches!(&e.event, rb_core::Event::TaskAssigned { task, .. } if task.contains("configuration"))
            });
            let done = inc
                .timeline
                .iter()
                .any(|e| matches!(&e.event, rb_core::Event::TaskDone { .. }));
            if inc.record.playbook == PLAYBOOK
                && inc.record.key.get("connector") == Some(&self.connector)
                && asked
                && !done
            {
                engine
                    .complete_task(&id, "fix-config", "connect admin (scripted)")
                    .await
                    .map_err(|e| crate::lakehouse::situations::SceneError::new(self.name(), e))?;
            }
        }
        let running = (0..)
            .map_while(|t| lake.connect().task_state(&self.connector, t))
            .all(|s| s == rb_testkit::http::kafka_connect::State::Running);
        Ok(running)
    }
}
