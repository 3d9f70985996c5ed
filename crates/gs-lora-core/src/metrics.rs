//! Continual-forgetting metrics: accuracy per class set and the harmonic mean `H`.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use crate::error::{CoreError, Result, read_values};

/// Per-class correct/total counts, from which the accuracy over any set of classes follows,
/// and where each class's misclassified images went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassAccuracy {
    correct: Vec<u64>,
    total: Vec<u64>,
    /// `(true class, predicted class)` → images, mistakes only: at most one entry per image
    /// counted, however many classes there are.
    mistakes: BTreeMap<(usize, usize), u64>,
}

impl ClassAccuracy {
    /// Empty counts for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            correct: vec![0; num_classes],
            total: vec![0; num_classes],
            mistakes: BTreeMap::new(),
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.total.len()
    }

    /// Counts a batch of predicted classes against the true labels.
    ///
    /// # Errors
    /// [`CoreError::ShapeMismatch`] when the lengths differ, [`CoreError::LabelOutOfRange`] for a
    /// label or prediction outside `0..num_classes`.
    pub fn update(&mut self, predictions: &[usize], labels: &[usize]) -> Result<()> {
        if predictions.len() != labels.len() {
            return Err(CoreError::ShapeMismatch {
                what: "predictions for the labels",
                expected: vec![labels.len()],
                found: vec![predictions.len()],
            });
        }
        let num_classes = self.num_classes();
        let mut classes = labels.iter().chain(predictions);
        if let Some(&class) = classes.find(|&&class| class >= num_classes) {
            return Err(CoreError::LabelOutOfRange {
                label: class as i64,
                num_classes,
            });
        }
        for (&prediction, &label) in predictions.iter().zip(labels) {
            self.total[label] += 1;
            if prediction == label {
                self.correct[label] += 1;
            } else {
                *self.mistakes.entry((label, prediction)).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Counts a batch of logits `[B, C]` (top-1) against the true labels.
    ///
    /// # Errors
    /// As [`update`](Self::update), and [`CoreError::ShapeMismatch`] when `C` is not the number
    /// of classes.
    pub fn update_logits(&mut self, logits: Tensor<2>, labels: &[usize]) -> Result<()> {
        let [_, num_classes] = logits.dims();
        if num_classes != self.num_classes() {
            return Err(CoreError::ShapeMismatch {
                what: "logits' class axis",
                expected: vec![self.num_classes()],
                found: vec![num_classes],
            });
        }
        let predictions: Vec<usize> = read_values::<2, _, i64>(logits.argmax(1))?
            .into_iter()
            .map(|class| class as usize)
            .collect();
        self.update(&predictions, labels)
    }

    /// Top-1 accuracy in percent over the samples of `classes`; `None` when they have no sample.
    pub fn accuracy(&self, classes: &[usize]) -> Option<f64> {
        let total = self.images(classes);
        (total > 0).then(|| 100.0 * self.correct(classes) as f64 / total as f64)
    }

    /// Images of `classes` counted.
    pub fn images(&self, classes: &[usize]) -> u64 {
        Self::sum(&self.total, classes)
    }

    /// Images of `classes` predicted as their own class.
    pub fn correct(&self, classes: &[usize]) -> u64 {
        Self::sum(&self.correct, classes)
    }

    fn sum(counts: &[u64], classes: &[usize]) -> u64 {
        classes.iter().filter_map(|&class| counts.get(class)).sum()
    }

    /// Images of `classes` predicted as one of `predicted` (their own class included when it is
    /// in both): where a group's images go, e.g. the remaining classes' into forgotten ones.
    pub fn predicted_as(&self, classes: &[usize], predicted: &[usize]) -> u64 {
        let mask = |set: &[usize]| {
            let mut mask = vec![false; self.num_classes()];
            for &class in set {
                if let Some(member) = mask.get_mut(class) {
                    *member = true;
                }
            }
            mask
        };
        let (from, to) = (mask(classes), mask(predicted));
        let correct: u64 = (0..self.num_classes())
            .filter(|&class| from[class] && to[class])
            .map(|class| self.correct[class])
            .sum();
        let mistaken: u64 = self
            .mistakes
            .iter()
            .filter(|((label, prediction), _)| from[*label] && to[*prediction])
            .map(|(_, &images)| images)
            .sum();
        correct + mistaken
    }

    /// The misclassified images as `(true class, predicted class, images)`, most images first
    /// (ties by true class, then predicted class).
    pub fn mistakes(&self) -> Vec<(usize, usize, u64)> {
        let mut rows: Vec<_> = self
            .mistakes
            .iter()
            .map(|(&(label, prediction), &images)| (label, prediction, images))
            .collect();
        rows.sort_by_key(|&(label, prediction, images)| {
            (std::cmp::Reverse(images), label, prediction)
        });
        rows
    }
}

/// The harmonic mean `H = 2·D·Acc_r / (D + Acc_r)` of the forgetting drop
/// `D = Acc_f(before) − Acc_f` and the remaining accuracy; `0` when both are zero.
pub fn h_mean(acc_f_before: f64, acc_f: f64, acc_r: f64) -> f64 {
    let drop = acc_f_before - acc_f;
    let denominator = drop + acc_r;
    if denominator == 0.0 {
        0.0
    } else {
        2.0 * drop * acc_r / denominator
    }
}

/// The metrics of one forgetting task, top-1 in percent on a held-out split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskMetrics {
    /// Accuracy on the classes forgotten in this task (lower is better).
    pub acc_f: f64,
    /// Accuracy on the remaining classes (higher is better).
    pub acc_r: f64,
    /// Accuracy on classes forgotten in earlier tasks; `None` on the first task.
    pub acc_o: Option<f64>,
    /// Harmonic mean of the forgetting drop and `acc_r`, see [`h_mean`].
    pub h_mean: f64,
}

impl TaskMetrics {
    /// The metrics from the accuracies after the task and `acc_f` before it.
    pub fn new(acc_f_before: f64, acc_f: f64, acc_r: f64, acc_o: Option<f64>) -> Self {
        Self {
            acc_f,
            acc_r,
            acc_o,
            h_mean: h_mean(acc_f_before, acc_f, acc_r),
        }
    }
}
