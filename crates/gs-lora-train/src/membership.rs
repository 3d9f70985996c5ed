//! Membership-inference attack (MIA) efficacy on the forgotten data, the measure of the
//! unlearning literature (SalUn's `SVC_MIA`, after Song & Mittal 2021): an attacker that tells
//! training members from unseen samples by the model's output is applied to the forget set; the
//! efficacy is the share of forget samples it calls *non-members*. A model that never saw the
//! forget set scores high; one that still remembers it, low.
//!
//! Per sample, from the model's class distribution `p` and the true label `y`:
//! - confidence `p_y`,
//! - entropy `−Σ_j p_j ln p_j`,
//! - modified entropy `−(1 − p_y) ln p_y − Σ_{j≠y} p_j ln(1 − p_j)`,
//!
//! with `ln` of values below 1e-30 taken at 1e-30. For each feature alone, a support-vector
//! classifier (RBF kernel `exp(−γ‖x − x'‖²)`, `γ = 1`, `C = 3`, scikit-learn's `SVC(C=3,
//! gamma="auto")` as SalUn) is trained on members (remaining-class training samples) against
//! non-members (remaining-class evaluation samples) and predicts the forget samples.
//!
//! The efficacy only means something when the attack tells members from non-members: a model
//! whose training samples look like unseen ones (no overfitting) leaves the classifier to
//! extrapolate, and the forget samples fall on either side by chance. The attack's own
//! accuracy on its members and non-members is reported with it (50 %: chance).

use linfa::dataset::Dataset;
use linfa::traits::{Fit, Predict};
use linfa_svm::Svm;
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Samples the attack reads at most per set (members, non-members, targets), drawn at random:
/// the support-vector solver holds a kernel matrix of `(members + non-members)²` entries.
pub const MAX_PER_SET: usize = 1000;

/// Logarithms are taken of values at least this small (SalUn's `small_value`).
const LOG_FLOOR: f64 = 1e-30;

/// What the attacker reads of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttackFeatures {
    /// Probability of the true class.
    pub confidence: f64,
    /// Entropy of the class distribution (nats).
    pub entropy: f64,
    /// Modified entropy (Song & Mittal 2021), which also reads the true class.
    pub modified_entropy: f64,
}

impl AttackFeatures {
    /// The features of a class distribution `probabilities` whose true class is `label`.
    ///
    /// # Errors
    /// A label outside the distribution, or a value that is not a probability.
    pub fn new(probabilities: &[f64], label: usize) -> Result<Self> {
        let p_y = *probabilities.get(label).ok_or_else(|| {
            TrainError::Data(format!(
                "label {label} outside a distribution over {} classes",
                probabilities.len()
            ))
        })?;
        if let Some(p) = probabilities
            .iter()
            .find(|p| !(0.0..=1.0 + 1e-6).contains(*p))
        {
            return Err(TrainError::Data(format!(
                "class distribution holds {p}, not a probability"
            )));
        }
        let neg_ln = |x: f64| -x.max(LOG_FLOOR).ln();
        let entropy = probabilities.iter().map(|&p| p * neg_ln(p)).sum();
        let others: f64 = probabilities
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != label)
            .map(|(_, &p)| p * neg_ln(1.0 - p))
            .sum();
        Ok(Self {
            confidence: p_y,
            entropy,
            modified_entropy: (1.0 - p_y) * neg_ln(p_y) + others,
        })
    }

    fn values(self) -> [f64; 3] {
        [self.confidence, self.entropy, self.modified_entropy]
    }
}

/// The attack's efficacy on the forget set (%): the share of forget samples the attack calls
/// non-members, per feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MiaEfficacy {
    /// With the confidence attack (the one SalUn and its successors report).
    pub confidence: f64,
    /// With the entropy attack.
    pub entropy: f64,
    /// With the modified-entropy attack.
    pub modified_entropy: f64,
    /// The confidence attack's accuracy on its own members and non-members (%; 50: it cannot
    /// tell them apart, and the efficacy is chance).
    pub attack_accuracy: f64,
}

/// The attack trained on `members` against `non_members`, applied to `targets`.
///
/// # Errors
/// An empty set, or a solver failure.
pub fn mia_efficacy(
    members: &[AttackFeatures],
    non_members: &[AttackFeatures],
    targets: &[AttackFeatures],
) -> Result<MiaEfficacy> {
    for (set, name) in [
        (members, "members"),
        (non_members, "non-members"),
        (targets, "targets"),
    ] {
        if set.is_empty() {
            return Err(TrainError::Data(format!(
                "the membership attack has no {name} to read"
            )));
        }
    }
    // The efficacy on the targets and the accuracy on the training records.
    let efficacy = |feature: usize| -> Result<(f64, f64)> {
        let column = |set: &[AttackFeatures]| -> Vec<f64> {
            set.iter().map(|f| f.values()[feature]).collect()
        };
        let records: Vec<f64> = column(members)
            .into_iter()
            .chain(column(non_members))
            .collect();
        let labels: Array1<bool> = (0..records.len()).map(|i| i < members.len()).collect();
        let records = Array2::from_shape_vec((labels.len(), 1), records)
            .map_err(|e| TrainError::Data(format!("membership features: {e}")))?;
        let dataset = Dataset::new(records, labels);
        let svm = Svm::<f64, bool>::params()
            .pos_neg_weights(3.0, 3.0)
            .gaussian_kernel(1.0)
            .fit(&dataset)
            .map_err(|e| TrainError::Data(format!("membership attack: {e}")))?;
        let right = svm
            .predict(dataset.records())
            .iter()
            .zip(dataset.targets())
            .filter(|(a, b)| a == b)
            .count();
        let accuracy = 100.0 * right as f64 / dataset.targets().len() as f64;
        let targets = Array2::from_shape_vec((targets.len(), 1), column(targets))
            .map_err(|e| TrainError::Data(format!("membership features: {e}")))?;
        let called_members = svm.predict(&targets).iter().filter(|m| **m).count();
        let efficacy = 100.0 * (1.0 - called_members as f64 / targets.nrows() as f64);
        Ok((efficacy, accuracy))
    };
    let (confidence, attack_accuracy) = efficacy(0)?;
    Ok(MiaEfficacy {
        confidence,
        entropy: efficacy(1)?.0,
        modified_entropy: efficacy(2)?.0,
        attack_accuracy,
    })
}

/// At most `max` of `indices`, drawn without replacement from `seed` (all of them, in order,
/// when there are no more).
pub fn subsample(indices: &[usize], max: usize, seed: u64) -> Vec<usize> {
    if indices.len() <= max {
        return indices.to_vec();
    }
    let mut picked = indices.to_vec();
    picked.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    picked.truncate(max);
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three features of `[0.5, 0.25, 0.25]` with true class 0, by hand. Catches the
    /// true-class term of the modified entropy swapped with the others', or a log base.
    #[test]
    fn features_match_a_hand_computation() {
        let f = AttackFeatures::new(&[0.5, 0.25, 0.25], 0).expect("test value");
        let ln = f64::ln;
        assert!((f.confidence - 0.5).abs() < 1e-12);
        assert!((f.entropy - (0.5 * ln(2.0) + 0.5 * ln(4.0))).abs() < 1e-12);
        let modified = 0.5 * ln(2.0) - 2.0 * 0.25 * ln(0.75);
        assert!((f.modified_entropy - modified).abs() < 1e-12);
        // A one-hot distribution on the wrong class: floored logs, no infinity.
        let wrong = AttackFeatures::new(&[0.0, 1.0], 0).expect("test value");
        assert!(wrong.modified_entropy.is_finite() && wrong.modified_entropy > 60.0);
        assert!(AttackFeatures::new(&[0.5, 0.5], 2).is_err());
        assert!(AttackFeatures::new(&[1.5, -0.5], 0).is_err());
    }

    /// Members are confident (p_y ≈ 0.95–1), non-members not (≈ 0.2–0.5); forget samples
    /// that look unseen are all called non-members (efficacy 100 %), ones that look like
    /// training samples none (0 %), and a half-and-half set half. Catches the efficacy counted
    /// as members, or the attack trained with the labels swapped.
    #[test]
    fn the_attack_separates_a_constructed_case() {
        let sample = |p: f64| AttackFeatures::new(&[p, 1.0 - p], 0).expect("test value");
        let spread = |lo: f64, hi: f64, n: usize| -> Vec<AttackFeatures> {
            (0..n)
                .map(|i| sample(lo + (hi - lo) * i as f64 / (n - 1) as f64))
                .collect()
        };
        let members = spread(0.95, 0.999, 40);
        let non_members = spread(0.2, 0.5, 40);
        let unseen =
            mia_efficacy(&members, &non_members, &spread(0.25, 0.45, 10)).expect("test value");
        assert_eq!(unseen.confidence, 100.0);
        assert_eq!(unseen.entropy, 100.0);
        assert_eq!(unseen.modified_entropy, 100.0);
        assert_eq!(
            unseen.attack_accuracy, 100.0,
            "separable members and non-members"
        );
        let seen =
            mia_efficacy(&members, &non_members, &spread(0.96, 0.99, 10)).expect("test value");
        assert_eq!(seen.confidence, 0.0);
        let half: Vec<_> = spread(0.25, 0.45, 5)
            .into_iter()
            .chain(spread(0.96, 0.99, 5))
            .collect();
        assert_eq!(
            mia_efficacy(&members, &non_members, &half)
                .expect("test value")
                .confidence,
            50.0
        );
        assert!(mia_efficacy(&[], &non_members, &half).is_err());
        // Members and non-members alike: the attack is near chance on them.
        let alike = spread(0.2, 0.999, 40);
        let chance = mia_efficacy(&alike, &alike, &half).expect("attack");
        assert!(chance.attack_accuracy <= 60.0, "{chance:?}");
    }

    /// The subset is a seeded draw without replacement, the whole set when small enough.
    #[test]
    fn subsets_are_seeded_draws_without_replacement() {
        let all: Vec<usize> = (0..50).collect();
        assert_eq!(subsample(&all, 60, 1), all);
        let a = subsample(&all, 10, 1);
        assert_eq!(a, subsample(&all, 10, 1));
        assert_ne!(a, subsample(&all, 10, 2));
        let mut unique = a.clone();
        unique.dedup();
        assert_eq!(unique.len(), 10);
    }
}
