//! sqlx errors → [`SourceError`] with the right [`ErrorKind`].

use rb_core::ErrorKind;

use super::SourceError;

/// Where the error happened: an I/O failure while connecting means the server could not be
/// reached; the same failure in the middle of a result means the answer broke off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connect,
    Query,
}

/// SQLSTATEs (and MySQL error numbers) that mean "credentials or privileges refused".
fn unauthorized(code: &str, number: Option<u16>) -> bool {
    // 28000 invalid authorization, 28P01 invalid password, 42501 insufficient privilege;
    // MySQL 1045 access denied, 1044 db access denied, 1227 / 1142 / 1143 missing privilege.
    matches!(code, "28000" | "28P01" | "42501")
        || matches!(number, Some(1044 | 1045 | 1142 | 1143 | 1227))
}

pub(crate) fn classify(e: sqlx::Error, phase: Phase, what: &str) -> SourceError {
    let (kind, message) = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            #[cfg(feature = "mysql")]
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            #[cfg(not(feature = "mysql"))]
            let number: Option<u16> = None;
            let kind = if unauthorized(&code, number) {
                ErrorKind::Unauthorized
            } else if code == "57P03" || code == "57P01" || code == "08006" {
                // the server is starting / shutting down / the connection failed
                ErrorKind::Unreachable
            } else {
                // 53300 / 1040 too many connections: the server refuses — saturation itself
                ErrorKind::Rejected
            };
            let num = number.map(|n| format!(" error {n}")).unwrap_or_default();
            (
                kind,
                format!(
                    "{what}: server answered SQLSTATE {code}{num}: {}",
                    db.message()
                ),
            )
        }
        sqlx::Error::Io(io) => {
            let kind = match (phase, io.kind()) {
                (_, std::io::ErrorKind::ConnectionRefused)
                | (_, std::io::ErrorKind::TimedOut)
                | (_, std::io::ErrorKind::AddrNotAvailable)
                | (Phase::Connect, _) => ErrorKind::Unreachable,
                (Phase::Query, _) => ErrorKind::BadResponse,
            };
            (kind, format!("{what}: I/O error: {io}"))
        }
        sqlx::Error::Tls(t) => (ErrorKind::Rejected, format!("{what}: TLS failed: {t}")),
        sqlx::Error::Configuration(c) => (
            ErrorKind::Invalid,
            format!("{what}: invalid connection settings: {c}"),
        ),
        sqlx::Error::PoolTimedOut => (ErrorKind::Timeout, format!("{what}: timed out")),
        sqlx::Error::Protocol(p) => (
            ErrorKind::BadResponse,
            format!("{what}: the server broke the protocol: {p}"),
        ),
        other => (
            ErrorKind::BadResponse,
            format!("{what}: unexpected answer: {other}"),
        ),
    };
    SourceError::new(kind, message).with_source(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn io_errors_depend_on_the_phase() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(
            classify(io(), Phase::Connect, "x").kind,
            ErrorKind::Unreachable
        );
        assert_eq!(
            classify(io(), Phase::Query, "x").kind,
            ErrorKind::BadResponse
        );
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            classify(refused, Phase::Query, "x").kind,
            ErrorKind::Unreachable
        );
        let e = classify(
            sqlx::Error::Protocol("garbage".into()),
            Phase::Query,
            "reading",
        );
        assert_eq!(e.kind, ErrorKind::BadResponse);
        assert!(e.message.contains("reading") && e.message.contains("garbage"));
    }
}
