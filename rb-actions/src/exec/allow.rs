//! The allow-list: a program and a pattern over its arguments.

use std::fmt;

/// A pattern for one argument (or, for [`Arg::Rest`], for all remaining ones).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Arg {
    /// Exactly this text.
    Lit(String),
    /// One of these texts.
    OneOf(Vec<String>),
    /// `prefix` followed by an integer in `min..=max` (`flink-taskmanager=` 1..=8).
    Int {
        /// The text before the number (may be empty).
        prefix: String,
        /// The smallest number allowed.
        min: i64,
        /// The largest number allowed.
        max: i64,
    },
    /// One word: letters, digits and `._:/@=-`, not starting with `-` (a service, host, keyspace or
    /// file name — never an option).
    Word,
    /// Any number (zero or more) of arguments, each matching the inner pattern. Last only.
    Rest(Box<Arg>),
}

/// `Arg::Lit`.
pub fn lit(s: impl Into<String>) -> Arg {
    Arg::Lit(s.into())
}

/// `Arg::OneOf`.
pub fn one_of(options: &[&str]) -> Arg {
    Arg::OneOf(options.iter().map(|s| s.to_string()).collect())
}

/// `Arg::Int`.
pub fn int(prefix: impl Into<String>, min: i64, max: i64) -> Arg {
    Arg::Int {
        prefix: prefix.into(),
        min,
        max,
    }
}

/// `Arg::Word`.
pub fn word() -> Arg {
    Arg::Word
}

/// `Arg::Rest`.
pub fn rest(each: Arg) -> Arg {
    Arg::Rest(Box::new(each))
}

impl Arg {
    fn matches_one(&self, a: &str) -> bool {
        match self {
            Arg::Lit(s) => a == s,
            Arg::OneOf(v) => v.iter().any(|s| s == a),
            Arg::Int { prefix, min, max } => a
                .strip_prefix(prefix.as_str())
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|n| (*min..=*max).contains(&n)),
            Arg::Word => {
                !a.is_empty()
                    && !a.starts_with('-')
                    && a.chars().all(|c| {
                        c.is_ascii_alphanumeric()
                            || matches!(c, '.' | '_' | ':' | '/' | '@' | '=' | '-')
                    })
            }
            Arg::Rest(inner) => inner.matches_one(a),
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Lit(s) => f.write_str(s),
            Arg::OneOf(v) => write!(f, "{{{}}}", v.join("|")),
            Arg::Int { prefix, min, max } => write!(f, "{prefix}<{min}..{max}>"),
            Arg::Word => f.write_str("<word>"),
            Arg::Rest(inner) => write!(f, "[{inner}…]"),
        }
    }
}

/// One allowed command: a program name (matched exactly, as given to the runner — `docker`, not
/// `/usr/bin/docker`, unless the rule says the path) and its argument patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    program: String,
    args: Vec<Arg>,
}

impl AllowRule {
    /// `program` with no argument.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// The argument patterns, in order.
    pub fn args(mut self, args: impl IntoIterator<Item = Arg>) -> Self {
        self.args = args.into_iter().collect();
        self
    }

    /// The program.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Whether `argv` (program first) matches.
    pub fn matches(&self, argv: &[String]) -> bool {
        let Some((program, args)) = argv.split_first() else {
            return false;
        };
        if *program != self.program {
            return false;
        }
        let mut i = 0;
        for (k, p) in self.args.iter().enumerate() {
            if let Arg::Rest(inner) = p {
                // only as the last pattern
                return k + 1 == self.args.len() && args[i..].iter().all(|a| inner.matches_one(a));
            }
            match args.get(i) {
                Some(a) if p.matches_one(a) => i += 1,
                _ => return false,
            }
        }
        i == args.len()
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn scale() -> AllowRule {
        AllowRule::new("docker").args([
            lit("compose"),
            lit("up"),
            lit("-d"),
            lit("--scale"),
            int("flink-taskmanager=", 1, 8),
        ])
    }

    #[test]
    fn exact_commands_match_and_variations_do_not() {
        let r = scale();
        assert!(r.matches(&v("docker compose up -d --scale flink-taskmanager=2")));
        for bad in [
            "docker compose up -d --scale flink-taskmanager=9",
            "docker compose up -d --scale flink-taskmanager=0",
            "docker compose up -d --scale flink-taskmanager=two",
            "docker compose up -d --scale flink-jobmanager=2",
            "docker compose up -d --scale flink-taskmanager=2 --force-recreate",
            "docker compose up -d",
            "/usr/bin/docker compose up -d --scale flink-taskmanager=2",
            "docker compose down",
            "",
        ] {
            assert!(!r.matches(&v(bad)), "{bad}");
        }
        assert_eq!(
            r.to_string(),
            "docker compose up -d --scale flink-taskmanager=<1..8>"
        );
    }

    #[test]
    fn words_and_rest() {
        let logs = AllowRule::new("docker").args([
            lit("compose"),
            lit("logs"),
            one_of(&["--tail=200", "--tail=1000"]),
            rest(word()),
        ]);
        assert!(logs.matches(&v("docker compose logs --tail=200")));
        assert!(logs.matches(&v(
            "docker compose logs --tail=200 kafka-connect flink-jobmanager"
        )));
        assert!(!logs.matches(&v("docker compose logs --tail=200 -f")));
        assert!(!logs.matches(&v("docker compose logs --tail=5")));
        let status = AllowRule::new("nodetool").args([
            lit("-h"),
            word(),
            one_of(&["status", "info", "tpstats"]),
        ]);
        assert!(status.matches(&v("nodetool -h 127.0.0.2 status")));
        assert!(!status.matches(&v("nodetool -h -x status")));
        assert!(!status.matches(&v("nodetool -h 127.0.0.2 decommission")));
        assert!(
            !word().matches_one("a;b") && !word().matches_one("$(x)") && !word().matches_one("a b")
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_extra_arguments_never_match(args in proptest::collection::vec(".{0,12}", 0..8)) {
            let mut argv = v("docker compose up -d --scale flink-taskmanager=2");
            let _ = scale().matches(&args);
            argv.extend(args.iter().cloned());
            prop_assert_eq!(scale().matches(&argv), args.is_empty());
        }
    }
}
