//! Path and host patterns, parsed once at config load and matched without allocating.

use regex::Regex;
use std::cmp::Reverse;

/// How a route matches the request path. docs/configuration.md, "Which route wins", gives
/// the order in which kinds are tried.
#[derive(Debug, Clone)]
pub enum PathPattern {
    /// `/health`: the path equals the string.
    Exact(String),
    /// `/users/:id` or `/files/*rest`: literal and `:param` segments, optionally ending with
    /// a `*wildcard` that takes the rest of the path (including nothing).
    Segments {
        source: String,
        segments: Vec<Segment>,
        wildcard: bool,
    },
    /// `prefix: /api`: the path starts with the string.
    Prefix(String),
    /// `regex: ^/v[0-9]+/`: the regex matches the path (anchor it yourself).
    Regex(Regex),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
}

impl PathPattern {
    /// Parses a `path:` value: exact unless it has `:param` or `*wildcard` segments.
    pub fn parse_path(source: &str) -> Result<Self, String> {
        check_starts_with_slash(source)?;
        let mut segments = Vec::new();
        let mut wildcard = false;
        let mut names: Vec<&str> = Vec::new();
        let parts: Vec<&str> = source[1..].split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if let Some(name) = part.strip_prefix('*') {
                if i + 1 != parts.len() {
                    return Err(format!("wildcard `{part}` must be the last segment"));
                }
                check_param_name(name, &mut names)?;
                wildcard = true;
            } else if let Some(name) = part.strip_prefix(':') {
                check_param_name(name, &mut names)?;
                segments.push(Segment::Param(name.to_string()));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        if !wildcard && segments.iter().all(|s| matches!(s, Segment::Literal(_))) {
            return Ok(PathPattern::Exact(source.to_string()));
        }
        Ok(PathPattern::Segments {
            source: source.to_string(),
            segments,
            wildcard,
        })
    }

    pub fn parse_prefix(source: &str) -> Result<Self, String> {
        check_starts_with_slash(source)?;
        Ok(PathPattern::Prefix(source.to_string()))
    }

    pub fn parse_regex(source: &str) -> Result<Self, String> {
        Regex::new(source)
            .map(PathPattern::Regex)
            .map_err(|e| format!("invalid regular expression: {e}"))
    }

    /// The pattern as written in the config.
    pub fn source(&self) -> &str {
        match self {
            PathPattern::Exact(s) | PathPattern::Prefix(s) => s,
            PathPattern::Segments { source, .. } => source,
            PathPattern::Regex(r) => r.as_str(),
        }
    }

    /// The config key that wrote this pattern: `path`, `prefix` or `regex`.
    pub fn kind(&self) -> &'static str {
        match self {
            PathPattern::Exact(_) | PathPattern::Segments { .. } => "path",
            PathPattern::Prefix(_) => "prefix",
            PathPattern::Regex(_) => "regex",
        }
    }

    /// The literal text every matching path starts with (empty for regexes).
    pub fn literal_prefix(&self) -> &str {
        match self {
            PathPattern::Exact(s) | PathPattern::Prefix(s) => s,
            PathPattern::Segments { source, .. } => {
                let cut = source.find([':', '*']).unwrap_or(source.len());
                &source[..cut]
            }
            PathPattern::Regex(_) => "",
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(s) => path == s,
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
            PathPattern::Regex(r) => r.is_match(path),
            PathPattern::Segments { segments, wildcard, .. } => match_segments(segments, *wildcard, path),
        }
    }

    /// Sort key: smaller is more specific. Kinds rank exact < params < wildcard < prefix <
    /// regex; within a kind, more literal text ranks first.
    pub fn specificity(&self) -> (u8, Reverse<usize>, Reverse<usize>) {
        match self {
            PathPattern::Exact(s) => (0, Reverse(s.len()), Reverse(0)),
            PathPattern::Segments { segments, wildcard, .. } => {
                let literals = segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
                let literal_len = self.literal_prefix().len();
                (if *wildcard { 2 } else { 1 }, Reverse(literals), Reverse(literal_len))
            }
            PathPattern::Prefix(p) => (3, Reverse(p.len()), Reverse(0)),
            PathPattern::Regex(_) => (4, Reverse(0), Reverse(0)),
        }
    }

    /// True when every path this pattern matches is also matched by `self`, as far as can
    /// be told without running regexes. Used only to warn about unreachable routes.
    pub fn covers(&self, other: &PathPattern) -> bool {
        if self.source() == other.source() && std::mem::discriminant(self) == std::mem::discriminant(other) {
            return true;
        }
        match (self, other) {
            (PathPattern::Prefix(p), PathPattern::Regex(_)) => p == "/",
            (PathPattern::Prefix(p), _) => other.literal_prefix().starts_with(p.as_str()),
            (
                PathPattern::Segments {
                    segments,
                    wildcard: true,
                    ..
                },
                PathPattern::Prefix(q),
            ) => {
                let base = self.literal_prefix();
                // `/api/*rest` takes everything under `/api/`; a prefix beyond that is covered
                // only when the pattern has no `:param` before the wildcard.
                segments.iter().all(|s| matches!(s, Segment::Literal(_))) && q.starts_with(base) && base.ends_with('/')
            }
            _ => false,
        }
    }
}

/// Where a named path parameter sits in the paths a pattern matches, found at load so
/// that reading it per request is a split, not a search by name.
#[derive(Debug, Clone)]
pub enum ParamAt {
    /// The n-th segment after the leading `/`.
    Segment(usize),
    /// Everything after the first n segments (a `*wildcard`).
    Rest(usize),
    /// A named capture group of a `regex:` route.
    Capture(Regex, String),
}

impl PathPattern {
    /// Where the parameter `name` is: a `:name` segment, the `*name` wildcard or a
    /// `(?P<name>…)` group. `None` when the pattern has no such parameter.
    pub fn param(&self, name: &str) -> Option<ParamAt> {
        match self {
            PathPattern::Segments { source, segments, .. } => {
                if let Some(i) = segments.iter().position(|s| *s == Segment::Param(name.to_string())) {
                    return Some(ParamAt::Segment(i));
                }
                let last = source.rsplit('/').next()?;
                (last.strip_prefix('*') == Some(name)).then_some(ParamAt::Rest(segments.len()))
            }
            PathPattern::Regex(r) => r
                .capture_names()
                .any(|n| n == Some(name))
                .then(|| ParamAt::Capture(r.clone(), name.to_string())),
            PathPattern::Exact(_) | PathPattern::Prefix(_) => None,
        }
    }
}

impl ParamAt {
    /// The parameter's raw (still percent-encoded) text in `path`, which the pattern matched.
    pub fn extract<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix('/')?;
        match self {
            ParamAt::Segment(n) => rest.split('/').nth(*n),
            ParamAt::Rest(n) => {
                let mut at = 0;
                for _ in 0..*n {
                    at += rest[at..].find('/')? + 1;
                }
                Some(&rest[at..])
            }
            ParamAt::Capture(r, name) => r.captures(path)?.name(name).map(|m| m.as_str()),
        }
    }
}

fn match_segments(segments: &[Segment], wildcard: bool, path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = rest.split('/');
    for segment in segments {
        let Some(part) = parts.next() else {
            return false;
        };
        match segment {
            Segment::Literal(lit) => {
                if part != lit {
                    return false;
                }
            }
            Segment::Param(_) => {
                if part.is_empty() {
                    return false;
                }
            }
        }
    }
    // A wildcard takes whatever is left, even nothing; otherwise nothing may be left.
    wildcard || parts.next().is_none()
}

fn check_starts_with_slash(source: &str) -> Result<(), String> {
    if source.starts_with('/') {
        Ok(())
    } else {
        Err(format!("\"{source}\" must start with /"))
    }
}

fn check_param_name<'a>(name: &'a str, seen: &mut Vec<&'a str>) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("parameter name \"{name}\" must be letters, digits or _"));
    }
    if seen.contains(&name) {
        return Err(format!("parameter \"{name}\" appears twice"));
    }
    seen.push(name);
    Ok(())
}

/// Which `Host` a route answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com` (stored lowercase).
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any subdomain, not the bare domain.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(source: &str) -> Result<Self, String> {
        let lower = source.to_ascii_lowercase();
        let (suffix, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!(
                "\"{source}\" is not a host name (expected api.example.com or *.example.com, no port)"
            ));
        }
        Ok(if suffix {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// The pattern as written (`api.example.com`, `*.example.com`).
    pub fn source(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Suffix(s) => format!("*{s}"),
        }
    }

    /// `host` is the request's host without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }

    /// Exact hosts rank before wildcards, longer wildcards before shorter.
    pub fn specificity(&self) -> (u8, Reverse<usize>) {
        match self {
            HostPattern::Exact(_) => (0, Reverse(0)),
            HostPattern::Suffix(s) => (1, Reverse(s.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_path_is_exact() {
        let p = PathPattern::parse_path("/health").unwrap();
        assert!(matches!(p, PathPattern::Exact(_)));
        assert!(p.matches("/health"));
        assert!(!p.matches("/health/"));
        assert!(!p.matches("/healthz"));
    }

    #[test]
    fn params_match_one_nonempty_segment_each() {
        let p = PathPattern::parse_path("/users/:id/orders/:order").unwrap();
        assert!(p.matches("/users/42/orders/7"));
        assert!(!p.matches("/users/42/orders"));
        assert!(!p.matches("/users//orders/7"));
        assert!(!p.matches("/users/42/orders/7/x"));
    }

    #[test]
    fn wildcard_takes_the_rest_including_nothing() {
        let p = PathPattern::parse_path("/api/users/*path").unwrap();
        assert!(p.matches("/api/users"));
        assert!(p.matches("/api/users/"));
        assert!(p.matches("/api/users/1/2/3"));
        assert!(!p.matches("/api/usersx"));
        assert!(!p.matches("/api"));
    }

    #[test]
    fn bad_paths_are_refused_with_reasons() {
        assert!(PathPattern::parse_path("api")
            .unwrap_err()
            .contains("must start with /"));
        assert!(PathPattern::parse_path("/a/*rest/b")
            .unwrap_err()
            .contains("last segment"));
        assert!(PathPattern::parse_path("/a/:id/:id").unwrap_err().contains("twice"));
        assert!(PathPattern::parse_path("/a/:").unwrap_err().contains("parameter name"));
        assert!(PathPattern::parse_regex("([")
            .unwrap_err()
            .contains("invalid regular expression"));
    }

    #[test]
    fn specificity_orders_kinds() {
        let exact = PathPattern::parse_path("/a/b").unwrap().specificity();
        let param = PathPattern::parse_path("/a/:x").unwrap().specificity();
        let wild = PathPattern::parse_path("/a/*x").unwrap().specificity();
        let prefix = PathPattern::parse_prefix("/a").unwrap().specificity();
        let regex = PathPattern::parse_regex("^/a").unwrap().specificity();
        assert!(exact < param && param < wild && wild < prefix && prefix < regex);
        let long = PathPattern::parse_prefix("/a/b").unwrap().specificity();
        assert!(long < prefix);
    }

    #[test]
    fn covers_detects_shadowing() {
        let wild = PathPattern::parse_path("/api/*rest").unwrap();
        assert!(wild.covers(&PathPattern::parse_prefix("/api/v1").unwrap()));
        assert!(!wild.covers(&PathPattern::parse_prefix("/apix").unwrap()));
        let root = PathPattern::parse_prefix("/").unwrap();
        assert!(root.covers(&PathPattern::parse_regex("^/x").unwrap()));
        assert!(!PathPattern::parse_prefix("/a")
            .unwrap()
            .covers(&PathPattern::parse_regex("^/a").unwrap()));
    }

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("API.example.com").unwrap();
        assert!(exact.matches("api.EXAMPLE.com"));
        assert!(!exact.matches("x.api.example.com"));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(HostPattern::parse("example.com:8080").is_err());
        assert!(HostPattern::parse("").is_err());
    }

    #[test]
    fn params_are_found_by_name_and_read_from_the_path() {
        let p = PathPattern::parse_path("/users/:id/files/*rest").unwrap();
        assert_eq!(p.param("id").unwrap().extract("/users/42/files/a/b.txt"), Some("42"));
        assert_eq!(
            p.param("rest").unwrap().extract("/users/42/files/a/b.txt"),
            Some("a/b.txt")
        );
        assert_eq!(p.param("rest").unwrap().extract("/users/42/files/"), Some(""));
        assert!(p.param("other").is_none());
        let r = PathPattern::parse_regex("^/v(?P<version>[0-9]+)/").unwrap();
        assert_eq!(r.param("version").unwrap().extract("/v2/x"), Some("2"));
        assert!(PathPattern::parse_prefix("/api").unwrap().param("id").is_none());
    }
}
