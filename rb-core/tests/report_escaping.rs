#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Text from probes, playbooks and remediations is inserted into the review's Markdown tables and
//! Mermaid timeline: hostile text must not break either.

mod common;

use std::sync::Arc;

use common::*;
use rb_core::policy::AutoApprove;
use rb_core::prelude::*;
use rb_core::report::{md_code, md_item, md_text, mermaid_text};

/// Every trick at once: a cell break, a new table row, a heading, a code fence, HTML, Mermaid event
/// and comment separators.
const HOSTILE: &str = "x | y\n## Injected heading\n| a | b | c |\n`tick` <script>alert(1)</script> ; # hash : colon %% gone\r\n```\nafter fence";

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Weird {
    what: String,
}
impl FactType for Weird {
    const KIND: &'static str = "test.weird";
}

/// Unescaped `|` in a table line.
fn cells(line: &str) -> usize {
    let mut n = 0;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => n += 1,
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    n
}

/// A Markdown line with its code spans removed (backslash-escaped backticks open none).
fn without_code_spans(line: &str) -> String {
    let b: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '\\' && i + 1 < b.len() {
            out.push(b[i]);
            out.push(b[i + 1]);
            i += 2;
            continue;
        }
        if b[i] == '`' {
            let n = b[i..].iter().take_while(|c| **c == '`').count();
            // the closing run of exactly n backticks
            let mut j = i + n;
            let mut close = None;
            while j < b.len() {
                if b[j] == '`' {
                    let m = b[j..].iter().take_while(|c| **c == '`').count();
                    if m == n {
                        close = Some(j + m);
                        break;
                    }
                    j += m;
                } else {
                    j += 1;
                }
            }
            match close {
                Some(end) => i = end,
                None => {
                    out.extend(&b[i..i + n]);
                    i += n;
                }
            }
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_hostile_text_cannot_break_the_tables_or_the_timeline() {
    let target = Target::new("kafka", "kafka-main");
    let probe = Arc::new(FnProbe::new("test.weird", target.clone(), |ctx| {
        Ok(
            Observation::new("test.weird", "kafka-main", ctx.now()).fact(&Weird {
                what: HOSTILE.to_string(),
            }),
        )
    }));
    let rem = Recorder::new(
        &format!("act{HOSTILE}"),
        Risk::Safe,
        vec![Target::new("flink", "flink | main\n# t")],
    );
    rem.behave(Behaviour::FailPermanent);
    let pb = Playbook::new("weird", format!("Title {HOSTILE}"))
        .service(HOSTILE)
        .detect(
            probe,
            Schedule::every(secs(30)),
            fact_rule::<Weird>(format!("rule {HOSTILE}"), |w| Some(w.what.clone())),
        )
        .mitigate(rem.arc())
        .escalate_to(format!("role {HOSTILE}"))
        .review_item(format!("# {HOSTILE}"));
    let rb = Runbook::new("t")
        .playbook(pb)
        .on_call(OnCall::new().contact(format!("role {HOSTILE}"), HOSTILE, mins(10)))
        .checklist(vec![HOSTILE.to_string(), "1. numbered".into()]);
    let e = Engine::builder(rb)
        .clock(clock())
        .approver(Arc::new(AutoApprove))
        .notifier(Arc::new(Pager::default()))
        .build()
        .await
        .unwrap();
    run(&e, mins(1), secs(30)).await;
    let inc = e.incidents().await.unwrap().remove(0);
    let md = e.review(&inc.record.id).await.unwrap().to_markdown();
    let lines: Vec<&str> = md.lines().collect();

    // headings: only the report's own
    let allowed = [
        "## Timeline",
        "## Evidence",
        "## Actions and outcomes",
        "## Checkpoints, savepoints and Nessie hashes",
        "## Post-recovery checklist",
        "## Root cause analysis",
        "## Lessons learned",
    ];
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with('#') {
            assert!(
                (i == 0 && l.starts_with("# INC-")) || allowed.contains(l),
                "line {i} is a heading the report did not write: {l}\n{md}"
            );
        }
    }
    // tables: every row has as many cells as its header
    let mut header = None;
    for l in &lines {
        if l.starts_with('|') {
            let n = cells(l);
            let h = *header.get_or_insert(n);
            assert_eq!(n, h, "row breaks its table: {l}\n{md}");
        } else {
            header = None;
        }
    }
    // the hostile text did reach the tables, escaped
    assert!(
        md.contains("x \\| y ## Injected heading \\| a \\| b \\| c \\|"),
        "{md}"
    );
    assert!(md.contains("\\`tick\\` &lt;script>"), "{md}");
    // raw HTML only inside code spans (where it is text) or the Mermaid block (checked below)
    let mermaid_at = md.find("```mermaid").unwrap();
    let mermaid_end = mermaid_at + md[mermaid_at..].find("\n```\n").unwrap();
    let outside = format!("{}{}", &md[..mermaid_at], &md[mermaid_end..]);
    for l in outside.lines() {
        assert!(
            !without_code_spans(l).contains('<'),
            "raw < outside a code span: {l}"
        );
    }
    // one code fence, opened and closed by the report
    let fences: Vec<&&str> = lines.iter().filter(|l| l.starts_with("```")).collect();
    assert_eq!(fences, [&"```mermaid", &"```"], "{md}");
    // the Mermaid timeline: a title, then one event per line with no separator or comment in its text
    let start = lines.iter().position(|l| *l == "```mermaid").unwrap();
    let end = start + lines[start..].iter().position(|l| *l == "```").unwrap();
    assert_eq!(lines[start + 1], "timeline");
    let mut events = 0;
    for l in &lines[start + 2..end] {
        if let Some(title) = l.strip_prefix("    title ") {
            assert!(!title.contains(['#', ';', '\n']), "{l}");
            continue;
        }
        let (time, text) = l
            .strip_prefix("    ")
            .and_then(|r| r.split_once(" : "))
            .unwrap_or_else(|| panic!("not an event line: {l:?}\n{md}"));
        assert_eq!(time.len(), 8, "{l}");
        assert!(
            !text.contains([':', '#', ';']) && !text.contains("%%"),
            "event text carries a Mermaid separator or comment: {text:?}"
        );
        events += 1;
    }
    assert!(events >= 4, "{md}");
    let opened = lines[start + 3];
    assert!(
        opened.contains("opened  rule x | y ＃＃ Injected heading"),
        "{opened}"
    );
    // list items cannot become headings or nested lists
    assert!(md.contains("- [ ] x \\| y"), "{md}");
    assert!(md.contains("- [ ] 1\\. numbered"), "{md}");
    assert!(md.contains("- \\# x \\| y"), "{md}");
}

#[test]
fn escapers_leave_ordinary_text_alone() {
    for ordinary in [
        "max(records_lag_max) = 12000 > 5000 for 2m",
        "Step 0 flink.rescale done: done",
        "orders-cdc, reports",
    ] {
        assert_eq!(md_text(ordinary), ordinary);
    }
    assert_eq!(
        md_item("Alert cleared in Alertmanager."),
        "Alert cleared in Alertmanager."
    );
    assert_eq!(md_code("kafka/kafka-main", true), "`kafka/kafka-main`");
    assert_eq!(
        mermaid_text("max(records_lag_max) > 5000 for 2m"),
        "max(records_lag_max) > 5000 for 2m"
    );
}

#[test]
fn escapers_defuse_each_special() {
    assert_eq!(md_text("a|b"), "a\\|b");
    assert_eq!(
        md_text("a\\|b"),
        "a\\\\\\|b",
        "a backslash cannot unescape the pipe"
    );
    assert_eq!(md_text("a\r\nb\nc\rd"), "a b c d");
    assert_eq!(md_text("<img src=x>"), "&lt;img src=x>");
    assert_eq!(md_text("`x`"), "\\`x\\`");
    assert_eq!(md_item("  > quoted"), "\\> quoted");
    assert_eq!(md_item("- nested"), "\\- nested");
    assert_eq!(md_item("12) twelve"), "12\\) twelve");
    assert_eq!(md_code("a`b", false), "`` a`b ``");
    assert_eq!(md_code("a``b|c", true), "``` a``b\\|c ```");
    assert_eq!(md_code("a\nb", false), "`a b`");
    assert_eq!(
        mermaid_text("a: b; c # d\ne %% f <b>"),
        "a  b, c ＃ d e % % f ＜b>"
    );
}
