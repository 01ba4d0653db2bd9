//! A parser for the Prometheus text exposition format (version 0.0.4, what `/metrics` endpoints such
//! as MinIO's `/minio/v2/metrics/cluster` serve).
//!
//! It reads `# HELP` and `# TYPE` lines, samples `name{label="value",…} value [timestamp]` with the
//! format's escapes in label values (`\\`, `\"`, `\n`), the special values `NaN`, `+Inf`, `-Inf`, and
//! skips other comments and blank lines (also OpenMetrics' `# EOF`). Anything else is a
//! [`ExpositionError`] naming the line and column where the text went wrong — never a panic, whatever
//! the input.
//!
//! ```
//! use rb_probes::exposition::parse;
//! let text = "# TYPE minio_cluster_capacity_usable_free_bytes gauge\n\
//!             minio_cluster_capacity_usable_free_bytes{server=\"minio-0:9000\"} 1.2345678912e+11\n";
//! let exp = parse(text).unwrap();
//! let s = exp.first("minio_cluster_capacity_usable_free_bytes").unwrap();
//! assert_eq!(s.value, 123_456_789_120.0);
//! assert_eq!(s.labels["server"], "minio-0:9000");
//! ```

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSample {
    /// The metric name (`minio_node_drive_free_bytes`).
    pub name: String,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// The value (`NaN`, `±Inf` included).
    pub value: f64,
    /// The optional timestamp, Unix milliseconds.
    pub timestamp_ms: Option<i64>,
    /// The 1-based line it was read from.
    pub line: usize,
}

/// A parsed exposition: the samples in order, and the `# TYPE` and `# HELP` of each family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Every sample, in the order of the text.
    pub samples: Vec<TextSample>,
    /// `# TYPE` per metric family (`gauge`, `counter`, …).
    pub types: BTreeMap<String, String>,
    /// `# HELP` per metric family.
    pub help: BTreeMap<String, String>,
}

impl Exposition {
    /// Every sample named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TextSample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The first sample named `name`.
    pub fn first(&self, name: &str) -> Option<&TextSample> {
        self.samples.iter().find(|s| s.name == name)
    }
}

/// Where and why the text is not valid exposition format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ExpositionError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

/// Parse a whole exposition.
pub fn parse(text: &str) -> Result<Exposition, ExpositionError> {
    let mut out = Exposition::default();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let mut cur = Cursor {
            chars: line.chars().collect(),
            pos: 0,
            line: line_no,
        };
        cur.skip_ws();
        if cur.peek() == Some('#') {
            cur.pos += 1;
            cur.skip_ws();
            let word = cur.take_while(|c| !c.is_whitespace());
            if word == "TYPE" || word == "HELP" {
                cur.skip_ws();
                let name = cur.name()?;
                cur.skip_ws();
                let rest: String = cur.chars[cur.pos..].iter().collect();
                if word == "TYPE" {
                    let ty = rest.trim();
                    if !matches!(
                        ty,
                        "counter"
                            | "gauge"
                            | "histogram"
                            | "summary"
                            | "untyped"
                            | "unknown"
                            | "info"
                            | "stateset"
                            | "gaugehistogram"
                    ) {
                        return Err(cur.err(format!("unknown metric type {ty:?}")));
                    }
                    out.types.insert(name, ty.to_string());
                } else {
                    out.help.insert(name, unescape_help(&rest));
                }
            }
            continue;
        }
        out.samples.push(cur.sample()?);
    }
    Ok(out)
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Cursor {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Cursor {
    fn err(&self, message: impl Into<String>) -> ExpositionError {
        ExpositionError {
            line: self.line,
            column: self.pos + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn expect(&mut self, c: char) -> Result<(), ExpositionError> {
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(self.err(format!("expected {c:?}, found {x:?}"))),
            None => Err(self.err(format!("expected {c:?}, found the end of the line"))),
        }
    }

    /// A metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    fn name(&mut self) -> Result<String, ExpositionError> {
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
            Some(c) => return Err(self.err(format!("expected a metric name, found {c:?}"))),
            None => return Err(self.err("expected a metric name, found the end of the line")),
        }
        Ok(self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'))
    }

    fn label_name(&mut self) -> Result<String, ExpositionError> {
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            Some(c) => return Err(self.err(format!("expected a label name, found {c:?}"))),
            None => return Err(self.err("expected a label name, found the end of the line")),
        }
        Ok(self.take_while(|c| c.is_ascii_alphanumeric() || c == '_'))
    }

    fn label_value(&mut self) -> Result<String, ExpositionError> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated label value")),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('n') => out.push('\n'),
                        Some('\\') => out.push('\\'),
                        Some('"') => out.push('"'),
                        Some(c) => return Err(self.err(format!("invalid escape \\{c}"))),
                        None => return Err(self.err("unterminated label value")),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn sample(&mut self) -> Result<TextSample, ExpositionError> {
        let name = self.name()?;
        let mut labels = BTreeMap::new();
        let before = self.pos;
        self.skip_ws();
        let mut spaced = self.pos > before;
        if self.peek() == Some('{') {
            self.pos += 1;
            loop {
                self.skip_ws();
                if self.peek() == Some('}') {
                    self.pos += 1;
                    break;
                }
                let k = self.label_name()?;
                self.skip_ws();
                self.expect('=')?;
                self.skip_ws();
                let at = self.pos;
                let v = self.label_value()?;
                if labels.insert(k.clone(), v).is_some() {
                    self.pos = at;
                    return Err(self.err(format!("label {k} given twice")));
                }
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some('}') => {}
                    Some(c) => return Err(self.err(format!("expected ',' or '}}', found {c:?}"))),
                    None => return Err(self.err("unterminated label set")),
                }
            }
            spaced = matches!(self.peek(), Some(' ' | '\t'));
        }
        if !spaced {
            return match self.peek() {
                None => Err(self.err("expected a value, found the end of the line")),
                Some(c) => Err(self.err(format!("expected a space before the value, found {c:?}"))),
            };
        }
        self.skip_ws();
        let at = self.pos;
        let word = self.take_while(|c| !c.is_whitespace());
        let value = parse_value(&word).ok_or_else(|| {
            self.pos = at;
            self.err(format!("invalid sample value {word:?}"))
        });
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                return Err(ExpositionError {
                    column: at + 1,
                    ..e
                })
            }
        };
        self.skip_ws();
        let mut timestamp_ms = None;
        if self.peek().is_some() {
            let at = self.pos;
            let word = self.take_while(|c| !c.is_whitespace());
            match word.parse::<i64>() {
                Ok(t) => timestamp_ms = Some(t),
                Err(_) => {
                    self.pos = at;
                    return Err(self.err(format!("invalid timestamp {word:?}")));
                }
            }
            self.skip_ws();
            if let Some(c) = self.peek() {
                return Err(self.err(format!("unexpected {c:?} after the timestamp")));
            }
        }
        Ok(TextSample {
            name,
            labels,
            value,
            timestamp_ms,
            line: self.line,
        })
    }
}

/// A sample value: a Go float (`1.5e+11`, `3`), `NaN`, `+Inf`, `-Inf` (any case).
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        // Rust also accepts "infinity" and similar words; the format does not.
        l if l.chars().any(|c| c.is_ascii_alphabetic() && c != 'e') => None,
        _ => s.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    const MINIO: &str = "# HELP minio_cluster_capacity_usable_free_bytes Total free usable capacity online in the cluster\n\
# TYPE minio_cluster_capacity_usable_free_bytes gauge\n\
minio_cluster_capacity_usable_free_bytes{server=\"minio-0:9000\"} 1.2345678912e+11\n\
# TYPE minio_node_drive_free_bytes gauge\n\
minio_node_drive_free_bytes{drive=\"/data1\",server=\"minio-0:9000\"} 6.1728394560e+10\n";

    #[test]
    fn reads_the_minio_capture() {
        let e = parse(MINIO).unwrap();
        assert_eq!(e.samples.len(), 2);
        assert_eq!(
            e.first("minio_cluster_capacity_usable_free_bytes")
                .unwrap()
                .value,
            123_456_789_120.0
        );
        let d = e.first("minio_node_drive_free_bytes").unwrap();
        assert_eq!(d.labels["drive"], "/data1");
        assert_eq!(d.line, 5);
        assert_eq!(e.types["minio_node_drive_free_bytes"], "gauge");
        assert_eq!(
            e.help["minio_cluster_capacity_usable_free_bytes"],
            "Total free usable capacity online in the cluster"
        );
    }

    #[test]
    fn special_values_escapes_and_timestamps() {
        let e = parse("a NaN\nb{x=\"q\\\"u\\\\o\\n\"} +Inf 1700000000000\nc -Inf\r\nd 7 \n# EOF\n")
            .unwrap();
        assert!(e.samples[0].value.is_nan());
        assert_eq!(e.samples[1].value, f64::INFINITY);
        assert_eq!(e.samples[1].labels["x"], "q\"u\\o\n");
        assert_eq!(e.samples[1].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(e.samples[2].value, f64::NEG_INFINITY);
        assert_eq!(e.samples[3].value, 7.0);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("ok 1\nbad{a=\"x\" 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 11), "{e}");
        let e = parse("ok 1\n\nm{a=\"1\"} twelve\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 10), "{e}");
        assert!(e.to_string().contains("line 3, column 10"), "{e}");
        let e = parse("m{a=\"1\",a=\"2\"} 1").unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
        let e = parse("9lives 1").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let e = parse("m 1 soon").unwrap_err();
        assert!(e.message.contains("timestamp"), "{e}");
        let e = parse("m Infinity").unwrap_err();
        assert!(e.message.contains("value"), "{e}");
        let e = parse("# TYPE m sometimes").unwrap_err();
        assert!(e.message.contains("type"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_mutated_captures(cut in 0usize..400, byte in any::<u8>(), at in 0usize..400) {
            let mut b = MINIO.as_bytes().to_vec();
            let at = at % b.len();
            b[at] = byte;
            b.truncate(cut.min(b.len()));
            let _ = parse(&String::from_utf8_lossy(&b));
        }
    }
}
