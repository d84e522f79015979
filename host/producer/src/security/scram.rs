//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's `ScramLoginModule` speaks
//! them: no channel binding (`n,,`), no authorization identity, at least 4,096 iterations.
//!
//! Owns the client side of the exchange: client-first, the proof in client-final, and the check
//! of the server's signature (a server that does not know the password is refused). Built on
//! RustCrypto's HMAC, SHA-2 and PBKDF2. It must not touch sockets, and its errors never carry
//! the password or anything derived from it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::security::sasl::{Credentials, Step};

/// Kafka refuses fewer iterations (`ScramMechanism.minIterations`); so does wafka, so that a
/// rogue server cannot ask for a password hash that is cheap to attack.
pub const MIN_ITERATIONS: u32 = 4_096;
/// Nor more than Kafka allows (`ScramMechanism.maxIterations`): a rogue server (nothing
/// authenticates it before the exchange ends, over SASL_PLAINTEXT) must not make each
/// connection cost seconds of PBKDF2 on the producer's threads.
pub const MAX_ITERATIONS: u32 = 16_384;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

/// What is wrong with the server's side of the exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that does not follow RFC 5802.
    #[error("the server's message is not SCRAM: {0}")]
    Malformed(String),
    /// The server's nonce does not extend ours.
    #[error("the server's nonce does not start with the client's")]
    Nonce,
    /// Too few or too many iterations.
    #[error(
        "the server asks for {0} iterations (wafka takes {MIN_ITERATIONS} to {MAX_ITERATIONS})"
    )]
    Iterations(u32),
    /// The server said why it refused (`e=`).
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server's signature is wrong: it does not know the password.
    #[error("the server's signature does not match: it does not know the password")]
    ServerSignature,
    /// A message after the exchange ended.
    #[error("a message after the exchange ended")]
    Ended,
}

enum Phase {
    First,
    Final { server_signature: Vec<u8> },
    Done,
}

/// One client exchange.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    phase: Phase,
}

impl ScramClient {
    /// An exchange with a fresh random nonce.
    pub fn new(hash: ScramHash, credentials: &Credentials) -> Self {
        let mut nonce = [0u8; 24];
        rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
        Self::with_nonce(hash, credentials, &B64.encode(nonce))
    }

    /// An exchange with a given nonce (for the RFC's test vectors).
    pub fn with_nonce(hash: ScramHash, credentials: &Credentials, nonce: &str) -> Self {
        let username = credentials.username.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={username},r={nonce}");
        ScramClient {
            hash,
            password: credentials.password().to_string(),
            client_nonce: nonce.to_string(),
            client_first_bare,
            phase: Phase::First,
        }
    }

    /// The mechanism's name.
    pub fn mechanism(&self) -> &'static str {
        match self.hash {
            ScramHash::Sha256 => "SCRAM-SHA-256",
            ScramHash::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// client-first-message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The answer to server-first (client-final), then the check of server-final.
    pub fn step(&mut self, message: &[u8]) -> Result<Step, ScramError> {
        let text =
            std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::First => {
                let (final_message, server_signature) = self.client_final(text)?;
                self.phase = Phase::Final { server_signature };
                Ok(Step::Send(final_message.into_bytes()))
            }
            Phase::Final { server_signature } => {
                if let Some(e) = attribute(text, 'e') {
                    return Err(ScramError::Refused(e.to_string()));
                }
                let v = attribute(text, 'v')
                    .ok_or_else(|| ScramError::Malformed("no verifier (v=)".into()))?;
                let got = B64
                    .decode(v)
                    .map_err(|_| ScramError::Malformed("a verifier that is not base64".into()))?;
                if !constant_time_eq(&got, &server_signature) {
                    return Err(ScramError::ServerSignature);
                }
                Ok(Step::Done)
            }
            Phase::Done => Err(ScramError::Ended),
        }
    }

    /// client-final-message for `server_first`, and the server signature to expect.
    fn client_final(&self, server_first: &str) -> Result<(String, Vec<u8>), ScramError> {
        if server_first.starts_with("m=") {
            return Err(ScramError::Malformed("a mandatory extension (m=)".into()));
        }
        if let Some(e) = attribute(server_first, 'e') {
            return Err(ScramError::Refused(e.to_string()));
        }
        let nonce = attribute(server_first, 'r')
            .ok_or_else(|| ScramError::Malformed("no nonce (r=)".into()))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = attribute(server_first, 's')
            .ok_or_else(|| ScramError::Malformed("no salt (s=)".into()))
            .and_then(|s| {
                B64.decode(s)
                    .map_err(|_| ScramError::Malformed("a salt that is not base64".into()))
            })?;
        let iterations: u32 = attribute(server_first, 'i')
            .ok_or_else(|| ScramError::Malformed("no iteration count (i=)".into()))?
            .parse()
            .map_err(|_| ScramError::Malformed("an iteration count that is not a number".into()))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = self.salted_password(&salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.digest(&client_key);
        let client_signature = self.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hmac(&salted, b"Server Key");
        let server_signature = self.hmac(&server_key, auth_message.as_bytes());
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)),
            server_signature,
        ))
    }

    fn salted_password(&self, salt: &[u8], iterations: u32) -> Vec<u8> {
        // (SASLprep of the password is left out, as Kafka's Java client does.)
        let p = self.password.as_bytes();
        match self.hash {
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(p, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(p, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self.hash {
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(&self, data: &[u8]) -> Vec<u8> {
        match self.hash {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The value of attribute `name` in a SCRAM message (`a=value,b=value`).
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: user `user`, password `pencil`.
    #[test]
    fn rfc_7677_sha_256_exchange() {
        let c = Credentials::new("user", "pencil");
        let mut s = ScramClient::with_nonce(ScramHash::Sha256, &c, "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            s.step(server_first).unwrap(),
            Step::Send(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
                    .to_vec()
            )
        );
        assert_eq!(
            s.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            Step::Done
        );
        assert_eq!(s.step(b"v=x"), Err(ScramError::Ended));
    }

    /// The same exchange with a server that does not know the password: refused.
    #[test]
    fn a_wrong_server_signature_is_refused() {
        let c = Credentials::new("user", "pencil");
        let mut s = ScramClient::with_nonce(ScramHash::Sha256, &c, "rOprNGfwEbeRWgbNEkqO");
        s.step(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        let e = s
            .step(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert_eq!(e, ScramError::ServerSignature);
        assert!(!e.to_string().contains("pencil"));
    }

    #[test]
    fn the_servers_first_message_is_checked() {
        let c = Credentials::new("a=b,c", "pw");
        let s = ScramClient::with_nonce(ScramHash::Sha512, &c, "abc");
        assert_eq!(s.client_first(), b"n,,n=a=3Db=2Cc,r=abc");
        let step = |m: &str| {
            ScramClient::with_nonce(ScramHash::Sha512, &c, "abc")
                .step(m.as_bytes())
                .unwrap_err()
        };
        assert_eq!(step("r=xyz,s=AAAA,i=4096"), ScramError::Nonce);
        assert_eq!(step("r=abc,s=AAAA,i=4096"), ScramError::Nonce);
        assert_eq!(step("r=abcd,s=AAAA,i=1024"), ScramError::Iterations(1024));
        assert_eq!(step("r=abcd,s=AAAA,i=16385"), ScramError::Iterations(16385));
        assert_eq!(
            step("r=abcd,s=AAAA,i=1000000"),
            ScramError::Iterations(1_000_000)
        );
        assert_eq!(
            step("e=unknown-user"),
            ScramError::Refused("unknown-user".into())
        );
        assert!(matches!(step("r=abcd,i=4096"), ScramError::Malformed(_)));
        assert!(matches!(
            step("m=ext,r=abcd,s=AAAA,i=4096"),
            ScramError::Malformed(_)
        ));
    }

    /// SCRAM-SHA-512 against a server side computed here from RFC 5802's definitions.
    #[test]
    fn sha_512_agrees_with_a_server_computing_the_same_keys() {
        let c = Credentials::new("alice", "wonderland");
        let mut s = ScramClient::with_nonce(ScramHash::Sha512, &c, "cnonce");
        let salt = b"salty";
        let server_first = format!("r=cnonce-snonce,s={},i=4096", B64.encode(salt));
        let Step::Send(client_final) = s.step(server_first.as_bytes()).unwrap() else {
            panic!("a client-final");
        };
        let client_final = String::from_utf8(client_final).unwrap();
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        // The server's side.
        let mut salted = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(b"wonderland", salt, 4096, &mut salted);
        let mac = |k: &[u8], d: &[u8]| {
            let mut m = Hmac::<Sha512>::new_from_slice(k).unwrap();
            m.update(d);
            m.finalize().into_bytes().to_vec()
        };
        let auth = format!("n=alice,r=cnonce,{server_first},{without_proof}");
        let stored_key = Sha512::digest(mac(&salted, b"Client Key")).to_vec();
        let signature = mac(&stored_key, auth.as_bytes());
        let client_key: Vec<u8> = B64
            .decode(proof)
            .unwrap()
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            Sha512::digest(&client_key).to_vec(),
            stored_key,
            "the proof verifies"
        );
        let server_signature = mac(&mac(&salted, b"Server Key"), auth.as_bytes());
        assert_eq!(
            s.step(format!("v={}", B64.encode(server_signature)).as_bytes())
                .unwrap(),
            Step::Done
        );
    }
}
