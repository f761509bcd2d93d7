//! Errors of administrative operations: what kind (for the exit status or HTTP status) and a
//! sentence that says what to do.

use confab_store::StoreError;

/// What went wrong, as far as the caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input is wrong; the detail says which field and why.
    Invalid,
    /// No such object.
    NotFound,
    /// The object exists already, or a value is another object's.
    Conflict,
    /// The actor's roles do not allow it.
    Forbidden,
    /// No valid credentials.
    Unauthorized,
    /// The edit was made against a version that is no longer the current one.
    Stale,
    /// The database cannot be reached now; retry later.
    Unavailable,
    /// Something the operator must look at (a damaged stored document).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub kind: Kind,
    pub detail: String,
}

impl AdminError {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, detail)
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for AdminError {}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Unavailable(_) => Kind::Unavailable,
            StoreError::UserExists(_) | StoreError::NumberTaken { .. } => Kind::Conflict,
            StoreError::NoSuchUser(_) => Kind::NotFound,
            StoreError::Invalid(_) | StoreError::BadAddress(_) => Kind::Invalid,
            _ => Kind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;
