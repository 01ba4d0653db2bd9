//! What the PostgreSQL and MariaDB handles share: the server's address and credentials from the env
//! file, and opening sessions until the server refuses one.

use std::future::Future;

use anyhow::{bail, Context, Result};

use crate::PeerEnv;

/// Address, credentials and `max_connections` of a SQL server, from the env file keys
/// `{prefix}_PORT`, `_MAX_CONNECTIONS`, `_URL`, `_HOST`, `_USER`, `_PASSWORD` and `_DB`.
pub(crate) struct SqlServer {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) db: String,
    pub(crate) max_connections: u32,
}

impl SqlServer {
    /// Read the keys of `prefix` (`PG`, `MYSQL`); a missing key or a bad number is an error naming it.
    pub(crate) fn from_env(env: &PeerEnv, prefix: &str) -> Result<Self> {
        let key = |name: &str| format!("{prefix}_{name}");
        let port = env.get(&key("PORT"))?;
        let max = env.get(&key("MAX_CONNECTIONS"))?;
        Ok(Self {
            url: env.get(&key("URL"))?.to_string(),
            host: env.get(&key("HOST"))?.to_string(),
            port: port
                .parse()
                .with_context(|| format!("{prefix}_PORT is not a port: {port}"))?,
            user: env.get(&key("USER"))?.to_string(),
            password: env.get(&key("PASSWORD"))?.to_string(),
            db: env.get(&key("DB"))?.to_string(),
            max_connections: max
                .parse()
                .with_context(|| format!("{prefix}_MAX_CONNECTIONS is not a number: {max}"))?,
        })
    }
}

/// What [`open_until_refused`] reached: the sessions held open, the server's refusal of the next
/// one and its error code (`None` when the server gave none).
pub(crate) struct Refused<C> {
    pub(crate) held: Vec<C>,
    pub(crate) refusal: String,
    pub(crate) code: Option<String>,
}

/// Open sessions with `connect` until the server refuses one (at most `max_connections + 5`
/// attempts); an error naming `server` when it never refuses.
pub(crate) async fn open_until_refused<C, F, Fut>(
    server: &str,
    max_connections: u32,
    connect: F,
) -> Result<Refused<C>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<C, sqlx::Error>>,
{
    let mut held = Vec::new();
    for _ in 0..(max_connections + 5) {
        match connect().await {
            Ok(c) => held.push(c),
            Err(e) => {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.to_string());
                return Ok(Refused {
                    held,
                    refusal: e.to_string(),
                    code,
                });
            }
        }
    }
    bail!(
        "{server} accepted {} sessions although max_connections is {max_connections}",
        held.len()
    )
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn stops_at_the_first_refusal_and_fails_when_there_is_none() {
        let opened = Cell::new(0u32);
        let connect = |limit: u32| {
            let n = opened.get();
            opened.set(n + 1);
            async move {
                if n < limit {
                    Ok(n)
                } else {
                    Err(sqlx::Error::PoolTimedOut)
                }
            }
        };
        let r = open_until_refused("test", 10, || connect(3)).await.unwrap();
        assert_eq!(r.held, vec![0, 1, 2]);
        assert_eq!(r.refusal, sqlx::Error::PoolTimedOut.to_string());
        assert_eq!(r.code, None);

        opened.set(0);
        let e = open_until_refused("test", 2, || connect(100))
            .await
            .err()
            .unwrap();
        assert_eq!(opened.get(), 7);
        assert_eq!(
            e.to_string(),
            "test accepted 7 sessions although max_connections is 2"
        );
    }
}
