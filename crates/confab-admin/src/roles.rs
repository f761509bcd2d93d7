//! Administrators' roles (after Lync's CsAdministrator, CsUserAdministrator,
//! CsVoiceAdministrator, CsHelpDesk and CsViewOnlyAdministrator) and what each may do. The
//! README's role table is [`table`]'s output.

use serde::{Deserialize, Serialize};

/// A role an administrator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    Administrator,
    /// Users: add, change, move, remove, unlock; reads all.
    UserAdministrator,
    /// Enterprise voice: users' numbers and voice settings; reads all.
    VoiceAdministrator,
    /// Reads all, unlocks users locked out.
    Helpdesk,
    /// Reads all.
    ViewOnly,
}

/// Something an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Read users, their settings and the topology.
    Read,
    /// Add, change, move and remove users; set their passwords and access.
    ManageUsers,
    /// Lift a user's sign-in lockout.
    Unlock,
    /// Set users' enterprise voice settings.
    ManageVoice,
    /// Drain servers of their pools and take them back.
    ManagePools,
    /// Read the audit log.
    ReadAudit,
}

impl Right {
    pub const ALL: [Self; 6] = [
        Self::Read,
        Self::ManageUsers,
        Self::Unlock,
        Self::ManageVoice,
        Self::ManagePools,
        Self::ReadAudit,
    ];

    /// What the right lets one do, after "may not".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Read => "read users and the deployment",
            Self::ManageUsers => "add, change, move or remove users",
            Self::Unlock => "unlock users",
            Self::ManageVoice => "change users' voice settings",
            Self::ManagePools => "drain servers or take them back",
            Self::ReadAudit => "read the audit log",
        }
    }
}

impl Role {
    pub const ALL: [Self; 5] = [
        Self::Administrator,
        Self::UserAdministrator,
        Self::VoiceAdministrator,
        Self::Helpdesk,
        Self::ViewOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::UserAdministrator => "user-administrator",
            Self::VoiceAdministrator => "voice-administrator",
            Self::Helpdesk => "helpdesk",
            Self::ViewOnly => "view-only",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether the role grants `right`.
    pub fn allows(self, right: Right) -> bool {
        matches!(
            (self, right),
            (Self::Administrator, _)
                | (_, Right::Read)
                | (Self::UserAdministrator, Right::ManageUsers | Right::Unlock)
                | (Self::VoiceAdministrator, Right::ManageVoice)
                | (Self::Helpdesk, Right::Unlock)
        )
    }
}

/// The roles and their rights as a Markdown table.
pub fn table() -> String {
    let mut out = String::from("| may | ");
    out.push_str(
        &Role::ALL
            .iter()
            .map(|r| format!("`{}`", r.name()))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" |\n| --- |");
    out.push_str(&" :---: |".repeat(Role::ALL.len()));
    out.push('\n');
    for right in Right::ALL {
        out.push_str(&format!("| {} |", right.describe()));
        for role in Role::ALL {
            out.push_str(if role.allows(right) { " ✓ |" } else { "   |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_administrators_read_the_audit_and_everyone_reads() {
        for role in Role::ALL {
            assert!(role.allows(Right::Read), "{role:?}");
            assert_eq!(role.allows(Right::ReadAudit), role == Role::Administrator);
        }
        assert!(!Role::ViewOnly.allows(Right::Unlock));
        assert!(Role::Helpdesk.allows(Right::Unlock));
        assert!(!Role::Helpdesk.allows(Right::ManageUsers));
        assert!(!Role::VoiceAdministrator.allows(Right::ManageUsers));
        assert!(!Role::UserAdministrator.allows(Right::ManageVoice));
    }

    #[test]
    fn names_parse_back() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn the_table_has_a_row_per_right() {
        let t = table();
        assert_eq!(t.lines().count(), 2 + Right::ALL.len());
        assert!(t.contains("| read the audit log | ✓ |   |"), "{t}");
    }
}
