//! The plugin's configuration.

use std::fmt::Display;
use std::str::FromStr;

/// The `KEY=VALUE` pairs the host passes to `init` (its `--config` options), in their order.
///
/// A key may appear more than once: [`Config::get`] and the functions built on it return the
/// last value, [`Config::get_all`] returns every value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// A configuration holding `pairs`, in order.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config { pairs }
    }

    /// The last value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The last value given for `key`, or `default` when there is none.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The last value given for `key`, or an error message naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing config `{key}`"))
    }

    /// The last value given for `key` parsed as a `T`: `Ok(None)` when the key is absent, an
    /// error message naming the key and the value when it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|e| format!("config `{key}`: invalid value {value:?}: {e}")),
        }
    }

    /// Like [`Config::parse`], with `default` when the key is absent.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Every value given for `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` was given at all.
    pub fn contains_key(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// An error message naming the first key that is not in `known`, if any: lets a plugin
    /// reject misspelt settings instead of silently ignoring them.
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(format!(
                "unknown config `{k}` (known: {})",
                known.join(", ")
            )),
        }
    }

    /// All pairs, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of pairs (counting repeated keys).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no pair was given.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, in order.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.pairs
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Config::new(pairs)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    fn config() -> Config {
        [("topic", "a"), ("n", "3"), ("topic", "b"), ("bad", "x")]
            .into_iter()
            .collect()
    }

    #[test]
    fn last_value_wins() {
        let c = config();
        assert_eq!(c.get("topic"), Some("b"));
        assert_eq!(c.get_all("topic").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.get_or("missing", "d"), "d");
        assert_eq!(c.len(), 4);
        assert!(c.contains_key("n"));
    }

    #[test]
    fn require_and_parse() {
        let c = config();
        assert_eq!(
            c.require("missing").unwrap_err(),
            "missing config `missing`"
        );
        assert_eq!(c.parse::<u32>("n"), Ok(Some(3)));
        assert_eq!(c.parse::<u32>("missing"), Ok(None));
        assert_eq!(c.parse_or::<u32>("missing", 7), Ok(7));
        assert_eq!(
            c.parse::<u32>("bad").unwrap_err(),
            "config `bad`: invalid value \"x\": invalid digit found in string"
        );
    }

    #[test]
    fn check_known() {
        let c = config();
        assert!(c.check_known(&["topic", "n", "bad"]).is_ok());
        assert_eq!(
            c.check_known(&["topic", "n"]).unwrap_err(),
            "unknown config `bad` (known: topic, n)"
        );
    }
}
