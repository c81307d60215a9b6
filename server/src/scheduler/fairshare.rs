//! Fair share: each user's recent use of the cluster, decayed exponentially.
//!
//! Usage is slot-seconds; every `half_life` seconds it halves, so last week's heavy user is
//! not punished forever. A user's share is their part of everybody's decayed usage; the
//! priority rule ([`super::priority`]) lowers jobs of users with a large share, by a weight
//! that is a server setting (0 by default: Torque's plain FIFO order). Pure: the caller
//! passes the time and the running jobs; nothing here reads a clock.

use std::collections::HashMap;

/// Decayed slot-seconds per user.
#[derive(Debug, Clone)]
pub struct Usage {
    by_user: HashMap<String, f64>,
    half_life: f64,
    last: Option<i64>,
}

impl Usage {
    pub fn new(half_life_secs: u64) -> Usage {
        Usage {
            by_user: HashMap::new(),
            half_life: half_life_secs.max(1) as f64,
            last: None,
        }
    }

    /// Moves the clock to `now`: decays what was there, then charges the slots held by
    /// `running` (user, slots) for the time since the last call.
    pub fn advance<'u>(&mut self, now: i64, running: impl IntoIterator<Item = (&'u str, u32)>) {
        let dt = self.last.map_or(0, |last| (now - last).max(0)) as f64;
        self.last = Some(now);
        if dt == 0.0 {
            return;
        }
        let decay = 0.5f64.powf(dt / self.half_life);
        self.by_user.values_mut().for_each(|u| *u *= decay);
        for (user, slots) in running {
            *self.by_user.entry(user.to_string()).or_insert(0.0) += f64::from(slots) * dt;
        }
        self.by_user.retain(|_, u| *u > 1e-6);
    }

    /// The user's part of all decayed usage, `0..=1` (0 when nobody used anything).
    pub fn share(&self, user: &str) -> f64 {
        let total: f64 = self.by_user.values().sum();
        if total <= 0.0 {
            0.0
        } else {
            self.by_user.get(user).copied().unwrap_or(0.0) / total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (name, steps of (time, running), user, want share)
        type Step<'a> = (i64, &'a [(&'a str, u32)]);
        let cases: &[(&str, &[Step<'_>], &str, f64)] = &[
            ("nobody ran", &[(0, &[]), (100, &[])], "ann", 0.0),
            (
                "one user has all",
                &[(0, &[("ann", 2)]), (100, &[("ann", 2)])],
                "ann",
                1.0,
            ),
            (
                "split by slots",
                &[(0, &[]), (100, &[("ann", 3), ("bob", 1)])],
                "bob",
                0.25,
            ),
            // ann used 100 s × 1 slot, then one half-life passes while bob runs 1 slot:
            // ann 50, bob 100 → ann 1/3.
            (
                "old use decays",
                &[(0, &[]), (100, &[("ann", 1)]), (200, &[("bob", 1)])],
                "ann",
                1.0 / 3.0,
            ),
        ];
        for (name, steps, user, want) in cases {
            let mut u = Usage::new(100);
            for (t, running) in *steps {
                u.advance(*t, running.iter().copied());
            }
            assert!(
                (u.share(user) - want).abs() < 1e-9,
                "{name}: {}",
                u.share(user)
            );
        }
    }
}
