// gatehouse patch (vendor/README.md): a header name checked once, for headers a proxy
// inserts on every request or response. `insert_header` parses the name into a
// `HeaderName` and builds the case it is written in on every call (an allocation for a
// name the `http` crate does not know); a `KnownHeaderName` holds both, and inserting it
// clones two `Bytes` handles.

use crate::case_header_name::CaseHeaderName;
use http::header::HeaderName;

/// A header name and the case it is written in on HTTP/1, made once.
#[derive(Debug, Clone)]
pub struct KnownHeaderName {
    name: HeaderName,
    case: CaseHeaderName,
}

impl KnownHeaderName {
    /// A lowercase name, written as it is (`x-forwarded-for`), as `insert_header` writes a
    /// `&'static str`. Panics at compile time in a const, like `HeaderName::from_static`,
    /// when it is not a valid lowercase name.
    pub const fn from_static(name: &'static str) -> Self {
        KnownHeaderName {
            name: HeaderName::from_static(name),
            case: CaseHeaderName::from_static(name),
        }
    }

    /// The name as the `http` crate knows it; written in the case `http`'s standard names
    /// are written in (`Content-Type`), else lowercase, as `insert_header` does.
    pub fn new(name: HeaderName) -> Self {
        let case = CaseHeaderName::from_header_name(&name);
        KnownHeaderName { name, case }
    }

    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    pub(crate) fn case(&self) -> &CaseHeaderName {
        &self.case
    }
}

/// Names compare as header names do, whatever case they are written in.
impl PartialEq for KnownHeaderName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
