//! Fair share: each user's recent use of the cluster, decayed exponentially.
//!
//! Usage is slot-seconds; every `half_life` seconds it halves, so last week's heavy user is
//! not punished forever. A user's share is their part of everybody's decayed usage; the
//! priority rule ([`super::priority`]) lowers jobs of users with a large share, by a weight
//! that is a server setting (0 by default: Torque's plain FIFO order). Pure: the caller
//! passes the time and the running jobs; nothing here reads a clock.
//!
//! Persistence: the server saves [`Usage::saved`] (each user's decayed value and the time it
//! is decayed to) when a job completes, and starts from [`Usage::restore`], so a restart does
//! not forget who used the cluster. Use charged since the last completion is lost on restart.

use std::collections::HashMap;

/// Decayed slot-seconds per user.
#[derive(Debug, Clone)]
pub struct Usage {
    by_user: HashMap<String, f64>,
    half_life: f64,
    last: Option<i64>,
}

impl Default for Usage {
    /// A week's half-life (the server's default `fairshare_half_life`).
    fn default() -> Self {
        Usage::new(7 * 86_400)
    }
}

impl Usage {
    pub fn new(half_life_secs: u64) -> Usage {
        Usage {
            by_user: HashMap::new(),
            half_life: half_life_secs.max(1) as f64,
            last: None,
        }
    }

    /// Usage as saved: rows of (user, decayed slot-seconds, the epoch they are decayed to),
    /// each decayed further to `now`; charging resumes from `now`.
    pub fn restore(half_life_secs: u64, rows: &[(String, f64, i64)], now: i64) -> Usage {
        let mut usage = Usage::new(half_life_secs);
        for (user, value, as_of) in rows {
            let dt = (now - as_of).max(0) as f64;
            let v = value * 0.5f64.powf(dt / usage.half_life);
            if v > 1e-6 {
                usage.by_user.insert(user.clone(), v);
            }
        }
        usage.last = Some(now);
        usage
    }

    /// What to save: (user, decayed slot-seconds) and the epoch they are decayed to (`None`
    /// before the first [`Usage::advance`]).
    pub fn saved(&self) -> (Vec<(String, f64)>, Option<i64>) {
        let mut rows: Vec<(String, f64)> =
            self.by_user.iter().map(|(u, v)| (u.clone(), *v)).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        (rows, self.last)
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

    #[test]
    fn restore_decays_what_was_saved() {
        let mut u = Usage::new(100);
        u.advance(0, []);
        u.advance(100, [("ann", 1), ("bob", 3)]);
        let (rows, as_of) = u.saved();
        assert_eq!(as_of, Some(100));
        assert_eq!(
            rows,
            vec![("ann".to_string(), 100.0), ("bob".to_string(), 300.0)]
        );
        let rows: Vec<(String, f64, i64)> = rows.into_iter().map(|(u, v)| (u, v, 100)).collect();
        // One half-life later, both halve; the shares are unchanged.
        let r = Usage::restore(100, &rows, 200);
        assert!((r.share("ann") - 0.25).abs() < 1e-9);
        assert_eq!(r.saved().1, Some(200));
        assert!((r.saved().0[1].1 - 150.0).abs() < 1e-9);
        // Charging resumes from the restore time, not from the saved one.
        let mut r = r;
        r.advance(300, [("ann", 1)]);
        // ann 50/2 + 100 = 125, bob 150/2 = 75.
        assert!((r.share("ann") - 125.0 / 200.0).abs() < 1e-9);
        // Nothing saved: a fresh start.
        assert_eq!(Usage::restore(100, &[], 5).share("ann"), 0.0);
    }
}
