//! Finds routes that can never be chosen because a more specific route takes all their
//! requests. `gatehouse check` and every load print these as warnings: no silent shadowing.

use super::{RouteMatcher, Router};

/// One warning per route that is wholly or partly unreachable. `names[i]` names route `i`.
pub fn shadowed_routes(router: &Router, names: &[String]) -> Vec<String> {
    let mut warnings = Vec::new();
    let order = router.order();
    for (rank, &j) in order.iter().enumerate() {
        let later = router.matcher(j);
        for &i in &order[..rank] {
            let earlier = router.matcher(i);
            if !covers_target(earlier, later) {
                continue;
            }
            let label = |k: usize| format!("routes[{k}] ({})", names[k]);
            match (&earlier.methods, &later.methods) {
                (None, _) => {
                    warnings.push(format!(
                        "{} is unreachable: {} matches all its requests first",
                        label(j),
                        label(i)
                    ));
                    break;
                }
                (Some(_), None) => continue,
                (Some(_), Some(mine)) => {
                    let taken: Vec<&str> = mine.iter().filter(|m| earlier.allows(m)).map(|m| m.as_str()).collect();
                    if taken.len() == mine.len() {
                        warnings.push(format!(
                            "{} is unreachable: {} matches all its requests first",
                            label(j),
                            label(i)
                        ));
                        break;
                    } else if !taken.is_empty() {
                        warnings.push(format!(
                            "{} never receives {}: {} matches those requests first",
                            label(j),
                            taken.join(", "),
                            label(i)
                        ));
                    }
                }
            }
        }
    }
    warnings
}

/// Whether every request `later` matches (ignoring methods) is also matched by `earlier`.
fn covers_target(earlier: &RouteMatcher, later: &RouteMatcher) -> bool {
    earlier.host == later.host
        && earlier.path.covers(&later.path)
        && earlier
            .headers
            .iter()
            .all(|(n, v)| later.headers.iter().any(|(ln, lv)| ln == n && (v == "*" || lv == v)))
        && earlier
            .query
            .iter()
            .all(|(n, v)| later.query.iter().any(|(ln, lv)| ln == n && (v == "*" || lv == v)))
}
