//! The error of a plugin's `init`, `handle` and `finish`.
//!
//! Owns [`Failure`]: one line of text for the host, made from whatever failed. It must not know
//! the producer's errors (see `error`), only that they are errors.

use std::fmt;

/// Why [`Plugin::init`](crate::Plugin::init), [`handle`](crate::Plugin::handle) or
/// [`finish`](crate::Plugin::finish) failed: the one line the host reports.
///
/// `?` converts any [`std::error::Error`] that is `Send + Sync` (the producer's
/// [`Error`](crate::Error), an I/O or parse error, `Box<dyn Error + Send + Sync>`, ...; a bare
/// `Box<dyn Error>` needs `Failure::msg`) into it, and so do `String` and `&str` (`Err("no topic".into())`); its
/// text is the error's message followed by its sources, `: `-separated, on one line.
/// [`fail!`](crate::fail) returns one made with `format!`. Like `anyhow::Error`, it does not
/// implement `std::error::Error` itself (that is what lets `?` take every error).
pub struct Failure(String);

impl Failure {
    /// A failure with this message.
    pub fn msg(message: impl fmt::Display) -> Failure {
        Failure(one_line(&message.to_string()))
    }

    /// Its text: one line.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl<E> From<E> for Failure
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn from(e: E) -> Failure {
        let e: Box<dyn std::error::Error + Send + Sync> = e.into();
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            // Errors whose message already shows their source (`#[error("...: {0}")]`) are
            // not repeated.
            let more = s.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = s.source();
        }
        Failure(one_line(&text))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({:?})", self.0)
    }
}

impl From<Failure> for String {
    fn from(f: Failure) -> String {
        f.0
    }
}

/// `Result<T, Failure>`: what a plugin's `init`, `handle` and `finish` return.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Returns early with a [`Failure`] made with `format!`:
/// `fail!("unknown command `{command}`")`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return ::std::result::Result::Err($crate::Failure::msg(::std::format!($($arg)*)))
    };
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot read the table")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn parse(s: &str) -> Result<u32> {
        Ok(s.parse::<u32>()?)
    }

    fn failing(kind: u8) -> Result<()> {
        match kind {
            0 => Err("plain &str".into()),
            1 => Err(String::from("a String").into()),
            2 => Err(crate::Error::BufferFull)?,
            3 => Err(Outer(std::io::Error::other("disk\ngone")))?,
            _ => fail!("kind {kind} is not known"),
        }
    }

    #[test]
    fn question_mark_takes_any_error_strings_too_and_keeps_one_line() {
        assert_eq!(parse("7").unwrap(), 7);
        assert_eq!(
            parse("x").unwrap_err().message(),
            "invalid digit found in string"
        );
        let texts: Vec<String> = (0..5).map(|k| failing(k).unwrap_err().into()).collect();
        assert_eq!(
            texts,
            [
                "plain &str",
                "a String",
                "producer buffer full",
                "cannot read the table: disk gone",
                "kind 4 is not known",
            ]
        );
    }
}
