//! Continual-forgetting metrics: accuracy per class set and the harmonic mean `H`.

use burn::tensor::Tensor;

use crate::error::{CoreError, Result, read_values};

/// Per-class correct/total counts, from which the accuracy over any set of classes follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassAccuracy {
    correct: Vec<u64>,
    total: Vec<u64>,
}

impl ClassAccuracy {
    /// Empty counts for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            correct: vec![0; num_classes],
            total: vec![0; num_classes],
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
    /// label outside `0..num_classes`.
    pub fn update(&mut self, predictions: &[usize], labels: &[usize]) -> Result<()> {
        if predictions.len() != labels.len() {
            return Err(CoreError::ShapeMismatch {
                what: "predictions for the labels",
                expected: vec![labels.len()],
                found: vec![predictions.len()],
            });
        }
        let num_classes = self.num_classes();
        if let Some(&label) = labels.iter().find(|&&label| label >= num_classes) {
            return Err(CoreError::LabelOutOfRange {
                label: label as i64,
                num_classes,
            });
        }
        for (&prediction, &label) in predictions.iter().zip(labels) {
            self.total[label] += 1;
            self.correct[label] += u64::from(prediction == label);
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
        let count =
            |counts: &[u64]| -> u64 { classes.iter().filter_map(|&class| counts.get(class)).sum() };
        let total = count(&self.total);
        (total > 0).then(|| 100.0 * count(&self.correct) as f64 / total as f64)
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
