//! The layer plan of the app image: how extensions and skins, and the l10n cache, are split
//! into layers so that the cost of a build and of a push follows the change.
//!
//! Wikimedia's image carries ~184 extensions and l10n for 435 languages; one layer of each
//! means a one-line change in one extension, or one message in a few languages, rebuilds and
//! re-uploads everything of its kind (their l10n copy alone delays a deploy by ~30 minutes).
//! One layer per extension or language would exceed containerd's limit of 127 layers. So both
//! are split into a fixed number of groups, each item placed by a hash of its name: adding or
//! removing an extension changes only its own group's layer, never the others' digests, and
//! the layer count stays under [`EXTENSION_LAYERS`] + [`L10N_LAYERS`] per version whatever
//! the site holds.

use sha2::{Digest, Sha256};

/// At most this many layers of extensions and skins per MediaWiki version.
pub const EXTENSION_LAYERS: usize = 24;

/// At most this many layers of l10n cache per MediaWiki version.
pub const L10N_LAYERS: usize = 16;

/// One group of a plan: its number (stable, from the hash) and its items, sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Which of the `budget` groups this is.
    pub index: usize,
    /// Its items, sorted.
    pub items: Vec<String>,
}

impl Group {
    /// A short name for the layer: the items when they are few, the group's number otherwise.
    pub fn label(&self) -> String {
        if self.items.len() <= 3 {
            self.items.join(",")
        } else {
            format!("group {:02} ({} items)", self.index, self.items.len())
        }
    }
}

/// How a skin is told from an extension among a plan's items: a skin and an extension may
/// share a name, and extensions are never named so.
const SKIN: &str = "skins/";

/// One layer's worth of extensions and skins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionGroup {
    /// The group's place in the plan, as [`Group::index`].
    pub index: usize,
    /// A short name for its layer ([`Group::label`]).
    pub label: String,
    /// Its extensions, sorted.
    pub extensions: Vec<String>,
    /// Its skins, sorted.
    pub skins: Vec<String>,
}

/// Extensions and skins in at most [`EXTENSION_LAYERS`] groups, each placed by a hash of its
/// name: what `build` and `stack` both make the extension layers of a version from.
pub fn extension_groups(extensions: &[String], skins: &[String]) -> Vec<ExtensionGroup> {
    let items: Vec<String> = extensions
        .iter()
        .cloned()
        .chain(skins.iter().map(|skin| format!("{SKIN}{skin}")))
        .collect();
    groups(&items, EXTENSION_LAYERS)
        .into_iter()
        .map(|group| {
            let (skins, extensions): (Vec<String>, Vec<String>) = group
                .items
                .iter()
                .cloned()
                .partition(|item| item.starts_with(SKIN));
            ExtensionGroup {
                index: group.index,
                label: group.label(),
                extensions,
                skins: skins
                    .iter()
                    .map(|skin| skin.trim_start_matches(SKIN).to_string())
                    .collect(),
            }
        })
        .collect()
}

/// Places each item in one of `budget` groups by a hash of its name; returns the groups that
/// are not empty, by number. The place of an item never depends on the other items.
pub fn groups(items: &[String], budget: usize) -> Vec<Group> {
    let budget = budget.max(1);
    let mut found: Vec<Group> = Vec::new();
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.dedup();
    for item in sorted {
        let hash = Sha256::digest(item.as_bytes());
        let index = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")) as usize % budget;
        match found.iter_mut().find(|g| g.index == index) {
            Some(group) => group.items.push(item),
            None => found.push(Group {
                index,
                items: vec![item],
            }),
        }
    }
    found.sort_by_key(|g| g.index);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("Extension{i:03}")).collect()
    }

    #[test]
    fn adding_an_item_changes_only_its_own_group() {
        let before = groups(&names(184), EXTENSION_LAYERS);
        assert!(before.len() <= EXTENSION_LAYERS);
        assert_eq!(before.iter().map(|g| g.items.len()).sum::<usize>(), 184);
        let mut more = names(184);
        more.push("NewExtension".into());
        let after = groups(&more, EXTENSION_LAYERS);
        let changed: Vec<_> = after.iter().filter(|g| !before.contains(g)).collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].items.contains(&"NewExtension".to_string()));
    }

    #[test]
    fn groups_do_not_depend_on_order_and_stay_balanced_enough() {
        let mut reversed = names(435);
        reversed.reverse();
        assert_eq!(
            groups(&names(435), L10N_LAYERS),
            groups(&reversed, L10N_LAYERS)
        );
        let largest = groups(&names(435), L10N_LAYERS)
            .iter()
            .map(|g| g.items.len())
            .max()
            .unwrap();
        // 435 / 16 is 27; a hash spreads them within a factor of two.
        assert!(largest < 55, "{largest}");
    }
}
