//! The small part of CQL the fake ring understands: `SELECT` on system tables and `USE`.

use uuid::Uuid;

/// Why a statement was refused, mapped to a CQL error code by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CqlError {
    /// Syntax error (0x2000).
    Syntax(String),
    /// Invalid query (0x2200).
    Invalid(String),
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Statement {
    Select(Select),
    Use(String),
}

/// One selected expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Selector {
    /// `*`.
    Star,
    /// A column, with an optional alias.
    Column { name: String, alias: Option<String> },
    /// `toJson(column)`, with an optional alias.
    ToJson {
        column: String,
        alias: Option<String>,
    },
    /// `count(*)` / `count(1)`, with an optional alias.
    Count { alias: Option<String> },
}

/// The right-hand side of a relation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Term {
    Literal(super::value::Literal),
    /// `?` (positional) or `:name`.
    Marker(Option<String>),
}

/// `column = term`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Relation {
    pub(crate) column: String,
    pub(crate) term: Term,
}

/// A `SELECT` statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Select {
    pub(crate) selectors: Vec<Selector>,
    pub(crate) keyspace: Option<String>,
    pub(crate) table: String,
    pub(crate) relations: Vec<Relation>,
    pub(crate) limit: Option<usize>,
    pub(crate) allow_filtering: bool,
}

#[cfg(test)]
impl Select {
    /// How many bind markers the statement holds.
    pub(crate) fn marker_count(&self) -> usize {
        self.relations
            .iter()
            .filter(|r| matches!(r.term, Term::Marker(_)))
            .count()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Str(String),
    Number(i64),
    Uuid(Uuid),
    Sym(char),
    Marker(Option<String>),
}

struct Lexed {
    tok: Tok,
    col: usize,
    text: String,
}

fn lex(input: &str) -> Result<Vec<Lexed>, CqlError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let tok = if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(CqlError::Syntax(format!(
                            "line 1:{start} mismatched character '<EOF>' expecting '''"
                        )))
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            Tok::Str(s)
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(CqlError::Syntax(format!(
                            "line 1:{start} mismatched character '<EOF>' expecting '\"'"
                        )))
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            Tok::Quoted(s)
        } else if c == '?' {
            i += 1;
            Tok::Marker(None)
        } else if c == ':' && chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) {
            i += 1;
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                s.push(chars[i].to_ascii_lowercase());
                i += 1;
            }
            Tok::Marker(Some(s))
        } else if c.is_ascii_alphanumeric() || c == '_' || (c == '-' && next_is_digit(&chars, i)) {
            let mut s = String::new();
            s.push(c);
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
            {
                s.push(chars[i]);
                i += 1;
            }
            if let Ok(u) = Uuid::parse_str(&s) {
                if s.len() == 36 {
                    out.push(Lexed {
                        tok: Tok::Uuid(u),
                        col: start,
                        text: s,
                    });
                    continue;
                }
            }
            if let Ok(n) = s.parse::<i64>() {
                Tok::Number(n)
            } else if s.contains('-') || s.starts_with(|ch: char| ch.is_ascii_digit()) {
                return Err(CqlError::Syntax(format!(
                    "line 1:{start} no viable alternative at input '{s}'"
                )));
            } else {
                Tok::Ident(s)
            }
        } else if "*,.()=;".contains(c) {
            i += 1;
            Tok::Sym(c)
        } else {
            return Err(CqlError::Syntax(format!(
                "line 1:{start} no viable alternative at character '{c}'"
            )));
        };
        let text: String = chars[start..i].iter().collect();
        out.push(Lexed {
            tok,
            col: start,
            text,
        });
    }
    Ok(out)
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())
}

struct Parser {
    toks: Vec<Lexed>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|l| &l.tok)
    }

    fn err_here(&self) -> CqlError {
        match self.toks.get(self.pos) {
            Some(l) => CqlError::Syntax(format!(
                "line 1:{} no viable alternative at input '{}'",
                l.col, l.text
            )),
            None => CqlError::Syntax("line 1:0 mismatched input '<EOF>'".into()),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.is_keyword(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), CqlError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.err_here())
        }
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, c: char) -> Result<(), CqlError> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(self.err_here())
        }
    }

    /// An identifier: unquoted ones are case-insensitive (lower-cased), quoted ones are kept.
    fn ident(&mut self) -> Result<String, CqlError> {
        let name = match self.peek() {
            Some(Tok::Ident(s)) => s.to_ascii_lowercase(),
            Some(Tok::Quoted(s)) => s.clone(),
            _ => return Err(self.err_here()),
        };
        self.pos += 1;
        Ok(name)
    }

    fn alias(&mut self) -> Result<Option<String>, CqlError> {
        if self.eat_keyword("as") {
            Ok(Some(self.ident()?))
        } else {
            Ok(None)
        }
    }

    fn selector(&mut self) -> Result<Selector, CqlError> {
        if self.eat_sym('*') {
            return Ok(Selector::Star);
        }
        let name = self.ident()?;
        if self.eat_sym('(') {
            let selector = match name.as_str() {
                "tojson" => {
                    let column = self.ident()?;
                    self.expect_sym(')')?;
                    Selector::ToJson {
                        column,
                        alias: self.alias()?,
                    }
                }
                "count" => {
                    if !self.eat_sym('*') {
                        match self.peek() {
                            Some(Tok::Number(_)) => self.pos += 1,
                            _ => return Err(self.err_here()),
                        }
                    }
                    self.expect_sym(')')?;
                    Selector::Count {
                        alias: self.alias()?,
                    }
                }
                other => return Err(CqlError::Invalid(format!("Unknown function '{other}'"))),
            };
            return Ok(selector);
        }
        Ok(Selector::Column {
            name,
            alias: self.alias()?,
        })
    }

    fn term(&mut self) -> Result<Term, CqlError> {
        use super::value::Literal;
        let term = match self.peek() {
            Some(Tok::Str(s)) => Term::Literal(Literal::Str(s.clone())),
            Some(Tok::Number(n)) => Term::Literal(Literal::Number(*n)),
            Some(Tok::Uuid(u)) => Term::Literal(Literal::Uuid(*u)),
            Some(Tok::Marker(m)) => Term::Marker(m.clone()),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => {
                Term::Literal(Literal::Bool(true))
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => {
                Term::Literal(Literal::Bool(false))
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => Term::Literal(Literal::Null),
            _ => return Err(self.err_here()),
        };
        self.pos += 1;
        Ok(term)
    }

    fn select(&mut self) -> Result<Select, CqlError> {
        if self.is_keyword("json") || self.is_keyword("distinct") {
            return Err(CqlError::Invalid(
                "SELECT JSON / DISTINCT is not served by the fake ring".into(),
            ));
        }
        let mut selectors = vec![self.selector()?];
        while self.eat_sym(',') {
            selectors.push(self.selector()?);
        }
        if selectors.len() > 1 && selectors.contains(&Selector::Star) {
            return Err(self.err_here());
        }
        self.expect_keyword("from")?;
        let first = self.ident()?;
        let (keyspace, table) = if self.eat_sym('.') {
            (Some(first), self.ident()?)
        } else {
            (None, first)
        };
        let mut relations = Vec::new();
        if self.eat_keyword("where") {
            loop {
                let column = self.ident()?;
                self.expect_sym('=')?;
                relations.push(Relation {
                    column,
                    term: self.term()?,
                });
                if !self.eat_keyword("and") {
                    break;
                }
            }
        }
        let mut limit = None;
        if self.eat_keyword("limit") {
            match self.peek() {
                Some(Tok::Number(n)) if *n > 0 => {
                    limit = usize::try_from(*n).ok();
                    self.pos += 1;
                }
                Some(Tok::Number(_)) => {
                    return Err(CqlError::Invalid("LIMIT must be strictly positive".into()))
                }
                _ => return Err(self.err_here()),
            }
        }
        let mut allow_filtering = false;
        if self.eat_keyword("allow") {
            self.expect_keyword("filtering")?;
            allow_filtering = true;
        }
        Ok(Select {
            selectors,
            keyspace,
            table,
            relations,
            limit,
            allow_filtering,
        })
    }
}

/// CQL statement keywords that exist but that the fake does not serve.
const OTHER_VERBS: &[&str] = &[
    "insert", "update", "delete", "create", "alter", "drop", "truncate", "grant", "revoke", "list",
    "begin", "apply", "describe", "desc",
];

/// Parse one statement.
pub(crate) fn parse(input: &str) -> Result<Statement, CqlError> {
    let toks = lex(input)?;
    let mut p = Parser { toks, pos: 0 };
    let stmt = if p.eat_keyword("select") {
        Statement::Select(p.select()?)
    } else if p.eat_keyword("use") {
        Statement::Use(p.ident()?)
    } else {
        return match p.peek() {
            Some(Tok::Ident(s)) if OTHER_VERBS.contains(&s.to_ascii_lowercase().as_str()) => {
                Err(CqlError::Invalid(format!(
                    "{} statements are not served by the rb-testkit fake Cassandra ring \
                     (it answers SELECT on system tables and USE)",
                    s.to_ascii_uppercase()
                )))
            }
            _ => Err(p.err_here()),
        };
    };
    p.eat_sym(';');
    if p.pos < p.toks.len() {
        return Err(p.err_here());
    }
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::super::value::Literal;
    use super::*;

    #[test]
    fn parses_driver_queries() {
        let s = parse("SELECT keyspace_name, toJson(replication) AS replication FROM system_schema.keyspaces WHERE keyspace_name = ?").unwrap();
        let Statement::Select(s) = s else { panic!() };
        assert_eq!(s.keyspace.as_deref(), Some("system_schema"));
        assert_eq!(s.table, "keyspaces");
        assert_eq!(
            s.selectors[1],
            Selector::ToJson {
                column: "replication".into(),
                alias: Some("replication".into())
            }
        );
        assert_eq!(s.marker_count(), 1);

        let Statement::Select(s) = parse("select * from system.local where key='local';").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.selectors, vec![Selector::Star]);
        assert_eq!(
            s.relations[0].term,
            Term::Literal(Literal::Str("local".into()))
        );
    }

    #[test]
    fn use_and_errors() {
        assert_eq!(
            parse("USE \"MyKs\"").unwrap(),
            Statement::Use("MyKs".into())
        );
        assert!(matches!(parse("SELEC * FROM x"), Err(CqlError::Syntax(_))));
        assert!(matches!(parse("SELECT * FROM"), Err(CqlError::Syntax(_))));
        assert!(matches!(
            parse("INSERT INTO t (a) VALUES (1)"),
            Err(CqlError::Invalid(_))
        ));
        assert!(matches!(parse("SELECT 'x"), Err(CqlError::Syntax(_))));
    }

    #[test]
    fn uuid_and_numbers() {
        let Statement::Select(s) = parse(
            "SELECT peer FROM system.peers WHERE host_id = 3f1a2b3c-0000-4000-8000-000000000001 AND x = -5 LIMIT 2 ALLOW FILTERING",
        )
        .unwrap() else {
            panic!()
        };
        assert!(matches!(
            s.relations[0].term,
            Term::Literal(Literal::Uuid(_))
        ));
        assert_eq!(s.relations[1].term, Term::Literal(Literal::Number(-5)));
        assert_eq!(s.limit, Some(2));
        assert!(s.allow_filtering);
    }
}
