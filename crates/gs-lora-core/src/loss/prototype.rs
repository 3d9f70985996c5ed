//! GS-LoRA++ prototypes and the prototype KL loss.

use std::collections::HashMap;

use burn::config::Config;
use burn::tensor::activation::{log_softmax, relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{CoreError, ensure_finite, ensure_non_negative, read_values};

/// Class prototypes: the mean embedding of each class (the feature the head reads).
#[derive(Debug, Clone)]
pub struct Prototypes {
    classes: Vec<usize>,
    rows: HashMap<usize, usize>,
    values: Tensor<2>,
}

impl Prototypes {
    /// The classes that have a prototype, in row order.
    pub fn classes(&self) -> &[usize] {
        &self.classes
    }

    /// All prototypes, one row per class of [`classes`](Self::classes); shape `[K, D]`.
    pub fn values(&self) -> Tensor<2> {
        self.values.clone()
    }

    /// The prototype of each label's class; shape `[B, D]`.
    ///
    /// # Errors
    /// [`CoreError::EmptyClass`] for a label whose class has no prototype.
    pub fn for_labels(&self, labels: &[usize]) -> Result<Tensor<2>, CoreError> {
        let rows = labels
            .iter()
            .map(|label| {
                self.rows
                    .get(label)
                    .map(|&row| row as i64)
                    .ok_or(CoreError::EmptyClass { class: *label })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Err(CoreError::EmptyBatch { what: "labels" });
        }
        let device = self.values.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [labels.len()]), &device);
        Ok(self.values.clone().select(0, index))
    }
}

/// Sums embeddings per class over any number of batches, then yields [`Prototypes`].
///
/// Sums are kept on the host in `f64`, so a prototype over a whole dataset does not depend on
/// how it was batched beyond rounding of the embeddings themselves.
#[derive(Debug, Clone)]
pub struct PrototypeAccumulator {
    dim: usize,
    sums: Vec<f64>,
    counts: Vec<usize>,
}

impl PrototypeAccumulator {
    /// An empty accumulator for `num_classes` classes and embeddings of width `dim`.
    pub fn new(num_classes: usize, dim: usize) -> Self {
        Self {
            dim,
            sums: vec![0.0; num_classes * dim],
            counts: vec![0; num_classes],
        }
    }

    /// Adds a batch of embeddings `[B, D]` with their class labels.
    ///
    /// # Errors
    /// [`CoreError::ShapeMismatch`] when `D` or `B` disagree with the accumulator or the labels,
    /// [`CoreError::LabelOutOfRange`] for a label outside `0..num_classes`.
    pub fn add(&mut self, embeddings: Tensor<2>, labels: &[usize]) -> Result<(), CoreError> {
        let [batch, dim] = embeddings.dims();
        if dim != self.dim || batch != labels.len() {
            return Err(CoreError::ShapeMismatch {
                what: "embeddings [B, D] for the labels and the accumulator's width",
                expected: vec![labels.len(), self.dim],
                found: vec![batch, dim],
            });
        }
        let num_classes = self.counts.len();
        if let Some(&label) = labels.iter().find(|&&label| label >= num_classes) {
            return Err(CoreError::LabelOutOfRange {
                label: label as i64,
                num_classes,
            });
        }
        let values: Vec<f64> = read_values(embeddings)?;
        for (row, &label) in values.chunks_exact(dim).zip(labels) {
            let sum = &mut self.sums[label * dim..(label + 1) * dim];
            sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            self.counts[label] += 1;
        }
        Ok(())
    }

    /// The prototypes of `classes`, on `device`.
    ///
    /// # Errors
    /// [`CoreError::EmptyClass`] for a class that received no sample,
    /// [`CoreError::LabelOutOfRange`] for a class outside `0..num_classes`.
    pub fn finish(&self, classes: &[usize], device: &Device) -> Result<Prototypes, CoreError> {
        let num_classes = self.counts.len();
        let mut values = Vec::with_capacity(classes.len() * self.dim);
        for &class in classes {
            let count = *self.counts.get(class).ok_or(CoreError::LabelOutOfRange {
                label: class as i64,
                num_classes,
            })?;
            if count == 0 {
                return Err(CoreError::EmptyClass { class });
            }
            let sum = &self.sums[class * self.dim..(class + 1) * self.dim];
            values.extend(sum.iter().map(|s| (s / count as f64) as f32));
        }
        let rows = classes
            .iter()
            .enumerate()
            .map(|(row, &c)| (c, row))
            .collect();
        Ok(Prototypes {
            classes: classes.to_vec(),
            rows,
            values: Tensor::from_data(TensorData::new(values, [classes.len(), self.dim]), device),
        })
    }
}

/// The prototypes of `classes` from one batch of embeddings `[N, D]` and their labels.
///
/// # Errors
/// As [`PrototypeAccumulator::add`] and [`PrototypeAccumulator::finish`].
pub fn prototypes(
    embeddings: Tensor<2>,
    labels: &[usize],
    classes: &[usize],
) -> Result<Prototypes, CoreError> {
    let [_, dim] = embeddings.dims();
    let num_classes = labels.iter().chain(classes).max().map_or(0, |max| max + 1);
    let device = embeddings.device();
    let mut accumulator = PrototypeAccumulator::new(num_classes, dim);
    accumulator.add(embeddings, labels)?;
    accumulator.finish(classes, &device)
}

/// `KL(p ‖ q) = Σ_d p_d log(p_d / q_d)` with `p = softmax(prototype)` and `q = softmax(embedding)`
/// over the feature axis, averaged over the batch; shape `[1]`.
///
/// # Shapes
/// - embeddings: `[B, D]`
/// - prototypes: `[B, D]`, the prototype of each sample's class
///
/// # Errors
/// [`CoreError::ShapeMismatch`] when the shapes differ, [`CoreError::EmptyBatch`] when `B = 0`.
pub fn prototype_kl(embeddings: Tensor<2>, prototypes: Tensor<2>) -> Result<Tensor<1>, CoreError> {
    let (found, expected) = (embeddings.dims(), prototypes.dims());
    if found != expected {
        return Err(CoreError::ShapeMismatch {
            what: "embeddings against their prototypes",
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    if found[0] == 0 {
        return Err(CoreError::EmptyBatch { what: "embeddings" });
    }
    let log_p = log_softmax(prototypes.clone(), 1);
    let log_q = log_softmax(embeddings, 1);
    let kl = softmax(prototypes, 1).mul(log_p - log_q).sum_dim(1);
    Ok(kl.mean())
}

/// The GS-LoRA++ prototype loss `L_pro = w_f · ReLU(bound − KL_f) + w_r · KL_r`.
///
/// Pushes forget-class embeddings away from their prototypes (until the KL reaches `bound`) and,
/// with `retain_weight > 0`, keeps remaining-class embeddings near theirs.
#[derive(Config, Debug, PartialEq)]
pub struct PrototypeLossConfig {
    /// Bound on the forget-class KL.
    #[config(default = 18.0)]
    pub bound: f64,
    /// Weight `w_f` of the forget term.
    #[config(default = 0.01)]
    pub forget_weight: f64,
    /// Weight `w_r` of the retain term.
    #[config(default = 0.0)]
    pub retain_weight: f64,
}

impl PrototypeLossConfig {
    /// Checks that the bound is finite and the weights finite and non-negative.
    ///
    /// # Errors
    /// [`CoreError::NonFinite`] or [`CoreError::OutOfRange`] naming the value.
    pub fn validate(&self) -> Result<(), CoreError> {
        ensure_finite("prototype bound", self.bound)?;
        ensure_non_negative("prototype forget weight", self.forget_weight)?;
        ensure_non_negative("prototype retain weight", self.retain_weight)?;
        Ok(())
    }

    /// The loss from forget-class and remaining-class embeddings with their class prototypes,
    /// each pair `[B, D]`; shape `[1]`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate) and [`prototype_kl`].
    pub fn loss(
        &self,
        forget: (Tensor<2>, Tensor<2>),
        retain: (Tensor<2>, Tensor<2>),
    ) -> Result<Tensor<1>, CoreError> {
        self.validate()?;
        let kl_forget = prototype_kl(forget.0, forget.1)?;
        let kl_retain = prototype_kl(retain.0, retain.1)?;
        let forget_term =
            relu(kl_forget.neg().add_scalar(self.bound)).mul_scalar(self.forget_weight);
        Ok(forget_term + kl_retain.mul_scalar(self.retain_weight))
    }
}
