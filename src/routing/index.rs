//! Which routes could match a request, found without looking at every route.
//!
//! Every route is filed under the literal path segments all its paths start with (`/svc7/
//! :id/items` under `svc7`, `prefix: /api/v1/us` under `api/v1`, a regex at the root) in a
//! segment tree, one tree per exact host and one for the routes with a wildcard host or
//! none. A request walks its host's tree and the shared one along its own path segments;
//! the routes filed at the nodes it passes are the only candidates. Each node keeps its
//! routes as ranks (positions in the router's precedence order), sorted, so the winner is
//! the smallest rank among the candidates that fully match: the same route a scan in
//! precedence order finds first, at a cost that depends on the path's depth and the
//! candidates, not on how many routes there are.

use super::{HostPattern, PathPattern, RouteMatcher, Segment};

/// One node of a segment tree: the routes filed here and the literal segments below.
#[derive(Debug, Default)]
struct Node {
    /// Ranks, ascending.
    ranks: Vec<u32>,
    /// Sorted by segment, for binary search.
    children: Vec<(Box<str>, Node)>,
}

impl Node {
    fn file(&mut self, segments: &[&str], rank: u32) {
        let mut node = self;
        for &segment in segments {
            let at = match node.children.binary_search_by(|(s, _)| (**s).cmp(segment)) {
                Ok(at) => at,
                Err(at) => {
                    node.children.insert(at, (segment.into(), Node::default()));
                    at
                }
            };
            node = &mut node.children[at].1;
        }
        node.ranks.push(rank);
    }

    fn child(&self, segment: &str) -> Option<&Node> {
        let at = self.children.binary_search_by(|(s, _)| (**s).cmp(segment)).ok()?;
        Some(&self.children[at].1)
    }

    /// Ranks are filed in increasing order, so each list is sorted already; this only
    /// trims the spare capacity of a large table.
    fn seal(&mut self) {
        self.ranks.shrink_to_fit();
        self.children.shrink_to_fit();
        for (_, child) in &mut self.children {
            child.seal();
        }
    }

    /// Calls `visit` with the ranks of every node on `path`'s way down, root first.
    fn walk<'a>(&'a self, path: &str, visit: &mut impl FnMut(&'a [u32])) {
        let mut node = self;
        visit(&node.ranks);
        let Some(rest) = path.strip_prefix('/') else {
            return;
        };
        for segment in rest.split('/') {
            match node.child(segment) {
                Some(child) => node = child,
                None => return,
            }
            visit(&node.ranks);
        }
    }
}

/// The candidate index of a router.
#[derive(Debug, Default)]
pub struct RouteIndex {
    /// Exact (lowercase) host → its routes' tree, sorted by host.
    hosts: Vec<(Box<str>, Node)>,
    /// Routes with a wildcard host or none.
    any_host: Node,
}

impl RouteIndex {
    /// `ranked` lists the matchers in precedence order.
    pub fn new<'a>(ranked: impl Iterator<Item = &'a RouteMatcher>) -> Self {
        let mut index = RouteIndex::default();
        for (rank, matcher) in ranked.enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            let segments = literal_segments(&matcher.path);
            let tree = match &matcher.host {
                Some(HostPattern::Exact(host)) => {
                    let at = match index.hosts.binary_search_by(|(h, _)| (**h).cmp(host.as_str())) {
                        Ok(at) => at,
                        Err(at) => {
                            index.hosts.insert(at, (host.as_str().into(), Node::default()));
                            at
                        }
                    };
                    &mut index.hosts[at].1
                }
                Some(HostPattern::Suffix(_)) | None => &mut index.any_host,
            };
            tree.file(&segments, rank);
        }
        index.hosts.shrink_to_fit();
        for (_, tree) in &mut index.hosts {
            tree.seal();
        }
        index.any_host.seal();
        index
    }

    /// The smallest rank among the candidates for which `accept` holds. Candidates are
    /// tried in increasing rank per node, and never beyond the best found so far.
    pub fn first(&self, host: Option<&str>, path: &str, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut best: Option<u32> = None;
        let mut visit = |ranks: &[u32]| {
            for &rank in ranks {
                if best.is_some_and(|b| rank >= b) {
                    break;
                }
                if accept(rank) {
                    best = Some(rank);
                    break;
                }
            }
        };
        if let Some(tree) = host.and_then(|h| self.host_tree(h)) {
            tree.walk(path, &mut visit);
        }
        self.any_host.walk(path, &mut visit);
        best
    }

    /// Every candidate rank for `host` and `path` (for the `Allow` of a 405: not the
    /// request path's hot case).
    pub fn candidates(&self, host: Option<&str>, path: &str) -> Vec<u32> {
        let mut all = Vec::new();
        let mut visit = |ranks: &[u32]| all.extend_from_slice(ranks);
        if let Some(tree) = host.and_then(|h| self.host_tree(h)) {
            tree.walk(path, &mut visit);
        }
        self.any_host.walk(path, &mut visit);
        all
    }

    fn host_tree(&self, host: &str) -> Option<&Node> {
        if self.hosts.is_empty() {
            return None;
        }
        // Hosts are filed lowercase; a request's host is almost always lowercase already.
        let found = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = host.to_ascii_lowercase();
            self.hosts.binary_search_by(|(h, _)| (**h).cmp(lower.as_str()))
        } else {
            self.hosts.binary_search_by(|(h, _)| (**h).cmp(host))
        };
        found.ok().map(|at| &self.hosts[at].1)
    }
}

/// The whole segments every path `pattern` matches starts with (positionally equal to the
/// request path's first segments, as `str::split('/')` of the path after its `/` gives them).
fn literal_segments(pattern: &PathPattern) -> Vec<&str> {
    match pattern {
        PathPattern::Exact(path) => path.strip_prefix('/').map_or_else(Vec::new, |p| p.split('/').collect()),
        PathPattern::Segments { segments, .. } => segments
            .iter()
            .map_while(|s| match s {
                Segment::Literal(lit) => Some(lit.as_str()),
                Segment::Param(_) => None,
            })
            .collect(),
        PathPattern::Prefix(prefix) => {
            // The last piece may continue in the request (`/ap` is a prefix of `/api`).
            let mut pieces: Vec<&str> = prefix
                .strip_prefix('/')
                .map_or_else(Vec::new, |p| p.split('/').collect());
            pieces.pop();
            pieces
        }
        PathPattern::Regex(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filed(path: PathPattern) -> Vec<String> {
        literal_segments(&path).into_iter().map(str::to_string).collect()
    }

    #[test]
    fn routes_are_filed_under_their_literal_segments() {
        assert_eq!(filed(PathPattern::parse_path("/a/b").unwrap()), ["a", "b"]);
        assert_eq!(filed(PathPattern::parse_path("/").unwrap()), [""]);
        assert_eq!(filed(PathPattern::parse_path("/a/:id/c").unwrap()), ["a"]);
        assert_eq!(filed(PathPattern::parse_path("/a/b/*rest").unwrap()), ["a", "b"]);
        assert_eq!(filed(PathPattern::parse_prefix("/api").unwrap()), Vec::<String>::new());
        assert_eq!(filed(PathPattern::parse_prefix("/api/").unwrap()), ["api"]);
        assert_eq!(filed(PathPattern::parse_prefix("/api/v1/us").unwrap()), ["api", "v1"]);
        assert!(filed(PathPattern::parse_regex("^/a").unwrap()).is_empty());
    }
}
