//! Which topics a plugin may publish to.
//!
//! Owns the allow-list check. Patterns are exact names or a prefix ending in `*`
//! (`orders.*`); an empty list allows every topic. It must not know about Kafka's own ACLs:
//! a broker's TOPIC_AUTHORIZATION_FAILED is reported separately.

/// A plugin's topic allow-list.
#[derive(Debug, Clone, Default)]
pub struct TopicAcl {
    exact: std::collections::HashSet<String>,
    prefixes: Vec<String>,
}

impl TopicAcl {
    /// Every topic allowed.
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Only topics matching one of `patterns` (`name` or `prefix*`).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(patterns: I) -> Self {
        let mut acl = Self::default();
        for p in patterns {
            let p = p.as_ref();
            match p.strip_suffix('*') {
                Some(prefix) => acl.prefixes.push(prefix.to_string()),
                None => {
                    acl.exact.insert(p.to_string());
                }
            }
        }
        acl
    }

    /// Whether `topic` may be published to.
    pub fn allows(&self, topic: &str) -> bool {
        (self.exact.is_empty() && self.prefixes.is_empty())
            || self.exact.contains(topic)
            || self.prefixes.iter().any(|p| topic.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(TopicAcl::allow_all().allows("anything"));
        let acl = TopicAcl::new(["orders", "events.*"]);
        assert!(acl.allows("orders"));
        assert!(acl.allows("events.click"));
        assert!(!acl.allows("orders2"));
        assert!(!acl.allows("payments"));
    }
}
