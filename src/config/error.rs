//! Config errors: every problem found in one file, each with the field path it concerns.

use super::locate::{Location, Locations};
use std::fmt;

/// One thing wrong with a config, located by its field path
/// (`routes[2].upstream`) and, in a file, by line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path to the offending field; empty for whole-file problems.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
    /// Where the field (or the nearest enclosing one written) is in the file.
    pub location: Option<Location>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A config that was refused: the source it came from and every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name, or a description of the source (`environment`).
    pub source: String,
    pub problems: Vec<Problem>,
    /// The source could not be read at all (etcd unreachable), as opposed to a config
    /// that was read and is wrong.
    pub unavailable: bool,
}

impl ConfigError {
    pub fn single(source: impl Into<String>, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            source: source.into(),
            problems: vec![Problem::new(path, message)],
            unavailable: false,
        }
    }

    /// The source could not be read (`what` says why): the running config stays.
    pub fn unavailable(source: impl Into<String>, what: impl Into<String>) -> Self {
        ConfigError {
            unavailable: true,
            ..ConfigError::single(source, "", what)
        }
    }

    /// Gives each problem without a location the one of its field in `locations`.
    pub fn locate(mut self, locations: &Locations) -> Self {
        for p in self
            .problems
            .iter_mut()
            .filter(|p| p.location.is_none() && !p.path.is_empty())
        {
            p.location = locations.find(&p.path);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: {} problem{}", self.source, n, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            match p.location {
                Some(l) => write!(f, "\n  {}:{}:{}: {}", self.source, l.line, l.column, p)?,
                None => write!(f, "\n  {}: {}", self.source, p)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems while walking a config, so that validation reports all of them at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_error(self, source: &str) -> ConfigError {
        ConfigError {
            source: source.to_string(),
            problems: self.0,
            unavailable: false,
        }
    }

    /// `Ok(value)` when nothing was found, else the collected problems for `source`.
    pub fn into_result<T>(self, source: &str, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                source: source.to_string(),
                problems: self.0,
                unavailable: false,
            })
        }
    }
}
