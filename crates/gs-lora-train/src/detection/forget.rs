//! Forgetting object classes in a detector (Deformable DETR): the set criterion of a batch on
//! the objects of its classes (the forgetting loss bounds the classification part only), COCO
//! AP per class group, the class head's rows as GS-LoRA++ prototypes, and detector directories
//! as checkpoints.
//!
//! `L = 2·focal_r + 5·L1_r + 2·GIoU_r + β·(relu(BND − 2·focal_f) + 5·L1_f + 2·GIoU_f)
//!      + α·Σ_layers ‖group‖₂ (+ L_prototype)`.

use std::path::Path;

use burn::module::ParamId;
use burn::tensor::{Device, Int, Tensor, TensorData};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::loss::{Prototypes, detection_forget_loss, detection_loss};
use gs_lora_core::{DataParallel, LoraConfig};
use gs_lora_models::deformable::{DeformableDetr, DetrOutput};

use super::augment::DetrAugment;
use super::criterion::{CriterionTerms, set_criterion};
use super::dataset::{DetectionBatch, DetectionDataset, detection_batch, samples_with};
use super::detector_dir::{DetectorDir, DetectorInfo};
use super::evaluate::detector_ap;
use super::matching::{HungarianMatcher, Target};
use crate::config::{ForgetConfig, ForgetLoss};
use crate::engine::{
    self, Criterion, Family, Objective, Pair, RunDir, RunState, Task, param_ids_where,
};
use crate::error::{Result, TrainError};
use crate::image::Preprocess;
use crate::membership::MiaEfficacy;
use crate::method::method_for;
use crate::report::Scores;

/// The matched queries' decoder embeddings `[M, d]` and their classes' rows of the class head
/// `[M, d]` (the prototypes of GS-LoRA++ for detection).
fn matched_embeddings(
    model: &DeformableDetr,
    output: &DetrOutput,
    terms: &CriterionTerms,
) -> (Tensor<2>, Tensor<2>) {
    let [batch, queries, d] = output.hidden.dims();
    let device = output.hidden.device();
    let index = |values: Vec<i64>| {
        let len = values.len();
        Tensor::<1, Int>::from_data(TensorData::new(values, [len]), &device)
    };
    let rows = index(terms.matched.iter().map(|&(row, _)| row as i64).collect());
    let labels = index(terms.matched.iter().map(|&(_, l)| l as i64).collect());
    let embeddings = output
        .hidden
        .clone()
        .reshape([batch * queries, d])
        .select(0, rows);
    // Burn's Linear stores [d_in, d_out]: a class's row is a column here.
    let prototypes = model.class_embed.weight.val().transpose().select(0, labels);
    (embeddings, prototypes)
}

/// How a detector trains: the set criterion of (Deformable) DETR after Hungarian matching, each
/// forward pass split across the devices of `parallel` when there are several.
#[derive(Debug, Clone, Default)]
pub struct DetectorObjective {
    matcher: HungarianMatcher,
    parallel: Option<DataParallel>,
}

impl DetectorObjective {
    /// Forward passes split across the devices of `parallel` (the model on its primary).
    pub fn split_across(parallel: DataParallel) -> Self {
        Self {
            parallel: Some(parallel),
            ..Self::default()
        }
    }
}

/// A detector's forward pass on a batch, matched to the batch's objects.
#[derive(Debug, Clone)]
pub struct DetectorCriterion {
    output: DetrOutput,
    terms: CriterionTerms,
    /// The batch's objects, matched again when relabelled.
    targets: Vec<Vec<Target>>,
    matcher: HungarianMatcher,
}

impl Criterion for DetectorCriterion {
    fn loss(&self) -> Result<Tensor<1>> {
        let terms = self.terms.clone();
        Ok(detection_loss(terms.focal, terms.l1, terms.giou))
    }

    fn bounded_loss(
        &self,
        bound: Option<f64>,
        per_sample: bool,
        loss: ForgetLoss,
    ) -> Result<Tensor<1>> {
        if per_sample {
            return Err(per_sample_refused());
        }
        if loss != ForgetLoss::CrossEntropy {
            return Err(per_sample_form_refused());
        }
        let bound = bound.ok_or_else(no_default_bound)?;
        let terms = self.terms.clone();
        Ok(detection_forget_loss(
            terms.focal,
            terms.l1,
            terms.giou,
            bound,
        )?)
    }

    /// The set criterion with each object's class `y` replaced by `relabel(y)`, matched
    /// again (the class cost changes with the labels).
    fn relabelled_loss(&self, relabel: &mut dyn FnMut(usize) -> usize) -> Result<Tensor<1>> {
        let classes = self.output.logits.dims()[2];
        let mut targets = self.targets.clone();
        for object in targets.iter_mut().flatten() {
            object.label = relabel(object.label);
            if object.label >= classes {
                return Err(TrainError::Data(format!(
                    "relabelled to class {} of a {classes}-class detector",
                    object.label
                )));
            }
        }
        let terms = set_criterion(&self.output, &targets, &self.matcher)?;
        Ok(detection_loss(terms.focal, terms.l1, terms.giou))
    }

    /// The class logits of every query, `[N·Q, C]`.
    fn logits(&self) -> Tensor<2> {
        let [batch, queries, classes] = self.output.logits.dims();
        self.output
            .logits
            .clone()
            .reshape([batch * queries, classes])
    }

    /// The class logits, as the official detection DER matches them (PROTOCOL §4).
    fn features(&self) -> Tensor<2> {
        self.logits()
    }

    /// Refused: LIRF splits a ViT classifier's blocks.
    fn middle(&self) -> Result<Tensor<3>> {
        Err(lirf_refused())
    }
}

impl Objective for DetectorObjective {
    type Model = DeformableDetr;
    type Batch = DetectionBatch;
    type Criterion = DetectorCriterion;

    fn criterion(
        &self,
        model: &DeformableDetr,
        batch: DetectionBatch,
    ) -> Result<DetectorCriterion> {
        let forward = |model: &DeformableDetr, (pixels, mask)| model.forward_masked(pixels, mask);
        let input = (batch.pixels, batch.pixel_mask);
        let output = match &self.parallel {
            Some(parallel) => parallel.forward(model, input, forward)?,
            None => forward(model, input)?,
        };
        let terms = set_criterion(&output, &batch.targets, &self.matcher)?;
        Ok(DetectorCriterion {
            output,
            terms,
            targets: batch.targets,
            matcher: self.matcher,
        })
    }

    /// The matched queries' embeddings against their classes' class-head rows.
    fn prototype_pairs(
        &self,
        model: &DeformableDetr,
        criteria: Pair<&DetectorCriterion>,
        _: Option<&Prototypes>,
    ) -> Result<Option<Pair<(Tensor<2>, Tensor<2>)>>> {
        if criteria.retain.terms.matched.is_empty() || criteria.forget.terms.matched.is_empty() {
            return Ok(None);
        }
        let pair = |c: &DetectorCriterion| matched_embeddings(model, &c.output, &c.terms);
        Ok(Some(Pair {
            forget: pair(criteria.forget),
            retain: pair(criteria.retain),
        }))
    }
}

/// LIRF's refusal on a detector.
fn lirf_refused() -> TrainError {
    TrainError::Setting {
        name: "method",
        problem: "lirf splits a ViT classifier into halves, a classification baseline; a \
                  detector has no such split"
            .into(),
    }
}

/// `true` for the classes of `classes`, out of `num_classes`.
fn class_mask(num_classes: usize, classes: &[usize]) -> Vec<bool> {
    let mut mask = vec![false; num_classes];
    classes.iter().for_each(|&c| mask[c] = true);
    mask
}

/// A detector on a detection dataset: the [`Family`] the engine runs detection tasks on.
#[derive(Debug)]
pub struct DetectionFamily<'a> {
    dataset: &'a DetectionDataset,
    preprocess: Preprocess,
    objective: DetectorObjective,
    /// Images per evaluation batch.
    eval_batch_size: usize,
    /// Adapters of checkpoints read back.
    lora: LoraConfig,
    seed: u64,
    /// DETR's training augmentation at the images' scale, when `config.augment`.
    augment: Option<DetrAugment>,
    device: Device,
}

impl<'a> DetectionFamily<'a> {
    /// The detection family on `dataset` with the settings of `config`, for a model whose
    /// smallest input side is `min_side` ([`DeformableDetr::min_input_side`]: augmentation never
    /// makes an image smaller), the model on the primary device of `devices` and every
    /// training batch split across them.
    pub fn new(
        dataset: &'a DetectionDataset,
        preprocess: Preprocess,
        config: &ForgetConfig,
        min_side: usize,
        devices: &DataParallel,
    ) -> Self {
        Self {
            dataset,
            preprocess,
            objective: DetectorObjective::split_across(devices.clone()),
            eval_batch_size: 2 * config.batch_size,
            lora: config.lora.clone(),
            seed: config.seed,
            augment: config
                .augment
                .then(|| DetrAugment::for_side(preprocess.image_size, min_side)),
            device: devices.primary().clone(),
        }
    }
}

impl Family for DetectionFamily<'_> {
    type Model = DeformableDetr;
    type Batch = DetectionBatch;
    type Objective = DetectorObjective;
    const METRIC: &'static str = "AP";

    fn classes(&self) -> Vec<usize> {
        self.dataset.labels.clone()
    }

    fn samples_of(&self, class: usize) -> Vec<usize> {
        let mask = class_mask(self.dataset.num_classes(), &[class]);
        samples_with(&self.dataset.train, &mask)
    }

    /// Only the objects of `classes` are targets; the others are background. With
    /// augmentation, sample `i` draws its changes from `derive_seed(seed, i)`.
    fn batch(&self, indices: &[usize], classes: &[usize], seed: u64) -> Result<DetectionBatch> {
        let mask = class_mask(self.dataset.num_classes(), classes);
        let train = &self.dataset.train;
        let Some(augment) = &self.augment else {
            return detection_batch(train, indices, &mask, &self.preprocess, &self.device);
        };
        let augmented = indices
            .iter()
            .map(|&i| {
                let sample = train.get(i).ok_or_else(|| {
                    TrainError::Data(format!(
                        "sample {i} requested from a split of {} images",
                        train.len()
                    ))
                })?;
                Ok(augment.apply(sample, derive_seed(seed, i as u64)))
            })
            .collect::<Result<Vec<_>>>()?;
        let all: Vec<usize> = (0..augmented.len()).collect();
        detection_batch(&augmented, &all, &mask, &self.preprocess, &self.device)
    }

    fn objective(&self) -> &DetectorObjective {
        &self.objective
    }

    /// COCO AP (%) per group; an error for a group without any object in the validation split.
    fn evaluate(&self, model: &DeformableDetr, task: &Task) -> Result<Scores> {
        let both: Vec<usize> = task.retain.iter().chain(&task.missing).copied().collect();
        let groups = [
            &task.forget[..],
            &task.retain[..],
            &task.old[..],
            &task.missing[..],
            &both[..],
        ];
        let [forget, retain, old, missing, retain_and_missing] = detector_ap(
            model,
            &self.dataset.val,
            &self.preprocess,
            self.eval_batch_size,
            &groups,
            &self.device,
        )?
        .try_into()
        .map_err(|_| TrainError::Data("one AP per class group expected".into()))?;
        // A group without any object cannot be scored: reporting 0 would read as perfect
        // forgetting (or a collapse).
        let ap = |summary: Option<super::ApSummary>, group: &str| {
            summary.map(|s| s.ap).ok_or_else(|| {
                TrainError::Data(format!(
                    "task {}: the {group} classes have no object in the validation images, so their \
                     AP cannot be measured",
                    task.index
                ))
            })
        };
        let old = match task.old.is_empty() {
            true => None,
            false => Some(ap(old, "earlier-forgotten")?),
        };
        let (missing, retain_and_missing) = match task.missing.is_empty() {
            true => (None, None),
            false => (
                Some(ap(missing, "missing")?),
                Some(ap(retain_and_missing, "remaining and missing")?),
            ),
        };
        Ok(Scores {
            forget: ap(forget, "forget")?,
            retain: ap(retain, "remaining")?,
            old,
            missing,
            retain_and_missing,
        })
    }

    /// `None`: a detector's prototypes are its class head's rows, read during training.
    fn prototypes(
        &self,
        _: &DeformableDetr,
        _: &[usize],
        _: &[usize],
    ) -> Result<Option<Prototypes>> {
        Ok(None)
    }

    /// Every parameter but the class and box heads, the backbone's stem and first stage and
    /// its frozen batch norms (PROTOCOL §4), and the LoRA factors.
    fn full_model_params(&self, model: &DeformableDetr) -> Vec<ParamId> {
        let frozen = [
            &["class_embed"][..],
            &["bbox_embed"],
            &["backbone", "conv1"],
            &["backbone", "bn1"],
            &["backbone", "stages", "0"],
        ];
        param_ids_where(model, |path| {
            !frozen.iter().any(|prefix| path.starts_with(prefix))
                && path.holder != "Struct:FrozenBatchNorm2d"
                && !matches!(path.field(), "lora_a" | "lora_b")
        })
    }

    /// Refused: LIRF splits a ViT classifier's blocks.
    fn lower_half_params(&self, _: &DeformableDetr) -> Result<Vec<ParamId>> {
        Err(lirf_refused())
    }

    /// `None`: a detector has no per-image class distribution to attack.
    fn membership_attack(
        &self,
        _: &DeformableDetr,
        _: &Task,
        _: u64,
    ) -> Result<Option<MiaEfficacy>> {
        Ok(None)
    }

    fn load(&self, path: &Path) -> Result<DeformableDetr> {
        DetectorDir::new(path).load(&self.lora, self.seed, &self.device)
    }

    fn save(&self, model: &DeformableDetr, task: &Task, path: &Path) -> Result<()> {
        let info = DetectorInfo {
            config: model.config.clone(),
            class_names: self.dataset.class_names.clone(),
            preprocess: self.preprocess,
            forgotten: task.old.iter().chain(&task.forget).copied().collect(),
        };
        DetectorDir::new(path).save(model, &info)
    }
}

/// The per-sample bound is a classification setting: a detection batch's forgetting loss is
/// one matched-query sum (PROTOCOL §2.2), with no sample to bound on its own.
fn per_sample_refused() -> TrainError {
    TrainError::Setting {
        name: "bnd_per_sample",
        problem: "is on, but detection bounds its forgetting loss per batch only".into(),
    }
}

/// The unlikelihood and log-odds terms read one class probability per image; a detection
/// batch's forgetting loss is a matched-query set loss with box terms.
fn per_sample_form_refused() -> TrainError {
    TrainError::Setting {
        name: "forget_loss",
        problem: "is not cross-entropy, but detection bounds its set loss (cross-entropy form) \
                  only"
            .into(),
    }
}

/// `ln C + 1` bounds one sample's cross-entropy; a detection loss has no such scale.
fn no_default_bound() -> TrainError {
    TrainError::Setting {
        name: "bnd",
        problem: "is auto, but detection has no default bound; give one (official COCO: 15)".into(),
    }
}

/// Runs (or resumes) the forgetting tasks of `config` on the detector `model` (on the first of
/// the autodiff `devices`, every training batch split across them) with the method
/// `config.method`, writing results (scores are COCO AP, %) and checkpoints under `run`.
///
/// # Errors
/// An invalid dataset or settings, a failing model, file errors, or a non-finite loss (the run
/// stops and the last finished task's checkpoint stays in place).
pub fn run_forgetting(
    mut model: DeformableDetr,
    dataset: &DetectionDataset,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    run: &RunDir,
    devices: impl Into<DataParallel>,
) -> Result<RunState> {
    dataset.validate()?;
    if config.bnd_per_sample {
        return Err(per_sample_refused());
    }
    if config.forget_form() != ForgetLoss::CrossEntropy {
        return Err(per_sample_form_refused());
    }
    if config.bnd.is_none() {
        return Err(no_default_bound());
    }
    let devices = devices.into();
    crate::engine::announce_split(&devices);
    let family = DetectionFamily::new(
        dataset,
        *preprocess,
        config,
        model.min_input_side(),
        &devices,
    );
    if let Some(prob) = config.dropout {
        model = model.with_dropout(prob)?;
    }
    engine::run(&family, &mut method_for(config), &mut model, config, run)
}
