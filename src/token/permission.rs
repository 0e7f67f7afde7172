//! Permissions as the Controller names them: `resource:action`.

use std::fmt;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            fn index(self) -> u32 {
                self as u32
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// The Controller's resources.
    Resource {
        Configs => "configs",
        Agents => "agents",
        ReportingRules => "reporting-rules",
        Labels => "labels",
        Heartbeat => "heartbeat",
        Tokens => "tokens",
        Analytics => "analytics",
        Users => "users",
        Invites => "invites",
        PasswordResets => "password-resets",
        Settings => "settings",
        License => "license",
        Entitlements => "entitlements",
    }
);

named_enum!(
    /// What a permission allows on its resource; `All` grants the other three.
    Action {
        Read => "read",
        Write => "write",
        Delete => "delete",
        All => "all",
    }
);

const ACTIONS: u32 = 4;

/// One `resource:action` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permission {
    pub resource: Resource,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("{0:?} is not of the form resource:action")]
    Shape(String),
    #[error("unknown resource {0:?}")]
    UnknownResource(String),
    #[error("unknown action {0:?} (read, write, delete or all)")]
    UnknownAction(String),
    #[error("unknown preset {0:?} (telegraf-agent)")]
    UnknownPreset(String),
}

impl Permission {
    pub const fn new(resource: Resource, action: Action) -> Self {
        Permission { resource, action }
    }

    pub fn parse(s: &str) -> Result<Self, PermissionError> {
        let (resource, action) = s
            .split_once(':')
            .ok_or_else(|| PermissionError::Shape(s.to_owned()))?;
        let resource = Resource::parse(resource)
            .ok_or_else(|| PermissionError::UnknownResource(resource.to_owned()))?;
        let action = Action::parse(action)
            .ok_or_else(|| PermissionError::UnknownAction(action.to_owned()))?;
        Ok(Permission { resource, action })
    }

    /// How many distinct permissions there are.
    pub const COUNT: usize = Resource::ALL.len() * Action::ALL.len();

    /// This permission's place among all `COUNT`, for tables indexed by permission.
    pub fn slot(self) -> usize {
        (self.resource.index() * ACTIONS + self.action.index()) as usize
    }

    /// Every permission, in slot order.
    pub fn all() -> impl Iterator<Item = Permission> {
        Resource::ALL.iter().flat_map(|&resource| {
            Action::ALL
                .iter()
                .map(move |&action| Permission::new(resource, action))
        })
    }

    fn bit(self) -> u64 {
        1 << self.slot()
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

/// What an agent needs: fetch its configuration and send heartbeats (the Controller's
/// "Telegraf Agent" preset).
pub const TELEGRAF_AGENT: &[Permission] = &[
    Permission::new(Resource::Configs, Action::Read),
    Permission::new(Resource::Heartbeat, Action::Write),
];

/// A set of permissions as one word, so that the hot check is a mask test.
/// 13 resources × 4 actions = 52 bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u64);

impl PermissionSet {
    pub fn empty() -> Self {
        PermissionSet(0)
    }

    pub fn insert(&mut self, permission: Permission) {
        self.0 |= permission.bit();
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The set as stored: bit `Permission::slot` for each permission.
    pub fn bits(&self) -> u64 {
        self.0
    }

    /// The set from stored bits; `None` when a bit names no permission.
    pub fn from_bits(bits: u64) -> Option<Self> {
        (bits >> Permission::COUNT == 0).then_some(PermissionSet(bits))
    }

    /// Whether the set grants `wanted`, directly or through `resource:all`.
    pub fn allows(&self, wanted: Permission) -> bool {
        let all = Permission::new(wanted.resource, Action::All);
        self.0 & (wanted.bit() | all.bit()) != 0
    }

    /// A named preset's permissions.
    pub fn preset(name: &str) -> Result<Self, PermissionError> {
        match name {
            "telegraf-agent" => Ok(TELEGRAF_AGENT.iter().copied().collect()),
            other => Err(PermissionError::UnknownPreset(other.to_owned())),
        }
    }

    /// Parses a list of `resource:action` strings; duplicates collapse.
    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<Self, PermissionError> {
        items
            .iter()
            .map(|s| Permission::parse(s.as_ref()))
            .collect()
    }

    /// The permissions in a stable order (resources as the Controller lists them, then actions).
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        Resource::ALL.iter().flat_map(move |&resource| {
            Action::ALL
                .iter()
                .map(move |&action| Permission::new(resource, action))
                .filter(move |p| self.0 & p.bit() != 0)
        })
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|p| p.to_string()).collect()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::empty();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|p| p.to_string()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_and_action_round_trips() {
        for &resource in Resource::ALL {
            for &action in Action::ALL {
                let p = Permission::new(resource, action);
                assert_eq!(Permission::parse(&p.to_string()), Ok(p));
            }
        }
        assert!(Resource::ALL.len() as u32 * ACTIONS <= 64);
        for (i, p) in Permission::all().enumerate() {
            assert_eq!(p.slot(), i, "{p}");
        }
        assert_eq!(Permission::all().count(), Permission::COUNT);
    }

    #[test]
    fn parse_names_what_is_wrong() {
        assert_eq!(
            Permission::parse("configs"),
            Err(PermissionError::Shape("configs".into()))
        );
        assert_eq!(
            Permission::parse("cheese:read"),
            Err(PermissionError::UnknownResource("cheese".into()))
        );
        assert_eq!(
            Permission::parse("configs:eat"),
            Err(PermissionError::UnknownAction("eat".into()))
        );
        assert_eq!(
            Permission::parse("Configs:read"),
            Err(PermissionError::UnknownResource("Configs".into()))
        );
    }

    #[test]
    fn all_grants_every_action_on_its_resource_only() {
        let set = PermissionSet::parse_all(&["configs:all"]).unwrap();
        for &action in Action::ALL {
            assert!(set.allows(Permission::new(Resource::Configs, action)));
            assert!(!set.allows(Permission::new(Resource::Heartbeat, action)));
        }
    }

    #[test]
    fn telegraf_agent_preset() {
        let set = PermissionSet::preset("telegraf-agent").unwrap();
        assert_eq!(set.to_strings(), ["configs:read", "heartbeat:write"]);
        assert!(set.allows(Permission::parse("heartbeat:write").unwrap()));
        assert!(!set.allows(Permission::parse("configs:write").unwrap()));
        assert!(!set.allows(Permission::parse("users:read").unwrap()));
        assert!(PermissionSet::preset("admin").is_err());
    }
}
