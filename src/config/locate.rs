//! Where each field of a config file is: line and column by field path (`routes[2].upstream`),
//! so that a problem found by validation, long after parsing, still points into the file.
//! Read with yaml-rust2's event parser (serde_yaml gives no positions past deserializing);
//! JSON is YAML, so routes.json is located the same way.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in the file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Field path → where its key (or, in a list, its item) starts. The table is built from
/// the text when a location is first asked for: a config that loads keeps its text (about
/// the file's size) instead of a table of ≈ 400 bytes per route that only a problem reads.
#[derive(Default, Clone)]
pub struct Locations {
    text: Arc<str>,
    table: OnceLock<HashMap<String, Location>>,
}

impl Locations {
    /// The fields of `text`; none when it does not parse (the parse error has its own).
    pub fn of(text: &str) -> Self {
        Locations {
            text: text.into(),
            table: OnceLock::new(),
        }
    }

    fn table(&self) -> &HashMap<String, Location> {
        self.table.get_or_init(|| {
            let mut walker = Walker::default();
            let _ = Parser::new_from_str(&self.text).load(&mut walker, false);
            walker.found
        })
    }

    /// The location of `path`, or of the nearest enclosing field the file has
    /// (`routes[2].upstream` when only `routes[2]` was written, as with a default).
    pub fn find(&self, path: &str) -> Option<Location> {
        let mut path = path;
        loop {
            if let Some(l) = self.table().get(path) {
                return Some(*l);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

impl PartialEq for Locations {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Locations {}

/// Not the text: after `${VAR}` expansion it may hold secrets.
impl std::fmt::Debug for Locations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Locations({} bytes of text)", self.text.len())
    }
}

enum Frame {
    /// `item`: the map is a list item, located at its first key (the parser marks a
    /// block map's start after that key).
    Map {
        path: String,
        key: Option<String>,
        item: bool,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    found: HashMap<String, Location>,
}

impl Walker {
    /// The path of the node that starts now, and whether it is a list item (located at
    /// its start; a map value is located at its key).
    fn next_node(&self) -> (String, bool) {
        match self.stack.last() {
            Some(Frame::Map { path, key: Some(k), .. }) => (join(path, k), false),
            Some(Frame::Map { path, key: None, .. }) => (path.clone(), false),
            Some(Frame::Seq { path, index }) => (format!("{path}[{index}]"), true),
            None => (String::new(), false),
        }
    }

    /// A node is complete: its map waits for the next key, its list for the next item.
    fn node_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn record(&mut self, path: String, mark: Marker) {
        let location = Location {
            line: mark.line(),
            column: mark.col() + 1,
        };
        self.found.entry(path).or_insert(location);
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                    item,
                }) = self.stack.last_mut()
                {
                    let field = join(path, &value);
                    let first_of_item = std::mem::take(item).then(|| path.clone());
                    *key = Some(value);
                    self.record(field, mark);
                    if let Some(item) = first_of_item {
                        self.record(item, mark);
                    }
                    return;
                }
                let (path, item) = self.next_node();
                if item {
                    self.record(path, mark);
                }
                self.node_done();
            }
            Event::MappingStart(..) => {
                let (path, item) = self.next_node();
                self.stack.push(Frame::Map { path, key: None, item });
            }
            Event::SequenceStart(..) => {
                let (path, item) = self.next_node();
                if item {
                    self.record(path.clone(), mark);
                }
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.node_done();
            }
            Event::Alias(_) => self.node_done(),
            _ => {}
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_flow_fields_are_located_by_path() {
        let text = "listen: [\"0.0.0.0:8080\"]\nupstreams:\n  api: { targets: [\"a:1\", \"b:2\"] }\nroutes:\n  - prefix: /\n    upstream: api\n  - { path: /x, upstrem: nope }\n";
        let l = Locations::of(text);
        let at = |p: &str| l.find(p).map(|l| (l.line, l.column));
        assert_eq!(at("listen"), Some((1, 1)));
        assert_eq!(at("upstreams.api.targets[1]"), Some((3, 27)));
        assert_eq!(at("routes[0].upstream"), Some((6, 5)));
        assert_eq!(at("routes[1].upstrem"), Some((7, 17)));
        // Not written (a default): the nearest enclosing field.
        assert_eq!(at("routes[0].timeout"), Some((5, 5)));
        assert_eq!(at("nowhere"), None);
    }

    #[test]
    fn json_is_located_too() {
        let l = Locations::of("{\n  \"routes\": [\n    { \"path\": \"/a\", \"methds\": [\"GET\"] }\n  ]\n}\n");
        assert_eq!(l.find("routes[0].methds").map(|l| l.line), Some(3));
    }
}
