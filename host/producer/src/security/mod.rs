//! Security of a broker connection: SASL authentication (and, next, TLS).
//!
//! [`settings`] is what the properties say (protocol, mechanism, credentials, TLS files);
//! [`tls`] makes a rustls configuration of them and runs the handshake.
//!
//! Owns the mechanisms' exchanges, independent of sockets: [`sasl`] turns credentials and the
//! broker's challenges into the bytes of each `SaslAuthenticate` round (PLAIN, RFC 4616;
//! SCRAM-SHA-256/512, RFC 5802/7677, in [`scram`]). The connection drives the rounds; this
//! module must not read or write sockets, and must never put a secret into an error, a log
//! line or a `Debug` output.

pub mod sasl;
pub mod scram;
pub mod settings;
pub mod tls;
