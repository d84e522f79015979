//! Which topics a plugin may publish to.
//!
//! Owns the allow-list check. Patterns are exact names or a prefix ending in `*`
//! (`orders.*`; `acme*` matches `acmecorp-…` too, `acme-*` does not). It fails closed: an
//! empty list allows no topic; only [`TopicAcl::allow_all`], said explicitly (`wafka run`
//! without `--allow-topic`), allows every one. It must not know about Kafka's own ACLs: a
//! broker's TOPIC_AUTHORIZATION_FAILED is reported separately.

/// A plugin's topic allow-list.
#[derive(Debug, Clone)]
pub struct TopicAcl {
    /// Every topic, whatever the lists say.
    all: bool,
    exact: std::collections::HashSet<String>,
    prefixes: Vec<String>,
}

impl TopicAcl {
    /// Every topic allowed.
    pub fn allow_all() -> Self {
        TopicAcl {
            all: true,
            exact: Default::default(),
            prefixes: Vec::new(),
        }
    }

    /// Only topics matching one of `patterns` (`name` or `prefix*`): none when `patterns` is
    /// empty.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(patterns: I) -> Self {
        let mut acl = TopicAcl {
            all: false,
            exact: Default::default(),
            prefixes: Vec::new(),
        };
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
        self.all
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
        // A prefix is a prefix: `acme*` takes in another tenant's `acmecorp-…`.
        assert!(TopicAcl::new(["acme*"]).allows("acmecorp-orders"));
        assert!(!TopicAcl::new(["acme-*"]).allows("acmecorp-orders"));
        assert!(TopicAcl::new(["*"]).allows("anything"));
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let none = TopicAcl::new(Vec::<String>::new());
        assert!(!none.allows("orders"));
        assert!(!none.allows(""));
    }
}
