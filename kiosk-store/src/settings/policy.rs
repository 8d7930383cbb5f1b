//! Which factors each role needs, and the session timers.

use serde::{Deserialize, Serialize};

use crate::Role;

/// The sign-in orders a role may use. Each order is two factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePolicy {
    /// Face identification (1:N), then the PIN.
    pub face_then_pin: bool,
    /// Personnel number and password, then face verification (1:1).
    pub password_then_face: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthPolicy {
    pub operator: RolePolicy,
    pub maintenance: RolePolicy,
    pub administrator: RolePolicy,
    /// Time to present the second factor before the attempt is abandoned.
    pub second_factor_timeout_ms: i64,
    /// Inactivity after which a session ends by itself.
    pub auto_sign_out_ms: i64,
    /// How long a sign-in notice stays on screen.
    pub notice_ms: i64,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        let both = RolePolicy {
            face_then_pin: true,
            password_then_face: true,
        };
        AuthPolicy {
            operator: both,
            maintenance: both,
            // Administrators always type their password: a face and a
            // 4-digit PIN are weaker than what guards the whole kiosk.
            administrator: RolePolicy {
                face_then_pin: false,
                password_then_face: true,
            },
            second_factor_timeout_ms: 30_000,
            auto_sign_out_ms: 5 * 60_000,
            notice_ms: 5_000,
        }
    }
}

impl AuthPolicy {
    pub fn for_role(&self, role: Role) -> RolePolicy {
        match role {
            Role::Operator => self.operator,
            Role::Maintenance => self.maintenance,
            Role::Administrator => self.administrator,
        }
    }

    pub fn for_role_mut(&mut self, role: Role) -> &mut RolePolicy {
        match role {
            Role::Operator => &mut self.operator,
            Role::Maintenance => &mut self.maintenance,
            Role::Administrator => &mut self.administrator,
        }
    }

    /// A role with no allowed order could never sign in again.
    pub fn is_valid(&self) -> bool {
        Role::ALL.iter().all(|&r| {
            let p = self.for_role(r);
            p.face_then_pin || p.password_then_face
        }) && self.second_factor_timeout_ms > 0
            && self.auto_sign_out_ms > 0
    }
}
