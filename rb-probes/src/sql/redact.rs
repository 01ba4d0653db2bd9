//! Literal redaction of statement texts: what a session runs is evidence, its values (names,
//! e-mail addresses, amounts, tokens) are not.

/// Whose quoting rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL: `'…'` strings (`''` escapes, `E'…'` with backslash escapes), `$tag$…$tag$`
    /// strings, `"…"` identifiers (kept).
    Postgres,
    /// MySQL / MariaDB: `'…'` and `"…"` strings (doubled quotes and backslash escapes), `` `…` ``
    /// identifiers (kept).
    Mysql,
}

/// Replace every string and numeric literal of `sql` with `?` and every comment with a space.
/// Identifiers, keywords, operators and placeholders (`$1`, `?`) are kept. Never fails: an
/// unterminated string or comment is redacted to the end of the text.
///
/// ```
/// use rb_probes::sql::{redact_literals, Dialect};
/// assert_eq!(
///     redact_literals("SELECT * FROM users WHERE email = 'a@b.c' AND id > 42 -- find", Dialect::Postgres),
///     "SELECT * FROM users WHERE email = ? AND id > ?  "
/// );
/// assert_eq!(redact_literals("UPDATE t2 SET x = \"s\" WHERE `c1` = 0x1F", Dialect::Mysql), "UPDATE t2 SET x = ? WHERE `c1` = ?");
/// ```
pub fn redact_literals(sql: &str, dialect: Dialect) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let n = chars.len();
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    while i < n {
        let c = chars[i];
        let prev_ident = i > 0 && ident(chars[i - 1]);
        match c {
            '-' if i + 1 < n && chars[i + 1] == '-' => {
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            '#' if dialect == Dialect::Mysql => {
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            '/' if i + 1 < n && chars[i + 1] == '*' => {
                i += 2;
                while i < n && !(chars[i] == '*' && i + 1 < n && chars[i + 1] == '/') {
                    i += 1;
                }
                i = (i + 2).min(n);
                out.push(' ');
            }
            '\'' => {
                // PostgreSQL E'…' (the E is already in `out`): backslash escapes apply.
                let backslash = dialect == Dialect::Mysql
                    || (i > 0
                        && matches!(chars[i - 1], 'e' | 'E')
                        && !(i > 1 && ident(chars[i - 2])));
                if backslash && dialect == Dialect::Postgres {
                    out.pop();
                }
                i = skip_quoted(&chars, i, '\'', backslash);
                out.push('?');
            }
            '"' if dialect == Dialect::Mysql => {
                i = skip_quoted(&chars, i, '"', true);
                out.push('?');
            }
            '"' | '`' => {
                // Identifiers: copied as they are.
                let end = skip_quoted(&chars, i, c, false);
                out.extend(&chars[i..end]);
                i = end;
            }
            '$' if dialect == Dialect::Postgres && !prev_ident => {
                // $1 placeholders are kept; $tag$…$tag$ strings are redacted.
                let mut j = i + 1;
                while j < n && (chars[j].is_alphanumeric() || chars[j] == '_') && chars[j] != '$' {
                    j += 1;
                }
                let is_tag = j < n
                    && chars[j] == '$'
                    && !chars[i + 1..j].first().is_some_and(|c| c.is_ascii_digit());
                if is_tag {
                    let tag: Vec<char> = chars[i..=j].to_vec();
                    let mut k = j + 1;
                    loop {
                        if k + tag.len() > n {
                            k = n;
                            break;
                        }
                        if chars[k..k + tag.len()] == tag[..] {
                            k += tag.len();
                            break;
                        }
                        k += 1;
                    }
                    i = k;
                    out.push('?');
                } else {
                    out.extend(&chars[i..j]);
                    i = j;
                }
            }
            d if d.is_ascii_digit() && !prev_ident => {
                let mut j = i;
                if d == '0' && i + 1 < n && matches!(chars[i + 1], 'x' | 'X' | 'b' | 'B') {
                    j += 2;
                    while j < n && chars[j].is_ascii_hexdigit() {
                        j += 1;
                    }
                } else {
                    while j < n && (chars[j].is_ascii_digit() || chars[j] == '.') {
                        j += 1;
                    }
                    if j < n && matches!(chars[j], 'e' | 'E') {
                        let mut k = j + 1;
                        if k < n && matches!(chars[k], '+' | '-') {
                            k += 1;
                        }
                        if k < n && chars[k].is_ascii_digit() {
                            j = k;
                            while j < n && chars[j].is_ascii_digit() {
                                j += 1;
                            }
                        }
                    }
                }
                // A number glued to letters (`1abc`) is an identifier piece, not a literal.
                if j < n && (chars[j].is_alphabetic() || chars[j] == '_') {
                    while j < n && ident(chars[j]) {
                        j += 1;
                    }
                    out.extend(&chars[i..j]);
                } else {
                    out.push('?');
                }
                i = j;
            }
            '.' if i + 1 < n && chars[i + 1].is_ascii_digit() && !prev_ident => {
                let mut j = i + 1;
                while j < n && chars[j].is_ascii_digit() {
                    j += 1;
                }
                out.push('?');
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The index just past the quoted text starting at `start` (which holds `quote`).
fn skip_quoted(chars: &[char], start: usize, quote: char, backslash: bool) -> usize {
    let n = chars.len();
    let mut i = start + 1;
    while i < n {
        let c = chars[i];
        if backslash && c == '\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if i + 1 < n && chars[i + 1] == quote {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn pg(s: &str) -> String {
        redact_literals(s, Dialect::Postgres)
    }
    fn my(s: &str) -> String {
        redact_literals(s, Dialect::Mysql)
    }

    #[test]
    fn strings_numbers_and_comments_go_identifiers_and_placeholders_stay() {
        assert_eq!(
            pg("SELECT 'it''s', 1.5e3, .5, x1, t2.c3 FROM \"T 9\""),
            "SELECT ?, ?, ?, x1, t2.c3 FROM \"T 9\""
        );
        assert_eq!(pg("SELECT E'a\\'b' || 'c'"), "SELECT ? || ?");
        assert_eq!(pg("SELECT $1, $$secret$$, $x$y$x$"), "SELECT $1, ?, ?");
        assert_eq!(pg("SELECT 1 /* 'a' 2 */ + 2"), "SELECT ?   + ?");
        assert_eq!(pg("UPDATE t SET e = 'unterminated"), "UPDATE t SET e = ?");
        assert_eq!(my("SELECT \"a\\\"b\", 'x''y' # c 42"), "SELECT ?, ?  ");
        assert_eq!(my("KILL QUERY 17"), "KILL QUERY ?");
        assert_eq!(my("SELECT `2col` FROM t"), "SELECT `2col` FROM t");
        assert_eq!(pg("SELECT 0xff, 12abc"), "SELECT ?, 12abc");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,200}") {
            let _ = pg(&s);
            let _ = my(&s);
        }

        #[test]
        fn literals_inside_a_statement_never_survive(
            word in "[a-z@. ]{1,20}",
            num in 0u64..1_000_000_000,
        ) {
            let sql = format!("SELECT * FROM t WHERE a = '{word}' AND b = {num}");
            for out in [pg(&sql), my(&sql)] {
                prop_assert_eq!(&out, "SELECT * FROM t WHERE a = ? AND b = ?");
            }
        }

        #[test]
        fn mutated_statements_never_panic(
            cut in 0usize..60,
            ins in proptest::sample::select(vec!['\'', '"', '$', '`', '/', '*', '-', '#', '\\', 'E', '9']),
        ) {
            let base = "SELECT E'a\\'b', $t$x$t$, \"id\", `c`, 1.5e-3 /* c */ -- x\n FROM t";
            let mut s: Vec<char> = base.chars().collect();
            let at = cut.min(s.len());
            s.insert(at, ins);
            let s: String = s.into_iter().collect();
            let _ = pg(&s);
            let _ = my(&s);
        }
    }
}
