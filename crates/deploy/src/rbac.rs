//! The Kubernetes permissions each command needs, as the Role (in the site's namespace) and the
//! ClusterRole (for the Namespace object itself) that `wikikube render --rbac` prints.
//!
//! They follow the requests this crate makes, and nothing more:
//! - every rendered kind is written with server-side apply: the `patch` verb, and `create` as
//!   well when the object does not exist yet (the API server authorises an apply that creates
//!   as a create); a dry-run apply (`diff`) is authorised exactly like the write, so `diff`
//!   needs both, although it changes nothing;
//! - prunes, undos and rollbacks `delete`;
//! - the history and the inventory are a ConfigMap and Secrets (`get`, `patch`, `delete`);
//! - the deploy lock is a Lease (`create`, `get`, `update`, `delete`);
//! - rollouts, smoke checks and Jobs read pods (`list`), `pods/proxy` and `pods/log` (`get`);
//! - the schema Jobs, `wikikube script` and `wikikube backup` create Jobs (`create`, `get`);
//! - the backup schedule is a CronJob, applied like the other rendered kinds.
//!
//! The Namespace is cluster-scoped, and so is any permission on it. Every command only reads it
//! (`get`): it is applied only when it is missing or its labels or annotations differ from the
//! site's ([`crate::cluster`]), which is the one case that needs `patch` on namespaces; a
//! cluster administrator can create the namespace once instead and grant no cluster-scoped write.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// A command that talks to a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// `wikikube diff`.
    Diff,
    /// `wikikube deploy` (and `wikikube release`, which ends in one).
    Deploy,
    /// `wikikube rollback`.
    Rollback,
    /// `wikikube history`.
    History,
    /// `wikikube script`.
    Script,
    /// `wikikube backup` in a cluster (a Job; `--schedule` only prints).
    Backup,
    /// `wikikube restore` in a cluster (a Job).
    Restore,
    /// `wikikube import` in a cluster (a Job).
    Import,
}

impl Command {
    /// Every command, in the order they are documented.
    pub const ALL: [Command; 8] = [
        Command::Diff,
        Command::Deploy,
        Command::Rollback,
        Command::History,
        Command::Script,
        Command::Backup,
        Command::Restore,
        Command::Import,
    ];

    /// Its name, as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Diff => "diff",
            Command::Deploy => "deploy",
            Command::Rollback => "rollback",
            Command::History => "history",
            Command::Script => "script",
            Command::Backup => "backup",
            Command::Restore => "restore",
            Command::Import => "import",
        }
    }
}

/// One permission: verbs on resources of an API group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// Resources, subresources as `pods/log`.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
}

impl Grant {
    fn rule(&self) -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec![self.group.to_string()]),
            resources: Some(self.resources.iter().map(|r| r.to_string()).collect()),
            verbs: self.verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        }
    }
}

/// What every rendered namespaced kind needs to be applied (for real or dry-run), read and
/// deleted.
const APPLIED: [Grant; 5] = [
    Grant {
        group: "",
        resources: &[
            "configmaps",
            "secrets",
            "serviceaccounts",
            "services",
            "persistentvolumeclaims",
        ],
        verbs: &["get", "create", "patch", "delete"],
    },
    Grant {
        group: "apps",
        resources: &["deployments"],
        verbs: &["get", "create", "patch", "delete"],
    },
    Grant {
        group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: &["get", "create", "patch", "delete"],
    },
    Grant {
        group: "batch",
        resources: &["cronjobs"],
        verbs: &["get", "create", "patch", "delete"],
    },
    Grant {
        group: "",
        resources: &["pods"],
        verbs: &["list"],
    },
];

const LOCK: Grant = Grant {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["create", "get", "update", "delete"],
};

const SMOKE: Grant = Grant {
    group: "",
    resources: &["pods/proxy"],
    verbs: &["get"],
};

const JOBS: [Grant; 3] = [
    Grant {
        group: "batch",
        resources: &["jobs"],
        verbs: &["create", "get"],
    },
    Grant {
        group: "",
        resources: &["pods"],
        verbs: &["list"],
    },
    Grant {
        group: "",
        resources: &["pods/log"],
        verbs: &["get"],
    },
];

const HISTORY: Grant = Grant {
    group: "",
    resources: &["configmaps", "secrets"],
    verbs: &["get"],
};

/// Reading the Namespace: every command that applies checks it exists as rendered.
pub const NAMESPACE_READ: Grant = Grant {
    group: "",
    resources: &["namespaces"],
    verbs: &["get"],
};

/// Creating or changing the Namespace: only when it is missing or its labels differ.
pub const NAMESPACE_WRITE: Grant = Grant {
    group: "",
    resources: &["namespaces"],
    verbs: &["get", "create", "patch"],
};

/// The grants in the site's namespace that `command` needs.
pub fn namespaced(command: Command) -> Vec<Grant> {
    match command {
        Command::Diff => APPLIED.to_vec(),
        Command::Deploy => {
            let mut grants = APPLIED.to_vec();
            grants.extend([LOCK, SMOKE]);
            grants.extend(JOBS);
            grants
        }
        Command::Rollback => {
            let mut grants = APPLIED.to_vec();
            grants.extend([LOCK, SMOKE]);
            grants
        }
        Command::History => vec![HISTORY],
        Command::Script | Command::Backup | Command::Restore | Command::Import => JOBS.to_vec(),
    }
}

/// The cluster-scoped grants `command` needs once the namespace exists as the site renders it
/// (`None`: none). A first deploy, or one that changes the Namespace's labels, needs
/// [`NAMESPACE_WRITE`] instead.
pub fn cluster(command: Command) -> Option<Grant> {
    match command {
        Command::Diff | Command::Deploy | Command::Rollback => Some(NAMESPACE_READ),
        Command::History
        | Command::Script
        | Command::Backup
        | Command::Restore
        | Command::Import => None,
    }
}

/// The Role and ClusterRole of `command` for a site in `namespace`, named `wikikube-COMMAND`.
pub fn roles(command: Command, namespace: &str) -> (Role, Option<ClusterRole>) {
    let name = format!("wikikube-{}", command.as_str());
    let labels = BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "wikikube".to_string(),
    )]);
    let role = Role {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        rules: Some(merged(&namespaced(command))),
    };
    let cluster_role = cluster(command).map(|grant| ClusterRole {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{namespace}")),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            resource_names: Some(vec![namespace.to_string()]),
            ..grant.rule()
        }]),
        ..ClusterRole::default()
    });
    (role, cluster_role)
}

/// The rules of `grants`, one per group and verb set, resources in order and without repeats.
fn merged(grants: &[Grant]) -> Vec<PolicyRule> {
    let mut by_key: BTreeMap<(&str, Vec<&str>), Vec<&str>> = BTreeMap::new();
    for grant in grants {
        let mut verbs = grant.verbs.to_vec();
        verbs.sort_unstable();
        let resources = by_key.entry((grant.group, verbs)).or_default();
        for resource in grant.resources {
            if !resources.contains(resource) {
                resources.push(resource);
            }
        }
    }
    by_key
        .into_iter()
        .map(|((group, verbs), resources)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// Whether `grants` allow `verb` on `resource` (as `pods/log`) of `group`: the test the
/// simulation's authoriser makes, kept here beside the rules it checks.
pub fn allows(grants: &[Grant], group: &str, resource: &str, verb: &str) -> bool {
    grants.iter().any(|grant| {
        grant.group == group && grant.resources.contains(&resource) && grant.verbs.contains(&verb)
    })
}

/// The ClusterRole that creates or relabels the site's Namespace: needed only by a deploy that
/// finds it missing or with other labels. `create` cannot be limited to one name (the API
/// server authorises a create before the object has one), so it covers every namespace: give
/// it to whoever creates namespaces, or create the namespace once by hand.
pub fn namespace_writer(namespace: &str) -> ClusterRole {
    let by_name = PolicyRule {
        resource_names: Some(vec![namespace.to_string()]),
        verbs: vec!["get".into(), "patch".into()],
        ..NAMESPACE_WRITE.rule()
    };
    let create = PolicyRule {
        verbs: vec!["create".into()],
        ..NAMESPACE_WRITE.rule()
    };
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(format!("wikikube-namespace-{namespace}")),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "wikikube".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        rules: Some(vec![by_name, create]),
        ..ClusterRole::default()
    }
}

/// What `wikikube render --rbac` prints: for every command its Role and ClusterRole, then the
/// Namespace writer, each with a line that says what it is for.
pub fn documents(namespace: &str) -> Vec<(String, serde_json::Value)> {
    let mut documents = Vec::new();
    for command in Command::ALL {
        let (role, cluster_role) = roles(command, namespace);
        documents.push((
            format!("wikikube {}: in namespace {namespace}", command.as_str()),
            serde_json::to_value(role).expect("Roles serialize"),
        ));
        if let Some(cluster_role) = cluster_role {
            documents.push((
                format!(
                    "wikikube {}: reads the Namespace {namespace} (cluster-scoped)",
                    command.as_str()
                ),
                serde_json::to_value(cluster_role).expect("ClusterRoles serialize"),
            ));
        }
    }
    documents.push((
        format!(
            "wikikube deploy, only when Namespace {namespace} is missing or its labels differ \
             from the site's: creates or changes it (cluster-scoped)"
        ),
        serde_json::to_value(namespace_writer(namespace)).expect("ClusterRoles serialize"),
    ));
    documents
}

/// [`documents`] as YAML documents, each after a comment line that says what it is for.
pub fn to_yaml(namespace: &str) -> String {
    documents(namespace)
        .into_iter()
        .map(|(what, object)| {
            let yaml = serde_yaml_ng::to_string(&object).expect("roles serialize");
            format!("---\n# {what}\n{yaml}")
        })
        .collect()
}
