//! The TOML configuration of the lakehouse runbook against real endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rb_examples::lakehouse::config::{ConfigError, LakehouseConfig};
use rb_examples::lakehouse::{runbook, Systems};

fn env(k: &str) -> Option<String> {
    match k {
        "RB_PG_PASSWORD" => Some("pg-secret-value".into()),
        "RB_NESSIE_TOKEN" => Some("nessie-secret-token".into()),
        _ => None,
    }
}

#[test]
fn the_sample_file_parses_and_builds_the_runbook() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lakehouse.toml")).unwrap();
    let c = LakehouseConfig::parse("lakehouse.toml", &text, env).unwrap();
    assert!(c.dry_run, "dry-run unless told otherwise");
    assert_eq!(c.endpoints.kafka_connect, "http://127.0.0.1:8083");
    assert_eq!(c.endpoints.cassandra.len(), 1);
    let pg = c.endpoints.postgres.as_ref().unwrap();
    assert_eq!(pg.password.expose(), "pg-secret-value");
    let systems = Systems::new(c.endpoints, c.credentials, c.timings).unwrap();
    let rb = runbook(&systems).unwrap();
    assert!(rb.playbooks().iter().any(|p| p.id() == "connect-failed"));
    assert!(rb
        .playbooks()
        .iter()
        .any(|p| p.id() == "postgres-saturation"));
    // no MySQL section: no MySQL playbook
    assert!(!rb.playbooks().iter().any(|p| p.id() == "mysql-saturation"));
    // secrets stay out of Debug
    let dbg = format!("{systems:?}");
    assert!(!dbg.contains("pg-secret-value"), "{dbg}");
}

#[test]
fn dry_run_is_the_default_and_only_the_file_turns_it_off() {
    let c = LakehouseConfig::parse("x.toml", "[kafka_connect]\nurl = \"http://c:8083\"\n", env)
        .unwrap();
    assert!(c.dry_run);
    let c = LakehouseConfig::parse("x.toml", "[lakehouse]\ndry_run = false\n", env).unwrap();
    assert!(!c.dry_run);
}

#[test]
fn a_bad_file_names_line_column_and_what_was_expected() {
    let text = "[lakehouse]\ndry_run = true\n\n[kafka]\nbootstrap = 9092\n";
    match LakehouseConfig::parse("bad.toml", text, env) {
        Err(ConfigError::Parse {
            path,
            line,
            column,
            message,
        }) => {
            assert_eq!(path, "bad.toml");
            assert_eq!((line, column), (5, 13));
            assert!(message.contains("expected a string"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = LakehouseConfig::parse("bad.toml", "[flink]\nurll = \"x\"\n", env).unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("bad.toml:2:1:"), "{text}");
    assert!(text.contains("url"), "{text}");
    let e = LakehouseConfig::parse("bad.toml", "[flink\n", env).unwrap_err();
    assert!(e.to_string().starts_with("bad.toml:1:"), "{e}");
}

#[test]
fn a_credential_in_the_file_is_refused() {
    let text = "[postgres]\nhost = \"pg\"\nport = 5432\nuser = \"rb\"\npassword = \"hunter2\"\n";
    let e = LakehouseConfig::parse("x.toml", text, env).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("x.toml:5:1"), "{msg}");
    assert!(msg.contains("password_env"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    let text = "[nessie]\nurl = \"n\"\nmanagement_url = \"m\"\ntoken = \"abc\"\n";
    let msg = LakehouseConfig::parse("x.toml", text, env)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("token_env"), "{msg}");
}

#[test]
fn a_named_but_unset_variable_is_an_error() {
    let text =
        "[trino]\nurl = \"http://t:8080\"\nuser = \"rb\"\npassword_env = \"RB_TRINO_PASSWORD\"\n";
    match LakehouseConfig::parse("x.toml", text, env) {
        Err(ConfigError::MissingEnv { section, key, var }) => {
            assert_eq!(section, "[trino]");
            assert_eq!(key, "password_env");
            assert_eq!(var, "RB_TRINO_PASSWORD");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_values_are_named() {
    let e =
        LakehouseConfig::parse("x.toml", "[timings]\nfor_duration = \"soon\"\n", env).unwrap_err();
    assert!(e.to_string().contains("for_duration"), "{e}");
    let e = LakehouseConfig::parse(
        "x.toml",
        "[cassandra]\ncontact_points = [\"no-port-here\"]\n",
        env,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no-port-here"), "{e}");
}

#[test]
fn kafka_is_watched_only_when_configured_and_a_configured_kafka_builds_its_client() {
    // No [kafka] section: no bootstrap, no client to build, no Kafka playbook, no error.
    let c = LakehouseConfig::parse("x.toml", "[kafka_connect]\nurl = \"http://c:8083\"\n", env)
        .unwrap();
    assert!(c.endpoints.kafka_bootstrap.trim().is_empty());
    let systems = Systems::new(c.endpoints, c.credentials, c.timings).unwrap();
    let rb = runbook(&systems).unwrap();
    assert!(!rb.playbooks().iter().any(|p| p.id() == "kafka-backlog"));
    assert!(rb.playbooks().iter().any(|p| p.id() == "connect-failed"));

    // The sample file names brokers: the Kafka client is built and the playbook is there (a
    // client librdkafka refused would be the runbook's error, not a playbook quietly left out).
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lakehouse.toml")).unwrap();
    let c = LakehouseConfig::parse("lakehouse.toml", &text, env).unwrap();
    assert!(!c.endpoints.kafka_bootstrap.trim().is_empty());
    let systems = Systems::new(c.endpoints, c.credentials, c.timings).unwrap();
    let rb = runbook(&systems).unwrap();
    assert!(rb.playbooks().iter().any(|p| p.id() == "kafka-backlog"));
}
