//! The train's groups (`[[groups]]`): which group holds each wiki, and so which MediaWiki version
//! it runs.
//!
//! A wiki belongs to the group whose `wikis` names it; failing that, to the first group in train
//! order whose `match` rule matches its database name. Its version is then the group's, filled
//! into [`WikiSpec::version`](crate::WikiSpec) so that everything downstream reads one field. A
//! wiki no group holds keeps the `version` it states itself; a wiki with neither, or with both,
//! is a mistake reported at the value that causes it.

use std::collections::BTreeMap;

use crate::error::{nearest, one_of, Error, ErrorKind};
use crate::schema::SiteSpec;
use crate::tree::{Node, Value};

/// Fills in every wiki's group and version from `spec.groups`; `tree` is the merged tree, for
/// the positions of mistakes.
pub(crate) fn assign(spec: &mut SiteSpec, tree: &Node) -> Result<(), Error> {
    let group_origin = |index: usize, key: Option<&str>| {
        let groups = tree.get_path(["groups"]);
        let item = groups.and_then(|node| match &node.value {
            Value::Array(items) => items.get(index),
            _ => None,
        });
        key.and_then(|key| item.and_then(|item| item.get_path([key])))
            .or(item)
            .or(groups)
            .unwrap_or(tree)
            .origin
            .clone()
    };
    let fail = |kind, index: usize, key: &str, message: String| {
        Error::new(
            kind,
            group_origin(index, Some(key)),
            format!("groups[{index}].{key}"),
            message,
        )
    };

    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, group) in spec.groups.iter().enumerate() {
        let valid = !group.name.is_empty()
            && group
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(fail(
                ErrorKind::InvalidValue,
                index,
                "name",
                format!(
                    "`{}` cannot name a group: use letters, digits, `-`, `_` and `.`",
                    group.name
                ),
            ));
        }
        if let Some(first) = names.insert(&group.name, index) {
            return Err(fail(
                ErrorKind::InvalidValue,
                index,
                "name",
                format!(
                    "two groups are called `{}` (groups[{first}] and groups[{index}]); \
                     `wikikube train` names groups, so each name must be unique",
                    group.name
                ),
            ));
        }
        if !spec.versions.contains_key(&group.version) {
            let defined: Vec<&str> = spec.versions.keys().map(String::as_str).collect();
            let mut error = fail(
                ErrorKind::UndefinedVersion,
                index,
                "version",
                format!(
                    "group `{}` runs MediaWiki `{}`, which [versions] does not define; \
                     defined versions: {}",
                    group.name,
                    group.version,
                    one_of(&defined)
                ),
            );
            error.help = nearest(&group.version, defined.iter().copied())
                .map(|near| format!("did you mean `{near}`?"));
            return Err(error);
        }
        for dbname in &group.wikis {
            if !spec.wikis.contains_key(dbname) {
                let mut error = fail(
                    ErrorKind::InvalidValue,
                    index,
                    "wikis",
                    format!(
                        "group `{}` lists `{dbname}`, which [wikis] does not define",
                        group.name
                    ),
                );
                error.help = nearest(dbname, spec.wikis.keys().map(String::as_str))
                    .map(|near| format!("did you mean `{near}`?"));
                return Err(error);
            }
            if let Some(first) = listed.insert(dbname, index) {
                return Err(fail(
                    ErrorKind::Inconsistent,
                    index,
                    "wikis",
                    format!(
                        "`{dbname}` is listed by two groups, `{}` and `{}`; a wiki runs one \
                         version, so it belongs to one group",
                        spec.groups[first].name, group.name
                    ),
                ));
            }
        }
    }

    let mut assigned: Vec<(String, usize)> = Vec::new();
    for dbname in spec.wikis.keys() {
        let holder = listed
            .get(dbname.as_str())
            .copied()
            .or_else(|| spec.groups.iter().position(|group| group.matches(dbname)));
        if let Some(index) = holder {
            assigned.push((dbname.clone(), index));
        }
    }
    for (dbname, index) in assigned {
        let group = &spec.groups[index];
        let wiki = spec
            .wikis
            .get_mut(&dbname)
            .expect("assigned from spec.wikis");
        if !wiki.version.is_empty() {
            let origin = tree
                .get_path(["wikis", dbname.as_str(), "version"])
                .map_or_else(|| tree.origin.clone(), |node| node.origin.clone());
            let mut error = Error::new(
                ErrorKind::Inconsistent,
                origin,
                format!("wikis.{dbname}.version"),
                format!(
                    "wiki `{dbname}` states version `{}`, but group `{}` ({}) holds it and \
                     sets its version",
                    wiki.version,
                    group.name,
                    group_origin(index, None)
                ),
            );
            error.help = Some(
                "remove the wiki's `version`: with [[groups]], `wikikube train` moves \
                 versions group by group"
                    .into(),
            );
            return Err(error);
        }
        wiki.version = group.version.clone();
        wiki.group = Some(group.name.clone());
    }
    if let Some((dbname, _)) = spec.wikis.iter().find(|(_, wiki)| wiki.version.is_empty()) {
        let origin = tree
            .get_path(["wikis", dbname.as_str()])
            .map_or_else(|| tree.origin.clone(), |node| node.origin.clone());
        let message = if spec.groups.is_empty() {
            format!("wiki `{dbname}` does not say which MediaWiki version it runs")
        } else {
            format!("wiki `{dbname}` is in no group of [[groups]] and states no version of its own")
        };
        let mut error = Error::new(
            ErrorKind::MissingKey,
            origin,
            format!("wikis.{dbname}.version"),
            message,
        );
        error.help = Some(if spec.groups.is_empty() {
            "add `version = \"...\"`, a key of [versions]".into()
        } else {
            "add it to a group's `wikis`, or a `match = [\"*\"]` rule to the last group".into()
        });
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::schema::glob_matches;

    #[test]
    fn patterns_match_database_names() {
        assert!(glob_matches("*", "enwiki"));
        assert!(glob_matches("*wiki", "enwiki"));
        assert!(!glob_matches("*wiki", "enwiktionary"));
        assert!(glob_matches("en*", "enwiktionary"));
        assert!(glob_matches("*wik*ary", "enwiktionary"));
        assert!(glob_matches("enwiki", "enwiki"));
        assert!(!glob_matches("enwiki", "enwiki2"));
        assert!(!glob_matches("*wiki*wiki", "enwiki"));
        assert!(glob_matches("a*a", "aa"));
        assert!(!glob_matches("a*a", "a"));
    }
}
