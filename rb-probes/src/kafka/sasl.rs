//! SASL for rb's own broker connections (feature `kafka-tls`): the client side of PLAIN
//! (RFC 4616) and SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's brokers speak
//! them. The messages travel in SaslAuthenticate requests after a SaslHandshake v1 (KIP-152);
//! this module only writes and checks the mechanism's messages.
//!
//! As Kafka's own client does, the password is hashed as its UTF-8 bytes (no SASLprep) and the
//! user name escapes `=` and `,` (`=3D`, `=2C`). The server's final message is checked: a broker
//! that cannot prove it knows the password's salted key fails the connection
//! ([`ErrorKind::Unauthorized`](rb_core::ErrorKind::Unauthorized)), as does a nonce the client did
//! not start. Nothing here ever formats the password.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::config::{Sasl, SaslMechanism};

/// The most PBKDF2 iterations a server may ask for (Kafka accepts 4,096 to 16,384); more is refused
/// rather than spending seconds of CPU on a hostile or broken answer.
const MAX_ITERATIONS: u32 = 100_000;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Hash {
    /// HMAC of the concatenated `parts` under `key`.
    pub(super) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
            let mut mac = match <M as hmac::digest::KeyInit>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => return Vec::new(),
            };
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Hash::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    /// The hash of `data`.
    pub(super) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC of this hash, one block.
    pub(super) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut u = self.hmac(password, &[salt, &1u32.to_be_bytes()]);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &[&u]);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }
}

/// Where a SCRAM exchange stands.
enum State {
    /// PLAIN: one message, then done.
    Plain,
    /// SCRAM: client-first sent, the server's first message awaited.
    ScramFirst {
        hash: Hash,
        nonce: String,
        first_bare: String,
        password: Vec<u8>,
    },
    /// SCRAM: client-final sent, the server's signature awaited.
    ScramFinal { server_signature: Vec<u8> },
    /// Nothing more to send or check.
    Done,
}

/// The client side of one SASL authentication.
pub(super) struct Authenticator {
    state: State,
    first: Vec<u8>,
}

impl Authenticator {
    /// An exchange for `sasl` with a fresh random nonce.
    pub(super) fn new(sasl: &Sasl) -> Self {
        use rand::Rng as _;
        let bytes: [u8; 24] = rand::thread_rng().gen();
        Self::with_nonce(sasl, &B64.encode(bytes))
    }

    /// An exchange for `sasl` whose SCRAM client nonce is `nonce` (printable, no `,`).
    fn with_nonce(sasl: &Sasl, nonce: &str) -> Self {
        let password = sasl.password.expose().as_bytes().to_vec();
        let hash = match sasl.mechanism {
            SaslMechanism::Plain => {
                let mut first = Vec::with_capacity(2 + sasl.username.len() + password.len());
                first.push(0);
                first.extend_from_slice(sasl.username.as_bytes());
                first.push(0);
                first.extend_from_slice(&password);
                return Self {
                    state: State::Plain,
                    first,
                };
            }
            SaslMechanism::ScramSha256 => Hash::Sha256,
            SaslMechanism::ScramSha512 => Hash::Sha512,
        };
        let user = sasl.username.replace('=', "=3D").replace(',', "=2C");
        let first_bare = format!("n={user},r={nonce}");
        Self {
            first: format!("n,,{first_bare}").into_bytes(),
            state: State::ScramFirst {
                hash,
                nonce: nonce.to_owned(),
                first_bare,
                password,
            },
        }
    }

    /// The client's first message (PLAIN's only one).
    pub(super) fn first_message(&self) -> &[u8] {
        &self.first
    }

    /// Takes the server's answer to the last message: `Ok(Some(next))` to send `next`,
    /// `Ok(None)` when the exchange is complete and the server proved itself, `Err` with what
    /// was wrong (never containing the password).
    pub(super) fn answer(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Plain | State::Done => Ok(None),
            State::ScramFirst {
                hash,
                nonce,
                first_bare,
                password,
            } => {
                let (message, server_signature) =
                    client_final(hash, &nonce, &first_bare, &password, server)?;
                self.state = State::ScramFinal { server_signature };
                Ok(Some(message))
            }
            State::ScramFinal { server_signature } => {
                check_server_final(&server_signature, server)?;
                Ok(None)
            }
        }
    }
}

/// The attributes of a SCRAM message (`a=value,…`), in order.
fn attributes(message: &str) -> Vec<(char, &str)> {
    message
        .split(',')
        .filter_map(|part| {
            let mut chars = part.chars();
            let key = chars.next()?;
            let rest = chars.as_str().strip_prefix('=')?;
            Some((key, rest))
        })
        .collect()
}

/// The client-final message for the server-first message `server`, and the server signature the
/// server-final message must carry.
fn client_final(
    hash: Hash,
    nonce: &str,
    first_bare: &str,
    password: &[u8],
    server: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let server_first = std::str::from_utf8(server)
        .map_err(|_| "SCRAM: the server's first message is not UTF-8".to_owned())?;
    let attrs = attributes(server_first);
    let get = |k: char| attrs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    if let Some(e) = get('e') {
        return Err(format!("SCRAM: the server refused: {e}"));
    }
    if attrs.first().map(|(k, _)| *k) == Some('m') {
        return Err("SCRAM: the server requires an extension rb does not know (m=)".to_owned());
    }
    let combined = get('r').ok_or("SCRAM: the server's first message has no nonce (r=)")?;
    if combined.len() <= nonce.len() || !combined.starts_with(nonce) {
        return Err("SCRAM: the server's nonce does not extend the client's".to_owned());
    }
    let salt = get('s').ok_or("SCRAM: the server's first message has no salt (s=)")?;
    let salt = B64
        .decode(salt)
        .map_err(|e| format!("SCRAM: the server's salt is not base64: {e}"))?;
    let iterations =
        get('i').ok_or("SCRAM: the server's first message has no iteration count (i=)")?;
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| format!("SCRAM: iteration count {iterations:?} is not a number"))?;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(format!(
            "SCRAM: iteration count {iterations} outside 1..={MAX_ITERATIONS}"
        ));
    }
    let salted = hash.salted_password(password, &salt, iterations);
    let client_key = hash.hmac(&salted, &[b"Client Key"]);
    let stored_key = hash.digest(&client_key);
    // "biws" is base64("n,,"): no channel binding, no authorization identity.
    let without_proof = format!("c=biws,r={combined}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let client_signature = hash.hmac(&stored_key, &[auth_message.as_bytes()]);
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&client_signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hash.hmac(&salted, &[b"Server Key"]);
    let server_signature = hash.hmac(&server_key, &[auth_message.as_bytes()]);
    let message = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
    Ok((message, server_signature))
}

/// Checks the server-final message against the expected signature.
fn check_server_final(expected: &[u8], server: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(server)
        .map_err(|_| "SCRAM: the server's final message is not UTF-8".to_owned())?;
    let attrs = attributes(text);
    if let Some((_, e)) = attrs.iter().find(|(k, _)| *k == 'e') {
        return Err(format!("SCRAM: the server refused: {e}"));
    }
    let v = attrs
        .iter()
        .find(|(k, _)| *k == 'v')
        .map(|(_, v)| *v)
        .ok_or("SCRAM: the server's final message has no signature (v=)")?;
    let got = B64
        .decode(v)
        .map_err(|e| format!("SCRAM: the server's signature is not base64: {e}"))?;
    // Compared in full whatever differs first.
    let same = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err("SCRAM: the server's signature is wrong (it does not know this user's key)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rb_core::Secret;

    fn sasl(mechanism: SaslMechanism, user: &str, password: &str) -> Sasl {
        Sasl {
            mechanism,
            username: user.into(),
            password: Secret::new(password),
        }
    }

    #[test]
    fn plain_is_one_message() {
        let mut a = Authenticator::new(&sasl(SaslMechanism::Plain, "rb", "pw"));
        assert_eq!(a.first_message(), b"\0rb\0pw");
        assert_eq!(a.answer(b"").unwrap(), None);
    }

    /// RFC 7677, section 3.
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut a = Authenticator::with_nonce(
            &sasl(SaslMechanism::ScramSha256, "user", "pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(a.first_message(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = a.answer(server_first).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            a.answer(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            None
        );
    }

    /// The same exchange with SHA-512, the proof and signature computed independently (Python's
    /// `hashlib.pbkdf2_hmac` and `hmac`).
    #[test]
    fn scram_sha_512_matches_an_independent_computation() {
        let mut a = Authenticator::with_nonce(
            &sasl(SaslMechanism::ScramSha512, "user", "pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        let server_first = b"r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = String::from_utf8(a.answer(server_first).unwrap().unwrap()).unwrap();
        assert_eq!(
            last,
            format!("c=biws,r=rOprNGfwEbeRWgbNEkqOsrv,p={SHA512_PROOF}")
        );
        assert_eq!(
            a.answer(format!("v={SHA512_SIGNATURE}").as_bytes())
                .unwrap(),
            None
        );
    }

    const SHA512_PROOF: &str =
        "1OpsFyi+KRPH1j6CW9CTCpXgzUv72cJ1LLQ/JGYEYimzrqu/avvs9S6Cpyyn1Ip87CJ1WXDKoSe1eHO0mkZTGg==";
    const SHA512_SIGNATURE: &str =
        "KfzSWRSp+3+Uza9r1b2yBlm45M8RViLDpcA3wXt/VGiZRUHtOx42jlFGwE24+Mei6T5Kuk0ofRrJyFdZNwfQrA==";

    /// Cases per property: `RB_FUZZ_CASES` when set (the long fuzz run), else 1,000.
    fn cases() -> u32 {
        std::env::var("RB_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(cases()))]

        /// Whatever a server sends, the exchange answers or fails without panicking, never accepts
        /// a final message that does not carry the expected signature, and never shows the password.
        #[test]
        fn server_messages_never_panic_nor_show_the_password(
            first in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..160),
            last in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..160),
            at in 0usize..64,
            byte in proptest::prelude::any::<u8>(),
            cut in 0usize..64,
        ) {
            let creds = sasl(SaslMechanism::ScramSha512, "u", "pw-XYZZY-77");
            let mut a = Authenticator::with_nonce(&creds, "nonce");
            if let Err(e) = a.answer(&first) {
                proptest::prop_assert!(!e.contains("XYZZY"), "{}", e);
            }
            // A valid server-first message (one iteration: cheap), one byte changed, cut.
            let mut valid = b"r=nonceSRV,s=c2FsdA==,i=1".to_vec();
            let i = at % valid.len();
            valid[i] = byte;
            valid.truncate(cut.max(1).min(valid.len()));
            let mut a = Authenticator::with_nonce(&creds, "nonce");
            if let Err(e) = a.answer(&valid) {
                proptest::prop_assert!(!e.contains("XYZZY"), "{}", e);
            }
            let mut f = Authenticator {
                state: State::ScramFinal { server_signature: vec![7; 64] },
                first: Vec::new(),
            };
            match f.answer(&last) {
                Err(e) => proptest::prop_assert!(!e.contains("XYZZY"), "{}", e),
                Ok(done) => proptest::prop_assert!(false, "accepted {:?}", done),
            }
        }
    }

    #[test]
    fn names_are_escaped() {
        let a = Authenticator::with_nonce(&sasl(SaslMechanism::ScramSha256, "a=b,c", "x"), "n");
        assert_eq!(a.first_message(), b"n,,n=a=3Db=2Cc,r=n");
    }

    #[test]
    fn a_server_that_does_not_know_the_key_is_refused() {
        let mut a = Authenticator::with_nonce(
            &sasl(SaslMechanism::ScramSha256, "user", "pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        a.answer(b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        let e = a
            .answer(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(e.contains("signature is wrong"), "{e}");
        assert!(!e.contains("pencil"));
    }

    #[test]
    fn bad_server_first_messages_are_errors() {
        let cases: [(&[u8], &str); 8] = [
            (b"r=other,s=AA==,i=4096", "does not extend"),
            (b"r=nonce,s=AA==,i=4096", "does not extend"),
            (b"r=nonceX,i=4096", "no salt"),
            (b"r=nonceX,s=!!,i=4096", "not base64"),
            (b"r=nonceX,s=AA==", "no iteration"),
            (b"r=nonceX,s=AA==,i=10000000", "outside"),
            (b"e=unknown-user", "refused: unknown-user"),
            (b"\xff\xfe", "not UTF-8"),
        ];
        for (server, want) in cases {
            let mut a =
                Authenticator::with_nonce(&sasl(SaslMechanism::ScramSha512, "u", "p"), "nonce");
            let e = a.answer(server).unwrap_err();
            assert!(e.contains(want), "{server:?}: {e}");
        }
    }
}
