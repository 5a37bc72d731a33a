//! `${VAR}` / `${VAR:-default}` expansion, applied to the config text before YAML parsing
//! (as Vector and docker compose do), so that numbers and booleans can come from the
//! environment too. `$${` writes a literal `${`. Full-line comments are left alone, so a
//! commented-out `${SECRET}` never fails a load.

use super::error::Problems;

/// Expands every `${...}` in `text` with `lookup`. Unset variables without a default are
/// reported (with their line) in `problems` and expand to nothing.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>, problems: &mut Problems) -> String {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        expand_line(line, lineno + 1, &lookup, problems, &mut out);
    }
    out
}

fn expand_line(
    line: &str,
    lineno: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    problems: &mut Problems,
    out: &mut String,
) {
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(body_start) = tail.strip_prefix("${") {
            let Some(end) = body_start.find('}') else {
                problems.push(format!("line {lineno}"), "unterminated `${` (missing `}`)");
                out.push_str(tail);
                return;
            };
            let expr = &body_start[..end];
            out.push_str(&resolve(expr, lineno, lookup, problems));
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
}

fn resolve(expr: &str, lineno: usize, lookup: &impl Fn(&str) -> Option<String>, problems: &mut Problems) -> String {
    let (name, default) = match expr.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (expr, None),
    };
    let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        problems.push(
            format!("line {lineno}"),
            format!("`${{{expr}}}` is not a valid variable reference"),
        );
        return String::new();
    }
    match (lookup(name), default) {
        // `:-` means "unset or empty", as in the shell.
        (Some(v), _) if !v.is_empty() => v,
        (_, Some(default)) => default.to_string(),
        (Some(v), None) => v,
        (None, None) => {
            problems.push(
                format!("line {lineno}"),
                format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)"),
            );
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (String, Problems) {
        let mut problems = Problems::default();
        let lookup = |k: &str| match k {
            "PORT" => Some("9090".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let out = expand(text, lookup, &mut problems);
        (out, problems)
    }

    #[test]
    fn set_variable_is_substituted() {
        assert_eq!(run("listen: [\"0.0.0.0:${PORT}\"]\n").0, "listen: [\"0.0.0.0:9090\"]\n");
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        assert_eq!(run("a: ${NOPE:-x} b: ${EMPTY:-y}").0, "a: x b: y");
    }

    #[test]
    fn unset_without_default_is_a_problem_with_its_line() {
        let (_, problems) = run("a: 1\nb: ${MISSING}\n");
        assert!(!problems.is_empty());
        let err = problems.into_result("f", ()).unwrap_err();
        assert_eq!(err.problems[0].path, "line 2");
        assert!(err.problems[0].message.contains("MISSING"));
    }

    #[test]
    fn comments_and_escapes_are_left_alone() {
        let (out, problems) = run("# uses ${MISSING}\nprice: $5 and $${LITERAL}\n");
        assert!(problems.is_empty());
        assert_eq!(out, "# uses ${MISSING}\nprice: $5 and ${LITERAL}\n");
    }

    #[test]
    fn unterminated_reference_is_reported() {
        let (_, problems) = run("a: ${PORT");
        assert!(!problems.is_empty());
    }
}
