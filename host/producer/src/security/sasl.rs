//! SASL mechanisms as Kafka clients use them: the mechanism names, credentials that never show
//! their secret, and a client exchange that answers each server message with the next one.
//!
//! Owns [`Mechanism`], [`Credentials`] and [`SaslClient`]. PLAIN (RFC 4616) is one message,
//! `authzid NUL authcid NUL passwd` with an empty authzid, as Kafka's `PlainLoginModule`
//! sends it. SCRAM is in [`crate::security::scram`]. It must not touch sockets.

use crate::security::scram::{ScramClient, ScramError, ScramHash};

/// A SASL mechanism wafka speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `PLAIN`: user name and password in the clear (use it only over TLS).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// The name Kafka uses (`sasl.mechanism`, SaslHandshake).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Mechanism::Plain),
            "SCRAM-SHA-256" => Ok(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(Mechanism::ScramSha512),
            other => Err(format!(
                "`{other}`: wafka speaks PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512"
            )),
        }
    }
}

/// A user name and password. `Debug` shows the user name only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    password: String,
}

impl Credentials {
    /// Credentials of `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// Why an exchange failed on the client's side (the broker's refusals come as Kafka errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The server's message does not follow the mechanism, or proves it does not know the
    /// password (a SCRAM server signature that does not match).
    #[error("{mechanism}: {reason}")]
    Exchange {
        /// The mechanism.
        mechanism: &'static str,
        /// What is wrong (never a secret).
        reason: String,
    },
    /// The server refused the credentials inside the exchange (SCRAM's `e=`): in Kafka's
    /// terms, SASL_AUTHENTICATION_FAILED.
    #[error("SASL_AUTHENTICATION_FAILED: {mechanism} refused for user `{user}`, wrong user name or password? (the broker says: {reason})")]
    Refused {
        /// The mechanism.
        mechanism: &'static str,
        /// The user name.
        user: String,
        /// The server's word.
        reason: String,
    },
}

/// What to do after a server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes in the next `SaslAuthenticate`.
    Send(Vec<u8>),
    /// Authenticated: nothing more to send.
    Done,
}

/// One client exchange.
pub struct SaslClient {
    state: State,
    user: String,
}

enum State {
    Plain { first: Option<Vec<u8>> },
    Scram(ScramClient),
}

impl std::fmt::Debug for SaslClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaslClient")
    }
}

impl SaslClient {
    /// An exchange for `mechanism` with `credentials`.
    pub fn new(mechanism: Mechanism, credentials: &Credentials) -> Self {
        let state = match mechanism {
            Mechanism::Plain => State::Plain {
                first: Some(plain_message(credentials)),
            },
            Mechanism::ScramSha256 => {
                State::Scram(ScramClient::new(ScramHash::Sha256, credentials))
            }
            Mechanism::ScramSha512 => {
                State::Scram(ScramClient::new(ScramHash::Sha512, credentials))
            }
        };
        SaslClient {
            state,
            user: credentials.username.clone(),
        }
    }

    /// The first message, sent before the server said anything.
    pub fn start(&mut self) -> Vec<u8> {
        match &mut self.state {
            State::Plain { first } => first.take().unwrap_or_default(),
            State::Scram(s) => s.client_first(),
        }
    }

    /// The answer to the server's message `challenge`.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Step, SaslError> {
        match &mut self.state {
            // PLAIN is one message; the server's (empty) answer ends it.
            State::Plain { .. } => Ok(Step::Done),
            State::Scram(s) => s.step(challenge).map_err(|e| match e {
                ScramError::Refused(reason) => SaslError::Refused {
                    mechanism: s.mechanism(),
                    user: self.user.clone(),
                    reason,
                },
                e => SaslError::Exchange {
                    mechanism: s.mechanism(),
                    reason: e.to_string(),
                },
            }),
        }
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, with no authzid.
fn plain_message(c: &Credentials) -> Vec<u8> {
    let mut m = Vec::with_capacity(c.username.len() + c.password().len() + 2);
    m.push(0);
    m.extend_from_slice(c.username.as_bytes());
    m.push(0);
    m.extend_from_slice(c.password().as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_one_message_in_rfc_4616_form() {
        let mut c = SaslClient::new(
            Mechanism::Plain,
            &Credentials::new("tim", "tanstaaftanstaaf"),
        );
        // RFC 4616 section 4's example, without an authorization identity.
        assert_eq!(c.start(), b"\0tim\0tanstaaftanstaaf");
        assert_eq!(c.step(b"").unwrap(), Step::Done);
    }

    #[test]
    fn a_refusal_inside_scram_reads_as_kafkas_authentication_failure() {
        let mut c = SaslClient::new(
            Mechanism::ScramSha256,
            &Credentials::new("alice", "hunter2"),
        );
        c.start();
        let e = c.step(b"e=invalid-proof").unwrap_err().to_string();
        assert!(
            e.starts_with("SASL_AUTHENTICATION_FAILED: SCRAM-SHA-256 refused for user `alice`")
                && e.contains("invalid-proof")
                && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn mechanism_names_and_secrets() {
        assert_eq!(
            "scram-sha-512".parse::<Mechanism>(),
            Ok(Mechanism::ScramSha512)
        );
        assert!("GSSAPI"
            .parse::<Mechanism>()
            .unwrap_err()
            .contains("PLAIN, SCRAM-SHA-256"));
        let shown = format!("{:?}", Credentials::new("alice", "s3cr3t"));
        assert!(
            shown.contains("alice") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
