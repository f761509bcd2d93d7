//! Strict loading: any unknown key, wrong type, bad name or address, or duplicate is an error
//! that names the file, the line and column, and the key.

use std::collections::HashSet;
use std::fmt;

use crate::model::Topology;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The dotted path of the offending key, e.g. `pool[0].load_balancer.mode`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}

impl std::error::Error for LoadError {}

pub fn load(text: &str, file: &str) -> Result<Topology, LoadError> {
    let error = |offset: usize, key: String, message: String| {
        let (line, column) = line_column(text, offset);
        LoadError {
            file: file.to_owned(),
            line,
            column,
            key,
            message,
        }
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        error(offset, "(syntax)".into(), first_line(e.message()))
    })?;
    let topology: Topology = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut key = e.path().to_string();
        let inner = e.into_inner();
        let message = first_line(inner.message());
        // A missing key is reported at its table's path (an unknown one at its own): name the
        // key itself.
        if let Some(unknown) = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|m| m.split('`').next())
        {
            if key == "." {
                key = unknown.to_owned();
            } else if !key.ends_with(&format!(".{unknown}")) && key != unknown {
                key = format!("{key}.{unknown}");
            }
        }
        error(inner.span().map_or(0, |s| s.start), key, message)
    })?;
    check_unique(&topology, text, &error)?;
    Ok(topology)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Two things of one kind with one name: the error points at the second.
fn check_unique(
    t: &Topology,
    text: &str,
    error: &impl Fn(usize, String, String) -> LoadError,
) -> Result<(), LoadError> {
    let lists: [(&str, Vec<&str>); 5] = [
        (
            "domain",
            t.domains.iter().map(|d| d.name.as_str()).collect(),
        ),
        ("pool", t.pools.iter().map(|p| p.fqdn.as_str()).collect()),
        ("edge", t.edges.iter().map(|e| e.fqdn.as_str()).collect()),
        ("site", t.sites.iter().map(|s| s.name.as_str()).collect()),
        (
            "server",
            t.pools
                .iter()
                .flat_map(|p| &p.servers)
                .chain(t.edges.iter().flat_map(|e| &e.servers))
                .map(|s| s.fqdn.as_str())
                .collect(),
        ),
    ];
    // A pool and an Edge (or two servers) must not share a name either.
    let mut machines: HashSet<&str> = HashSet::new();
    for (kind, names) in &lists {
        let mut seen = HashSet::new();
        for (i, name) in names.iter().enumerate() {
            if !seen.insert(*name) {
                return Err(error(
                    second_occurrence(text, name),
                    format!("{kind}[{i}]"),
                    format!("{kind} `{name}` is declared twice; each {kind} needs its own name"),
                ));
            }
        }
        if matches!(*kind, "pool" | "edge") {
            for name in names {
                if !machines.insert(name) {
                    return Err(error(
                        second_occurrence(text, name),
                        (*kind).to_owned(),
                        format!("`{name}` names both a pool and an Edge"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Offset of the second quoted occurrence of `name` (case-insensitive), for error lines.
fn second_occurrence(text: &str, name: &str) -> usize {
    let lower = text.to_ascii_lowercase();
    let needle = format!("\"{name}\"");
    lower
        .match_indices(&needle)
        .nth(1)
        .or_else(|| lower.match_indices(&needle).next())
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        assert_eq!(line_column("ab\ncd\nef", 0), (1, 1));
        assert_eq!(line_column("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_column("ab\ncd\nef", 99), (3, 3));
    }
}
