//! Label matchers, as Alertmanager routes and silences use them: `=`, `!=`, `=~`, `!~`.
//!
//! A [`Matchers`] set parses from Alertmanager's text form — `alertname="KafkaConnectFailed",
//! connector=~"orders-.*"`, optionally in braces — and matches a label set when every matcher does.
//! As in Alertmanager:
//!
//! - a regular expression is **fully anchored**: `=~"orders-.*"` is `^(?:orders-.*)$`, so it does not
//!   match `old-orders-1`;
//! - a label that is absent has the empty value: `team=""` matches an alert without a `team` label,
//!   and `team!~".+"` too.
//!
//! ```
//! use rb_core::matcher::Matchers;
//! use rb_core::labels;
//! let m: Matchers = r#"{alertname="KafkaConnectFailed", connector=~"orders-.*"}"#.parse().unwrap();
//! assert!(m.matches(&labels(&[("alertname", "KafkaConnectFailed"), ("connector", "orders-sink")])));
//! assert!(!m.matches(&labels(&[("alertname", "KafkaConnectFailed"), ("connector", "old-orders-1")])));
//! let e = "alertname=~\"(\"".parse::<Matchers>().unwrap_err();
//! assert_eq!(e.column(), 12);
//! ```

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::observation::Labels;

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal.
    Equal,
    /// `!=`: not equal.
    NotEqual,
    /// `=~`: the fully anchored regular expression matches.
    Regex,
    /// `!~`: the fully anchored regular expression does not match.
    NotRegex,
}

impl MatchOp {
    /// The operator as written: `=`, `!=`, `=~`, `!~`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a matcher or a matcher set could not be built: what was wrong and at which column (1-based,
/// counted in characters) of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherError {
    column: usize,
    message: String,
}

impl MatcherError {
    fn at(column: usize, message: impl Into<String>) -> Self {
        Self {
            column,
            message: message.into(),
        }
    }

    /// The 1-based column (in characters) where the input went wrong.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for MatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad matcher at column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for MatcherError {}

/// One label matcher: a label name, an operator and a value (a regular expression for `=~` / `!~`).
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// A matcher; for `=~` and `!~` the value must be a valid regular expression (it is anchored at
    /// both ends). The error's column is 1 (there is no text form to point into).
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(anchored(&value).map_err(|e| {
                MatcherError::at(1, format!("invalid regular expression {value:?}: {e}"))
            })?),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// `name!="value"`.
    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: MatchOp::NotEqual,
            value: value.into(),
            re: None,
        }
    }

    /// `name=~"re"` (anchored).
    pub fn regex(name: impl Into<String>, re: impl Into<String>) -> Result<Self, MatcherError> {
        Self::new(name, MatchOp::Regex, re)
    }

    /// `name!~"re"` (anchored).
    pub fn not_regex(name: impl Into<String>, re: impl Into<String>) -> Result<Self, MatcherError> {
        Self::new(name, MatchOp::NotRegex, re)
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value (the regular expression as written, without the anchors, for `=~` / `!~`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether `value` satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            // unreachable by construction (every regex matcher has its regex): match nothing
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Whether the label set satisfies the matcher (an absent label has the empty value).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_plain_name(&self.name) {
            f.write_str(&self.name)?;
        } else {
            write_quoted(f, &self.name)?;
        }
        f.write_str(self.op.as_str())?;
        write_quoted(f, &self.value)
    }
}

fn anchored(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{re})$"))
}

fn is_plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A set of matchers: matches a label set when every matcher does (the empty set matches everything).
///
/// Serialized as its text form (`{alertname="X",connector=~"orders-.*"}`), so a runbook file can
/// write it as a string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matchers(Vec<Matcher>);

impl Matchers {
    /// No matcher (matches everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse Alertmanager's text form (see [`FromStr`]).
    pub fn parse(s: &str) -> Result<Self, MatcherError> {
        s.parse()
    }

    /// Add a matcher.
    pub fn and(mut self, m: Matcher) -> Self {
        self.0.push(m);
        self
    }

    /// Whether every matcher matches `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|m| m.matches(labels))
    }

    /// The matchers, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Matcher> {
        self.0.iter()
    }

    /// How many matchers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Matcher> for Matchers {
    fn from(m: Matcher) -> Self {
        Matchers(vec![m])
    }
}

impl FromIterator<Matcher> for Matchers {
    fn from_iter<I: IntoIterator<Item = Matcher>>(iter: I) -> Self {
        Matchers(iter.into_iter().collect())
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

/// Alertmanager's text form: matchers separated by commas, optionally inside `{` `}`, with optional
/// whitespace around every token and an optional trailing comma. A label name is
/// `[a-zA-Z_][a-zA-Z0-9_]*` or a double-quoted string; a value is a double-quoted string (escapes
/// `\"`, `\\`, `\n`) or an unquoted run of characters other than whitespace, `,`, `{`, `}`, `"`,
/// `=`, `!` and `~`. Errors name the 1-based column.
impl FromStr for Matchers {
    type Err = MatcherError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser::new(s).parse()
    }
}

impl Serialize for Matchers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matchers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        Self {
            chars: s.chars().collect(),
            pos: 0,
        }
    }

    fn col(&self) -> usize {
        self.pos + 1
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, MatcherError> {
        Err(MatcherError::at(self.col(), message))
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "the end of the input".to_string(),
        }
    }

    fn parse(mut self) -> Result<Matchers, MatcherError> {
        self.skip_ws();
        let braced = self.peek() == Some('{');
        if braced {
            self.pos += 1;
        }
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None if braced => return self.err("expected '}' to close '{'"),
                None => break,
                Some('}') if braced => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek().is_some() {
                        return self.err(format!("unexpected {} after '}}'", self.found()));
                    }
                    break;
                }
                Some(_) => {}
            }
            out.push(self.matcher()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                None => {}
                Some('}') if braced => {}
                Some(_) => {
                    return self.err(format!(
                        "expected ',' between matchers, found {}",
                        self.found()
                    ))
                }
            }
        }
        Ok(Matchers(out))
    }

    fn matcher(&mut self) -> Result<Matcher, MatcherError> {
        let name = match self.peek() {
            Some('"') => self.quoted()?,
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
                {
                    self.pos += 1;
                }
                self.chars[start..self.pos].iter().collect()
            }
            _ => return self.err(format!("expected a label name, found {}", self.found())),
        };
        self.skip_ws();
        let op = match (self.peek(), self.chars.get(self.pos + 1).copied()) {
            (Some('='), Some('~')) => MatchOp::Regex,
            (Some('!'), Some('=')) => MatchOp::NotEqual,
            (Some('!'), Some('~')) => MatchOp::NotRegex,
            (Some('='), _) => MatchOp::Equal,
            _ => {
                return self.err(format!(
                    "expected one of =, !=, =~, !~ after label {name:?}, found {}",
                    self.found()
                ))
            }
        };
        self.pos += op.as_str().len();
        self.skip_ws();
        let value_col = self.col();
        let value = match self.peek() {
            Some('"') => self.quoted()?,
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| {
                    !c.is_whitespace() && !matches!(c, ',' | '{' | '}' | '"' | '=' | '!' | '~')
                }) {
                    self.pos += 1;
                }
                if start == self.pos && !matches!(self.peek(), None | Some(',' | '}')) {
                    return self.err(format!(
                        "expected a value for label {name:?}, found {}",
                        self.found()
                    ));
                }
                self.chars[start..self.pos].iter().collect()
            }
        };
        Matcher::new(name, op, value).map_err(|e| MatcherError::at(value_col, e.message))
    }

    /// A double-quoted string at the cursor, unescaped.
    fn quoted(&mut self) -> Result<String, MatcherError> {
        let open = self.col();
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(MatcherError::at(
                        open,
                        "unterminated quoted string (no closing '\"')",
                    ))
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        _ => {
                            return self.err(format!(
                                "invalid escape \\{} (only \\\", \\\\ and \\n)",
                                self.peek().map(String::from).unwrap_or_default()
                            ))
                        }
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::observation::labels;

    fn m(s: &str) -> Matchers {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_alertmanager_forms() {
        let a = m(r#"alertname="KafkaConnectFailed", connector=~"orders-.*""#);
        let b = m(r#"{alertname="KafkaConnectFailed",connector=~"orders-.*"}"#);
        let c = m(" { alertname = KafkaConnectFailed , connector =~ \"orders-.*\" , } ");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 2);
        let ops: Vec<MatchOp> = m(r#"a="1",b!="2",c=~"3",d!~"4""#)
            .iter()
            .map(Matcher::op)
            .collect();
        assert_eq!(
            ops,
            [
                MatchOp::Equal,
                MatchOp::NotEqual,
                MatchOp::Regex,
                MatchOp::NotRegex
            ]
        );
        assert!(m("{}").is_empty());
        assert!(m("").is_empty());
        assert_eq!(m(r#"team="""#).iter().next().unwrap().value(), "");
    }

    #[test]
    fn quoted_values_unescape() {
        let x = m(r#"summary="say \"hi\", a\\b\nnext", "odd name"="v""#);
        let v: Vec<(&str, &str)> = x.iter().map(|m| (m.name(), m.value())).collect();
        assert_eq!(
            v,
            [("summary", "say \"hi\", a\\b\nnext"), ("odd name", "v")]
        );
        // Display writes a form that parses back to the same set
        assert_eq!(m(&x.to_string()), x);
        assert_eq!(
            x.to_string(),
            r#"{summary="say \"hi\", a\\b\nnext","odd name"="v"}"#
        );
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let r = Matcher::regex("connector", "orders-.*").unwrap();
        assert!(r.matches_value("orders-sink"));
        assert!(!r.matches_value("old-orders-sink"), "anchored at the start");
        let r = Matcher::regex("connector", "orders|payments").unwrap();
        assert!(r.matches_value("payments"));
        assert!(
            !r.matches_value("orders-x"),
            "the alternation is grouped before anchoring"
        );
        assert!(!r.matches_value("xpayments"));
        let nr = Matcher::not_regex("connector", "orders-.*").unwrap();
        assert!(nr.matches_value("old-orders-sink"));
        assert!(!nr.matches_value("orders-1"));
    }

    #[test]
    fn a_missing_label_is_the_empty_string() {
        let l = labels(&[("alertname", "X")]);
        assert!(m(r#"team="""#).matches(&l));
        assert!(m(r#"team!~".+""#).matches(&l));
        assert!(!m(r#"team=~".+""#).matches(&l));
        assert!(m(r#"team!="infra""#).matches(&l));
        assert!(!m(r#"team="infra""#).matches(&l));
        assert!(m("{}").matches(&l), "the empty set matches everything");
    }

    #[test]
    fn all_matchers_must_hold() {
        let x = m(r#"alertname="KafkaConnectFailed", connector=~"orders-.*", env!="dev""#);
        let base = [
            ("alertname", "KafkaConnectFailed"),
            ("connector", "orders-1"),
        ];
        assert!(x.matches(&labels(&base)));
        assert!(x.matches(&labels(&[base[0], base[1], ("env", "prod")])));
        assert!(!x.matches(&labels(&[base[0], base[1], ("env", "dev")])));
        assert!(!x.matches(&labels(&[("alertname", "Other"), base[1]])));
    }

    #[test]
    fn errors_name_the_column() {
        for (input, col, needle) in [
            (r#"alertname=~"(""#, 12, "regular expression"),
            (r#"{alertname="x""#, 15, "'}'"),
            (r#"alertname="x"}"#, 14, "','"),
            (r#"alertname "x""#, 11, "expected one of"),
            (r#"alertname="x" job="y""#, 15, "','"),
            (r#"1abc="x""#, 1, "label name"),
            (r#"a="unterminated"#, 3, "unterminated"),
            (r#"a="bad \q escape""#, 9, "escape"),
            (r#"{a="x"} tail"#, 9, "after"),
            (r#"a=~"x",,"#, 8, "label name"),
        ] {
            let e = input.parse::<Matchers>().unwrap_err();
            assert_eq!(e.column(), col, "{input}: {e}");
            assert!(e.to_string().contains(needle), "{input}: {e}");
            assert!(e.to_string().contains(&format!("column {col}")), "{e}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let x = m(r#"alertname="A",job=~"orders-.*""#);
        let j = serde_json::to_string(&x).unwrap();
        assert_eq!(j, r#""{alertname=\"A\",job=~\"orders-.*\"}""#);
        let back: Matchers = serde_json::from_str(&j).unwrap();
        assert_eq!(back, x);
        let bad = serde_json::from_str::<Matchers>(r#""a=~\"(\"""#).unwrap_err();
        assert!(bad.to_string().contains("column 4"), "{bad}");
    }
}
