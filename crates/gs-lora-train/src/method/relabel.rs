//! The wrong labels relabelling baselines train forget samples towards, drawn anew at every
//! step from a seeded stream:
//!
//! - random labelling and SalUn: a remaining class, uniformly;
//! - the official baselines' rule ([`ForgetLabels::Official`]): `y' = (y + U{1..100}) mod K_f`,
//!   `(y + 1) mod K_f` when that is `y`, a model label below `K_f` whichever class it is;
//! - its correction ([`ForgetLabels::Corrected`]): another of the task's forget classes,
//!   uniformly; a remaining class when the task forgets a single class;
//! - the official detection rule ([`ForgetLabels::Unused`]): the first label no class of the
//!   schedule uses.

use std::cell::RefCell;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::config::ForgetLabels;
use crate::engine::Task;
use crate::error::{Result, TrainError};

/// Which labels are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelabelRule {
    /// A remaining class, uniformly.
    Remaining,
    /// A forget class by the official rule or its correction.
    Forget(ForgetLabels),
}

/// Draws the wrong labels of one task.
#[derive(Debug)]
pub struct Relabeller {
    rule: RelabelRule,
    forget: Vec<usize>,
    remaining: Vec<usize>,
    /// The first label no class of the schedule uses.
    unused: usize,
    rng: RefCell<ChaCha8Rng>,
}

impl Relabeller {
    /// A relabeller by `rule`; [`begin_task`](Self::begin_task) gives it a task's classes.
    pub fn new(rule: RelabelRule) -> Self {
        Self {
            rule,
            forget: Vec::new(),
            remaining: Vec::new(),
            unused: 0,
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(0)),
        }
    }

    /// Draws `task`'s labels from `seed` on.
    ///
    /// # Errors
    /// A task with no class to draw from (no remaining class for [`RelabelRule::Remaining`]
    /// or the correction of a single forget class). A [`ForgetLabels::Unused`] label beyond
    /// the model's classes is refused by the criterion that reads it.
    pub fn begin_task(&mut self, task: &Task, seed: u64) -> Result<()> {
        self.forget = task.forget.clone();
        let groups = [&task.retain, &task.forget, &task.old, &task.missing];
        self.unused = (0..)
            .find(|c| !groups.iter().any(|group| group.contains(c)))
            .unwrap_or(0);
        self.remaining = task.retain.clone();
        *self.rng.borrow_mut() = ChaCha8Rng::seed_from_u64(seed);
        let needs_remaining = match self.rule {
            RelabelRule::Remaining => true,
            RelabelRule::Forget(ForgetLabels::Corrected) => self.forget.len() < 2,
            RelabelRule::Forget(ForgetLabels::Official | ForgetLabels::Unused) => false,
        };
        if needs_remaining && self.remaining.is_empty() {
            return Err(TrainError::Data(format!(
                "task {} has no other class to relabel its forget samples to",
                task.index
            )));
        }
        Ok(())
    }

    /// A new label for a forget sample of class `label`, never `label` itself (except by the
    /// official rule with one forget class, whose only label is 0).
    pub fn draw(&self, label: usize) -> usize {
        let mut rng = self.rng.borrow_mut();
        let mut pick = |classes: &[usize]| classes[rng.random_range(0..classes.len())];
        match self.rule {
            RelabelRule::Remaining => pick(&self.remaining),
            RelabelRule::Forget(ForgetLabels::Official) => {
                let count = self.forget.len().max(1);
                let shifted = (label + rng.random_range(1..=100)) % count;
                match shifted == label {
                    true => (label + 1) % count,
                    false => shifted,
                }
            }
            RelabelRule::Forget(ForgetLabels::Unused) => self.unused,
            RelabelRule::Forget(ForgetLabels::Corrected) => {
                let others: Vec<usize> = self
                    .forget
                    .iter()
                    .copied()
                    .filter(|&c| c != label)
                    .collect();
                match others.is_empty() {
                    true => pick(&self.remaining),
                    false => pick(&others),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(forget: Vec<usize>, retain: Vec<usize>) -> Task {
        Task {
            index: 0,
            forget,
            retain,
            old: Vec::new(),
            missing: Vec::new(),
        }
    }

    fn draws(rule: RelabelRule, task: &Task, label: usize) -> Vec<usize> {
        let mut relabeller = Relabeller::new(rule);
        relabeller.begin_task(task, 9).expect("task");
        (0..300).map(|_| relabeller.draw(label)).collect()
    }

    /// Forget classes 7, 12, 30 of a task that keeps 1, 2: the official rule lands in 0..3
    /// (label-index space, not the forget classes; for label 1 never 1 itself), the correction
    /// on the two other forget classes, both uniformly enough to see every value; random
    /// labelling on the remaining classes. Catches the official rule's modulus taken over
    /// all classes, its `y' = y` case left, or the correction drawing the sample's own class.
    #[test]
    fn each_rule_draws_its_labels() {
        let t = task(vec![7, 12, 30], vec![1, 2]);
        let seen = |values: &[usize]| {
            let mut v = values.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        let official = RelabelRule::Forget(ForgetLabels::Official);
        assert_eq!(seen(&draws(official, &t, 12)), [0, 1, 2]);
        assert_eq!(
            seen(&draws(official, &t, 1)),
            [0, 2],
            "never the label itself"
        );
        let corrected = RelabelRule::Forget(ForgetLabels::Corrected);
        assert_eq!(seen(&draws(corrected, &t, 12)), [7, 30]);
        assert_eq!(seen(&draws(RelabelRule::Remaining, &t, 12)), [1, 2]);
        assert_eq!(draws(corrected, &t, 7), draws(corrected, &t, 7), "seeded");

        let single = task(vec![7], vec![1, 2]);
        assert_eq!(seen(&draws(corrected, &single, 7)), [1, 2]);
        let alone = task(vec![7], Vec::new());
        assert!(Relabeller::new(corrected).begin_task(&alone, 0).is_err());
        assert!(Relabeller::new(official).begin_task(&alone, 0).is_ok());

        // Classes 0–2 and 4 in the schedule: every forget sample goes to 3.
        let unused = RelabelRule::Forget(ForgetLabels::Unused);
        let gap = Task {
            old: vec![4],
            ..task(vec![0, 2], vec![1])
        };
        assert_eq!(seen(&draws(unused, &gap, 0)), [3]);
    }
}
