//! Forgetting classes in a classifier (the ViT family): the criterion of a batch (cross-entropy
//! on the training logits, CosFace heads with their margin as GS-LoRA trains them), top-1
//! accuracy per class group, class-mean prototypes for GS-LoRA++, and model directories as
//! checkpoints.

use std::path::Path;

use burn::module::{Module, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::loss::{
    PrototypeAccumulator, Prototypes, forget_loss, forget_loss_log_odds, forget_loss_per_sample,
    forget_loss_unlikelihood, retain_loss,
};
use gs_lora_core::{DataParallel, LoraConfig};
use gs_lora_models::VisionTransformer;
use gs_lora_models::vit::Head;

use super::batch::{Batch, make_batch};
use super::classifier_dir::{ClassifierDir, ClassifierInfo};
use super::data::{Dataset, ImageSet};
use super::evaluate::{attack_features, class_accuracy, logits_with_margin};
use crate::config::{EvalSplit, ForgetConfig, ForgetLoss, per_sample_form_on_the_batch_mean};
use crate::engine::{
    self, Criterion, Family, Objective, Pair, RunDir, RunState, Task, param_ids_where,
};
use crate::error::{Result, TrainError};
use crate::image::Preprocess;
use crate::membership::{MAX_PER_SET, MiaEfficacy, mia_efficacy, subsample};
use crate::method::method_for;
use crate::report::Scores;

/// How a classifier trains: cross-entropy on its training logits, each forward pass split
/// across the devices of `parallel` when there are several.
#[derive(Debug, Clone, Default)]
pub struct ClassifierObjective {
    parallel: Option<DataParallel>,
}

impl ClassifierObjective {
    /// Forward passes split across the devices of `parallel` (the model on its primary).
    pub fn split_across(parallel: DataParallel) -> Self {
        Self {
            parallel: Some(parallel),
        }
    }
}

/// A classifier's forward pass on a batch, with the batch's targets.
#[derive(Debug, Clone)]
pub struct ClassifierCriterion {
    /// Training logits `[B, C]` (with the CosFace margin on the true class).
    logits: Tensor<2>,
    /// Logits without any margin `[B, C]`.
    plain: Tensor<2>,
    /// What a CosFace head subtracts from the logit of the class it trains towards (`s · m`;
    /// 0 for a Linear head).
    margin: f64,
    /// Labels `[B]` as a tensor.
    targets: Tensor<1, Int>,
    /// Labels on the host.
    labels: Vec<usize>,
    /// Embeddings `[B, D]` (the prototype loss compares them).
    embedding: Tensor<2>,
    /// The tokens after the model's lower half `[B, T, D]` (LIRF).
    middle: Tensor<3>,
}

/// The default forgetting bound of a classifier of `classes` classes, `ln C + 1`
/// ([`ForgetConfig::bnd`](crate::ForgetConfig::bnd)).
pub fn default_bound(classes: usize) -> f64 {
    (classes as f64).ln() + 1.0
}

impl Criterion for ClassifierCriterion {
    fn loss(&self) -> Result<Tensor<1>> {
        Ok(retain_loss(self.logits.clone(), self.targets.clone())?)
    }

    fn bounded_loss(
        &self,
        bound: Option<f64>,
        per_sample: bool,
        loss: ForgetLoss,
    ) -> Result<Tensor<1>> {
        let (logits, targets) = (self.logits.clone(), self.targets.clone());
        let bound = bound.unwrap_or_else(|| default_bound(logits.dims()[1]));
        Ok(match (loss, per_sample) {
            (ForgetLoss::CrossEntropy, true) => forget_loss_per_sample(logits, targets, bound)?,
            (ForgetLoss::CrossEntropy, false) => forget_loss(logits, targets, bound)?,
            (ForgetLoss::Unlikelihood, true) => forget_loss_unlikelihood(logits, targets, bound)?,
            (ForgetLoss::LogOdds, true) => forget_loss_log_odds(logits, targets, bound)?,
            (form, false) => return Err(per_sample_form_on_the_batch_mean(form)),
        })
    }

    /// Cross-entropy towards the new labels, a CosFace head's margin on each new label.
    fn relabelled_loss(&self, relabel: &mut dyn FnMut(usize) -> usize) -> Result<Tensor<1>> {
        let [rows, classes] = self.plain.dims();
        let labels: Vec<usize> = self.labels.iter().map(|&y| relabel(y)).collect();
        if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
            return Err(TrainError::Data(format!(
                "relabelled to class {bad} of a {classes}-class head"
            )));
        }
        let device = self.plain.device();
        let values: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(values, [rows]), &device);
        let margin = targets
            .clone()
            .one_hot::<2>(classes)
            .float()
            .mul_scalar(self.margin);
        Ok(retain_loss(self.plain.clone() - margin, targets)?)
    }

    fn logits(&self) -> Tensor<2> {
        self.logits.clone()
    }

    fn features(&self) -> Tensor<2> {
        self.embedding.clone()
    }

    fn middle(&self) -> Result<Tensor<3>> {
        Ok(self.middle.clone())
    }
}

impl Objective for ClassifierObjective {
    type Model = VisionTransformer;
    type Batch = Batch;
    type Criterion = ClassifierCriterion;

    fn criterion(&self, model: &VisionTransformer, batch: Batch) -> Result<ClassifierCriterion> {
        let forward = |model: &VisionTransformer, images| model.forward(images);
        let output = match &self.parallel {
            Some(parallel) => parallel.forward(model, batch.images, forward)?,
            None => forward(model, batch.images)?,
        };
        let embedding = output.embedding.clone();
        let middle = output.middle_hidden_state.clone();
        let plain = output
            .logits
            .clone()
            .ok_or_else(|| TrainError::InvalidSetting("the model has no classifier head".into()))?;
        let margin = match &model.head {
            Some(Head::CosFace(cosface)) => cosface.scale * cosface.margin,
            _ => 0.0,
        };
        Ok(ClassifierCriterion {
            logits: logits_with_margin(model, output, batch.targets.clone())?,
            plain,
            margin,
            targets: batch.targets,
            labels: batch.labels,
            embedding,
            middle,
        })
    }

    fn prototype_pairs(
        &self,
        _: &VisionTransformer,
        criteria: Pair<&ClassifierCriterion>,
        prototypes: Option<&Prototypes>,
    ) -> Result<Option<Pair<(Tensor<2>, Tensor<2>)>>> {
        let prototypes = prototypes.ok_or_else(|| {
            TrainError::InvalidSetting(
                "the prototype loss needs the task's class prototypes".into(),
            )
        })?;
        let pair = |criterion: &ClassifierCriterion| -> Result<(Tensor<2>, Tensor<2>)> {
            Ok((
                criterion.embedding.clone(),
                prototypes.for_labels(&criterion.labels)?,
            ))
        };
        Ok(Some(Pair {
            forget: pair(criteria.forget)?,
            retain: pair(criteria.retain)?,
        }))
    }
}

/// A classifier on an image dataset: the [`Family`] the engine runs classification tasks on.
#[derive(Debug)]
pub struct ClassificationFamily<'a> {
    dataset: &'a Dataset,
    preprocess: Preprocess,
    /// Images per evaluation batch.
    eval_batch_size: usize,
    /// The split accuracies are measured on.
    eval_split: EvalSplit,
    /// Whether a CosFace head scores with its margin on the true class (the official flaw).
    eval_margin: bool,
    /// Adapters of checkpoints read back.
    lora: LoraConfig,
    seed: u64,
    device: Device,
    objective: ClassifierObjective,
}

impl<'a> ClassificationFamily<'a> {
    /// The classification family on `dataset` with the settings of `config`, the model on the
    /// primary device of `devices` and every training batch split across them.
    pub fn new(
        dataset: &'a Dataset,
        preprocess: Preprocess,
        config: &ForgetConfig,
        devices: &DataParallel,
    ) -> Self {
        Self {
            dataset,
            preprocess,
            eval_batch_size: 2 * config.batch_size,
            eval_split: config.eval_split,
            eval_margin: config.eval_margin,
            lora: config.lora.clone(),
            seed: config.seed,
            device: devices.primary().clone(),
            objective: ClassifierObjective::split_across(devices.clone()),
        }
    }

    /// The images accuracies are measured on, and the split's name.
    fn eval_set(&self) -> (&'a ImageSet, &'static str) {
        match self.eval_split {
            EvalSplit::Test => (&self.dataset.test, "test"),
            EvalSplit::Validation => (&self.dataset.val, "validation"),
        }
    }
}

impl Family for ClassificationFamily<'_> {
    type Model = VisionTransformer;
    type Batch = Batch;
    type Objective = ClassifierObjective;
    const METRIC: &'static str = "acc";

    fn classes(&self) -> Vec<usize> {
        (0..self.dataset.num_classes()).collect()
    }

    fn samples_of(&self, class: usize) -> Vec<usize> {
        self.dataset.train.indices_of(&[class])
    }

    fn batch(&self, indices: &[usize], _: &[usize], _: u64) -> Result<Batch> {
        Ok(make_batch(
            &self.dataset.train,
            indices,
            &self.preprocess,
            None,
            &self.device,
        ))
    }

    fn objective(&self) -> &ClassifierObjective {
        &self.objective
    }

    fn evaluate(&self, model: &VisionTransformer, task: &Task) -> Result<Scores> {
        let (set, split) = self.eval_set();
        let accuracy = class_accuracy(
            model,
            set,
            self.dataset.num_classes(),
            &self.preprocess,
            self.eval_batch_size,
            self.eval_margin,
            &self.device,
        )?;
        let measured = |classes: &[usize], group: &str| {
            accuracy.accuracy(classes).ok_or_else(|| {
                TrainError::Data(format!(
                    "task {}: the {group} classes have no {split} image, so their accuracy cannot be measured",
                    task.index
                ))
            })
        };
        let old = match task.old.is_empty() {
            true => None,
            false => Some(measured(&task.old, "earlier-forgotten")?),
        };
        let (missing, retain_and_missing) = match task.missing.is_empty() {
            true => (None, None),
            false => {
                let both: Vec<usize> = task.retain.iter().chain(&task.missing).copied().collect();
                (
                    Some(measured(&task.missing, "missing")?),
                    Some(measured(&both, "remaining and missing")?),
                )
            }
        };
        Ok(Scores {
            forget: measured(&task.forget, "forget")?,
            retain: measured(&task.retain, "remaining")?,
            old,
            missing,
            retain_and_missing,
        })
    }

    /// Class means of the embeddings, with the model as it is.
    fn prototypes(
        &self,
        model: &VisionTransformer,
        indices: &[usize],
        classes: &[usize],
    ) -> Result<Option<Prototypes>> {
        let model = model.valid();
        let plain = self.device.clone().without_autodiff();
        let mut accumulator =
            PrototypeAccumulator::new(self.dataset.num_classes(), model.config.hidden_size);
        for chunk in indices.chunks(self.eval_batch_size) {
            let batch = make_batch(&self.dataset.train, chunk, &self.preprocess, None, &plain);
            accumulator.add(model.forward(batch.images)?.embedding, &batch.labels)?;
        }
        Ok(Some(accumulator.finish(classes, &self.device)?))
    }

    /// Every parameter but the classifier head and the LoRA factors.
    fn full_model_params(&self, model: &VisionTransformer) -> Vec<ParamId> {
        param_ids_where(model, |path| {
            !path.starts_with(&["head"]) && !matches!(path.field(), "lora_a" | "lora_b")
        })
    }

    fn lower_half_params(&self, model: &VisionTransformer) -> Result<Vec<ParamId>> {
        let lower = model.lower_half_depth();
        Ok(param_ids_where(model, |path| {
            let embedding = ["patch_embed", "cls_token", "pos_embed"]
                .iter()
                .any(|name| path.starts_with(&[name]));
            let block = match path.names {
                [first, index, ..] if first == "blocks" => {
                    index.parse::<usize>().is_ok_and(|i| i < lower)
                }
                _ => false,
            };
            (embedding || block) && !matches!(path.field(), "lora_a" | "lora_b")
        }))
    }

    /// Members: remaining-class training images; non-members: remaining-class images of the
    /// evaluation split (as many as members at most); targets: forget-class training images;
    /// each at most [`MAX_PER_SET`], drawn from `seed`.
    fn membership_attack(
        &self,
        model: &VisionTransformer,
        task: &Task,
        seed: u64,
    ) -> Result<Option<MiaEfficacy>> {
        let (set, _) = self.eval_set();
        let train = &self.dataset.train;
        let non_members = subsample(&set.indices_of(&task.retain), MAX_PER_SET, seed);
        let members = train.indices_of(&task.retain);
        let members = subsample(&members, non_members.len(), derive_seed(seed, 1));
        let targets = subsample(
            &train.indices_of(&task.forget),
            MAX_PER_SET,
            derive_seed(seed, 2),
        );
        let features = |set: &ImageSet, indices: &[usize]| {
            attack_features(
                model,
                set,
                indices,
                &self.preprocess,
                self.eval_batch_size,
                &self.device,
            )
        };
        Ok(Some(mia_efficacy(
            &features(train, &members)?,
            &features(set, &non_members)?,
            &features(train, &targets)?,
        )?))
    }

    fn load(&self, path: &Path) -> Result<VisionTransformer> {
        ClassifierDir::new(path).load(&self.lora, self.seed, &self.device)
    }

    fn save(&self, model: &VisionTransformer, task: &Task, path: &Path) -> Result<()> {
        let info = ClassifierInfo {
            class_names: self.dataset.class_names.clone(),
            preprocess: self.preprocess,
            forgotten: task.old.iter().chain(&task.forget).copied().collect(),
            split_seed: self.dataset.split_seed,
            // The run trained on every training image of its data, the model's validation
            // images beyond this share included.
            val_fraction: Some(self.dataset.val_fraction),
        };
        ClassifierDir::new(path).save(model, &info)
    }
}

/// Runs (or resumes) the forgetting tasks of `config` on the classifier `model` (on the first of
/// the autodiff `devices`, every training batch split across them) with the method
/// `config.method`, writing results and checkpoints under `run`.
///
/// # Errors
/// A class without training or validation images, invalid settings, a failing model, file
/// errors, or a non-finite loss (the run stops and the last finished task's checkpoint stays in
/// place).
pub fn run_forgetting(
    mut model: VisionTransformer,
    dataset: &Dataset,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    run: &RunDir,
    devices: impl Into<DataParallel>,
) -> Result<RunState> {
    // Every class must be trainable and measurable: a class without evaluation images would
    // read as 0% (perfectly forgotten) or hide a collapse.
    let devices = devices.into();
    crate::engine::announce_split(&devices);
    let family = ClassificationFamily::new(dataset, *preprocess, config, &devices);
    dataset.require_each_class("training", &dataset.train)?;
    let (set, split) = family.eval_set();
    if set.is_empty() {
        return Err(TrainError::Setting {
            name: "eval_split",
            problem: format!(
                "is {split}, but the dataset has no {split} images; measure on the split it has"
            ),
        });
    }
    dataset.require_each_class(split, set)?;
    if config.augment {
        return Err(TrainError::Setting {
            name: "augment",
            problem: "is on, but it is DETR's detection augmentation; classification forgets \
                      without augmentation, as the official code"
                .into(),
        });
    }
    if let Some(prob) = config.dropout {
        model = model.with_dropout(prob)?;
    }
    engine::run(&family, &mut method_for(config), &mut model, config, run)
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    /// Relabelled cross-entropy by hand: plain logits `[1, 0, 0]` of a class-0 sample towards
    /// class 2 with a margin of 0.5 on the new label: `−ln(e^{−0.5} / (e + 1 + e^{−0.5}))`;
    /// a label outside the head is refused. Catches the margin left on the true class and the
    /// new labels ignored.
    #[test]
    fn relabelled_loss_puts_the_margin_on_the_new_label() {
        let device = Device::default();
        let criterion = ClassifierCriterion {
            logits: Tensor::zeros([1, 3], &device),
            plain: Tensor::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0], [1, 3]), &device),
            margin: 0.5,
            targets: Tensor::from_data(TensorData::new(vec![0i64], [1]), &device),
            labels: vec![0],
            embedding: Tensor::zeros([1, 1], &device),
            middle: Tensor::zeros([1, 1, 1], &device),
        };
        let mut seen = Vec::new();
        let found = criterion
            .relabelled_loss(&mut |y| {
                seen.push(y);
                2
            })
            .expect("loss")
            .try_into_vec_as::<f64>()
            .expect("value")[0];
        let e = std::f64::consts::E;
        let expected = -((-0.5f64).exp() / (e + 1.0 + (-0.5f64).exp())).ln();
        assert!((found - expected).abs() < 1e-5, "{found} vs {expected}");
        assert_eq!(seen, vec![0], "relabel sees the true label");
        assert!(criterion.relabelled_loss(&mut |_| 3).is_err());
    }

    /// `bnd` `None` bounds at `ln C + 1` of the logits' `C`, by hand: rows `[0, 0, 0]` (CE
    /// ln 3, below the bound) and `[0, 2, 2]` (CE ln(1 + 2e²), above it), per sample and on
    /// the batch mean; a given bound replaces it. The unlikelihood form at the same bound:
    /// the first row costs `−ln(1 − ⅓) + ln(1 − e^{−bound})`, the second (`p_y` below
    /// `e^{−bound}`) nothing; the log-odds form `ln ½ − logit(e^{−bound})` and nothing; on the
    /// batch mean both are refused. Catches the class count off by one, the `+ 1` dropped, the
    /// default ignored, and the form not reaching the loss.
    #[test]
    fn the_default_bound_is_ln_classes_plus_one() {
        let device = Device::default();
        let criterion = ClassifierCriterion {
            logits: Tensor::from_data(
                TensorData::new(vec![0.0f32, 0.0, 0.0, 0.0, 2.0, 2.0], [2, 3]),
                &device,
            ),
            plain: Tensor::zeros([2, 3], &device),
            margin: 0.0,
            targets: Tensor::from_data(TensorData::new(vec![0i64, 0], [2]), &device),
            labels: vec![0, 0],
            embedding: Tensor::zeros([2, 1], &device),
            middle: Tensor::zeros([2, 1, 1], &device),
        };
        let value = |bound, per_sample, loss| -> f64 {
            criterion
                .bounded_loss(bound, per_sample, loss)
                .expect("loss")
                .try_into_vec_as::<f64>()
                .expect("value")[0]
        };
        let ce = [3f64.ln(), (1.0 + 2.0 * 2f64.exp()).ln()];
        let relu = |x: f64| x.max(0.0);
        let auto = 3f64.ln() + 1.0;
        assert_eq!(default_bound(3), auto);
        let (ce_form, unlikelihood) = (ForgetLoss::CrossEntropy, ForgetLoss::Unlikelihood);
        let at_bound = -(1.0 - (-auto).exp()).ln();
        let cases = [
            (
                None,
                true,
                ce_form,
                (relu(auto - ce[0]) + relu(auto - ce[1])) / 2.0,
            ),
            (None, false, ce_form, relu(auto - (ce[0] + ce[1]) / 2.0)),
            (
                Some(3.0),
                true,
                ce_form,
                (relu(3.0 - ce[0]) + relu(3.0 - ce[1])) / 2.0,
            ),
            (
                None,
                true,
                unlikelihood,
                (-(2f64 / 3.0).ln() - at_bound) / 2.0,
            ),
            (
                None,
                true,
                ForgetLoss::LogOdds,
                (0.5f64.ln() - (-auto + at_bound)) / 2.0,
            ),
        ];
        for (bound, per_sample, loss, expected) in cases {
            let found = value(bound, per_sample, loss);
            assert!(
                (found - expected).abs() < 1e-5,
                "{bound:?} per sample {per_sample} {loss}: {found} vs {expected}"
            );
        }
        assert!(criterion.bounded_loss(None, false, unlikelihood).is_err());
        assert!(
            criterion
                .bounded_loss(None, false, ForgetLoss::LogOdds)
                .is_err()
        );
    }
}
